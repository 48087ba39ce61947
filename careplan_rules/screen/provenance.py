"""Place the Provenances whose patient is known only through what they target.

A Provenance has no ``subject``: it belongs to the patient that owns its target (a
MedicationStatement it attests, say), and in a Bulk Data export that target sits in another
file. The grouping pass sets such Provenances aside (``.deferred`` side files); once every
task is done, this stage collects their targets, scans the grouped records once for the
owners of those targets (in SQLite, so memory stays flat), and writes each Provenance into
its patient's bucket as an extra unit (``prov/``), with the same commit protocol as a
grouping task. A Provenance none of whose targets has an owner is an error row (CPR-F020),
never dropped: a review that cannot be attributed must be visible.

Nothing here runs when the export has no such Provenance (the usual case: most servers
target the Patient too).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator

from careplan_rules.screen.checkpoint import write_json
from careplan_rules.screen.classify import DEFERRED, resolve_provenance
from careplan_rules.screen.grouping import (
    MAP,
    PROVENANCE,
    Layout,
    TaskStats,
    bucket_of,
    record,
    write_errors,
    write_sections,
)
from careplan_rules.screen.rows import KIND_NO_PATIENT, ErrorRow

BATCH = 500


def deferred_units(layout: Layout, stats: list[TaskStats]) -> list[int]:
    return [t.index for t in layout.tasks if stats[t.index].kinds.get(DEFERRED)]


def place_deferred(layout: Layout, stats: list[TaskStats]) -> list[int]:
    """Write every deferred Provenance into its patient's bucket.

    Returns:
        The tasks whose deferred Provenances now form a ``prov`` unit (read with the buckets).
    """
    units = deferred_units(layout, stats)
    if not units:
        return []
    (layout.work / PROVENANCE).mkdir(exist_ok=True)
    db = layout.work / "owners.sqlite"
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")  # rebuilt from scratch if the run stops here
        conn.execute("CREATE TABLE wanted (ref TEXT PRIMARY KEY) WITHOUT ROWID")
        conn.execute("CREATE TABLE owner (ref TEXT PRIMARY KEY, patient TEXT) WITHOUT ROWID")
        for index in units:
            conn.executemany(
                "INSERT OR IGNORE INTO wanted VALUES (?)",
                ((t,) for targets, *_ in _deferred(layout, index) for t in targets),
            )
        for task in layout.tasks:
            _find_owners(conn, layout, task.index)
        conn.commit()

        def owner_of(ref: str) -> str | None:
            row = conn.execute("SELECT patient FROM owner WHERE ref = ?", (ref,)).fetchone()
            return None if row is None else str(row[0])

        for index in units:
            _place(layout, index, owner_of)
    finally:
        conn.close()
    return units


def _deferred(layout: Layout, index: int) -> Iterator[tuple[list[str], str, int, bytes]]:
    with open(layout.unit(MAP, index, ".deferred"), "rb") as handle:
        for rec in handle:
            targets, ref, line, raw = rec.rstrip(b"\n").split(b"\t", 3)
            yield json.loads(targets), ref.decode(), int(line), raw


def _find_owners(conn: sqlite3.Connection, layout: Layout, index: int) -> None:
    pairs: list[tuple[str, str]] = []
    with open(layout.unit(MAP, index, ".data"), "rb") as handle:
        for rec in handle:
            key, ref, _ = rec.split(b"\t", 2)
            pairs.append((ref.decode(), key.decode()))
            if len(pairs) >= BATCH:
                _match(conn, pairs)
                pairs = []
    if pairs:
        _match(conn, pairs)


def _match(conn: sqlite3.Connection, pairs: list[tuple[str, str]]) -> None:
    marks = ",".join("?" * len(pairs))
    hits = {row[0] for row in conn.execute(f"SELECT ref FROM wanted WHERE ref IN ({marks})", [r for r, _ in pairs])}
    if hits:
        conn.executemany("INSERT OR REPLACE INTO owner VALUES (?, ?)", [(r, k) for r, k in pairs if r in hits])


def _place(layout: Layout, index: int, owner_of: Callable[[str], str | None]) -> None:
    name = layout.file_of(index).name
    sections: list[list[bytes]] = [[] for _ in range(layout.buckets)]
    errors: list[ErrorRow] = []
    for targets, ref, line, raw in _deferred(layout, index):
        key = resolve_provenance(targets, owner_of)
        if key is None:
            errors.append(
                ErrorRow(
                    KIND_NO_PATIENT,
                    "CPR-F020",
                    "cannot tell which patient this Provenance belongs to (none of its targets is a Patient "
                    "or a resource of a patient in the export)",
                    name,
                    line,
                    None,
                    ref,
                )
            )
            continue
        sections[bucket_of(key, layout.buckets)].append(record(key, ref, index, line, raw))
    write_sections(layout, PROVENANCE, index, sections)
    write_errors(layout.unit(PROVENANCE, index, ".errors"), errors)
    write_json(
        layout.unit(PROVENANCE, index, ".json"), {"placed": sum(len(s) for s in sections), "errors": len(errors)}
    )
