"""Run rule tests: build each case's patient, evaluate, compare, explain, count coverage.

Every case runs through the same :class:`Engine` as production, restricted to the rule under
test and the rules it reads findings from, with draft rules enabled (a draft rule must be
testable before it is switched on).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from careplan_rules.api import Engine
from careplan_rules.diagnostics import Diagnostic, SourceLocation, did_you_mean
from careplan_rules.errors import CarePlanRulesError
from careplan_rules.fhir.reader import Entry
from careplan_rules.fhir.validation import validate_entry
from careplan_rules.findings import Finding, PatientResult, RuleOutcome
from careplan_rules.loader.pack import Pack
from careplan_rules.loader.ruletests import LoadedTest, load_tests
from careplan_rules.model.pack import DEFAULT_CODE_SYSTEM_ALIASES
from careplan_rules.model.ruletest import Case
from careplan_rules.outputs.explain import explain, explanation_lines
from careplan_rules.testing.assertions import check_assertions
from careplan_rules.testing.shorthand import Expander, ShorthandError

DEFAULT_PATIENT = {"resourceType": "Patient", "id": "test-patient", "birthDate": "1980-01-01", "gender": "female"}
PASS, FAIL, TODO, TODO_PASSES, ERROR = "pass", "fail", "todo", "todo-passes", "error"


@dataclass(frozen=True, slots=True)
class CaseResult:
    test_file: str
    rule: str
    name: str
    expect: str
    status: str  # pass | fail | todo | todo-passes | error (the case itself is broken)
    location: SourceLocation
    message: str = ""
    explanation: tuple[str, ...] = ()
    outcome: RuleOutcome | None = None
    seconds: float = 0.0
    reason: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in (FAIL, ERROR)


@dataclass(slots=True)
class TestRun:
    results: list[CaseResult] = field(default_factory=list)
    problems: list[Diagnostic] = field(default_factory=list)
    tests: list[LoadedTest] = field(default_factory=list)


class CaseEngines:
    """Engines are compiled once per (pack, rule, params) and reused across cases."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.cache: dict[tuple[str, str, tuple[tuple[str, Any], ...]], Engine] = {}

    def get(self, pack: Pack, rule: str, params: dict[str, Any]) -> Engine:
        key = (pack.id, rule, tuple(sorted(params.items())))
        engine = self.cache.get(key)
        if engine is None:
            engine = Engine(
                [pack], include_draft=True, only=[rule], params={rule: params} if params else None, backend=self.backend
            )
            self.cache[key] = engine
        return engine


def run_tests(
    packs: Sequence[Pack],
    *,
    files: Iterable[Path] | None = None,
    select: str | None = None,
    backend: str = "python",
) -> TestRun:
    """Load and run the rule tests of the packs (or only ``files``).

    Args:
        select: a regular expression; only cases whose ``rule: case name`` matches run.
    """
    tests, problems = load_tests(packs, files)
    run = TestRun(problems=problems, tests=tests)
    engines = CaseEngines(backend)
    pattern = re.compile(select) if select else None
    for test in tests:
        for planned in plan_cases(test):
            if pattern is not None and not pattern.search(f"{test.model.rule}: {planned.label}"):
                continue
            run.results.append(run_case(planned, engines))
    return run


@dataclass(frozen=True, slots=True)
class PlannedCase:
    test: LoadedTest
    index: int
    case: Case
    label: str
    extra: tuple[dict[str, Any], ...]


def plan_cases(test: LoadedTest) -> Iterator[PlannedCase]:
    """Every case of a test file, with ``each_fixture`` variants expanded."""
    for index, case in enumerate(test.model.cases):
        for variant, extra in _variants(test, case):
            yield PlannedCase(test, index, case, f"{case.name}{variant}", tuple(extra))


def run_case(planned: PlannedCase, engines: CaseEngines) -> CaseResult:
    return _run_case(planned.test, planned.index, planned.case, planned.label, list(planned.extra), engines)


def _variants(test: LoadedTest, case: Case) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    if not case.each_fixture:
        yield "", []
        return
    for name in case.each_fixture:
        yield f" [{name}]", [{"fixture": name}]


