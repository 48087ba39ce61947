"""The value-set file format (``valuesets/*.yaml``).

A value set lists concepts by ``(system, code)``. Ingredient-level concepts (RxNorm ``IN``)
also match product codes through the pack's ingredient map, and their names match in
``Medication.code.text`` / ``coding.display`` ("Sertraline 100MG", "Clonazepam [Klonopin]").
For things that are rarely coded at all (kratom), ``text`` lists synonyms: strong tokens
match alone, weak tokens only with a context word in the same field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from careplan_rules.model.common import CodeString, Identifier, Status, Strict


class Concept(Strict):
    """A code, or (only when ``unverified``) a name without a verified code to match by name."""

    code: CodeString | None = None
    display: str | None = None
    names: list[str] = Field(
        default_factory=list, description="brand names and synonyms matched as whole words in text"
    )
    unverified: bool = Field(
        default=False,
        description="the code could not be verified against its terminology; lint warns (CPR-W023)",
    )
    note: str | None = None
    source: str | None = Field(default=None, description="where the code was taken from")

    @model_validator(mode="after")
    def _code_or_name(self) -> Concept:
        if self.code is None and not (self.unverified and self.display):
            raise ValueError(
                "a concept needs a 'code'; a name-only concept must say 'unverified: true' and give a display"
            )
        return self


class Include(Strict):
    """Either concepts of one code system, or all concepts of another value set of the pack."""

    system: str | None = Field(default=None, description="code system URI")
    level: Literal["ingredient", "product", "other"] = Field(
        default="other",
        description="ingredient: also match product codes (ingredient map) and ingredient names in text",
    )
    concepts: list[Concept] = Field(default_factory=list)
    valueset: str | None = Field(default=None, description="id of another value set to include")
    match: Literal["exact", "prefix"] = Field(
        default="exact",
        description="prefix: a code also matches every code that starts with it, dots ignored "
        "(ICD-10-CM F32 matches F32.A and F329)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Include:
        if (self.valueset is None) == (self.system is None):
            raise ValueError("an include needs either 'system' (with 'concepts') or 'valueset', not both")
        if self.valueset is not None and self.concepts:
            raise ValueError("'concepts' cannot be combined with 'valueset'")
        return self


class ExcludeCodes(Strict):
    """Codes that never count even when an include would admit them (e.g. MOUD products)."""

    system: str
    codes: list[CodeString]
    reason: str | None = None


class TextMatch(Strict):
    """Free-text synonyms (matched Unicode-normalised, case-insensitively, on word boundaries)."""

    strong: list[str] = Field(default_factory=list, description="match on their own")
    weak: list[str] = Field(default_factory=list, description="match only with a context word nearby")
    context: list[str] = Field(default_factory=list, description="words that confirm a weak token")
    exclude: list[str] = Field(default_factory=list, description="phrases that veto a text match in the same field")
    negation: list[str] = Field(
        default_factory=list,
        description="cues (e.g. 'denies') that negate a match when they come shortly before it",
    )

    @model_validator(mode="after")
    def _weak_needs_context(self) -> TextMatch:
        if self.weak and not self.context:
            raise ValueError("'weak' tokens need at least one 'context' word")
        return self


class ValueSetModel(Strict):
    api_version: Literal["careplan-rules/v1"] = Field(alias="apiVersion")
    kind: Literal["ValueSet"]
    id: Identifier
    version: str
    title: str
    description: str | None = None
    status: Status = "active"
    sources: list[str] = Field(default_factory=list, description="provenance of the codes")
    include: list[Include] = Field(default_factory=list)
    exclude: list[ExcludeCodes] = Field(default_factory=list)
    text: TextMatch | None = None
