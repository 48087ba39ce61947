"""``careplan-rules docs``: write the rule reference of packs (docs/rules.md) from the packs themselves."""

from __future__ import annotations

from pathlib import Path

import click

from careplan_rules.api import load_packs
from careplan_rules.cli.main import EXIT_FOUND, CliExit, echo_error, guarded
from careplan_rules.reference import pack_reference


@click.command("docs")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--check", is_flag=True, help="Do not write; exit 1 if --output is not up to date.")
@guarded
def command(paths: tuple[str, ...], output: Path | None, check: bool) -> None:
    """Render the markdown reference of the rule packs at PATH... (rules, grades, evidence, value sets).

    Exit status: 0 written (or current), 1 --check found the file out of date, 2 a pack failed to load.
    """
    text = pack_reference(load_packs(paths))
    if output is None:
        if check:
            raise click.UsageError("--check needs --output")
        click.echo(text, nl=False)
        return
    current = output.read_text(encoding="utf-8") if output.exists() else None
    if check:
        if current != text:
            echo_error(f"{output}: out of date; run 'careplan-rules docs {' '.join(paths)} -o {output}'")
            raise CliExit(EXIT_FOUND)
        return
    if current != text:
        output.write_text(text, encoding="utf-8")
    click.echo(str(output))
