"""Real Synthea records (smart-on-fhir/generated-sample-data), turned into a Bulk Data export.

Synthea bundles link resources with ``urn:uuid:`` fullUrls; a server's ``$export`` gives
``Type/id`` references, one NDJSON file per type. The test rewrites the references the way a
server would, spreads the resources over per-type files, screens the export, and checks the
screen says exactly what ``Engine.evaluate`` says about each (rewritten) bundle. Real records
bring what synthetic ones lack: hundreds of resources per patient, Claims and
ExplanationOfBenefits to skip, Provenances that target every resource, shared
Practitioners and Organizations.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tests.factories import NOW, external, kratom
from tests.screen.conftest import read_rows, screen, spec, write_export


def _rewrite(node: Any, urls: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite(v, urls) for k, v in node.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref in urls:
            out["reference"] = urls[ref]
        return out
    if isinstance(node, list):
        return [_rewrite(v, urls) for v in node]
    return node


def test_synthea_records_screen_like_their_bundles(tmp_path: Path) -> None:
    folder = external("smart-on-fhir-generated-sample-data-synthea-r4")
    engine = spec().build()
    by_type: dict[str, list[Any]] = {}
    expected: set[tuple[str, str, tuple[str, ...]]] = set()
    expected_errors: set[tuple[str, str]] = set()
    for path in sorted(folder.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
        resources = [_rewrite(e["resource"], urls) for e in bundle["entry"]]
        # Synthea knows no kratom: add a statement so the rules have something to say
        who = next(r for r in resources if r["resourceType"] == "Patient")["id"]
        resources.append(kratom(f"kratom-{who}", subject=f"Patient/{who}"))
        for result in engine.evaluate(resources, now=NOW, on_error="collect"):
            expected |= {(result.patient, f.rule, tuple(f.implicated)) for f in result.findings}
            expected_errors |= {(result.patient, e.code) for e in result.errors}
        for r in resources:
            by_type.setdefault(r["resourceType"], []).append(r)
    rng = random.Random(3)
    files: dict[str, list[Any]] = {}
    for rt, items in by_type.items():
        rng.shuffle(items)
        files[f"{rt}.000.ndjson"] = items[::2]
        files[f"{rt}.001.ndjson"] = items[1::2]
    summary = screen(write_export(tmp_path / "export", files), tmp_path / "out")
    got = {(r["patient"], r["rule"], tuple(r["implicated"])) for r in read_rows(tmp_path / "out" / "findings.ndjson")}
    errors = {(e["patient"], e["code"]) for e in read_rows(tmp_path / "out" / "errors.ndjson")}
    assert summary.tally.patients == 5
    assert len({p for p, _, _ in expected}) == 5
    assert got == expected
    assert errors == expected_errors
    assert summary.tally.lines["skipped"] > 0  # Claims, Encounters…: no rule reads them
