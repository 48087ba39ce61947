"""Per-patient evaluation state: a criterion several rules share is evaluated once."""

from __future__ import annotations

from careplan_rules import Engine
from tests.factories import NOW, bundle, kratom, patient, sertraline


def test_a_shared_criterion_keeps_each_rules_name_and_the_same_matches() -> None:
    engine = Engine.default()
    result = engine.evaluate(bundle(patient(), kratom(), sertraline()), now=NOW, trace=True)[0]
    outcomes = {o.rule_id: o for o in result.outcomes}
    use = outcomes["kratom-use"].criteria["kratom_use"]
    # missing-clinician-review names the same exposure criterion "kratom_record"
    record = outcomes["missing-clinician-review"].criteria["kratom_record"]
    assert (use.name, record.name) == ("kratom_use", "kratom_record")
    assert use.matches == record.matches and [m.ref for m in use.matches] == ["MedicationStatement/k1"]
    assert use.rejected == record.rejected and use.rejected  # traced rejections are shared too
    assert outcomes["kratom-serotonergic"].criteria["kratom_use"].matches == use.matches
