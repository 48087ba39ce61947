"""Small helpers shared by the validate tests."""

from __future__ import annotations

from collections.abc import Callable

from careplan_rules.diagnostics import Diagnostic

# the ``check`` fixture (conftest.py): ``check(*resources, doc=None, fhir_version="auto", now=NOW)``
Check = Callable[..., list[Diagnostic]]


def codes(diagnostics: list[Diagnostic]) -> list[str]:
    return [d.code for d in diagnostics]


def only(diagnostics: list[Diagnostic], code: str) -> Diagnostic:
    """The one diagnostic with this code (failing with the full list otherwise)."""
    found = [d for d in diagnostics if d.code == code]
    assert len(found) == 1, [d.render() for d in diagnostics]
    return found[0]
