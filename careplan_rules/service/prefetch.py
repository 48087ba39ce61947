"""Prefetch: the templates the service asks for, and the state of each key the client sent.

Templates are derived from the resource types the loaded rules read (``RuleSet.read_types``),
so discovery never asks for less than the rules need or more than they use. Every template
uses only the 2.0.1 recommended query subset and the ``{{context.patientId}}`` token:
``Patient/{{context.patientId}}`` for the patient, ``Type?patient={{context.patientId}}`` for
the rest. Shared resources (Medication) are not prefetched by themselves: the service resolves
``medicationReference`` targets that are missing from the data by fetching them.

A key the client sent is in exactly one state (CDS Hooks 2.0.1 §Prefetch; research §5 on how
implementations get this wrong):

============  =======================================  ==================================
state         what the client sent                     what the service does
============  =======================================  ==================================
absent        no key                                   fetch the query from fhirServer
null          ``null``: no data for this query         nothing (no data)
empty         a Bundle with no entries                 nothing (no data)
bundle        a Bundle with entries                    use them
paged         a Bundle with a ``next`` link            use them, fetch the further pages
outcome       an OperationOutcome (client fetch error) fetch the query from fhirServer
resource      a single resource                        use it
============  =======================================  ==================================
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from careplan_rules.fhir.raw import items
from careplan_rules.service.errors import Problems

# types that are reached through references, never searched by patient
SHARED_TYPES = frozenset({"Medication", "Substance", "Practitioner", "PractitionerRole", "Organization", "Location"})
PATIENT_FIELDS = ("subject", "patient", "for", "beneficiary")
_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


class PrefetchState(enum.Enum):
    ABSENT = "absent"
    NULL = "null"
    EMPTY = "empty"
    BUNDLE = "bundle"
    PAGED = "paged"
    OUTCOME = "outcome"
    RESOURCE = "resource"


@dataclass(frozen=True, slots=True)
class PrefetchTemplate:
    key: str
    resource_type: str
    query: str  # with tokens, as advertised in discovery

    @property
    def is_read(self) -> bool:
        return "?" not in self.query

    def render(self, context: Mapping[str, Any]) -> str:
        """The relative FHIR URL for this call (token values URL-encoded)."""

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            field_name = name.removeprefix("context.")
            raw = context.get(field_name)
            return quote(str(raw), safe="") if raw is not None else ""

        return _TOKEN.sub(value, self.query)


@dataclass(frozen=True, slots=True)
class PrefetchItem:
    """What one prefetch key holds, classified."""

    template: PrefetchTemplate
    state: PrefetchState
    resources: tuple[tuple[dict[str, Any], str | None], ...] = ()  # (resource, fullUrl)
    next_url: str | None = None

    @property
    def needs_fetch(self) -> bool:
        return self.state in (PrefetchState.ABSENT, PrefetchState.OUTCOME)


def _key(resource_type: str) -> str:
    return resource_type[0].lower() + resource_type[1:]


def templates_for(read_types: Collection[str]) -> tuple[PrefetchTemplate, ...]:
    """Prefetch templates covering every resource type the rules read (plus the Patient).

    Args:
        read_types: ``RuleSet.read_types``.

    Returns:
        Templates sorted by key; the Patient read first.
    """
    out = [PrefetchTemplate("patient", "Patient", "Patient/{{context.patientId}}")]
    for rt in sorted(set(read_types) - SHARED_TYPES - {"Patient"}):
        out.append(PrefetchTemplate(_key(rt), rt, f"{rt}?patient={{{{context.patientId}}}}"))
    return tuple(out)


def patient_id_of(reference: Any) -> str | None:
    """The Patient id a Reference (or reference string) points to, if it points to a Patient."""
    ref = reference.get("reference") if isinstance(reference, dict) else reference
    if not isinstance(ref, str):
        return None
    m = _PATIENT_REF.search(ref)
    return m.group(1) if m else None


def foreign_patient(resource: Mapping[str, Any], patient_id: str) -> str | None:
    """The other patient's id when ``resource`` belongs to a patient other than ``patient_id``."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and rid and rid != patient_id else None
    own = f"Patient/{patient_id}"
    for name in PATIENT_FIELDS:
        value = resource.get(name)
        if value is None or (isinstance(value, dict) and value.get("reference") == own):
            continue  # the common cases, without the pattern: absent, or the context patient
        other = patient_id_of(value)
        if other is not None and other != patient_id:
            return other
    return None


def next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in items(bundle.get("link")):
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            url: str = link["url"]
            return url
    return None


