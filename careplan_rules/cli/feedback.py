"""``careplan-rules feedback export``: the CDS Hooks feedback the service stored, as CSV or JSON.

One row per feedback item with the fields ONC HTI-1's feedback loop asks for: the
intervention (rule, version, pack), the action taken (outcome, accepted suggestions), the
feedback (override reason and comment), the user, the client and the dates. Needs only the
standard library (no ``[service]`` extra).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click

from careplan_rules.cli.main import EXIT_INPUT, CliExit, echo_error, guarded
from careplan_rules.service.store import EXPORT_COLUMNS, FeedbackStore, StoreError
from careplan_rules.temporal import iso, parse_now


@click.group("feedback")
def command() -> None:
    """Work with the feedback clinicians gave on CDS Hooks cards."""


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        flat["accepted_suggestions"] = "; ".join(s.get("label") or s["id"] for s in row["accepted_suggestions"])
        writer.writerow(flat)
    return buffer.getvalue()


@command.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--db", "database", type=click.Path(dir_okay=False), help="The feedback database (SQLite file).")
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="Take the database path from this service config."
)
@click.option("--since", help="Only feedback received at or after this time (ISO-8601).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@guarded
def export(fmt: str, database: str | None, config_file: str | None, since: str | None, output: str | None) -> None:
    """Export stored feedback (default database: the one named by --config, else the service default)."""
    if database is None:
        from careplan_rules.service.config import load_config

        database = str(load_config(config_file).feedback.database)
    start = None
    if since is not None:
        try:
            start = iso(parse_now(since))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    try:
        store = FeedbackStore(database, create=False)
        try:
            rows = store.export(start)
        finally:
            store.close()
    except StoreError as exc:
        echo_error(f"{exc.path}: error CPR-S002: {exc.reason}")
        raise CliExit(EXIT_INPUT) from None
    text = _csv(rows) if fmt == "csv" else json.dumps({"feedback": rows}, indent=2, ensure_ascii=False) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
