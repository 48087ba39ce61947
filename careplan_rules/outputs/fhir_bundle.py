"""The generated DetectedIssues and CarePlans as FHIR ``collection`` Bundles (``--format fhir``).

Inside the Bundle every generated resource has an ``urn:uuid:`` fullUrl and references
between them are rewritten to those, which is how a Bundle links resources that have no
server location yet. One Bundle per FHIR release: an R4 and an R5 input cannot share one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from careplan_rules.findings import PatientResult
from careplan_rules.outputs.ids import stable_id
from careplan_rules.temporal import iso


def _rewrite(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: (mapping.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, mapping))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite(v, mapping) for v in value]
    return value


def build_bundles(results: Iterable[PatientResult], now: datetime) -> list[dict[str, Any]]:
    by_version: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        resources = [dict(d) for d in result.detected_issues]
        if result.care_plan is not None:
            resources.append(dict(result.care_plan))
        if not resources and not result.fhir_version:
            continue
        by_version.setdefault(result.fhir_version or "R4", []).extend(resources)
    bundles = []
    for version, resources in sorted(by_version.items()):
        mapping = {f"{r['resourceType']}/{r['id']}": f"urn:uuid:{r['id']}" for r in resources}
        entries = [
            {"fullUrl": mapping[f"{r['resourceType']}/{r['id']}"], "resource": _rewrite(r, mapping)} for r in resources
        ]
        bundles.append(
            {
                "resourceType": "Bundle",
                "id": stable_id("bundle", version, sorted(mapping)),
                "type": "collection",
                "timestamp": iso(now),
                "entry": entries,
            }
        )
    return bundles


def render_bundles(bundles: list[dict[str, Any]]) -> str:
    if len(bundles) == 1:
        return json.dumps(bundles[0], indent=2, ensure_ascii=False)
    return "\n".join(json.dumps(b, ensure_ascii=False) for b in bundles)