def _location(test: LoadedTest, index: int) -> SourceLocation:
    return test.doc.location(("cases", index, "name"))


def _run_case(
    test: LoadedTest, index: int, case: Case, label: str, extra: list[dict[str, Any]], engines: CaseEngines
) -> CaseResult:
    start = time.perf_counter()
    rule = test.model.rule
    loc = _location(test, index)

    def result(
        status: str, message: str = "", lines: Sequence[str] = (), outcome: RuleOutcome | None = None
    ) -> CaseResult:
        return CaseResult(
            test.name,
            rule,
            label,
            case.expect,
            status,
            loc,
            message,
            tuple(lines),
            outcome,
            time.perf_counter() - start,
            case.reason,
        )

    try:
        data = build_input(test, index, case, extra)
    except _CaseSetupError as exc:
        return result(ERROR, exc.render())
    params = {**test.model.params, **case.params}
    try:
        engine = engines.get(test.pack, rule, params)
    except CarePlanRulesError as exc:
        return result(ERROR, exc.render())
    now = case.now or test.model.now
    version = case.fhir_version or test.model.fhir_version
    try:
        results = engine.evaluate(data, now=now, fhir_version=version, on_error="collect", trace=True, source=test.name)
    except (CarePlanRulesError, ValueError) as exc:
        return result(ERROR, f"cannot evaluate the case: {exc}")
    patient = _patient_result(results.patients)
    if patient is None:
        return result(ERROR, "the case produced no patient to evaluate")
    compiled = engine.ruleset.rule(rule)
    outcome = next((o for o in patient.outcomes if o.rule_id == rule), None)
    finding = patient.finding(rule)
    lines: list[str] = []
    if compiled is not None and outcome is not None:
        lines = explanation_lines(explain(compiled, outcome, finding))
    if case.expect == "error":
        if patient.ok:
            return result(FAIL, "expected an evaluation error, but the patient was evaluated", lines, outcome)
        failures = check_assertions(case.assert_, None, patient) if case.assert_ else []
        return result(FAIL if failures else PASS, "; ".join(failures), lines, outcome)
    if not patient.ok:
        errors = "; ".join(e.render() for e in patient.errors)
        return result(FAIL, f"evaluation failed: {errors}", lines, outcome)
    fired = finding is not None
    wants_fire = case.expect in ("fire", "todo-fire")
    if case.expect.startswith("todo-"):
        if fired == wants_fire:
            return result(
                TODO_PASSES, f"known gap now behaves as '{case.expect[5:]}': change expect to it", lines, outcome
            )
        return result(TODO, case.reason or "", lines, outcome)
    if fired != wants_fire:
        actual = "fired" if fired else "did not fire"
        return result(FAIL, f"expected: {case.expect}    actual: {actual}", lines, outcome)
    if fired and case.assert_ is not None:
        failures = check_assertions(case.assert_, finding, patient)
        if failures:
            return result(FAIL, "; ".join(failures), lines, outcome)
    return result(PASS, "", lines, outcome)


def _patient_result(patients: Sequence[PatientResult]) -> PatientResult | None:
    with_patient = [p for p in patients if p.patient]
    candidates = with_patient or list(patients)
    return candidates[0] if candidates else None


class _CaseSetupError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic

    def render(self) -> str:
        return self.diagnostic.render()


