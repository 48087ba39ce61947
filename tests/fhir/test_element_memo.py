"""Remembered elements change what validation costs, never what it says."""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from careplan_rules.fhir import validation
from careplan_rules.fhir.element_memo import ElementMemo
from careplan_rules.fhir.reader import Entry, read_any
from careplan_rules.fhir.validation import model_class, validate_entry
from tests.factories import RXNORM, iter_examples, med_request, rx

Resource = dict[str, Any]


def request(rid: str, **changes: Any) -> Resource:
    r = med_request(rid, rx("312941", "sertraline 50 MG Oral Tablet"))
    r["dosageInstruction"] = [
        {"text": "1 tablet daily", "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}
    ]
    r.update(changes)
    return r


def plain_errors(resource: Resource, version: str = "R4") -> list[str]:
    """What fhir.resources says about the resource as written, without any memo."""
    cls = model_class(version, resource["resourceType"])
    assert cls is not None
    try:
        cls.model_validate(resource)
    except ValueError as exc:
        return [str(exc)]
    return []


def request_class() -> type[Any]:
    cls = model_class("R4", "MedicationRequest")
    assert cls is not None
    return cls


def learn(memo: ElementMemo, resource: Resource) -> None:
    """Validate through the memo, as validate_entry does, so it remembers the elements."""
    cls = request_class()
    data, unknown = memo.substitute(cls, resource)
    memo.remember(cls.model_validate(data), unknown)


def rendered(resource: Resource, version: str = "R4") -> list[str]:
    return [d.render() for d in validate_entry(Entry(resource, resource["resourceType"]), version, "in.json")]


def test_remembered_elements_are_given_to_pydantic_as_instances() -> None:
    memo = ElementMemo()
    cls = request_class()
    first = request("a")
    data, unknown = memo.substitute(cls, first)
    assert data is first and {s[1] for s in unknown} >= {"medicationCodeableConcept", "dosageInstruction", "subject"}
    memo.remember(cls.model_validate(data), unknown)
    second = request("b")
    data, unknown = memo.substitute(cls, second)
    assert data is not second and second["dosageInstruction"][0]["text"] == "1 tablet daily"  # input untouched
    assert not unknown
    assert not isinstance(data["medicationCodeableConcept"], dict)
    cls.model_validate(data)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({"status": 5}, id="a bad status next to remembered elements"),
        pytest.param({"authoredOn": "yesterday"}, id="a bad date"),
        pytest.param({"medicationReference": {"reference": "Medication/m1"}}, id="two choices of medication[x]"),
        pytest.param({"dosageInstruction": [{"timing": {"repeat": {"frequency": "twice"}}}]}, id="a bad element"),
        pytest.param({"category": [None]}, id="a null in a list of elements"),
        pytest.param({"subject": "Patient/p1"}, id="a reference as a string"),
    ],
)
def test_an_invalid_resource_gets_the_same_errors_as_without_the_memo(
    broken: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert rendered(request("warm")) == []  # its elements are remembered now
    bad = request("bad", **broken)
    errors = rendered(bad)
    assert errors and plain_errors(bad)
    assert rendered(copy.deepcopy(bad)) == errors  # the memo learnt nothing from a failure
    monkeypatch.setattr(validation, "valid_by_memo", lambda cls, resource: False)
    assert rendered(copy.deepcopy(bad)) == errors  # and says what the library says alone


def test_the_memo_never_accepts_an_element_of_the_wrong_release() -> None:
    r4 = request("r4")
    assert rendered(r4, "R4") == []
    # R5 has no medicationCodeableConcept: the R4 instance must not be reused there
    assert rendered(copy.deepcopy(r4), "R5")


def test_the_memo_is_bounded() -> None:
    memo = ElementMemo(size=8)
    for i in range(50):
        learn(memo, request(f"r{i}", subject={"reference": f"Patient/p{i}"}))
        assert len(memo._known) <= 8


@pytest.mark.parametrize("path", list(iter_examples()), ids=lambda p: p.name)
def test_every_example_validates_as_it_does_without_the_memo(path: Any) -> None:
    doc = read_any(path, path.name)
    for _ in range(2):  # the second time, from the memo
        for entry in doc.entries:
            cls = model_class("R4", entry.resource_type)
            if cls is None:
                continue
            got = validate_entry(entry, "R4", path.name)
            assert bool(got) == bool(plain_errors(entry.resource)), entry.path


def test_threads_share_the_memo_safely() -> None:
    resources = [request(f"t{i}", authoredOn="yesterday" if i % 7 == 0 else "2026-05-01") for i in range(300)]

    def check(r: Resource) -> bool:
        return bool(rendered(r)) == bool(plain_errors(r))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(check, resources))


