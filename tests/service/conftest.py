"""Fixtures for the CDS Hooks service tests (helpers live in tests/service/helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from careplan_rules import Engine
from careplan_rules.service.prefetch import templates_for
from tests.factories import bundle, kratom, patient, sertraline
from tests.service.helpers import PV, Client, running, start


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    """An insecure (no-auth) service with the bundled pack and no reachable FHIR server."""
    with running(start(tmp_path)) as c:
        yield c


@pytest.fixture
def full_prefetch(engine: Engine) -> Callable[..., dict[str, Any]]:
    """Every declared prefetch key: given resources by type, the rest as empty searchsets."""

    def make(*resources: dict[str, Any], pid: str = "p1") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in templates_for(engine.ruleset.read_types):
            if t.is_read:
                found = [r for r in resources if r["resourceType"] == t.resource_type]
                out[t.key] = found[0] if found else None
            else:
                out[t.key] = bundle(*[r for r in resources if r["resourceType"] == t.resource_type], btype="searchset")
        return out

    return make


@pytest.fixture
def pv_body(full_prefetch: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """A patient-view request for p1 with kratom + sertraline, fully prefetched."""

    def make(*resources: dict[str, Any], **fields: Any) -> dict[str, Any]:
        data = resources or (patient(), kratom(), sertraline())
        body: dict[str, Any] = {
            "hook": "patient-view",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/example", "patientId": "p1"},
            "prefetch": full_prefetch(*data),
        }
        body.update(fields)
        return body

    return make


@pytest.fixture
def pv_url() -> str:
    return f"/cds-services/{PV}"
