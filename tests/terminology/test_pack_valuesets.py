"""Properties of the bundled kratom-safety terminology data: value sets, ingredient map, MME factors."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from careplan_rules.cli.terminology import unverified_table
from careplan_rules.facts import CodingFact, MedicationConcept, TextField
from careplan_rules.loader.pack import Pack
from careplan_rules.terminology.registry import ValueSetRegistry
from careplan_rules.terminology.rxnorm_build import load_pack_terminology
from careplan_rules.terminology.text import normalize_text
from careplan_rules.terminology.valueset import CompiledValueSet
from tests.factories import RXNORM, external

ROOT = Path(__file__).resolve().parents[2]
PACK_DIR = ROOT / "rules" / "kratom-safety"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
NALOXONE, BUPRENORPHINE = "7242", "1819"
# products the map cannot carry: their ingredient has no verified RxNorm code (name-only concepts)
KNOWN_MAP_GAPS = {
    "2001358": "acetaminophen / benzhydrocodone (Apadaz)",
    "2001364": "acetaminophen / benzhydrocodone (Apadaz)",
    "2118728": "acetaminophen / benzhydrocodone (Apadaz)",
    "2118730": "acetaminophen / benzhydrocodone (Apadaz)",
    "2118732": "acetaminophen / benzhydrocodone (Apadaz)",
    "2118734": "acetaminophen / benzhydrocodone (Apadaz)",
    "2383946": "remimazolam (Byfavo)",
    "2383951": "remimazolam (Byfavo)",
}
CNS_CLASSES = (
    "benzodiazepines",
    "z-drugs",
    "gabapentinoids",
    "barbiturates",
    "sedating-muscle-relaxants",
    "sedating-antipsychotics",
    "sedating-antihistamines",
    "other-cns-depressants",
)


@cache
def pack() -> Pack:
    # terminology only: a rule file being edited elsewhere must not hide a terminology regression
    return load_pack_terminology(PACK_DIR)


@cache
def registry() -> ValueSetRegistry:
    p = pack()
    return ValueSetRegistry(p.manifest.id, {k: v.model for k, v in p.valuesets.items()}, p.ingredient_map)


def vs(vs_id: str) -> CompiledValueSet:
    return registry().get(vs_id)


def codes(vs_id: str) -> set[tuple[str, str]]:
    return {(e.system, e.code) for e in vs(vs_id).entries if e.code is not None}


def med(code: str | None, display: str | None = None, text: str | None = None) -> MedicationConcept:
    codings = (CodingFact(RXNORM, code, display, "medicationCodeableConcept.coding[0]"),) if code else ()
    texts = (TextField("medicationCodeableConcept.text", text, normalize_text(text)),) if text else ()
    return MedicationConcept(codings, texts)


def matched(vs_id: str, concept: MedicationConcept) -> list[str]:
    return sorted(m.name for m in vs(vs_id).match_medication(concept)[0])


def test_no_value_set_is_empty() -> None:
    for compiled in registry():
        assert compiled.entries or compiled.text_matchers, compiled.id


def test_cns_depressants_is_the_union_of_the_classes_and_holds_no_opioid() -> None:
    union = set().union(*(codes(c) for c in CNS_CLASSES))
    assert codes("cns-depressants") == union
    assert not codes("cns-depressants") & codes("opioids")
    opioid_ingredients = set(vs("opioids").ingredient_codes)
    for product, ingredients in pack().ingredient_map.products.items():
        # a product listed as a CNS depressant never maps to an opioid (those combos are listed under opioids)
        if (RXNORM, product) in codes("cns-depressants"):
            assert not set(ingredients) & opioid_ingredients, product


def test_stimulants_of_the_cdc_cns_set_are_not_cns_depressants() -> None:
    for code, name in [("904368", "benzphetamine"), ("977860", "methamphetamine"), ("803348", "phentermine")]:
        assert not matched("cns-depressants", med(code, f"{name} tablet")), code
    assert matched("cns-depressants", med("854873")) == ["zolpidem"]  # zolpidem 10 MG, from the same CDC set


def test_antagonists_are_never_opioids() -> None:
    for name in ("naloxone 4 MG nasal spray", "naltrexone 50 MG", "nalmefene", "methylnaltrexone", "naloxegol"):
        assert not matched("opioids", med(None, text=name)), name
    assert not matched("opioids", med("1725064"))  # Narcan nasal spray


def test_naloxone_excludes_every_moud_and_analgesic_combination_of_the_cdc_set() -> None:
    import json

    path = external("cqframework-opioid-cds-r4", "valuesets-2022", "naloxone-medications.json")
    contains = json.loads(path.read_text(encoding="utf-8"))["expansion"]["contains"]
    combos = [c for c in contains if re.search(r"buprenorphine|pentazocine", c["display"], re.I)]
    assert len(combos) == 29
    for c in combos:
        assert (RXNORM, c["code"]) in vs("naloxone").excluded, c
        assert not matched("naloxone", med(c["code"], c["display"])), c
    rescue = [c for c in contains if c not in combos]
    for c in rescue:
        assert matched("naloxone", med(c["code"])) == ["naloxone"], c


def test_no_map_row_can_make_a_combination_count_as_naloxone() -> None:
    for product, ingredients in pack().ingredient_map.products.items():
        if NALOXONE in ingredients:
            assert ingredients == (NALOXONE,), product


def test_naloxone_named_inside_a_combination_is_vetoed() -> None:
    assert not matched("naloxone", med(None, text="buprenorphine 8 mg / naloxone 2 mg SL film"))
    assert not matched("naloxone", med("99999999", "oxycodone HCl 10 MG / naloxone HCl 5 MG [Targiniq]"))
    assert matched("naloxone", med(None, text="Narcan 4 mg nasal spray")) == ["naloxone"]
    assert matched("naloxone", med(None, text="Opvee (nalmefene) nasal spray")) == ["nalmefene"]


def test_every_product_code_of_a_value_set_is_in_the_ingredient_map() -> None:
    mapped = pack().ingredient_map.products
    missing = {}
    for compiled in registry():
        for entry in compiled.entries:
            if entry.system == RXNORM and not entry.ingredient_level and entry.code and entry.code not in mapped:
                missing[entry.code] = compiled.id
    assert set(missing) == set(KNOWN_MAP_GAPS), missing


def test_map_rows_point_at_ingredients_the_pack_lists() -> None:
    listed = {e.code for c in registry() for e in c.entries if e.ingredient_level and e.code}
    listed.add("73032")  # remifentanil, a starter row that maps the ingredient to itself
    for product, ingredients in pack().ingredient_map.products.items():
        assert set(ingredients) <= listed, product


@pytest.mark.parametrize(
    ("code", "display", "expected"),
    [
        ("1153378", "Clonazepam [Klonopin]", {"benzodiazepines", "cns-depressants"}),
        ("563026", "Diazepam [Valium]", {"benzodiazepines", "cns-depressants"}),
        ("1310197", "Acetaminophen 300 MG / HYDROcodone Bitartrate 5 MG Oral Tablet [Vicodin]", {"opioids"}),
        ("856980", "Acetaminophen/Hydrocodone", {"opioids"}),
        ("1049221", "Acetaminophen 325 MG / oxyCODONE Hydrochloride 5 MG Oral Tablet", {"opioids"}),
        ("328670", "Sertraline 100MG", {"antidepressants", "serotonergic-drugs"}),
        ("596930", "duloxetine 30 MG Delayed Release Oral Capsule", {"antidepressants", "serotonergic-drugs"}),
        ("905505", "Chlordiazepoxide Hydrochloride 25 MG Oral Tablet", {"benzodiazepines", "cns-depressants"}),
    ],
)
def test_synthea_and_ahrq_codes_match_the_expected_value_sets(code: str, display: str, expected: set[str]) -> None:
    checked = {"opioids", "benzodiazepines", "cns-depressants", "antidepressants", "serotonergic-drugs", "naloxone"}
    for with_display in (None, display):  # by code through the map, and with the display as exported
        got = {v for v in checked if matched(v, med(code, with_display))}
        assert got == expected, (code, with_display)


def test_moud_products_are_opioids_and_moud() -> None:
    for code in ("1010603", "864708", "1996189"):  # Suboxone film, Dolophine, Sublocade
        assert matched("opioids-moud", med(code)), code
        assert matched("opioids", med(code)), code


def test_antidepressant_maois_exclude_linezolid_and_methylene_blue() -> None:
    assert matched("antidepressants", med(None, text="phenelzine 15 mg")) == ["phenelzine"]
    assert matched("antidepressants", med(None, text="Emsam 6 mg/24 hr patch")) == ["selegiline transdermal system"]
    for text in ("linezolid 600 mg", "methylene blue IV", "procarbazine", "selegiline 5 mg tablet", "rasagiline"):
        assert not matched("antidepressants", med(None, text=text)), text


@pytest.mark.parametrize(
    ("system", "code", "vs_id", "hit"),
    [
        (ICD10CM, "F32.A", "depression-conditions", True),
        (ICD10CM, "F329", "depression-conditions", True),
        (ICD10CM, "F33.41", "depression-conditions", True),
        (ICD10CM, "F31.30", "depression-conditions", False),  # bipolar depression
        (SNOMED, "370143000", "depression-conditions", True),
        (SNOMED, "832007", "depression-conditions", True),  # AHRQ test patient
        (ICD10CM, "F11.20", "opioid-use-disorder", True),
        (SNOMED, "5602001", "opioid-use-disorder", True),  # Synthea "Opioid abuse (disorder)"
        (ICD10CM, "F10.20", "alcohol-use-disorder", True),
        (ICD10CM, "F1020", "alcohol-use-disorder", True),
        (ICD10CM, "K70.30", "alcohol-use-disorder", False),  # organ damage, not use
        (ICD10CM, "R45.851", "suicidal-ideation", True),
        ("http://loinc.org", "44261-6", "phq9-total", True),
        ("http://loinc.org", "72732-1", "kratom-lab-tests", True),
    ],
)
def test_condition_and_observation_codes(system: str, code: str, vs_id: str, hit: bool) -> None:
    matches, _ = vs(vs_id).match_concept_codings([CodingFact(system, code, None, "code.coding[0]")], [])
    assert bool(matches) is hit


def test_a_brand_name_never_names_two_ingredients_of_one_value_set() -> None:
    for compiled in registry():
        owner: dict[str, str] = {}
        for entry in compiled.entries:
            if not entry.ingredient_level:
                continue
            for name in (entry.display, *entry.names):
                if name:
                    key = normalize_text(name)
                    assert owner.setdefault(key, entry.key) == entry.key, (compiled.id, name)


def test_every_new_concept_says_where_it_came_from() -> None:
    for loaded in pack().valuesets.values():
        for inc in loaded.model.include:
            for concept in inc.concepts:
                if loaded.model.id in {"kratom", "kratom-7oh-products", "medication-review"}:
                    continue  # local codes documented by their notes
                assert concept.source or concept.unverified, (loaded.model.id, concept)


def read_mme() -> list[dict[str, str]]:
    lines = [
        line
        for line in (PACK_DIR / "terminology" / "mme-conversion-factors.tsv").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def test_mme_factors_use_the_cdc_2022_figures_for_opioids_the_pack_lists() -> None:
    rows = read_mme()
    assert list(rows[0]) == ["ingredient", "name", "factor", "dose_unit", "form", "source"]
    factors = {(r["name"], r["form"]): float(r["factor"]) for r in rows}
    assert factors[("hydromorphone", "")] == 5
    assert factors[("methadone", "")] == 4.7
    assert factors[("tramadol", "")] == 0.2
    assert factors[("tapentadol", "")] == 0.4
    assert factors[("fentanyl", "transdermal")] == 2.4
    opioid_ingredients = vs("opioids").ingredient_codes
    for r in rows:
        assert r["ingredient"] in opioid_ingredients and opioid_ingredients[r["ingredient"]].name == r["name"]
        assert r["dose_unit"] in {"mg", "mcg/h", "mcg"} and r["source"]
    assert BUPRENORPHINE not in {r["ingredient"] for r in rows}


def test_docs_list_exactly_the_unverified_concepts_of_the_pack() -> None:
    doc = (ROOT / "docs" / "terminology.md").read_text(encoding="utf-8")
    begin, end = "<!-- BEGIN unverified (generated) -->\n", "<!-- END unverified -->"
    embedded = doc.split(begin, 1)[1].split(end, 1)[0]
    assert embedded == unverified_table(PACK_DIR), (
        "docs/terminology.md is stale: paste the output of "
        "'careplan-rules terminology unverified rules/kratom-safety' between the markers"
    )


def test_unverified_command_prints_the_table() -> None:
    from click.testing import CliRunner

    from careplan_rules.cli.main import cli

    result = CliRunner().invoke(cli, ["terminology", "unverified", str(PACK_DIR)])
    assert result.exit_code == 0, result.output
    assert result.stdout == unverified_table(PACK_DIR)
    assert "| opioids | rxnorm | (none: name only) | benzhydrocodone |" in result.stdout
