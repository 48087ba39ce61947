"""Shared resources (Medication, Substance, Practitioner…) and how a patient reaches them.

A Bulk Data export puts a Medication in ``Medication.ndjson``, far from the
``MedicationRequest`` whose ``medicationReference`` names it, and the Medication belongs to no
patient. The screen keeps these resources in a small side index keyed by ``Type/id`` and adds
to each patient's evaluation exactly the ones that patient's resources reference (and what
those reference in turn: a Medication's ingredient ``itemReference`` to a Substance), so the
evaluation core resolves the reference as it would inside one Bundle.

The local runner keeps the index in SQLite (:class:`SqliteShared`, one file, read by every
worker, memory flat however many Medications there are); Spark broadcasts a dict
(:class:`DictShared`). Both find the same resources with :func:`referenced_shared`.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from careplan_rules.fhir.partition import SHARED_TYPES

# the forms careplan_rules.fhir.references resolves by type and id (relative or absolute URL,
# "/_history/n" ignored); urn: and contained "#id" references cannot point into another file
_HISTORY = re.compile(r"/_history/[^/]+$")
_REST = re.compile(r"^(?:.*/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})$")
_REFERENCE = re.compile(rb'"reference"\s*:\s*"([^"\\]*)"')
MAX_DEPTH = 4  # Medication -> Substance -> … ; deeper chains are not FHIR practice
CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class SharedResource:
    """One shared resource's line of the export."""

    ref: str
    file: str
    line: int
    raw: bytes


class SharedLookup(Protocol):
    def get(self, ref: str) -> SharedResource | None: ...


class DictShared:
    """Shared resources held in memory (Spark broadcasts one of these to every executor)."""

    def __init__(self, items: Mapping[str, tuple[str, int, bytes]]) -> None:
        self._items = items

    def get(self, ref: str) -> SharedResource | None:
        hit = self._items.get(ref)
        return SharedResource(ref, *hit) if hit is not None else None


class SqliteShared:
    """Read side of the on-disk index; one per worker process, with a small LRU cache."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._cache: OrderedDict[str, SharedResource | None] = OrderedDict()

    def get(self, ref: str) -> SharedResource | None:
        if ref in self._cache:
            self._cache.move_to_end(ref)
            return self._cache[ref]
        row = self._conn.execute("SELECT file, line, raw FROM shared WHERE ref = ?", (ref,)).fetchone()
        found = SharedResource(ref, row[0], row[1], bytes(row[2])) if row is not None else None
        self._cache[ref] = found
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return found

    def close(self) -> None:
        self._conn.close()


def build_sqlite_index(path: Path, rows: Iterable[tuple[str, str, int, bytes]]) -> int:
    """Write the shared index; the first resource of a ``Type/id`` in input order wins.

    The evaluation core resolves a duplicated ``Type/id`` to its first occurrence, so the
    index keeps the first too.

    Args:
        path: the SQLite file to create (replaced if it exists).
        rows: ``(ref, file, line, raw line)`` in input order.

    Returns:
        The number of distinct shared resources.
    """
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")  # the index is rebuilt if the run stops before it is done
        conn.execute("CREATE TABLE shared (ref TEXT PRIMARY KEY, file TEXT, line INTEGER, raw BLOB) WITHOUT ROWID")
        conn.executemany("INSERT OR IGNORE INTO shared VALUES (?, ?, ?, ?)", rows)
        conn.commit()
        count: int = conn.execute("SELECT count(*) FROM shared").fetchone()[0]
    finally:
        conn.close()
    return count


def shared_refs(raw: bytes) -> Iterator[str]:
    """The ``Type/id`` of every shared resource a resource's JSON references (anywhere in it).

    A regular expression over the raw line, not a walk of the parsed JSON: five times
    cheaper, and safe both ways. A reference it cannot read (an escaped character) cannot be
    a ``Type/id`` the index holds; text that merely looks like a reference only adds a
    shared resource nobody uses (shared resources hold no patient data).
    """
    for m in _REFERENCE.finditer(raw):
        ref = m.group(1).decode("utf-8", "replace")
        rest = _REST.match(_HISTORY.sub("", ref))
        if rest is not None and rest["type"] in SHARED_TYPES:
            yield f"{rest['type']}/{rest['id']}"


def referenced_shared(resources: Iterable[bytes], lookup: SharedLookup) -> list[tuple[SharedResource, Any]]:
    """The shared resources a patient's resources reach, directly or through other shared ones.

    Args:
        resources: the patient's resources (raw JSON lines).
        lookup: the side index.

    Returns:
        Each reachable shared resource once with its parsed JSON (parsed afresh for every
        patient, so no two patients' evaluations share a mutable object), in a stable order.
        References to shared resources the export lacks are left out: the evaluation core
        then reports them where they matter (e.g. CPR-F030, an unresolvable medication).
    """
    found: dict[str, tuple[SharedResource, Any]] = {}
    frontier = [ref for raw in resources for ref in shared_refs(raw)]
    for _ in range(MAX_DEPTH):
        following: list[str] = []
        for ref in frontier:
            if ref in found:
                continue
            hit = lookup.get(ref)
            if hit is None:
                continue
            found[ref] = (hit, json.loads(hit.raw))
            following.extend(shared_refs(hit.raw))
        if not following:
            break
        frontier = following
    return list(found.values())
