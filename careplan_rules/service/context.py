"""The hook request: its envelope and its hook-specific ``context``, checked before any work.

Context fields follow the CDS Hooks Library 1.0.1 definitions of ``patient-view``,
``order-select`` and ``order-sign``. Every problem of a request is collected, so one ``400``
lists all of them with their JSON paths. Unknown top-level fields and unknown context fields
are ignored (the spec reserves ``extension`` for additions, and older clients send legacy
fields such as a top-level ``user``); wrong *types* of known fields are errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from careplan_rules.service.errors import Problems

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
MAX_ID_LENGTH = 256  # hookInstance (a UUID), and the card and suggestion ids feedback names
_TYPED_REF = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})$")
USER_TYPES = {
    "patient-view": ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson"),
    "order-select": ("Practitioner", "PractitionerRole"),
    "order-sign": ("Practitioner", "PractitionerRole"),
}
ORDER_HOOKS = ("order-select", "order-sign")


@dataclass(frozen=True, slots=True)
class FhirAccess:
    """Where and how the service may read the client's FHIR server (the token is never logged)."""

    server: str
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class HookCall:
    """A validated hook request."""

    hook: str
    hook_instance: str
    user_id: str | None
    patient_id: str
    encounter_id: str | None
    context: Mapping[str, Any]
    prefetch: Mapping[str, Any]
    draft_orders: tuple[dict[str, Any], ...] = ()
    selections: tuple[str, ...] = ()
    fhir: FhirAccess | None = None