def build_input(test: LoadedTest, index: int, case: Case, extra: list[dict[str, Any]]) -> dict[str, Any]:
    """The FHIR Bundle a case describes (shorthands expanded, fixtures inserted).

    Raises:
        _CaseSetupError: with the YAML position of the offending resource or key.
    """
    base: tuple[str | int, ...] = ("cases", index)
    if case.bundle is not None:
        path = test.file.parent / case.bundle
        try:
            loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return loaded
        except (OSError, ValueError) as exc:
            raise _CaseSetupError(
                Diagnostic(
                    "CPR-T006",
                    f"cannot read bundle {case.bundle!r}: {exc}",
                    location=test.doc.location((*base, "bundle")),
                )
            ) from None
    version = case.fhir_version or test.model.fhir_version
    aliases = {**DEFAULT_CODE_SYSTEM_ALIASES, **test.pack.manifest.codesystems}
    expander = Expander(version, aliases)
    resources: list[dict[str, Any]] = []
    patient_spec: Any = case.patient if case.patient is not None else (test.model.patient or DEFAULT_PATIENT)
    patient_ref = None
    if patient_spec != "none":
        where: tuple[str | int, ...] = (*base, "patient") if case.patient is not None else ("patient",)
        patient = _expand(test, expander, patient_spec, where, None, "test-patient")
        if patient.get("resourceType") != "Patient":
            raise _CaseSetupError(
                Diagnostic(
                    "CPR-T004", "the case's patient must be a Patient resource", location=test.doc.location(where)
                )
            )
        resources.append(patient)
        patient_ref = f"Patient/{patient['id']}"
    counter = 0
    for j, item in enumerate([*case.resources, *extra]):
        where = (*base, "resources", j)
        for one in _items(test, item, where):
            counter += 1
            resources.append(_expand(test, expander, one[0], one[1], patient_ref, f"r{counter}", one[2]))
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def _items(
    test: LoadedTest, item: dict[str, Any], where: tuple[Any, ...]
) -> Iterator[tuple[Any, tuple[Any, ...], Any]]:
    """Inline resources and fixture references, with the document each comes from."""
    names: list[str] = []
    if set(item) == {"fixture"}:
        names = [item["fixture"]]
    elif set(item) == {"fixtures"} and isinstance(item["fixtures"], list):
        names = list(item["fixtures"])
    else:
        yield item, where, test.doc
        return
    for name in names:
        fixture = test.fixtures.get(name)
        if fixture is None:
            guess = did_you_mean(str(name), test.fixtures)
            raise _CaseSetupError(
                Diagnostic(
                    "CPR-T003",
                    f"unknown fixture {name!r}",
                    location=test.doc.location(where),
                    hint=f"did you mean {guess!r}?" if guess else None,
                )
            )
        yield fixture.resource, fixture.path, fixture.doc


def _expand(
    test: LoadedTest,
    expander: Expander,
    spec: Any,
    where: tuple[Any, ...],
    patient_ref: str | None,
    default_id: str,
    doc: Any = None,
) -> dict[str, Any]:
    source_doc = doc or test.doc
    if isinstance(spec, dict) and set(spec) == {"fixture"}:
        fixture = test.fixtures.get(spec["fixture"])
        if fixture is None:
            raise _CaseSetupError(
                Diagnostic("CPR-T003", f"unknown fixture {spec['fixture']!r}", location=source_doc.location(where))
            )
        spec, where, source_doc = fixture.resource, fixture.path, fixture.doc
    if not isinstance(spec, dict):
        raise _CaseSetupError(
            Diagnostic("CPR-T004", "a test resource must be a mapping", location=source_doc.location(where))
        )
    try:
        resource = expander.resource(spec, (), patient_ref, default_id)
    except ShorthandError as exc:
        raise _CaseSetupError(
            Diagnostic("CPR-T004", str(exc), location=source_doc.location((*where, *exc.path), key=bool(exc.path)))
        ) from None
    problems = validate_entry(Entry(resource, resource["resourceType"]), expander.version, source_doc.file)
    if problems:
        first = problems[0]
        element = (first.path or "").split(".")[1] if first.path and "." in first.path else ""
        key = next((k for k in spec if element == k or (element.startswith(k) and k != "")), None)
        loc = source_doc.location((*where, key) if key else where)
        raise _CaseSetupError(Diagnostic("CPR-T005", f"invalid FHIR {first.message}", location=loc))
    return resource


def summarize(run: TestRun) -> dict[str, int]:
    counts = {PASS: 0, FAIL: 0, TODO: 0, TODO_PASSES: 0, ERROR: 0}
    for r in run.results:
        counts[r.status] += 1
    return counts


def finding_of(patient: PatientResult, rule: str) -> Finding | None:
    return patient.finding(rule)
