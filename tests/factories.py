"""Factories for tiny inline FHIR resources and bundles (imported by tests)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
EXTERNAL = SHARED / "external"
EXAMPLES = ROOT / "fhir_examples"
RULES = ROOT / "rules"
NOW = "2026-06-01T12:00:00Z"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"

Resource = dict[str, Any]


def external(*parts: str) -> Path:
    """A path under ../shared/external, skipping the test when it is absent."""
    path = EXTERNAL.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (clone ../shared next to the project to run tests on real data)")
    return path


# --- factories ---------------------------------------------------------------------------------


def patient(pid: str = "p1", birth: str | None = "1984-03-12", gender: str = "female") -> Resource:
    r: Resource = {"resourceType": "Patient", "id": pid, "gender": gender}
    if birth:
        r["birthDate"] = birth
    return r


def rx(code: str, display: str | None = None, text: str | None = None) -> Resource:
    coding: Resource = {"system": RXNORM, "code": code}
    if display:
        coding["display"] = display
    cc: Resource = {"coding": [coding]}
    if text:
        cc["text"] = text
    return cc


def text_cc(text: str) -> Resource:
    return {"text": text}


def med_statement(
    rid: str,
    medication: Resource | str,
    *,
    status: str = "active",
    subject: str = "Patient/p1",
    effective: str | Resource | None = "2026-05-01",
    date_asserted: str | None = None,
    r5: bool = False,
    **extra: Any,
) -> Resource:
    med = text_cc(medication) if isinstance(medication, str) else medication
    r: Resource = {
        "resourceType": "MedicationStatement",
        "id": rid,
        "status": status,
        "subject": {"reference": subject},
    }
    if r5:
        r["medication"] = {"concept": med}
    else:
        r["medicationCodeableConcept"] = med
    if isinstance(effective, dict):
        r["effectivePeriod"] = effective
    elif effective:
        r["effectiveDateTime"] = effective
    if date_asserted:
        r["dateAsserted"] = date_asserted
    r.update(extra)
    return r


def med_request(
    rid: str,
    medication: Resource | str,
    *,
    status: str = "active",
    intent: str = "order",
    subject: str = "Patient/p1",
    authored: str | None = "2026-04-01",
    r5: bool = False,
    **extra: Any,
) -> Resource:
    med = text_cc(medication) if isinstance(medication, str) else medication
    r: Resource = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": intent,
        "subject": {"reference": subject},
    }
    if r5:
        r["medication"] = {"concept": med}
    else:
        r["medicationCodeableConcept"] = med
    if authored:
        r["authoredOn"] = authored
    r.update(extra)
    return r


def bundle(*resources: Resource, btype: str = "collection", full_urls: bool = False) -> Resource:
    entries = []
    for r in resources:
        e: Resource = {"resource": copy.deepcopy(r)}
        if full_urls:
            e["fullUrl"] = f"http://example.org/fhir/{r['resourceType']}/{r['id']}"
        entries.append(e)
    return {"resourceType": "Bundle", "type": btype, "entry": entries}


def kratom(rid: str = "k1", text: str = "Kratom powder, 3 g daily", **kw: Any) -> Resource:
    return med_statement(rid, text, **kw)


def sertraline(rid: str = "s1", **kw: Any) -> Resource:
    return med_request(rid, rx("328670", "Sertraline 100MG"), **kw)


def fired(result: Any) -> set[str]:
    """Rule ids that fired for a patient result (asserting it has no errors)."""
    assert result.ok, [e.render() for e in result.errors]
    return {f.rule for f in result.findings}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def iter_examples() -> Iterator[Path]:
    yield from sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".json", ".ndjson"))
