"""Building the product -> ingredient map from RxNorm RRF files (hand-made miniature release)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from careplan_rules.cli.main import cli
from careplan_rules.errors import TerminologyError
from careplan_rules.terminology.ingredient_map import parse_ingredient_map
from careplan_rules.terminology.rxnorm_build import build_ingredient_rows, pack_ingredient_codes

RRF = Path(__file__).parent / "fixtures" / "rrf"
OXYCODONE, APAP, BUPRENORPHINE, NALOXONE = "7804", "161", "1819", "7242"


def ingredients(rows: dict[str, tuple[list[str], str]]) -> dict[str, list[str]]:
    return {code: ings for code, (ings, _) in rows.items()}


def test_every_drug_type_resolves_to_its_ingredients() -> None:
    rows, report = build_ingredient_rows(RRF)
    got = ingredients(rows)
    assert got["1049215"] == [OXYCODONE]  # SCDC has_ingredient IN
    assert got["1049221"] == [APAP, OXYCODONE]  # SCD consists_of two SCDCs
    assert got["1049640"] == [APAP, OXYCODONE]  # SBD tradename_of SCD
    assert got["42844"] == [APAP, OXYCODONE]  # BN tradename_of INs
    assert got["82063"] == [OXYCODONE]  # PIN form_of IN
    assert got["1049251"] == [APAP, OXYCODONE]  # pack, given only as "SCD contained_in GPCK"
    assert report.mapped == len(rows)


def test_ingredients_and_synonyms_get_no_row_and_names_come_from_the_normal_form() -> None:
    rows, _ = build_ingredient_rows(RRF)
    assert OXYCODONE not in rows and APAP not in rows
    assert rows["1049221"][1] == "acetaminophen 325 MG / oxycodone hydrochloride 5 MG Oral Tablet"


def test_naloxone_is_dropped_from_agonist_combinations_but_kept_alone() -> None:
    rows, report = build_ingredient_rows(RRF)
    got = ingredients(rows)
    assert got["351266"] == [BUPRENORPHINE]  # SCD has_ingredients MIN has_part IN
    assert got["352364"] == [BUPRENORPHINE]
    assert got["1191222"] == [NALOXONE]
    assert report.deterrents_dropped == 2


def test_deterrents_can_be_kept() -> None:
    rows, _ = build_ingredient_rows(RRF, deterrents=())
    assert ingredients(rows)["351266"] == [BUPRENORPHINE, NALOXONE]


def test_restricting_to_allowed_ingredients_drops_products_left_without_one() -> None:
    rows, _ = build_ingredient_rows(RRF, allowed_ingredients={OXYCODONE})
    got = ingredients(rows)
    assert got["1049221"] == [OXYCODONE]
    assert "315266" not in got and "351266" not in got


def test_suppressed_rows_and_other_sources_are_skipped_by_default() -> None:
    rows, report = build_ingredient_rows(RRF)
    assert "999001" not in rows  # obsolete product atom
    assert "999002" not in rows  # its only RXNORM relationship is obsolete, the other is MTHSPL's
    assert "555" not in rows
    assert report.suppressed_skipped == 2
    rows, _ = build_ingredient_rows(RRF, include_suppressed=True)
    assert ingredients(rows)["999001"] == [OXYCODONE]
    assert ingredients(rows)["999002"] == [APAP]


def test_missing_file_and_malformed_line_are_errors_with_a_location(tmp_path: Path) -> None:
    shutil.copy(RRF / "RXNCONSO.RRF", tmp_path / "RXNCONSO.RRF")
    with pytest.raises(TerminologyError, match=r"RXNREL\.RRF not found"):
        build_ingredient_rows(tmp_path)
    (tmp_path / "RXNREL.RRF").write_text("7804|x|CUI|RO\n", encoding="utf-8")
    with pytest.raises(TerminologyError) as info:
        build_ingredient_rows(tmp_path)
    assert "RXNREL.RRF:1" in info.value.render() and "CPR-E091" in info.value.render()


def tiny_pack(root: Path) -> Path:
    (root / "valuesets").mkdir(parents=True)
    (root / "pack.yaml").write_text(
        "apiVersion: careplan-rules/v1\nkind: Pack\nid: tiny\nversion: '1'\ntitle: Tiny\n", encoding="utf-8"
    )
    (root / "valuesets" / "opioids.yaml").write_text(
        "apiVersion: careplan-rules/v1\nkind: ValueSet\nid: opioids\nversion: '1'\ntitle: Opioids\n"
        "include:\n  - system: http://www.nlm.nih.gov/research/umls/rxnorm\n    level: ingredient\n"
        "    concepts:\n      - {code: '7804', display: oxycodone}\n      - {display: oliceridine, unverified: true}\n",
        encoding="utf-8",
    )
    return root


def test_pack_ingredient_codes_lists_coded_ingredient_concepts(tmp_path: Path) -> None:
    assert pack_ingredient_codes(tiny_pack(tmp_path / "pack")) == {OXYCODONE: "oxycodone"}


def test_cli_writes_a_map_the_engine_can_read(tmp_path: Path) -> None:
    out = tmp_path / "map.tsv"
    result = CliRunner().invoke(
        cli,
        [
            "terminology",
            "build-ingredient-map",
            str(RRF),
            "--valuesets",
            str(tiny_pack(tmp_path / "p")),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    parsed = parse_ingredient_map(out.read_text(encoding="utf-8").splitlines(), str(out))
    assert parsed.products == {
        "1049215": (OXYCODONE,),
        "1049221": (OXYCODONE,),
        "1049640": (OXYCODONE,),
        "42844": (OXYCODONE,),
        "82063": (OXYCODONE,),
        "1049251": (OXYCODONE,),
    }
    assert "6 products mapped to 1 ingredients" in result.stderr


def test_cli_input_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "rrf").mkdir()
    result = CliRunner().invoke(
        cli, ["terminology", "build-ingredient-map", str(tmp_path / "rrf"), "-o", str(tmp_path / "m.tsv")]
    )
    assert result.exit_code == 2
    assert "error CPR-E090: RXNCONSO.RRF not found" in result.stderr
    assert "Traceback" not in result.output
