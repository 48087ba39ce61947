"""Assemble the data of one hook call: prefetch, then ``fhirServer``, then draft orders.

Whatever the rules read and the client did not send is fetched from the client's FHIR server
(with the ``fhirAuthorization`` token); what cannot be had is reported as *missing*, and the
caller answers 412 (or, when configured, evaluates what there is and says so on a card). Data
is never silently partial: a search whose later pages cannot be fetched is as missing as one
that was never sent, because the kratom statement may be on page 2.

Draft orders are evaluated together with the record. The hook library defines ``draftOrders``
as the orders of the patient in context, so an order whose ``subject`` names another id is
evaluated as the context patient's (logged, without ids); prefetched data of another patient,
in contrast, is a client error (400): it would mix two patients' records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from careplan_rules.service.config import FhirClientSettings
from careplan_rules.service.context import HookCall
from careplan_rules.service.errors import Issue, Problems
from careplan_rules.service.fhir_client import FetchError, FetchLimits, FhirClient, Found
from careplan_rules.service.prefetch import (
    PATIENT_FIELDS,
    PrefetchState,
    PrefetchTemplate,
    classify,
    extra_resources,
    foreign_patient,
    patient_id_of,
)

log = logging.getLogger("careplan_rules.service")
MEDICATION_USERS = ("MedicationStatement", "MedicationRequest", "MedicationDispense", "MedicationAdministration")


@dataclass(frozen=True, slots=True)
class Gathered:
    """The resources of one call, and what could not be had."""

    resources: tuple[tuple[dict[str, Any], str | None], ...]
    missing: tuple[Issue, ...]
    states: dict[str, PrefetchState]
    fetched: tuple[str, ...]


def _server_problem(server: str, settings: FhirClientSettings) -> str | None:
    scheme = urlsplit(server).scheme.lower()
    if scheme != "https" and not settings.allow_http:
        return "the request's fhirServer is not https (set fhir.allow_http for development)"
    if settings.allowed_servers and not any(server.startswith(p.rstrip("/")) for p in settings.allowed_servers):
        return "the request's fhirServer is not in the configured fhir.allowed_servers"
    return None


async def gather(
    call: HookCall,
    templates: Sequence[PrefetchTemplate],
    http: httpx.AsyncClient | None,
    settings: FhirClientSettings,
    read_types: Collection[str],
) -> Gathered:
    """Collect the call's data.

    Raises:
        ServiceError: 400 for malformed prefetch values or another patient's data.
    """
    problems = Problems()
    items = [classify(t, call.prefetch, problems) for t in templates]
    extra = extra_resources(call.prefetch, {t.key for t in templates}, problems)
    problems.raise_if_any()
    collected: list[tuple[str, Found]] = [(i.template.key, list(i.resources)) for i in items]
    collected.extend(extra)
    _refuse_foreign(collected, call.patient_id)

    missing: list[Issue] = []
    client, access_problem = _client(call, http, settings)
    jobs: dict[str, Awaitable[Found]] = {}
    for item in items:
        if not (item.needs_fetch or item.state is PrefetchState.PAGED):
            continue
        if client is None:
            what = "further pages" if item.state is PrefetchState.PAGED else f"its data ({item.state.value})"
            missing.append(
                Issue(
                    "incomplete",
                    f"prefetch key {item.template.key!r}: {what} could not be fetched: {access_problem}",
                    (f"prefetch.{item.template.key}",),
                    f"template {item.template.query}",
                )
            )
        elif item.needs_fetch:
            relative = item.template.render({**call.context, "patientId": call.patient_id})
            jobs[item.template.key] = client.read(relative) if item.template.is_read else client.search(relative)
        elif item.next_url is not None:
            jobs[item.template.key] = client.follow(item.next_url)
    fetched = await _run(jobs, settings.budget_seconds, missing)
    for key, found in fetched.items():
        other = next((p for r, _ in found if (p := foreign_patient(r, call.patient_id))), None)
        if other is not None:
            missing.append(Issue("processing", f"the FHIR server returned another patient's data for {key!r}"))
            continue
        collected.append((key, found))

    drafts: Found = [(_as_context_patient(d, call.patient_id), None) for d in call.draft_orders]
    merged = _merge([*collected, ("draftOrders", drafts)])
    if "Medication" in read_types:
        wanted = _missing_medications(merged)
        if wanted:
            merged = await _medications(wanted, merged, client, settings, missing, access_problem)
    return Gathered(tuple(merged), tuple(missing), {i.template.key: i.state for i in items}, tuple(sorted(fetched)))


def _client(
    call: HookCall, http: httpx.AsyncClient | None, settings: FhirClientSettings
) -> tuple[FhirClient | None, str]:
    """A client for the request's fhirServer, or why there can be none."""
    if call.fhir is None:
        return None, "the request names no fhirServer"
    if http is None:
        return None, "this service has no HTTP client"
    problem = _server_problem(call.fhir.server, settings)
    if problem is not None:
        return None, problem
    limits = FetchLimits(settings.timeout_seconds, settings.max_pages, settings.max_response_bytes)
    return FhirClient(http, call.fhir.server, call.fhir.token, limits), ""


