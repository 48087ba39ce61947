"""``careplan-rules test``: run rule tests (``*.test.yaml``) with semantic coverage."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from careplan_rules.api import load_packs
from careplan_rules.cli.main import EXIT_FOUND, EXIT_OK, CliExit, echo_error, guarded
from careplan_rules.loader.pack_loader import TEST_SUFFIX
from careplan_rules.testing.coverage import coverage
from careplan_rules.testing.report import render_json, render_junit, render_text
from careplan_rules.testing.runner import ERROR, FAIL, TODO_PASSES, run_tests, summarize


@click.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-k", "--select", metavar="REGEX", help="Run only cases whose 'rule: case name' matches.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text", show_default=True)
@click.option("--min-coverage", type=click.FloatRange(0, 100), help="Fail when a tested rule's coverage is below PCT.")
@click.option("--strict-todo", is_flag=True, help="Fail when a todo case now behaves as its target expectation.")
@click.option("--backend", type=click.Choice(["python", "durable"]), default="python", show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Show the explanation of passing cases too.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to this file.")
@guarded
def command(
    paths: tuple[str, ...],
    select: str | None,
    fmt: str,
    min_coverage: float | None,
    strict_todo: bool,
    backend: str,
    verbose: bool,
    output: str | None,
) -> None:
    """Run the rule tests of the packs at PATH... (pack folders, folders of packs, or test files).

    Each *.test.yaml names its rule by id. Exit status: 0 all passed, 1 a case failed, a test
    file is broken, no test was found or coverage is below --min-coverage, 2 a pack does not load.
    """
    packs = load_packs(list(paths))
    files = [Path(p) for p in paths if p.endswith(TEST_SUFFIX)]
    run = run_tests(packs, files=files or None, select=select, backend=backend)
    tested = {r.rule for r in run.results} if files or select else None
    cov = coverage(packs, run.results, tested)
    if fmt == "json":
        text = render_json(run, cov)
    elif fmt == "junit":
        text = render_junit(run, cov)
    else:
        text = ""
    if text:
        if output:
            Path(output).write_text(text + "\n", encoding="utf-8")
        else:
            click.echo(text)
    elif output:
        with open(output, "w", encoding="utf-8") as handle:
            render_text(run, cov, Console(file=handle, soft_wrap=True), verbose)
    else:
        render_text(run, cov, Console(soft_wrap=True), verbose)
    counts = summarize(run)
    failed = counts[FAIL] + counts[ERROR] > 0 or any(p.is_error for p in run.problems)
    if not run.results and not run.problems:
        echo_error(f"{', '.join(paths)}: error CPR-T010: no rule tests found (files named *{TEST_SUFFIX})")
        failed = True
    if strict_todo and counts[TODO_PASSES]:
        failed = True
    if min_coverage is not None:
        low = [c for c in cov if c.rule in {r.rule for r in run.results} and c.percent < min_coverage]
        for c in low:
            echo_error(
                f"{c.rule}: error CPR-T011: coverage {c.percent:.0f}% is below {min_coverage:g}%: "
                + "; ".join(c.gaps())
            )
        failed = failed or bool(low)
    raise CliExit(EXIT_FOUND if failed else EXIT_OK)
