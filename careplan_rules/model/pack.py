"""The pack manifest (``pack.yaml``): one versioned, deployable unit of rules and terminology."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from careplan_rules.model.common import Identifier, Strict

DEFAULT_CODE_SYSTEM_ALIASES: dict[str, str] = {
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "SNOMED": "http://snomed.info/sct",
    "SCT": "http://snomed.info/sct",
    "LOINC": "http://loinc.org",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "UNII": "http://fdasis.nlm.nih.gov",
    "ATC": "http://www.whocc.no/atc",
    "ACTCODE": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
}


class PackModel(Strict):
    api_version: Literal["careplan-rules/v1"] = Field(alias="apiVersion")
    kind: Literal["Pack"]
    id: Identifier
    version: str = Field(description="becomes the pack revision stamped on every output")
    title: str
    description: str | None = None
    publisher: str | None = None
    url: str | None = Field(default=None, description="home page; cards link rule pages under it")
    fhir: list[Literal["R4", "R4B", "R5"]] = Field(default_factory=lambda: ["R4", "R5"])  # type: ignore[arg-type]
    engine: str | None = Field(default=None, description="engine version range, e.g. '>=0.1,<1'")
    codesystems: dict[str, str] = Field(
        default_factory=dict, description="aliases for compact codings in tests (RXNORM: uri)"
    )
    ingredient_maps: list[str] = Field(
        default_factory=list, description="TSV files (relative paths) mapping product codes to ingredients"
    )
    mme_factors: str | None = Field(
        default=None, description="TSV file (relative path) of opioid MME conversion factors"
    )
