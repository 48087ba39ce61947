"""Value-set matching records how it matched: code, ingredient-code, ingredient-name, text."""

from __future__ import annotations

import pytest

from careplan_rules.errors import TerminologyError
from careplan_rules.facts import CodingFact, MedicationConcept, TextField
from careplan_rules.model.valueset import ValueSetModel
from careplan_rules.terminology.ingredient_map import IngredientMap, IngredientMapError, parse_ingredient_map
from careplan_rules.terminology.registry import ValueSetRegistry
from careplan_rules.terminology.text import normalize_text
from tests.factories import RXNORM

OPIOIDS = ValueSetModel.model_validate(
    {
        "apiVersion": "careplan-rules/v1",
        "kind": "ValueSet",
        "id": "opioids",
        "version": "1",
        "title": "Opioids",
        "include": [
            {
                "system": RXNORM,
                "level": "ingredient",
                "concepts": [
                    {"code": "5489", "display": "hydrocodone", "names": ["Vicodin"]},
                    {"code": "7804", "display": "oxycodone"},
                    {"code": "1819", "display": "buprenorphine"},
                ],
            }
        ],
    }
)
NALOXONE = ValueSetModel.model_validate(
    {
        "apiVersion": "careplan-rules/v1",
        "kind": "ValueSet",
        "id": "naloxone",
        "version": "1",
        "title": "Naloxone rescue",
        "include": [{"system": RXNORM, "level": "ingredient", "concepts": [{"code": "7242", "display": "naloxone"}]}],
        "exclude": [{"system": RXNORM, "codes": ["1010600"], "reason": "buprenorphine/naloxone (MOUD)"}],
        "text": {"strong": ["narcan"], "exclude": ["buprenorphine", "suboxone"]},
    }
)
SEROTONERGIC = ValueSetModel.model_validate(
    {
        "apiVersion": "careplan-rules/v1",
        "kind": "ValueSet",
        "id": "serotonergic",
        "version": "1",
        "title": "Serotonergic",
        "include": [
            {"valueset": "opioids"},
            {"system": RXNORM, "level": "ingredient", "concepts": [{"code": "36437", "display": "sertraline"}]},
        ],
    }
)
MAP = IngredientMap(products={"856980": ("161", "5489"), "328670": ("36437",)})


@pytest.fixture
def registry() -> ValueSetRegistry:
    return ValueSetRegistry("test", {"opioids": OPIOIDS, "naloxone": NALOXONE, "serotonergic": SEROTONERGIC}, MAP)


def coding(code: str, display: str | None = None, system: str = RXNORM) -> CodingFact:
    return CodingFact(system, code, display, "medicationCodeableConcept.coding[0]")


def concept(
    *codings: CodingFact, text: str | None = None, ingredients: tuple[MedicationConcept, ...] = ()
) -> MedicationConcept:
    texts = (TextField("medicationCodeableConcept.text", text, normalize_text(text)),) if text else ()
    return MedicationConcept(codings, texts, ingredients)


def test_ingredient_code_matches_directly(registry: ValueSetRegistry) -> None:
    matches, _ = registry.get("opioids").match_medication(concept(coding("7804")))
    assert [(m.matched_by, m.matched, m.name) for m in matches] == [("code", "7804", "oxycodone")]


def test_product_code_matches_through_the_ingredient_map(registry: ValueSetRegistry) -> None:
    matches, _ = registry.get("opioids").match_medication(concept(coding("856980", "Acetaminophen/Hydrocodone")))
    assert [(m.matched_by, m.name) for m in matches] == [("ingredient-code", "hydrocodone")]
    assert matches[0].matched == "856980->5489"


def test_ingredient_name_in_display_or_text(registry: ValueSetRegistry) -> None:
    matches, _ = registry.get("opioids").match_medication(concept(coding("99999", "oxyCODONE HCl 5 MG Oral Tablet")))
    assert [(m.matched_by, m.name) for m in matches] == [("ingredient-name", "oxycodone")]
    matches, _ = registry.get("opioids").match_medication(concept(text="Vicodin 5/300"))
    assert [(m.matched_by, m.name) for m in matches] == [("ingredient-name", "hydrocodone")]


def test_combination_product_counts_each_ingredient_once(registry: ValueSetRegistry) -> None:
    matches, _ = registry.get("serotonergic").match_medication(
        concept(text="oxycodone 5 mg / sertraline 50 mg (test combination)")
    )
    assert sorted(m.name for m in matches) == ["oxycodone", "sertraline"]


def test_strongest_way_of_matching_wins(registry: ValueSetRegistry) -> None:
    matches, _ = registry.get("opioids").match_medication(concept(coding("7804", "oxycodone"), text="oxycodone"))
    assert [m.matched_by for m in matches] == ["code"]


def test_medication_ingredient_list(registry: ValueSetRegistry) -> None:
    ingredient = MedicationConcept((CodingFact(RXNORM, "5489", "hydrocodone", "ingredient[0].item.coding[0]"),))
    matches, _ = registry.get("opioids").match_medication(concept(text="Custom compound", ingredients=(ingredient,)))
    assert [(m.matched_by, m.field) for m in matches] == [("ingredient-code", "ingredient[0].item.coding[0]")]