async def _run(jobs: dict[str, Awaitable[Found]], budget: float, missing: list[Issue]) -> dict[str, Found]:
    if not jobs:
        return {}
    tasks = {key: asyncio.ensure_future(job) for key, job in jobs.items()}
    _done, pending = await asyncio.wait(tasks.values(), timeout=budget)
    for task in pending:
        task.cancel()
    out: dict[str, Found] = {}
    for key, task in tasks.items():
        where = (f"prefetch.{key}",)
        if task in pending:
            missing.append(Issue("timeout", f"prefetch key {key!r}: fetching took longer than {budget:g} s", where))
            continue
        exc = task.exception()
        if isinstance(exc, FetchError):
            log.warning("fetch for prefetch key %s failed: %s", key, exc.reason)
            missing.append(Issue(exc.code, f"prefetch key {key!r} could not be fetched: {exc.reason}", where))
        elif exc is not None:
            raise exc
        else:
            out[key] = task.result()
    return out


def _refuse_foreign(collected: list[tuple[str, Found]], patient_id: str) -> None:
    problems = Problems()
    for key, found in collected:
        if _any_foreign(found, patient_id):
            problems.add(
                "invalid",
                f"prefetch key {key!r} holds data of a patient other than context.patientId; "
                "records of two patients are never evaluated together",
                f"prefetch.{key}",
            )
    problems.raise_if_any()


def _any_foreign(found: Found, patient_id: str) -> bool:
    for resource, _ in found:  # noqa: SIM110 - a plain loop: no generator frame per resource
        if foreign_patient(resource, patient_id):
            return True
    return False


def _as_context_patient(order: dict[str, Any], patient_id: str) -> dict[str, Any]:
    for name in PATIENT_FIELDS:
        other = patient_id_of(order.get(name))
        if other is not None and other != patient_id:
            log.warning("a draft order names a different patient than context.patientId; evaluated as the context's")
            return {**order, name: {"reference": f"Patient/{patient_id}"}}
    return order


def _identity(resource: dict[str, Any]) -> str | None:
    rid = resource.get("id")
    return f"{resource['resourceType']}/{rid}" if isinstance(rid, str) and rid else None


def _merge(groups: list[tuple[str, Found]]) -> list[tuple[dict[str, Any], str | None]]:
    """One entry per resource; a later group (draft orders) replaces an earlier copy (the record),
    in the place of the first (a dict keeps a key where it was first put)."""
    by_identity: dict[str, tuple[dict[str, Any], str | None]] = {}
    anonymous: list[tuple[dict[str, Any], str | None]] = []
    for _key, found in groups:
        for pair in found:  # _identity inlined: this runs for every resource of every call
            resource = pair[0]
            rid = resource.get("id")
            if not isinstance(rid, str) or not rid:
                anonymous.append(pair)
                continue
            ident = f"{resource['resourceType']}/{rid}"
            previous = by_identity.get(ident)
            if previous is None or pair[1]:
                by_identity[ident] = pair
            else:
                by_identity[ident] = (resource, previous[1])
    return [*by_identity.values(), *anonymous]


def _medication_ref(resource: dict[str, Any]) -> str | None:
    ref = resource.get("medicationReference")
    if not isinstance(ref, dict):
        med = resource.get("medication")
        ref = med.get("reference") if isinstance(med, dict) else None
    value = ref.get("reference") if isinstance(ref, dict) else None
    return value if isinstance(value, str) else None


def _missing_medications(merged: list[tuple[dict[str, Any], str | None]]) -> list[str]:
    refs = [
        ref
        for resource, _ in merged
        if resource.get("resourceType") in MEDICATION_USERS
        and (ref := _medication_ref(resource)) is not None
        and not ref.startswith(("#", "urn:"))
    ]
    if not refs:  # the usual record: medications as codes, not references
        return []
    have = {_identity(r) for r, _ in merged} | {u for _, u in merged if u}
    wanted: dict[str, None] = {}
    for ref in refs:
        if ref in have:
            continue
        tail = ref.rstrip("/").split("/")
        if len(tail) >= 2 and tail[-2] == "Medication" and f"Medication/{tail[-1]}" not in have:
            wanted.setdefault(tail[-1], None)
    return list(wanted)


async def _medications(
    ids: list[str],
    merged: list[tuple[dict[str, Any], str | None]],
    client: FhirClient | None,
    settings: FhirClientSettings,
    missing: list[Issue],
    access_problem: str,
) -> list[tuple[dict[str, Any], str | None]]:
    """Fetch Medications that the data references but does not hold (the 2.0 tokens cannot
    ask for them; 3.0's ``resolve()`` can)."""
    where = ("prefetch",)
    if client is None:
        missing.append(
            Issue(
                "incomplete",
                f"{len(ids)} referenced Medication resource(s) are not in the prefetch and cannot be fetched: "
                f"{access_problem}",
                where,
            )
        )
        return merged
    try:
        found = await asyncio.wait_for(
            client.search(f"Medication?_id={','.join(sorted(ids))}"), settings.budget_seconds
        )
    except FetchError as exc:
        missing.append(Issue(exc.code, f"referenced Medication resources could not be fetched: {exc.reason}", where))
        return merged
    except TimeoutError:
        missing.append(Issue("timeout", "referenced Medication resources could not be fetched in time", where))
        return merged
    return _merge([("record", merged), ("medications", found)])
