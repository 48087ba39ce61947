"""Fixtures of the screening tests: tiny Bulk Data exports written from inline resources."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from careplan_rules.api import bundled_rules_dir
from careplan_rules.screen import EngineSpec, ScreenOptions, ScreenSummary, screen_local
from careplan_rules.temporal import parse_now
from tests.factories import NOW, Resource, kratom, med_request, patient, rx, sertraline

VERIFIER = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "verifier"}]
}

ExportFactory = Callable[..., Path]


def write_export(root: Path, files: dict[str, list[Resource | str]]) -> Path:
    """Write ``{file name: [resource or raw line]}`` as NDJSON files under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, items in files.items():
        text = "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def export(tmp_path: Path) -> ExportFactory:
    def make(files: dict[str, list[Resource | str]], name: str = "export") -> Path:
        return write_export(tmp_path / name, files)

    return make


_SNAPSHOT: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def rules_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundled pack taken once per session.

    A screen refuses to resume when its rule files changed; copying them keeps these tests
    independent of edits made to rules/ while they run.
    """
    target = tmp_path_factory.mktemp("rules") / "packs"
    shutil.copytree(bundled_rules_dir(), target)
    _SNAPSHOT[:] = [target]
    return target


def spec() -> EngineSpec:
    return EngineSpec.of([str(p) for p in _SNAPSHOT])


def screen(inputs: list[Path] | Path, out: Path, **options: Any) -> ScreenSummary:
    """The local runner with (a snapshot of) the bundled pack and the tests' ``now``."""
    paths = inputs if isinstance(inputs, list) else [inputs]
    return screen_local(paths, out, spec(), ScreenOptions(now=parse_now(NOW), **options))


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def finding_set(rows: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """Findings as comparable tuples (lists made tuples), for order-free comparisons."""
    return {tuple(tuple(v) if isinstance(v, list) else v for v in row.values()) for row in rows}


def population() -> dict[str, list[Resource | str]]:
    """A small export that exercises every path: patients spread across files, a Medication
    in its own file, a Provenance known only through its target, a patient with nothing."""
    ssri_med = {"resourceType": "Medication", "id": "ssri", "code": rx("328670", "Sertraline 100MG")}
    by_reference = med_request("mr2", "x", subject="Patient/p2", medicationReference={"reference": "Medication/ssri"})
    del by_reference["medicationCodeableConcept"]
    review = {
        "resourceType": "Provenance",
        "id": "prov4",
        "target": [{"reference": "MedicationStatement/k4"}],
        "recorded": "2026-05-20T10:00:00Z",
        "agent": [{"type": VERIFIER, "who": {"reference": "Practitioner/dr1"}}],
    }
    return {
        "Patient.ndjson": [patient("p1"), patient("p2"), patient("p3"), patient("p4")],
        "MedicationStatement.000.ndjson": [kratom("k1", subject="Patient/p1"), kratom("k4", subject="Patient/p4")],
        "MedicationStatement.001.ndjson": [kratom("k2", subject="Patient/p2")],
        "MedicationRequest.ndjson": [
            sertraline("s1", subject="Patient/p1"),
            by_reference,
            med_request("s4", rx("328670", "Sertraline 100MG"), subject="Patient/p4"),
        ],
        "Medication.ndjson": [ssri_med],
        "Practitioner.ndjson": [{"resourceType": "Practitioner", "id": "dr1"}],
        "Provenance.ndjson": [review],
        "Encounter.ndjson": [{"resourceType": "Encounter", "id": "e1", "status": "finished"}],
    }
