"""``careplan-rules lint``: check rule packs, with stable codes and ``file:line:col``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from careplan_rules.cli.main import EXIT_FOUND, EXIT_INPUT, EXIT_OK, CliExit, guarded
from careplan_rules.diagnostics import Severity
from careplan_rules.lint.runner import lint_paths


@click.command("lint")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--fail-on",
    type=click.Choice(["warning", "error"]),
    default="error",
    show_default=True,
    help="Exit 1 when a diagnostic of at least this severity is found.",
)
@click.option(
    "--backend",
    type=click.Choice(["python", "durable"]),
    default="python",
    show_default=True,
    help="Also report rules the chosen backend cannot run as errors.",
)
@click.option("--today", help="Date for review-due checks (default: today).")
@guarded
def command(paths: tuple[str, ...], fmt: str, fail_on: str, backend: str, today: str | None) -> None:
    """Check the rule packs at PATH... (pack folders, folders of packs, or files inside a pack).

    Exit status: 0 clean, 1 diagnostics at or above --fail-on, 2 no pack found at a PATH.
    """
    day = datetime.fromisoformat(today).date() if today else datetime.now(UTC).date()
    packs, diagnostics = lint_paths(paths, today=day, backend=backend)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "packs": [{"id": p.id, "version": p.version, "path": str(p.root)} for p in packs],
                    "diagnostics": [d.to_json() for d in diagnostics],
                    "counts": {s.label: sum(1 for d in diagnostics if d.severity is s) for s in Severity},
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for d in diagnostics:
            click.echo(d.render())
        errors = sum(1 for d in diagnostics if d.severity is Severity.ERROR)
        warnings = sum(1 for d in diagnostics if d.severity is Severity.WARNING)
        click.echo(f"{len(packs)} pack(s), {errors} error(s), {warnings} warning(s)", err=True)
    if not packs and any(d.code in ("CPR-E009", "CPR-E030") for d in diagnostics):
        raise CliExit(EXIT_INPUT)
    threshold = Severity.parse(fail_on)
    raise CliExit(EXIT_FOUND if any(d.severity >= threshold for d in diagnostics) else EXIT_OK)