def _string(body: Mapping[str, Any], name: str, problems: Problems, where: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            problems.add("required", f"{where}{name} is required", f"{where}{name}")
        return None
    if not isinstance(value, str) or not value.strip():
        problems.add("value", f"{where}{name} must be a non-empty string", f"{where}{name}")
        return None
    return value


def parse_hook_call(body: Any, service_hook: str, *, lenient_user: bool = False) -> HookCall:
    """Check a request body against the service's hook.

    Args:
        body: the parsed JSON body.
        service_hook: the hook of the service the request was posted to.
        lenient_user: accept a missing ``context.userId`` (configuration ``context_validation``).

    Returns:
        The validated call.

    Raises:
        ServiceError: 400 listing every problem found.
    """
    problems = Problems()
    if not isinstance(body, dict):
        problems.add("structure", "the request body must be a JSON object")
        problems.raise_if_any()
    hook = _string(body, "hook", problems, "", required=True)
    if hook is not None and hook != service_hook:
        problems.add("value", f"this service answers the {service_hook!r} hook, not {hook!r}", "hook")
    hook_instance = _string(body, "hookInstance", problems, "", required=True)
    if hook_instance is not None and len(hook_instance) > MAX_ID_LENGTH:
        # it is logged with every call and stored with every card sent: an identifier, not a payload
        problems.add(
            "too-long", f"hookInstance must be at most {MAX_ID_LENGTH} characters (a UUID has 36)", "hookInstance"
        )
        hook_instance = None
    fhir = _fhir_access(body, problems)
    context = body.get("context")
    if not isinstance(context, dict):
        problems.add("required" if context is None else "structure", "context must be a JSON object", "context")
        problems.raise_if_any()
        raise AssertionError("unreachable")
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        problems.add("structure", "prefetch must be a JSON object", "prefetch")
        prefetch = None
    user_id = _string(context, "userId", problems, "context.", required=not lenient_user)
    if user_id is not None:
        m = _TYPED_REF.match(user_id)
        allowed = USER_TYPES[service_hook]
        if m is None or m.group("type") not in allowed:
            problems.add(
                "value",
                f"context.userId must be a reference such as Practitioner/123 to a {' or '.join(allowed)}",
                "context.userId",
            )
    patient_id = _string(context, "patientId", problems, "context.", required=True)
    if patient_id is not None:
        # clients differ on "123" versus "Patient/123"; both name the same patient
        patient_id = patient_id.removeprefix("Patient/")
        if not _ID.match(patient_id):
            problems.add("value", "context.patientId must be a FHIR id (Patient.id)", "context.patientId")
    encounter_id = _string(context, "encounterId", problems, "context.", required=False)
    if encounter_id is not None and not _ID.match(encounter_id.removeprefix("Encounter/")):
        problems.add("value", "context.encounterId must be a FHIR id (Encounter.id)", "context.encounterId")
    drafts: tuple[dict[str, Any], ...] | None = ()
    selections: tuple[str, ...] = ()
    if service_hook in ORDER_HOOKS:
        drafts = _draft_orders(context, problems)
    if service_hook == "order-select":
        selections = _selections(context, drafts, problems)
    authorized = body.get("fhirAuthorization")
    token_patient = authorized.get("patient") if isinstance(authorized, dict) else None
    if (
        isinstance(token_patient, str)
        and patient_id is not None
        and token_patient.removeprefix("Patient/") != patient_id
    ):
        # a token scoped to another patient cannot fetch this patient's data
        problems.add("invalid", "fhirAuthorization.patient differs from context.patientId", "fhirAuthorization.patient")
    problems.raise_if_any()
    assert hook is not None and hook_instance is not None and patient_id is not None
    return HookCall(
        hook=hook,
        hook_instance=hook_instance,
        user_id=user_id,
        patient_id=patient_id,
        encounter_id=encounter_id,
        context=context,
        prefetch=prefetch or {},
        draft_orders=drafts or (),
        selections=selections,
        fhir=fhir,
    )


def _fhir_access(body: Mapping[str, Any], problems: Problems) -> FhirAccess | None:
    server = _string(body, "fhirServer", problems, "", required=False)
    if server is not None and not server.startswith(("https://", "http://")):
        problems.add("value", "fhirServer must be an absolute http(s) URL", "fhirServer")
        server = None
    auth = body.get("fhirAuthorization")
    token: str | None = None
    if auth is not None:
        if not isinstance(auth, dict):
            problems.add("structure", "fhirAuthorization must be a JSON object", "fhirAuthorization")
        else:
            token = _string(auth, "access_token", problems, "fhirAuthorization.", required=True)
            token_type = _string(auth, "token_type", problems, "fhirAuthorization.", required=True)
            if token_type is not None and token_type.lower() != "bearer":
                problems.add("value", "fhirAuthorization.token_type must be Bearer", "fhirAuthorization.token_type")
            expires = auth.get("expires_in")
            if expires is None:
                problems.add("required", "fhirAuthorization.expires_in is required", "fhirAuthorization.expires_in")
            elif not isinstance(expires, int) or isinstance(expires, bool):
                problems.add("value", "fhirAuthorization.expires_in must be an integer", "fhirAuthorization.expires_in")
            _string(auth, "scope", problems, "fhirAuthorization.", required=True)
            _string(auth, "subject", problems, "fhirAuthorization.", required=True)
        if body.get("fhirServer") is None:
            # invariant cds-r-1
            problems.add("required", "fhirServer is required when fhirAuthorization is present", "fhirServer")
    if server is None:
        return None
    return FhirAccess(server.rstrip("/"), token)


def _draft_orders(context: Mapping[str, Any], problems: Problems) -> tuple[dict[str, Any], ...] | None:
    """The draft orders; None when the field is missing or malformed (already reported)."""
    bundle = context.get("draftOrders")
    if bundle is None:
        problems.add("required", "context.draftOrders is required", "context.draftOrders")
        return None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        problems.add("structure", "context.draftOrders must be a FHIR Bundle", "context.draftOrders")
        return None
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        problems.add("structure", "context.draftOrders.entry must be a list", "context.draftOrders.entry")
        return None
    out = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            problems.add(
                "structure",
                f"context.draftOrders.entry[{i}] must hold a FHIR resource",
                f"context.draftOrders.entry[{i}].resource",
            )
            continue
        out.append(resource)
    return tuple(out)


def _selections(
    context: Mapping[str, Any], drafts: tuple[dict[str, Any], ...] | None, problems: Problems
) -> tuple[str, ...]:
    raw = context.get("selections")
    if raw is None:
        problems.add("required", "context.selections is required", "context.selections")
        return ()
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        problems.add("structure", "context.selections must be a list of strings", "context.selections")
        return ()
    if not raw:
        problems.add("required", "context.selections must name at least one order", "context.selections")
    known = {f"{d['resourceType']}/{d.get('id')}" for d in drafts or () if isinstance(d.get("id"), str)}
    for i, sel in enumerate(raw):
        where = f"context.selections[{i}]"
        if not _TYPED_REF.match(sel):
            problems.add("value", "each selection must be a reference such as MedicationRequest/123", where)
        elif drafts is not None and sel not in known:
            problems.add("value", "each selection must name an order in context.draftOrders", where)
    return tuple(raw)