def test_excluded_code_and_exclusion_text_veto(registry: ValueSetRegistry) -> None:
    vs = registry.get("naloxone")
    matches, rejections = vs.match_medication(
        concept(coding("1010600", "buprenorphine 8 MG / naloxone 2 MG Sublingual Film [Suboxone]"))
    )
    assert matches == [] and any("excluded" in r.reason for r in rejections)
    matches, _ = vs.match_medication(concept(text="Buprenorphine/naloxone 8-2 mg film"))
    assert matches == []
    matches, _ = vs.match_medication(concept(text="Narcan 4 mg nasal spray"))
    assert [(m.matched_by, m.matched) for m in matches] == [("text", "narcan")]
    matches, _ = vs.match_medication(concept(text="naloxone 4 MG/ACTUAT nasal spray"))
    assert [m.matched_by for m in matches] == ["ingredient-name"]


def test_system_aliases_are_tolerated(registry: ValueSetRegistry) -> None:
    matches, _ = registry.get("opioids").match_medication(
        concept(coding("7804", system="urn:oid:2.16.840.1.113883.6.88"))
    )
    assert [m.matched_by for m in matches] == ["code"]


def test_code_without_system_is_rejected_with_a_reason(registry: ValueSetRegistry) -> None:
    matches, rejections = registry.get("opioids").match_codings([CodingFact(None, "7804", None, "c")])
    assert matches == [] and "has no system" in rejections[0].reason


def test_unknown_value_set_raises(registry: ValueSetRegistry) -> None:
    with pytest.raises(TerminologyError, match="did you mean 'opioids'"):
        registry.get("opiods")
    with pytest.raises(TerminologyError, match="version"):
        registry.get("opioids|2")


def test_ingredient_map_parsing() -> None:
    parsed = parse_ingredient_map(["# c", "product\tingredients\tname", "856980\t161|5489\tx", ""], "m.tsv")
    assert parsed.products["856980"] == ("161", "5489")
    with pytest.raises(IngredientMapError) as info:
        parse_ingredient_map(["product\tingredients", "abc\t12"], "m.tsv")
    assert info.value.line == 2


def test_prefix_match_for_code_families() -> None:
    dep = ValueSetModel.model_validate(
        {
            "apiVersion": "careplan-rules/v1",
            "kind": "ValueSet",
            "id": "dep",
            "version": "1",
            "title": "Depression",
            "include": [
                {
                    "system": "http://hl7.org/fhir/sid/icd-10-cm",
                    "match": "prefix",
                    "concepts": [{"code": "F32", "display": "Depressive episode"}, {"code": "F33"}],
                }
            ],
        }
    )
    vs = ValueSetRegistry("t", {"dep": dep}, IngredientMap()).get("dep")
    for code in ("F32", "F32.A", "F32.9", "F329", "F33.1"):
        matches, _ = vs.match_codings([CodingFact("http://hl7.org/fhir/sid/icd-10-cm", code, None, "code")])
        assert matches, code
    for code in ("F3", "F34.1", "F10.20"):
        matches, _ = vs.match_codings([CodingFact("http://hl7.org/fhir/sid/icd-10-cm", code, None, "code")])
        assert not matches, code


def _vs(vs_id: str, **body: object) -> ValueSetModel:
    return ValueSetModel.model_validate(
        {"apiVersion": "careplan-rules/v1", "kind": "ValueSet", "id": vs_id, "version": "1", "title": vs_id, **body}
    )


def test_exclusions_of_an_included_set_do_not_veto_its_siblings() -> None:
    # the 7-OH product set vetoes lab test names; the kratom set that includes it must still
    # match "KRATOM SCREEN, URINE" through its own synonyms
    products = _vs("seven-oh", text={"strong": ["7-hydroxymitragynine"], "exclude": ["urine"]})
    kratom = _vs("kratom", include=[{"valueset": "seven-oh"}], text={"strong": ["kratom"]})
    reg = ValueSetRegistry("test", {"seven-oh": products, "kratom": kratom}, IngredientMap())
    matches, _ = reg.get("kratom").match_medication(concept(text="KRATOM SCREEN, URINE"))
    assert [(m.matched_by, m.name) for m in matches] == [("text", "kratom")]
    matches, rejections = reg.get("kratom").match_medication(concept(text="7-hydroxymitragynine, urine"))
    assert matches == [] and any("urine" in r.reason for r in rejections)


def test_exclusions_of_an_including_set_apply_to_what_it_includes() -> None:
    opioids = _vs(
        "op",
        include=[{"system": RXNORM, "level": "ingredient", "concepts": [{"code": "1819", "display": "buprenorphine"}]}],
    )
    analgesic = _vs(
        "analgesic-opioids",
        include=[{"valueset": "op"}],
        exclude=[{"system": RXNORM, "codes": ["1819"]}],
        text={"exclude": ["sublingual film"]},
    )
    reg = ValueSetRegistry("test", {"op": opioids, "analgesic-opioids": analgesic}, IngredientMap())
    assert reg.get("analgesic-opioids").match_medication(concept(coding("1819")))[0] == []
    assert reg.get("analgesic-opioids").match_medication(concept(text="buprenorphine sublingual film"))[0] == []
    # the included set itself is unchanged
    assert [m.name for m in reg.get("op").match_medication(concept(coding("1819")))[0]] == ["buprenorphine"]
