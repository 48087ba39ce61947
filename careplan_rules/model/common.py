"""Shared pieces of the authoring-format models.

These pydantic models describe the YAML an author writes; nothing here evaluates anything.
They are strict on purpose: an unknown key is an error with a did-you-mean (a typo such as
``falsepositive`` must not be accepted as a new field), and codes must be quoted strings so
YAML cannot turn ``0012`` into the number 10.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

API_VERSION = "careplan-rules/v1"

# A path into a YAML document: mapping keys and list indexes, used to find positions.
YamlPath = tuple[str | int, ...]

Identifier = Annotated[
    str,
    Field(pattern=r"^[a-z0-9][a-z0-9-]*$", min_length=1, max_length=64, description="lower-case id"),
]
CriterionName = Annotated[
    str, Field(pattern=r"^[a-z_][a-z0-9_]*$", min_length=1, max_length=64, description="snake_case name")
]
FhirSeverity = Literal["high", "moderate", "low"]
Indicator = Literal["info", "warning", "critical"]
Status = Literal["draft", "active", "retired"]
CodeString = Annotated[StrictStr, Field(min_length=1, description="a code; quote numeric codes")]


class Strict(BaseModel):
    """Base for every authoring model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CodingSpec(Strict):
    """A code from a code system, as written in rules (system must be a URI)."""

    system: str = Field(description="code system URI, e.g. http://snomed.info/sct")
    code: CodeString
    display: str | None = None
    unverified: bool = Field(
        default=False, description="true when the code could not be checked against its terminology"
    )


class ValueSetRef(Strict):
    """A reference to a value set of the same pack: ``{in: serotonergic-drugs}``."""

    in_: str = Field(alias="in", description="value set id, optionally id|version")
