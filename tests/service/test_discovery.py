"""Discovery: services per hook, prefetch derived from the rules, HTI-1 attributes, spec shape."""

from __future__ import annotations

from pathlib import Path

from careplan_rules import Engine
from careplan_rules.service.prefetch import templates_for
from tests.factories import external, read_json
from tests.service.helpers import Client, running, start


def test_discovery_offers_the_three_hooks(client: Client) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = response.json()["services"]
    assert [s["hook"] for s in services] == ["patient-view", "order-select", "order-sign"]
    for service in services:
        for key in ("hook", "id", "title", "description", "prefetch", "version", "hookVersion", "extension"):
            assert service[key], key
        assert service["version"] == "2.0.1"
        assert all(k.count(".") >= 1 for k in service["extension"])  # reverse-DNS extension keys


def test_prefetch_is_derived_from_what_the_rules_read(client: Client, engine: Engine) -> None:
    prefetch = client.get("/cds-services").json()["services"][0]["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    searched = {q.split("?")[0] for q in prefetch.values() if "?" in q}
    assert searched == set(engine.ruleset.read_types) - {"Medication", "Patient"}
    for query in prefetch.values():
        assert "{{context.patientId}}" in query  # only the 2.0.1 token, never 3.0 FHIRPath


def test_prefetch_follows_the_types_a_pack_reads() -> None:
    templates = templates_for({"MedicationStatement", "Medication", "Observation"})
    assert [t.key for t in templates] == ["patient", "medicationStatement", "observation"]
    assert templates[1].render({"patientId": "a b/c"}) == "MedicationStatement?patient=a%20b%2Fc"


def test_discovery_carries_hti1_source_attributes(client: Client, engine: Engine) -> None:
    ext = client.get("/cds-services").json()["services"][0]["extension"]
    dsi = ext["org.careplan-rules.dsi-source-attributes"]
    assert dsi["regulation"] == "45 CFR 170.315(b)(11)(iv)(A)"
    by_rule = {r["rule"]: r for r in dsi["rules"]}
    assert set(by_rule) == set(engine.rules)
    entry = by_rule["kratom-serotonergic"]
    assert entry["declared"] is True and entry["type"] == "evidence-based"
    for key in ("citation", "developer", "fundingSource", "releaseDate"):
        assert entry[key]
    assert set(entry["uses"]) == {
        "race",
        "ethnicity",
        "language",
        "sexualOrientation",
        "genderIdentity",
        "sex",
        "dateOfBirth",
        "socialDeterminantsOfHealth",
        "healthStatusAssessments",
    }
    assert ext["org.careplan-rules.packs"][0]["id"] == "kratom-safety"


def test_discovery_matches_the_spec_example_shape(client: Client) -> None:
    example = read_json(external("cds-hooks", "spec-2.0.1", "discovery-example.json"))
    ours = client.get("/cds-services").json()
    assert set(ours) == set(example)
    for service in ours["services"]:
        assert {"hook", "id", "description"} <= set(service)
        assert all(isinstance(v, str) for v in service["prefetch"].values())


def test_service_ids_and_hooks_are_configurable(tmp_path: Path) -> None:
    app = start(tmp_path, hooks=["order-sign"], service_ids={"order-sign": "kratom-sign"})
    with running(app) as c:
        services = c.get("/cds-services").json()["services"]
    assert [(s["id"], s["hook"]) for s in services] == [("kratom-sign", "order-sign")]
