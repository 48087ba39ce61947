"""``careplan-rules terminology``: build and inspect the terminology data of a rule pack.

* ``build-ingredient-map RRF_DIR [--valuesets PACK_DIR] -o FILE`` regenerates the product → ingredient
  map (docs/terminology.md) from an RxNorm full release, for sites whose data carries product codes the
  pack's shipped map does not list;
* ``unverified PACK_DIR`` lists the concepts the pack marks ``unverified: true``, as the markdown table
  docs/terminology.md embeds (a test keeps the two equal, so the list is never maintained by hand).
"""

from __future__ import annotations

from pathlib import Path

import click

from careplan_rules.cli.main import guarded
from careplan_rules.terminology.ingredient_map import format_ingredient_map
from careplan_rules.terminology.rxnorm_build import (
    DEFAULT_DETERRENTS,
    build_ingredient_rows,
    load_pack_terminology,
    pack_ingredient_codes,
)


@click.group(name="terminology")
def command() -> None:
    """Build and inspect value-set terminology data (ingredient maps, unverified codes)."""


@command.command(name="build-ingredient-map")
@click.argument("rrf_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--valuesets",
    "pack_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Rule pack folder: map only to the RxNorm ingredients its value sets list.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="TSV file to write (format of careplan_rules.terminology.ingredient_map).",
)
@click.option(
    "--keep-deterrents",
    is_flag=True,
    help="Keep naloxone in buprenorphine/naloxone-type rows (default: drop it, see docs).",
)
@click.option("--include-suppressed", is_flag=True, help="Also use obsolete/suppressed (SUPPRESS O or Y) rows.")
@guarded
def build_ingredient_map(
    rrf_dir: Path, pack_dir: Path | None, output: Path, keep_deterrents: bool, include_suppressed: bool
) -> None:
    """Write a product -> ingredient map built from RXNCONSO.RRF and RXNREL.RRF in RRF_DIR."""
    allowed = pack_ingredient_codes(pack_dir) if pack_dir is not None else None
    rows, report = build_ingredient_rows(
        rrf_dir,
        allowed_ingredients=None if allowed is None else allowed.keys(),
        deterrents=() if keep_deterrents else DEFAULT_DETERRENTS,
        include_suppressed=include_suppressed,
    )
    scope = f"the {len(allowed)} RxNorm ingredients listed by {pack_dir.name}" if allowed and pack_dir else "all"
    header = "\n".join(
        [
            "RxNorm product -> ingredient map built by 'careplan-rules terminology build-ingredient-map'",
            f"from {rrf_dir.resolve().name}/RXNCONSO.RRF and RXNREL.RRF (SAB=RXNORM); ingredients: {scope}.",
            "Deterrent naloxone "
            + ("kept" if keep_deterrents else "dropped from agonist combinations")
            + "; suppressed/obsolete rows "
            + ("used" if include_suppressed else "skipped")
            + ".",
        ]
    )
    output.write_text(format_ingredient_map(rows, header), encoding="utf-8")
    click.echo(
        f"{output}: {report.mapped} products mapped to {len(report.ingredients)} ingredients "
        f"({report.products} drug concepts, {report.edges} relationships read; "
        f"{report.suppressed_skipped} suppressed rows skipped; naloxone dropped from {report.deterrents_dropped})",
        err=True,
    )


@command.command(name="unverified")
@click.argument("pack_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@guarded
def unverified(pack_dir: Path) -> None:
    """Print the pack's unverified concepts as a markdown table (embedded in docs/terminology.md)."""
    click.echo(unverified_table(pack_dir), nl=False)


def unverified_table(pack_dir: Path) -> str:
    """The markdown table of every ``unverified: true`` concept of a pack, by value set.

    Raises:
        TerminologyError: when the pack's value sets do not load (broken rule files do not matter).
    """
    pack = load_pack_terminology(pack_dir)
    lines = ["| value set | system | code | display | source | note |", "|---|---|---|---|---|---|"]
    for vs_id in sorted(pack.valuesets):
        for inc in pack.valuesets[vs_id].model.include:
            for concept in inc.concepts:
                if not concept.unverified:
                    continue
                system = (inc.system or "").rstrip("/").rsplit("/", 1)[-1]
                note = (concept.note or "").replace("|", "/")
                code = concept.code or "(none: name only)"
                lines.append(
                    f"| {vs_id} | {system} | {code} | {concept.display or ''} | {concept.source or ''} | {note} |"
                )
    return "\n".join(lines) + "\n"
