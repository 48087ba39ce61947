"""``careplan-rules evaluate``: run the rules over bundles, resources or NDJSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console

from careplan_rules.api import Engine, EvaluationResults, bundled_rules_dir
from careplan_rules.cli.main import EXIT_FOUND, EXIT_INPUT, EXIT_OK, CliExit, echo_error, guarded
from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.errors import FhirInputError
from careplan_rules.fhir.reader import FhirDocument, parse_bytes, read_path
from careplan_rules.findings import PatientResult, SeverityLevel
from careplan_rules.model.rule import ParamValue
from careplan_rules.outputs.cards import build_cards
from careplan_rules.outputs.fhir_bundle import build_bundles, render_bundles
from careplan_rules.outputs.text import render_text
from careplan_rules.temporal import iso, parse_now

INPUT_SUFFIXES = (".json", ".ndjson", ".jsonl")


def expand_inputs(paths: Sequence[str]) -> Iterator[tuple[str, Path | None]]:
    """Yield ``(display name, path)``; ``-`` yields ``("<stdin>", None)``; folders recurse."""
    for raw in paths:
        if raw == "-":
            yield "<stdin>", None
            continue
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
            if not files:
                diag = Diagnostic(
                    "CPR-F002", "no .json or .ndjson files in this directory", location=SourceLocation(raw)
                )
                raise FhirInputError(diag.render(), [diag])
            for f in files:
                yield str(f), f
        elif path.exists():
            yield raw, path
        else:
            diag = Diagnostic("CPR-F002", "no such file or directory", location=SourceLocation(raw))
            raise FhirInputError(diag.render(), [diag])


def read_input(name: str, path: Path | None) -> FhirDocument:
    if path is None:
        return parse_bytes(sys.stdin.buffer.read(), name)
    return read_path(path, name)


def parse_params(items: Sequence[str]) -> dict[str, dict[str, ParamValue]]:
    """``RULE.PARAM=VALUE`` → ``{rule: {param: value}}`` (numbers and booleans typed)."""
    out: dict[str, dict[str, ParamValue]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        rule, dot, name = key.partition(".")
        if not sep or not dot or not rule or not name:
            raise click.BadParameter(f"{item!r}: expected RULE.PARAM=VALUE, e.g. kratom-use.lookback=P180D")
        value: ParamValue = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
        out.setdefault(rule, {})[name] = value
    return out


def build_engine(rules: Sequence[str], params: Sequence[str], include_draft: bool, backend: str = "python") -> Engine:
    paths = list(rules) or [str(bundled_rules_dir())]
    return Engine.from_paths(*paths, params=parse_params(params) or None, include_draft=include_draft, backend=backend)


def resolve_now(now: str | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        return parse_now(now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--now") from None


def evaluate_inputs(
    engine: Engine, paths: Sequence[str], moment: datetime, fhir_version: str, trace: bool = False
) -> EvaluationResults:
    patients: list[PatientResult] = []
    for name, path in expand_inputs(paths):
        try:
            doc = read_input(name, path)
        except FhirInputError as exc:
            patients.append(PatientResult(name, "", "", errors=exc.diagnostics))
            continue
        patients.extend(engine.evaluate_document(doc, moment, fhir_version=fhir_version, trace=trace))
    return EvaluationResults(moment, engine.pack_versions, tuple(patients))


def write_output(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text + ("\n" if not text.endswith("\n") else ""), encoding="utf-8")
    else:
        click.echo(text)


FAIL_ON = ("low", "moderate", "high", "none")


@click.command("evaluate")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--rules",
    "rules",
    multiple=True,
    type=click.Path(),
    help="Rule pack folder (repeatable). Default: the bundled pack.",
)
@click.option("--now", help="Evaluation time, ISO-8601 (default: the current time).")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "fhir", "cards", "text"]), default="json", show_default=True
)
@click.option(
    "--fhir-version",
    type=click.Choice(["auto", "R4", "R4B", "R5"], case_sensitive=False),
    default="auto",
    show_default=True,
    help="FHIR release of the input; auto detects it from the data.",
)
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON),
    default="none",
    show_default=True,
    help="Exit 1 when a finding has at least this severity.",
)
@click.option("--param", "params", multiple=True, metavar="RULE.PARAM=VALUE", help="Override a rule parameter.")
@click.option("--include-draft", is_flag=True, help="Also evaluate rules with status draft.")
@click.option("--backend", type=click.Choice(["python", "durable"]), default="python", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@guarded
def command(
    paths: tuple[str, ...],
    rules: tuple[str, ...],
    now: str | None,
    fmt: str,
    fhir_version: str,
    fail_on: str,
    params: tuple[str, ...],
    include_draft: bool,
    backend: str,
    output: str | None,
) -> None:
    """Evaluate the rules for every patient in PATH... (files, folders, or - for stdin).

    Inputs are FHIR Bundles of any type, single resources, JSON arrays of resources, or
    NDJSON, in R4 or R5. Exit status: 0 no finding at or above --fail-on, 1 there is one,
    2 an input could not be read or evaluated.
    """
    moment = resolve_now(now)
    engine = build_engine(rules, params, include_draft, backend)
    results = evaluate_inputs(engine, paths, moment, fhir_version.upper() if fhir_version != "auto" else "auto")
    if fmt == "json":
        write_output(results.to_json(), output)
    elif fmt == "fhir":
        write_output(render_bundles(build_bundles(results.patients, moment)), output)
    elif fmt == "cards":
        cards = build_cards(results.patients, engine.ruleset, moment, results.engine_version)
        write_output(json.dumps({"cards": cards}, indent=2, ensure_ascii=False), output)
    elif output:
        with open(output, "w", encoding="utf-8") as handle:
            render_text(results.patients, Console(file=handle, soft_wrap=False), iso(moment))
    else:
        render_text(results.patients, Console(soft_wrap=False), iso(moment))
    for diag in results.errors:
        echo_error(diag.render())
    raise CliExit(exit_code(results, fail_on))


def exit_code(results: EvaluationResults, fail_on: str) -> int:
    if results.errors:
        return EXIT_INPUT
    if fail_on != "none":
        threshold = SeverityLevel.of(fail_on)
        if any(SeverityLevel.of(f.severity) >= threshold for f in results.findings):
            return EXIT_FOUND
    return EXIT_OK
