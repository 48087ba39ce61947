"""The memo of value-set matches: keyed by what matching reads, bounded, never wrong."""

from __future__ import annotations

from careplan_rules import Engine
from careplan_rules.facts import CodingFact, MedicationConcept, TextField
from careplan_rules.terminology.memo import MatchMemo
from tests.factories import NOW, RXNORM, bundle, fired, kratom, med_request, patient, rx


def sertraline_concept(reference: str | None = None) -> MedicationConcept:
    coding = CodingFact(RXNORM, "36437", "sertraline", "code.coding[0]")
    return MedicationConcept((coding,), (), (), "bundled", reference)


def test_equal_concepts_share_one_slot_whatever_their_reference() -> None:
    memo = MatchMemo()
    first = memo.medication(sertraline_concept("Medication/a"), ())
    first["marker"] = ([], [])  # type: ignore[index]
    assert memo.medication(sertraline_concept("Medication/b"), ()) is first


def test_notes_and_paths_are_part_of_the_key() -> None:
    memo = MatchMemo()
    plain = memo.medication(sertraline_concept(), ())
    noted = memo.medication(sertraline_concept(), (TextField("note[0].text", "kratom tea", "kratom tea"),))
    assert plain is not noted
    moved = MedicationConcept((CodingFact(RXNORM, "36437", "sertraline", "contained[0].code.coding[0]"),))
    assert memo.medication(moved, ()) is not plain


def test_lists_of_codings_are_keyed_like_tuples() -> None:
    memo = MatchMemo()
    codings = [CodingFact(RXNORM, "36437", None, "code.coding[0]")]
    assert memo.concept(codings, []) is memo.concept(tuple(codings), ())


def test_unhashable_facts_are_matched_but_not_remembered() -> None:
    memo = MatchMemo()
    hand_built = MedicationConcept([CodingFact(RXNORM, "36437", None, "code.coding[0]")])  # type: ignore[arg-type]
    first = memo.medication(hand_built, ())
    assert first == {} and memo.medication(hand_built, ()) is not first


def test_the_memo_is_bounded() -> None:
    memo = MatchMemo(size=3)
    for code in "12345":
        memo.concept((CodingFact(RXNORM, code, None, "code.coding[0]"),), ())
    assert len(memo._concepts) <= 3


def test_results_do_not_depend_on_what_other_patients_were_evaluated_before() -> None:
    engine = Engine.from_paths(Engine.default().packs[0].root)  # a fresh engine: an empty memo
    sertraline = med_request("s1", rx("328670", "Sertraline 100MG"))
    alone = fired(engine.evaluate(bundle(patient(), kratom(), sertraline), now=NOW)[0])
    engine.evaluate(bundle(patient(), sertraline), now=NOW)  # the same concepts, another record
    again = fired(engine.evaluate(bundle(patient(), kratom(), sertraline), now=NOW)[0])
    assert alone == again and "kratom-serotonergic" in alone
