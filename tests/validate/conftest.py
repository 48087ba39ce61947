"""Helpers for the validate tests: run the checks on inline data and pick diagnostics by code."""

from __future__ import annotations

from typing import Any

import pytest

from careplan_rules.diagnostics import Diagnostic
from careplan_rules.temporal import parse_now
from careplan_rules.validate import Options, validate
from tests.factories import NOW, bundle
from tests.validate.helpers import Check


@pytest.fixture
def check() -> Check:
    """Validate a Bundle of the given resources (or one given document) and return the diagnostics.

    ``check(r1, r2)`` wraps the resources in a collection Bundle; ``check(doc=...)`` validates a
    document as is; keyword ``fhir_version`` and ``now`` are passed on.
    """

    def run(
        *resources: dict[str, Any], doc: Any = None, fhir_version: str = "auto", now: str = NOW
    ) -> list[Diagnostic]:
        data = doc if doc is not None else bundle(*resources)
        return validate(data, Options(now=parse_now(now), fhir_version=fhir_version), "in.json")

    return run
