"""The rule-test file format (``*.test.yaml``), after the AHRQ CQL Testing Framework.

A test file names the rule it tests by id (never by file name), freezes ``now``, and lists
cases: inline resources written with compact shorthands, reusable named fixtures, an
expectation (``fire``, ``no-fire``, ``error``, or a ``todo-`` known gap with a mandatory
reason) and partial assertions on what the finding says.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from careplan_rules.model.common import Strict
from careplan_rules.model.rule import ParamValue

Expectation = Literal["fire", "no-fire", "error", "todo-fire", "todo-no-fire"]

RESOURCE_SCHEMA: dict[str, Any] = {
    "description": (
        "an inline FHIR resource (shorthands: 'SYSTEM#code display' codings, 'start - end' periods, "
        "'5 mg' quantities, 'Type/id' references), or {fixture: name}, or {fixtures: [names]}"
    ),
    "type": "object",
}


class TextMatcher(Strict):
    """Partial expectation on text: all given conditions must hold."""

    equals: str | None = None
    contains: str | list[str] | None = None
    matches: str | None = Field(default=None, description="a Python regular expression (search)")
    max_length: int | None = None


class Assertions(Strict):
    severity: Literal["high", "moderate", "low"] | None = None
    indicator: Literal["info", "warning", "critical"] | None = None
    summary: str | TextMatcher | None = None
    detail: str | TextMatcher | None = None
    implicated: list[str] | None = Field(default=None, description="exactly these references")
    implicated_contains: list[str] | None = Field(default=None, description="at least these references")
    escalated: bool | None = Field(default=None, description="whether any escalation applied")
    escalation_reasons: list[str | TextMatcher] | None = None
    criteria: dict[str, list[str]] | None = Field(
        default=None, description="criterion name -> exactly the references it matched"
    )
    matched_by: dict[str, str] | None = Field(
        default=None, description="reference -> how it matched (code, ingredient-code, ingredient-name, text)"
    )
    activities: list[str] | None = Field(default=None, description="ids of the proposed CarePlan activities")
    errors: list[str] | None = Field(default=None, description="for expect: error, the error codes")


class Case(Strict):
    name: str
    expect: Expectation
    reason: str | None = Field(default=None, description="mandatory for todo-fire / todo-no-fire")
    now: str | None = None
    params: dict[str, ParamValue] = Field(default_factory=dict)
    fhir_version: Literal["R4", "R5"] | None = None
    patient: dict[str, Any] | Literal["none"] | None = Field(
        default=None, description="overrides the file's default patient; 'none' for no Patient resource"
    )
    resources: list[dict[str, Any]] = Field(default_factory=list, json_schema_extra={"items": RESOURCE_SCHEMA})
    bundle: str | None = Field(default=None, description="a FHIR file (relative to the test file) to evaluate")
    each_fixture: list[str] | None = Field(
        default=None, description="run the case once per named fixture, adding it to the resources"
    )
    assert_: Assertions | None = Field(default=None, alias="assert")

    @model_validator(mode="after")
    def _todo_needs_reason(self) -> Case:
        if self.expect.startswith("todo-") and not (self.reason and self.reason.strip()):
            raise ValueError(f"expect: {self.expect} needs a 'reason' saying what is missing")
        if self.bundle is not None and self.resources:
            raise ValueError("give either 'bundle' or 'resources', not both")
        return self


class RuleTestModel(Strict):
    api_version: Literal["careplan-rules/v1"] = Field(alias="apiVersion")
    kind: Literal["RuleTest"]
    rule: str = Field(description="id of the rule under test")
    now: str = Field(description="frozen evaluation time for every case (ISO-8601)")
    fhir_version: Literal["R4", "R5"] = "R4"
    fixtures: list[str] = Field(default_factory=list, description="fixture files (relative paths)")
    patient: dict[str, Any] | None = Field(
        default=None, description="default patient: an inline Patient or {fixture: name}"
    )
    params: dict[str, ParamValue] = Field(default_factory=dict)
    cases: list[Case] = Field(min_length=1)


class FixtureFile(Strict):
    api_version: Literal["careplan-rules/v1"] = Field(alias="apiVersion")
    kind: Literal["Fixtures"]
    fixtures: dict[str, dict[str, Any]] = Field(description="name -> resource (shorthands allowed)")
