"""``careplan-rules schema``: print or write the JSON Schemas of the authoring format."""

from __future__ import annotations

import json
from pathlib import Path

import click

from careplan_rules.cli.main import guarded
from careplan_rules.schema import KINDS, file_name, schema_for, schema_text


@click.command("schema")
@click.option("--kind", type=click.Choice(sorted(KINDS)), help="Print only this kind's schema.")
@click.option("--write", "write_dir", type=click.Path(file_okay=False), help="Write every schema file to this folder.")
@guarded
def command(kind: str | None, write_dir: str | None) -> None:
    """Print the JSON Schemas (draft-07) for packs, rules, value sets, rule tests and fixtures.

    Point your editor's YAML extension at them (the repository's .vscode/settings.json does),
    or regenerate the committed copies with --write schema.
    """
    if write_dir:
        folder = Path(write_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name in sorted(KINDS):
            (folder / file_name(name)).write_text(schema_text(name), encoding="utf-8")
            click.echo(str(folder / file_name(name)))
        return
    if kind:
        click.echo(schema_text(kind), nl=False)
    else:
        click.echo(json.dumps({name: schema_for(name) for name in sorted(KINDS)}, indent=2, ensure_ascii=False))
