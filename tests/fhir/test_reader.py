"""Reading FHIR inputs of every shape, and reporting malformed ones precisely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from careplan_rules.errors import FhirInputError
from careplan_rules.fhir.reader import parse_text, read_any, read_path
from tests.factories import bundle, kratom, patient


def test_bundle_entries_keep_their_fhir_path_and_full_url() -> None:
    doc = read_any(bundle(patient(), kratom(), full_urls=True))
    assert doc.kind == "bundle"
    assert [e.path for e in doc.entries] == ["Bundle.entry[0].resource", "Bundle.entry[1].resource"]
    assert doc.entries[1].full_url == "http://example.org/fhir/MedicationStatement/k1"


def test_single_resource_array_and_ndjson() -> None:
    assert read_any(kratom()).kind == "resource"
    arr = read_any([patient(), kratom()])
    assert arr.kind == "array" and [e.path for e in arr.entries] == ["[0]", "[1]"]
    text = "\n".join(json.dumps(r) for r in (patient(), kratom())) + "\n"
    nd = parse_text(text, "x.ndjson", ndjson=True)
    assert nd.kind == "ndjson" and [e.line for e in nd.entries] == [1, 2]
    # NDJSON without the suffix is recognised too
    assert parse_text(text, "x.json").kind == "ndjson"


def test_nested_bundles_are_flattened() -> None:
    inner = bundle(kratom(), btype="searchset")
    doc = read_any(bundle(patient(), inner))
    assert [e.resource_type for e in doc.entries] == ["Patient", "MedicationStatement"]
    assert doc.entries[1].path == "Bundle.entry[1].resource.entry[0].resource"


def test_malformed_json_reports_line_and_column() -> None:
    with pytest.raises(FhirInputError) as info:
        parse_text('{\n  "resourceType": "Bundle",\n  "entry": [,]\n}', "bad.json")
    diag = info.value.diagnostics[0]
    assert diag.render() == "bad.json:3:13: error CPR-F005: malformed JSON: Expecting value"


def test_malformed_ndjson_line() -> None:
    with pytest.raises(FhirInputError) as info:
        parse_text('{"resourceType": "Patient"}\n{oops}\n', "x.ndjson", ndjson=True)
    assert info.value.diagnostics[0].location.line == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"foo": 1}, "has no 'resourceType'"),
        ([1, 2], "is not a FHIR resource"),
        ("   ", "input is empty"),
        ({"resourceType": "Bundle", "entry": {"resource": {}}}, "entry must be a list"),
    ],
)
def test_not_fhir(data: object, fragment: str) -> None:
    with pytest.raises(FhirInputError) as info:
        if isinstance(data, str):
            parse_text(data, "in.json")
        else:
            read_any(data, "in.json")
    assert fragment in str(info.value)


def test_files_bytes_and_json_text(tmp_path: Path) -> None:
    f = tmp_path / "b.json"
    f.write_text(json.dumps(bundle(patient(), kratom())))
    assert len(read_path(f).entries) == 2
    assert len(read_any(str(f)).entries) == 2
    assert len(read_any(f.read_bytes()).entries) == 2
    assert len(read_any(f.read_text()).entries) == 2
    with pytest.raises(FhirInputError, match="no such file"):
        read_any(str(tmp_path / "missing.json"))
    with pytest.raises(FhirInputError, match="not UTF-8"):
        read_any(b'{"resourceType": "Patient", "name": "\xff"}')


COLLECTIONS = [
    [(patient(), "urn:uuid:p"), (kratom("k1"), None), (kratom("k2"), "")],
    [({"resourceType": "Bundle", "entry": [{"resource": kratom("k3")}, {"request": {"method": "DELETE"}}]}, None)],
    [(None, None), (kratom("k4"), "https://ehr.example/fhir/MedicationStatement/k4")],
    [(kratom("k5"), None), ({"id": "no-type"}, None)],
    [(["not", "a", "resource"], None)],
    [({"resourceType": "Bundle", "entry": {"resource": kratom("k6")}}, None)],
]


@pytest.mark.parametrize("pairs", COLLECTIONS)
def test_a_collection_of_pairs_reads_as_its_bundle_does(pairs: list[tuple[object, str | None]]) -> None:
    from careplan_rules.fhir.reader import parse_collection, parse_data

    as_bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r, **({"fullUrl": u} if u else {})} for r, u in pairs],
    }
    try:
        expected = parse_data(as_bundle, "call")
    except FhirInputError as exc:
        with pytest.raises(FhirInputError) as caught:
            parse_collection(pairs, "call")
        assert caught.value.diagnostics == exc.diagnostics
    else:
        assert parse_collection(pairs, "call") == expected
