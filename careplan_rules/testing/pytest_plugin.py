"""A pytest plugin: ``pytest`` collects rule tests (``*.test.yaml``) next to Python tests.

Registered through the ``pytest11`` entry point, so any project with careplan-rules
installed gets it. Each case is one pytest item named after the case; a failing case shows
expected vs actual and the rule's explanation; a ``todo-`` case is reported as skipped with
its reason; a broken test file is one failing item with its ``file:line:col`` diagnostics.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from careplan_rules.errors import CarePlanRulesError
from careplan_rules.loader.pack import Pack
from careplan_rules.loader.pack_loader import TEST_SUFFIX, find_pack_roots, load_pack
from careplan_rules.loader.ruletests import load_tests
from careplan_rules.testing.runner import ERROR, FAIL, TODO, TODO_PASSES, CaseEngines, PlannedCase, plan_cases, run_case

_PACKS: dict[Path, Pack | CarePlanRulesError] = {}
_ENGINES = CaseEngines("python")


def _pack_for(path: Path) -> Pack | CarePlanRulesError:
    roots, problems = find_pack_roots([path])
    if problems or not roots:
        return CarePlanRulesError(problems[0].render() if problems else f"{path}: not inside a rule pack")
    root = roots[0].resolve()
    if root not in _PACKS:
        try:
            _PACKS[root] = load_pack(root)
        except CarePlanRulesError as exc:
            _PACKS[root] = exc
    return _PACKS[root]


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.name.endswith(TEST_SUFFIX):
        return RuleTestFile.from_parent(parent, path=file_path)
    return None


class RuleTestFailure(Exception):
    pass


class RuleTestFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        pack = _pack_for(self.path)
        if isinstance(pack, CarePlanRulesError):
            yield ProblemItem.from_parent(self, name="rule pack", message=pack.render())
            return
        tests, problems = load_tests([pack], [self.path])
        if problems:
            yield ProblemItem.from_parent(self, name="load", message="\n".join(p.render() for p in problems))
        for test in tests:
            for planned in plan_cases(test):
                yield RuleCaseItem.from_parent(self, name=f"{test.model.rule}: {planned.label}", planned=planned)


class ProblemItem(pytest.Item):
    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        raise RuleTestFailure(self.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return str(excinfo.value)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


class RuleCaseItem(pytest.Item):
    def __init__(self, *, planned: PlannedCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.planned = planned

    def runtest(self) -> None:
        result = run_case(self.planned, _ENGINES)
        if result.status == TODO:
            pytest.skip(f"todo ({result.expect}): {result.reason}")
        if result.status in (FAIL, ERROR, TODO_PASSES):
            lines = [result.message, *result.explanation, f"--> {result.location.render()}"]
            raise RuleTestFailure("\n".join(line for line in lines if line))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, RuleTestFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.planned.test.doc.location(("cases", self.planned.index)).line
        return self.path, (line - 1) if line else None, self.name
