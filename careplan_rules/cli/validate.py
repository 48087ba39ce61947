"""``careplan-rules validate``: is this FHIR data well formed, and can the rules see what they need?"""

from __future__ import annotations

import glob
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from careplan_rules.cli.evaluate import INPUT_SUFFIXES, resolve_now
from careplan_rules.cli.main import EXIT_FOUND, EXIT_INPUT, EXIT_OK, CliExit, echo_error, guarded
from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.temporal import iso
from careplan_rules.validate.codes import CODES
from careplan_rules.validate.report import JsonReporter, Summary, Tally, TextReporter, tool_meta
from careplan_rules.validate.runner import Validator
from careplan_rules.validate.unit import CHECKS, Options

# a bar is worth drawing only when the run takes a while
PROGRESS_MIN_FILES = 20
PROGRESS_MIN_BYTES = 8_000_000
_GLOB = set("*?[")


def expand(paths: Sequence[str]) -> Iterator[tuple[str, Path | None, Diagnostic | None]]:
    """``(name, path, problem)`` per input: ``-`` is stdin (path None), folders recurse, globs expand.

    A path that names nothing yields a CPR-F002 problem instead of stopping the run, so one
    typo does not hide the report on the other inputs. A file named twice (``export/`` and
    ``export/Patient.ndjson``) is read once: read twice, every resource would be its own duplicate.
    """
    seen: set[Path] = set()
    for name, path, problem in _expand(paths):
        if path is not None:
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
        yield name, path, problem


def _expand(paths: Sequence[str]) -> Iterator[tuple[str, Path | None, Diagnostic | None]]:
    for raw in paths:
        if raw == "-":
            yield "<stdin>", None, None
            continue
        path = Path(raw)
        if not path.exists() and _GLOB & set(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                yield raw, None, _missing(raw, "no file matches this pattern")
            for match in matches:
                yield from _expand([match])
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _is_input(p))
            if not files:
                yield raw, None, _missing(raw, "no .json, .ndjson or .jsonl files (or .gz of them) in this directory")
            for f in files:
                yield str(f), f, None
        elif path.exists():
            yield raw, path, None
        else:
            yield raw, None, _missing(raw, "no such file or directory")


def _is_input(path: Path) -> bool:
    return path.name.lower().removesuffix(".gz").endswith(INPUT_SUFFIXES)


def _missing(name: str, message: str) -> Diagnostic:
    return Diagnostic("CPR-F002", message, location=SourceLocation(name))


def _codes(values: Sequence[str]) -> frozenset[str]:
    out = set()
    for value in values:
        for code in value.replace(",", " ").split():
            code = code.strip().upper()
            if not code.startswith("CPR-"):
                code = "CPR-" + code
            if code not in CODES and not code.startswith("CPR-F"):
                raise click.BadParameter(f"unknown code {code!r} (see the table in docs/cli.md)", param_hint="--ignore")
            out.add(code)
    return frozenset(out)


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


@click.command("validate")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--fhir-version",
    type=click.Choice(["auto", "R4", "R4B", "R5"], case_sensitive=False),
    default="auto",
    show_default=True,
    help="FHIR release of the data; auto reads each input as the release its shape shows.",
)
@click.option("--now", help="Dates of past events after this time are reported (default: the current time).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning"]),
    default="error",
    show_default=True,
    help="Exit 1 when there is a diagnostic of at least this severity.",
)
@click.option("--ignore", "ignore", multiple=True, metavar="CODE", help="Do not report this code (repeatable).")
@click.option("--no-progress", is_flag=True, help="Never draw a progress bar.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to this file.")
@guarded
def command(
    paths: tuple[str, ...],
    fhir_version: str,
    now: str | None,
    fmt: str,
    fail_on: str,
    ignore: tuple[str, ...],
    no_progress: bool,
    output: str | None,
) -> None:
    """Validate FHIR data in PATH... (files, folders, globs, or - for stdin).

    Checks structure (fhir.resources), required bindings and reference types, bundle integrity
    (references, duplicates, contained resources) and what the rules need (codes, dates,
    statuses). JSON files are checked one by one; NDJSON files are streamed and checked
    together as one export. Exit status: 0 valid, 1 invalid (a diagnostic at or above
    --fail-on), 2 an input could not be read or the command was misused.
    """
    moment = resolve_now(now)
    version = fhir_version.upper() if fhir_version.lower() != "auto" else "auto"
    tally = Tally(_codes(ignore))
    options = Options(now=moment, fhir_version=version)
    inputs = list(expand(paths))
    with ExitStack() as stack:
        out = stack.enter_context(open(output, "w", encoding="utf-8")) if output else None
        reporter = JsonReporter(out) if fmt == "json" else TextReporter(out)

        def sink(d: Diagnostic) -> None:
            if not tally.add(d):
                return
            if d.code.startswith("CPR-F"):
                # unreadable input is a command error: one line on stderr (docs/cli.md), and in
                # the JSON report too, so machines see why a file has no results
                echo_error(d.render())
                if fmt == "text":
                    return
            reporter.diagnostic(d)

        reporter.start(tool_meta(iso(moment), version, sorted(CHECKS)))
        total = sum(_size(path) for _, path, _ in inputs)
        stdin = any(name == "<stdin>" for name, _, _ in inputs)
        show = want_progress(len(inputs), total, stdin, no_progress, sys.stderr.isatty())
        progress = stack.enter_context(_progress()) if show else None
        task = progress.add_task("validating", total=total or None) if progress is not None else None

        def advance(size: int) -> None:
            if progress is not None and task is not None:
                progress.advance(task, size)

        started = time.perf_counter()
        validator = Validator(options, sink, advance)
        for name, path, problem in inputs:
            if problem is not None:
                sink(problem)
                continue
            if progress is not None and task is not None:
                progress.update(task, description=f"validating {Path(name).name}")
            if path is None:
                validator.stream(sys.stdin.buffer, name)
            else:
                validator.file(path, name)
        validator.finish()
        if progress is not None:
            progress.stop()
        summary = Summary(tuple(validator.inputs), tally, time.perf_counter() - started, fail_on)
        reporter.finish(summary)
    if tally.input_errors:
        raise CliExit(EXIT_INPUT)
    raise CliExit(EXIT_OK if summary.valid else EXIT_FOUND)


def want_progress(files: int, total_bytes: int, stdin: bool, disabled: bool, terminal: bool) -> bool:
    """Draw a bar only on a terminal, and only when the run will take a while (or its size is unknown)."""
    if disabled or not terminal:
        return False
    return files >= PROGRESS_MIN_FILES or total_bytes >= PROGRESS_MIN_BYTES or stdin


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
