"""``careplan-rules screen``: run the rules over a whole FHIR Bulk Data export (docs/screening.md)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from datetime import datetime

import click
from rich.console import Console

from careplan_rules.cli.evaluate import parse_params
from careplan_rules.cli.main import EXIT_INPUT, EXIT_OK, CliExit, echo_error, guarded
from careplan_rules.screen import EngineSpec, ScreenError, ScreenOptions, ScreenSummary, screen_local
from careplan_rules.temporal import parse_now


def _default_workers() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@click.command("screen")
@click.argument("inputs", nargs=-1, required=True, metavar="EXPORT_DIR_OR_FILES...")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Results folder (new, or resumed).")
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: the CPUs of this machine)."
)
@click.option("--now", help="Evaluation time, ISO-8601 (default: the current time; a resumed screen keeps its own).")
@click.option(
    "--format", "fmt", type=click.Choice(["ndjson", "csv", "parquet"]), default=None, help="Findings file format."
)
@click.option("--engine", "runner", type=click.Choice(["local", "spark"]), default="local", show_default=True)
@click.option("--master", help="Spark master for --engine spark, e.g. local[2] or spark://host:7077.")
@click.option("--rules", multiple=True, type=click.Path(), help="Rule pack folder (repeatable). Default: bundled pack.")
@click.option("--param", "params", multiple=True, metavar="RULE.PARAM=VALUE", help="Override a rule parameter.")
@click.option("--include-draft", is_flag=True, help="Also evaluate rules with status draft.")
@click.option(
    "--fhir-version",
    type=click.Choice(["auto", "R4", "R4B", "R5"], case_sensitive=False),
    default="auto",
    show_default=True,
)
@click.option("--overwrite", is_flag=True, help="Replace a finished (or different unfinished) screen in --out.")
@click.option(
    "--bucket-mb", type=click.IntRange(min=1), default=64, show_default=True, help="Input MB per bucket (local)."
)
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@guarded
def command(
    inputs: tuple[str, ...],
    out: str,
    workers: int | None,
    now: str | None,
    fmt: str | None,
    runner: str,
    master: str | None,
    rules: tuple[str, ...],
    params: tuple[str, ...],
    include_draft: bool,
    fhir_version: str,
    overwrite: bool,
    bucket_mb: int,
    progress: bool | None,
) -> None:
    """Screen every patient of a FHIR Bulk Data export (NDJSON files or folders).

    Writes findings.<format> (one row per finding), errors.ndjson (lines or patients that
    could not be read or evaluated, with file and line) and summary.json into --out, and
    prints the summary. Rerun the same command to resume an interrupted screen. Exit
    status: 0 screened without errors, 2 some lines or patients are in errors.ndjson (or
    the screen could not run).
    """
    moment = None
    if now is not None:
        try:
            moment = parse_now(now)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--now") from None
    version = fhir_version.upper() if fhir_version != "auto" else "auto"
    spec = EngineSpec.of(list(rules), parse_params(params) or None, include_draft)
    if runner == "spark":
        summary = _spark(inputs, out, spec, moment, fmt or "parquet", master, version, overwrite)
    else:
        if master:
            raise click.BadParameter("--master needs --engine spark", param_hint="--master")
        options = ScreenOptions(
            now=moment,
            fmt=fmt or "ndjson",
            workers=workers or _default_workers(),
            fhir_version=version,
            bucket_bytes=bucket_mb << 20,
            overwrite=overwrite,
            progress=sys.stderr.isatty() if progress is None else progress,
        )
        summary = screen_local(inputs, out, spec, options)
    summary.render(Console(soft_wrap=False))
    errors = summary.tally.errors
    if errors:
        echo_error(
            f"{out}: {errors:,} errors ({summary.tally.patients_with_errors:,} patients not evaluated); "
            f"see {summary.outputs['errors']}"
        )
    raise CliExit(EXIT_INPUT if errors else EXIT_OK)


def _spark(
    inputs: tuple[str, ...],
    out: str,
    spec: EngineSpec,
    moment: datetime | None,
    fmt: str,
    master: str | None,
    version: str,
    overwrite: bool,
) -> ScreenSummary:
    if importlib.util.find_spec("pyspark") is None:
        raise ScreenError("--engine spark needs pyspark, which is not installed: pip install 'careplan-rules[spark]'")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise ScreenError("--engine spark needs Java 17 or later (java on PATH, or JAVA_HOME)")
    from careplan_rules.spark import screen_spark

    return screen_spark(
        inputs,
        out,
        spec,
        now=moment,
        fmt=fmt,
        master=master,
        fhir_version=version,
        overwrite=overwrite,
    )
