"""A minimal valid pack, as text, for tests that break one thing at a time."""

from __future__ import annotations

PACK = """\
apiVersion: careplan-rules/v1
kind: Pack
id: mini
version: 0.1.0
title: Minimal pack
"""

VALUESET = """\
apiVersion: careplan-rules/v1
kind: ValueSet
id: drugs
version: "1"
title: Some drugs
include:
  - system: http://www.nlm.nih.gov/research/umls/rxnorm
    level: ingredient
    concepts:
      - {code: "36437", display: sertraline}
text:
  strong: [kratom]
"""

RULE = """\
apiVersion: careplan-rules/v1
kind: Rule
id: demo
version: 1.0.0
status: active
title: Demo rule
description: A demo.
metadata:
  evidence_level: low
params:
  lookback: P90D
criteria:
  drug_use:
    exposure:
      medication: {in: drugs}
      lookback: $lookback
when: drug_use
severity: moderate
indicator: warning
outputs:
  summary: "Drug {drug_use.medication} in use"
  detail: Details.
"""


def files(**overrides: str) -> dict[str, str]:
    """The minimal pack's files; keyword names pick which file to replace."""
    out = {"pack.yaml": PACK, "valuesets/drugs.yaml": VALUESET, "demo.rule.yaml": RULE}
    mapping = {"pack": "pack.yaml", "valueset": "valuesets/drugs.yaml", "rule": "demo.rule.yaml"}
    for key, text in overrides.items():
        out[mapping.get(key, key)] = text
    return out