def test_a_product_coding_with_a_different_display_is_a_different_element() -> None:
    # equal JSON only: the memo never guesses that two elements are the same
    memo = ElementMemo()
    learn(memo, request("a"))
    b = request("b", medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "312941", "display": "x"}]})
    _, unknown = memo.substitute(request_class(), b)
    assert [s[1] for s in unknown] == ["medicationCodeableConcept"]
    assert json.loads(unknown[0][2]) == b["medicationCodeableConcept"]


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param({"": {"x": 1}}, id="an empty key"),
        pytest.param({"note": [{"text": object()}]}, id="a value that is not JSON"),
        pytest.param({"_status": {"extension": []}}, id="an extension sibling"),
    ],
)
def test_odd_shapes_fall_through_to_the_library(odd: dict[str, Any]) -> None:
    resource = {**request("odd"), **odd}
    assert bool(rendered(resource)) == bool(plain_errors(resource))  # no crash, the library's verdict


def test_a_resource_seen_valid_before_is_not_validated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from careplan_rules.fhir import element_memo

    monkeypatch.setattr(element_memo, "RESOURCES", element_memo.ResourceMemo())
    cls = request_class()
    calls: list[Any] = []
    real = cls.model_validate

    def counting(data: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(data)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(cls, "model_validate", counting)
    assert rendered(request("same")) == []
    assert len(calls) == 1
    assert rendered(request("same")) == []  # an equal copy: from the memo
    assert len(calls) == 1
    assert rendered(request("other")) == []  # another id: validated
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("changes", "valid"),
    [
        pytest.param({"authoredOn": "yesterday"}, False, id="a bad date"),
        pytest.param({"doNotPerform": "maybe"}, False, id="a bad boolean"),
        pytest.param({"extra": "x"}, False, id="an unknown element"),
        pytest.param({"doNotPerform": 1}, True, id="1 for true (the library accepts it)"),
        pytest.param({"id": "twin-2"}, True, id="another id"),
    ],
)
def test_a_resource_that_differs_from_a_valid_one_gets_the_librarys_verdict(
    changes: dict[str, Any], valid: bool
) -> None:
    original = request("twin", doNotPerform=True, authoredOn="2026-05-01")
    assert rendered(original) == []
    assert rendered(copy.deepcopy(original)) == []
    twin = {**copy.deepcopy(original), **changes}
    assert (not plain_errors(twin)) == valid
    assert (not rendered(twin)) == valid


def test_the_resource_memo_is_bounded() -> None:
    from careplan_rules.fhir.element_memo import ResourceMemo

    memo = ResourceMemo(size=4)
    cls = request_class()
    for i in range(20):
        memo.add((cls, str(i)))
        assert len(memo._valid) <= 4
    assert (cls, "19") in memo and (cls, "0") not in memo


def test_elements_nested_too_deeply_are_a_problem_of_the_resource_not_a_crash() -> None:
    deep: dict[str, Any] = {"url": "http://example.org/x"}
    node = deep
    for _ in range(3000):  # JSON text this deep is refused by the readers; a caller's dict is not
        node["extension"] = [{"url": "http://example.org/x"}]
        node = node["extension"][0]
    errors = rendered(request("deep", extension=[deep]))
    assert errors and "nested too deeply" in errors[0]
