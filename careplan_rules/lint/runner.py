"""Lint rule packs: the loader's diagnostics, the rule tests' load problems, then the checks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from careplan_rules.diagnostics import Diagnostic, sort_diagnostics
from careplan_rules.lint.checks import CHECKS, LintContext
from careplan_rules.loader.pack import Pack
from careplan_rules.loader.pack_loader import find_pack_roots, load_pack_with_diagnostics
from careplan_rules.loader.ruletests import load_tests


def lint_paths(
    paths: Sequence[str | Path], *, today: date, backend: str = "python"
) -> tuple[list[Pack], list[Diagnostic]]:
    """Lint every pack found under ``paths``; returns the packs that loaded and all diagnostics."""
    roots, problems = find_pack_roots(paths)
    diagnostics = list(problems)
    packs: list[Pack] = []
    for root in roots:
        pack, diags = load_pack_with_diagnostics(root)
        diagnostics.extend(diags)
        if pack is None:
            continue
        packs.append(pack)
        tests, test_problems = load_tests([pack])
        diagnostics.extend(test_problems)
        ctx = LintContext(today=today, tests=tests, backend=backend)
        for check in CHECKS:
            diagnostics.extend(check(pack, ctx))
    return packs, sort_diagnostics(_dedupe(diagnostics))


def _dedupe(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for d in diagnostics:
        key = (d.code, d.location.render() if d.location else "", d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
