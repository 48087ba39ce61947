"""Render rule-test runs as text (a person at a terminal), JSON, or JUnit XML (CI systems)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from itertools import groupby

from rich.console import Console
from rich.text import Text

from careplan_rules.testing.coverage import RuleCoverage
from careplan_rules.testing.runner import ERROR, FAIL, PASS, TODO, TODO_PASSES, TestRun, summarize

_MARK = {
    PASS: ("✔", "green"),
    FAIL: ("✘", "bold red"),
    ERROR: ("✘", "bold red"),
    TODO: ("~", "yellow"),
    TODO_PASSES: ("!", "yellow"),
}


def render_text(run: TestRun, cov: Sequence[RuleCoverage], console: Console, verbose: bool = False) -> None:
    for diag in run.problems:
        console.print(Text(diag.render(), style="red" if diag.is_error else "yellow"))
    by_rule = {c.rule: c for c in cov}
    for rule, items in groupby(sorted(run.results, key=lambda r: (r.rule, r.test_file)), key=lambda r: r.rule):
        results = list(items)
        console.print(Text(rule, style="bold"))
        for r in results:
            mark, style = _MARK[r.status]
            extra = f" ({r.expect}: {r.reason})" if r.status == TODO else ""
            console.print(Text(f"  {mark} {r.name}{extra}", style=style if r.status != PASS else ""))
            if r.failed or r.status == TODO_PASSES or verbose:
                if r.message:
                    console.print(Text(f"      {r.message}", style="red" if r.failed else "yellow"))
                if r.failed or verbose:
                    for line in r.explanation:
                        console.print(Text(f"      {line}", style="dim"))
                console.print(Text(f"      --> {r.location.render()}", style="dim"))
        c = by_rule.get(rule)
        if c is not None:
            covered, total = c.points
            line = (
                f"  fire {c.fire}  no-fire {c.no_fire}  todo {c.todo} | "
                f"criteria/escalations/activities covered {covered}/{total} ({c.percent:.0f}%)"
            )
            console.print(Text(line, style="dim"))
            gaps = c.gaps()
            if gaps:
                console.print(Text("  gaps: " + "; ".join(gaps), style="yellow"))
    untested = [c for c in cov if c.rule not in {r.rule for r in run.results}]
    for c in untested:
        console.print(Text(f"{c.rule}: no tests", style="yellow" if c.status != "active" else "bold red"))
    counts = summarize(run)
    parts = [f"{counts[FAIL] + counts[ERROR]} failed", f"{counts[PASS]} passed"]
    if counts[TODO]:
        parts.append(f"{counts[TODO]} todo")
    if counts[TODO_PASSES]:
        parts.append(f"{counts[TODO_PASSES]} todo now passing")
    console.print(Text(", ".join(parts), style="bold red" if counts[FAIL] + counts[ERROR] else "bold green"))


def render_json(run: TestRun, cov: Sequence[RuleCoverage]) -> str:
    return json.dumps(
        {
            "summary": summarize(run),
            "problems": [d.to_json() for d in run.problems],
            "cases": [
                {
                    "rule": r.rule,
                    "file": r.test_file,
                    "name": r.name,
                    "expect": r.expect,
                    "status": r.status,
                    "message": r.message,
                    "location": r.location.to_json(),
                    "explanation": list(r.explanation) if r.failed else [],
                    "seconds": round(r.seconds, 4),
                }
                for r in run.results
            ],
            "coverage": [c.to_json() for c in cov],
        },
        indent=2,
        ensure_ascii=False,
    )


def render_junit(run: TestRun, cov: Sequence[RuleCoverage]) -> str:
    counts = summarize(run)
    suites = ET.Element(
        "testsuites",
        tests=str(len(run.results)),
        failures=str(counts[FAIL]),
        errors=str(counts[ERROR]),
        skipped=str(counts[TODO]),
    )
    for rule, items in groupby(sorted(run.results, key=lambda r: r.rule), key=lambda r: r.rule):
        results = list(items)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=rule,
            tests=str(len(results)),
            failures=str(sum(1 for r in results if r.status == FAIL)),
            errors=str(sum(1 for r in results if r.status == ERROR)),
            skipped=str(sum(1 for r in results if r.status == TODO)),
        )
        for r in results:
            case = ET.SubElement(
                suite, "testcase", classname=rule, name=r.name, file=r.test_file, time=f"{r.seconds:.4f}"
            )
            if r.status == FAIL:
                node = ET.SubElement(case, "failure", message=r.message)
                node.text = "\n".join([*r.explanation, f"--> {r.location.render()}"])
            elif r.status == ERROR:
                ET.SubElement(case, "error", message=r.message)
            elif r.status == TODO:
                ET.SubElement(case, "skipped", message=f"{r.expect}: {r.reason}")
    for problem in run.problems:
        suite = ET.SubElement(suites, "testsuite", name="loading", tests="1", errors="1")
        case = ET.SubElement(
            suite, "testcase", classname="loading", name=problem.location.render() if problem.location else ""
        )
        ET.SubElement(case, "error", message=problem.render())
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)