@dataclass(frozen=True, slots=True)
class BundleContent:
    """What a search Bundle holds."""

    resources: list[tuple[dict[str, Any], str | None]]  # (resource, fullUrl)
    failed: bool  # an entry is an error OperationOutcome: the search did not complete
    malformed: list[str]  # entries that are not FHIR resources: "entry[3] is not an object"


def bundle_resources(bundle: Mapping[str, Any]) -> BundleContent:
    """Entries of a search Bundle, whether an entry is an error OperationOutcome, and which
    entries are not resources at all.

    Search bundles may carry an OperationOutcome entry (``search.mode = outcome``); warnings
    there are informational, but an error or fatal issue means the search did not complete.
    An entry without a resource is skipped, as the reader skips it (a transaction response's
    DELETE); an entry that is not an object, or whose resource is not a FHIR resource, is
    reported: skipped, it could be the one record that makes a rule fire.
    """
    out: list[tuple[dict[str, Any], str | None]] = []
    failed = False
    malformed: list[str] = []
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        return BundleContent(out, failed, ["entry is not a list"])
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            malformed.append(f"entry[{i}] is not an object")
            continue
        resource = entry.get("resource")
        if resource is None:
            continue
        rt = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rt, str) or not rt:
            malformed.append(f"entry[{i}].resource is not a FHIR resource (an object with a resourceType)")
            continue
        if rt == "OperationOutcome":
            failed = failed or outcome_is_error(resource)
            continue
        full_url = entry.get("fullUrl")
        out.append((resource, full_url if isinstance(full_url, str) else None))
    return BundleContent(out, failed, malformed)


def outcome_is_error(outcome: Mapping[str, Any]) -> bool:
    issues = outcome.get("issue")
    if not isinstance(issues, list) or not issues:
        return True  # an OperationOutcome in place of data is a failure unless it says otherwise
    return any(isinstance(i, dict) and i.get("severity") in ("error", "fatal") for i in issues)


def classify(template: PrefetchTemplate, prefetch: Mapping[str, Any], problems: Problems) -> PrefetchItem:
    """The state of one declared key (malformed values are added to ``problems``)."""
    key = template.key
    if key not in prefetch:
        return PrefetchItem(template, PrefetchState.ABSENT)
    value = prefetch[key]
    if value is None:
        return PrefetchItem(template, PrefetchState.NULL)
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        problems.add("structure", f"prefetch key {key!r} must be a FHIR resource, a Bundle or null", f"prefetch.{key}")
        return PrefetchItem(template, PrefetchState.NULL)
    rt = value["resourceType"]
    if rt == "OperationOutcome":
        return PrefetchItem(template, PrefetchState.OUTCOME)
    if rt == "Bundle":
        entries = value.get("entry")
        if entries is not None and not isinstance(entries, list):
            problems.add("structure", f"prefetch key {key!r}: Bundle.entry must be a list", f"prefetch.{key}.entry")
            return PrefetchItem(template, PrefetchState.NULL)
        content = bundle_resources(value)
        for problem in content.malformed:
            problems.add("structure", f"prefetch key {key!r}: Bundle.{problem}", f"prefetch.{key}")
        if content.malformed:
            return PrefetchItem(template, PrefetchState.NULL)
        resources = content.resources
        if content.failed:
            return PrefetchItem(template, PrefetchState.OUTCOME)
        more = next_link(value)
        if more is not None:
            return PrefetchItem(template, PrefetchState.PAGED, tuple(resources), more)
        state = PrefetchState.BUNDLE if resources else PrefetchState.EMPTY
        return PrefetchItem(template, state, tuple(resources))
    if rt != template.resource_type:
        problems.add(
            "invalid",
            f"prefetch key {key!r} must hold {template.resource_type} data (its template is {template.query}), "
            f"not a {rt}",
            f"prefetch.{key}",
        )
        return PrefetchItem(template, PrefetchState.NULL)
    return PrefetchItem(template, PrefetchState.RESOURCE, ((value, None),))


def extra_resources(
    prefetch: Mapping[str, Any], declared: Collection[str], problems: Problems
) -> list[tuple[str, list[tuple[dict[str, Any], str | None]]]]:
    """Resources under keys the service did not declare: used, never dropped (they are the
    client's data for this patient), except values that are not FHIR at all; a Bundle's
    entries that are not resources are added to ``problems``, as under a declared key."""
    out = []
    for key, value in prefetch.items():
        if key in declared or not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            continue
        if value["resourceType"] == "Bundle":
            content = bundle_resources(value)
            for problem in content.malformed:
                problems.add("structure", f"prefetch key {key!r}: Bundle.{problem}", f"prefetch.{key}")
            out.append((key, content.resources))
        elif value["resourceType"] != "OperationOutcome":
            out.append((key, [(value, None)]))
    return out
