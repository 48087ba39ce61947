"""Code system identifiers as they appear in real data, reduced to one canonical URI.

EHR exports write the same code system several ways: the FHIR URI, an ``urn:oid:``, a
trailing slash, ``https``. A coding must not fail to match only because of that spelling.
"""

from __future__ import annotations

import functools

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NDC = "http://hl7.org/fhir/sid/ndc"
ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "https://www.nlm.nih.gov/research/umls/rxnorm": RXNORM,
    "http://www.nlm.nih.gov/research/umls/rxnorm/": RXNORM,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "https://snomed.info/sct": SNOMED,
    "http://snomed.info/sct/": SNOMED,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "https://loinc.org": LOINC,
    "http://loinc.org/": LOINC,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10-cm/": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.69": NDC,
}

# Names people write where a URI belongs (lint flags them; matching tolerates none of them).
SYSTEM_NAMES = {
    "rxnorm": RXNORM,
    "snomed": SNOMED,
    "snomed ct": SNOMED,
    "snomedct": SNOMED,
    "sct": SNOMED,
    "loinc": LOINC,
    "icd10": ICD10CM,
    "icd-10": ICD10CM,
    "icd10cm": ICD10CM,
    "icd-10-cm": ICD10CM,
    "ndc": NDC,
}


def canonical_system(system: str | None) -> str | None:
    if system is None:
        return None
    return _canonical(system)


@functools.lru_cache(maxsize=1024)  # called for every coding against every value set; systems are few
def _canonical(system: str) -> str:
    s = system.strip()
    return _ALIASES.get(s, _ALIASES.get(s.lower(), s))


def looks_like_uri(system: str) -> bool:
    return system.startswith(("http://", "https://", "urn:"))
