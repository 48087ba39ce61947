"""Stable identifiers for generated resources.

The same input, rules and ``now`` must give byte-identical output, and a re-run must give
the same DetectedIssue id for the same issue so an EHR can de-duplicate. Ids are UUIDv5 of
the pack, rule, patient and implicated references (never of the clock or a counter).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable

NAMESPACE = uuid.UUID("6f1d3c2e-8a4b-5c7d-9e0f-1a2b3c4d5e6f")


def stable_id(*parts: str | Iterable[str]) -> str:
    flat: list[str] = []
    for part in parts:
        if isinstance(part, str):
            flat.append(part)
        else:
            flat.append(",".join(sorted(part)))
    return _uuid5("|".join(flat))


# a patient's calls (patient-view, then order-select at every selection) ask for the same ids
# again; building a UUID object costs more than the hash
@functools.lru_cache(maxsize=4096)
def _uuid5(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))
