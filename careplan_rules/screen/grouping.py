"""Group an export's lines by patient on disk: a hash partition, not a sort or an index.

Why a hash partition (the "Grace hash" grouping databases use, and what Spark's shuffle
does): a screen needs each patient's lines together, not in any order. One pass reads every
line once, sequentially, works out its patient, and appends it to one of ``buckets`` sections
chosen by a stable hash of the patient (crc32, identical in every process). All of a
patient's lines land in the same bucket, and a bucket is small enough (about
``bucket_bytes``) to be grouped in memory and evaluated on its own. So memory is bounded by
one task's input plus one bucket whatever the export's size, I/O is two sequential passes,
and buckets are the natural unit of parallel work and of checkpointing.

The alternatives cost more here: an external merge sort does the same two passes plus
log(n) merge passes and produces an order nobody needs; an on-disk index of
``patient -> (file, offset)`` must itself be sorted (it grows with the export) and then
reads every line with a random seek.

Layout: each grouping task (a byte range of one file, see inputs.py) writes one data file
``map/tNNNNNN.data`` with its records ordered by bucket, an index ``.idx`` giving each
bucket's (offset, length, records) as int64 triples, side files for shared resources,
deferred Provenances and errors, and last its ``.json`` stats: the commit marker
(checkpoint.py). Reading bucket k reads section k of every task's data file. A record is one
line ``patient TAB ref TAB task TAB line-in-task TAB raw-json``.
"""

from __future__ import annotations

import array
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from careplan_rules.screen.checkpoint import atomic_file, write_json
from careplan_rules.screen.classify import DEFERRED, ERROR, RESOURCE, SHARED, classify_line
from careplan_rules.screen.evaluate import SourceLine
from careplan_rules.screen.inputs import InputFile, Task, read_lines
from careplan_rules.screen.rows import ErrorRow

_BLANK = b" \t\r\n"
MAP = "map"
PROVENANCE = "prov"


def bucket_of(key: str, buckets: int) -> int:
    """The bucket of a patient (stable across processes and runs, unlike ``hash()``)."""
    return zlib.crc32(key.encode()) % buckets


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a run's intermediate files are, and how the export was cut."""

    work: Path
    files: tuple[InputFile, ...]
    tasks: tuple[Task, ...]
    buckets: int
    wanted: frozenset[str]

    def unit(self, kind: str, index: int, suffix: str) -> Path:
        return self.work / kind / f"t{index:06d}{suffix}"

    def file_of(self, task: int) -> InputFile:
        return self.files[self.tasks[task].file]


@dataclass(frozen=True, slots=True)
class TaskStats:
    """What one grouping task saw (its ``.json`` file; its existence marks the task done)."""

    task: int
    lines: int
    kinds: dict[str, int]  # lines by classification kind (resource, shared, skipped, error…)
    types: dict[str, int]  # grouped resources by type
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "lines": self.lines, "kinds": self.kinds, "types": self.types, "bytes": self.bytes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskStats:
        return cls(data["task"], data["lines"], data["kinds"], data["types"], data["bytes"])


def record(key: str, ref: str, task: int, line: int, raw: bytes) -> bytes:
    return b"\t".join((key.encode(), ref.encode(), str(task).encode(), str(line).encode(), raw))


def write_sections(layout: Layout, kind: str, index: int, sections: list[list[bytes]]) -> None:
    """Write a unit's records ordered by bucket, and the index of each bucket's section."""
    idx = array.array("q")
    with atomic_file(layout.unit(kind, index, ".data"), sync_dir=False) as data:
        offset = 0
        for records in sections:
            blob = b"".join(r + b"\n" for r in records)
            data.write(blob)
            idx.extend((offset, len(blob), len(records)))
            offset += len(blob)
    with atomic_file(layout.unit(kind, index, ".idx"), sync_dir=False) as handle:
        handle.write(idx.tobytes())


def map_task(layout: Layout, index: int) -> TaskStats:
    """Read one task's lines, classify them, and write them out by bucket.

    Returns:
        The task's stats (also written as its commit marker).
    """
    task = layout.tasks[index]
    f = layout.files[task.file]
    sections: list[list[bytes]] = [[] for _ in range(layout.buckets)]
    shared: list[bytes] = []
    deferred: list[bytes] = []
    errors: list[ErrorRow] = []
    kinds: Counter[str] = Counter()
    types: Counter[str] = Counter()
    lines = 0
    for lines, raw in enumerate(read_lines(f, task), start=1):
        c = classify_line(raw, layout.wanted, f.name, lines)
        kinds[c.kind] += 1
        if c.kind == RESOURCE:
            types[c.resource_type] += 1
            sections[bucket_of(c.key, layout.buckets)].append(record(c.key, c.ref, index, lines, raw.strip(_BLANK)))
        elif c.kind == SHARED:
            shared.append(b"\t".join((c.ref.encode(), str(lines).encode(), raw.strip(_BLANK))))
        elif c.kind == DEFERRED:
            targets = json.dumps(list(c.targets), ensure_ascii=True).encode()
            deferred.append(b"\t".join((targets, c.ref.encode(), str(lines).encode(), raw.strip(_BLANK))))
        elif c.kind == ERROR and c.error is not None:
            errors.append(c.error)
    write_sections(layout, MAP, index, sections)
    # side files only when there is something to say (most tasks have no shared resource,
    # deferred Provenance or error); a missing side file reads as empty
    for suffix, items in ((".shared", shared), (".deferred", deferred)):
        path = layout.unit(MAP, index, suffix)
        path.unlink(missing_ok=True)  # a stale one from an attempt that did not commit
        if items:
            with atomic_file(path, sync_dir=False) as handle:
                handle.writelines(item + b"\n" for item in items)
    write_errors(layout.unit(MAP, index, ".errors"), errors)
    stats = TaskStats(index, lines, dict(kinds), dict(types), task.size)
    write_json(layout.unit(MAP, index, ".json"), stats.to_json())  # the commit marker, last
    return stats


def write_errors(path: Path, errors: list[ErrorRow]) -> None:
    # lines in a task's error rows are counted from the task's start; read_errors makes them absolute
    path.unlink(missing_ok=True)
    if errors:
        with atomic_file(path, "w", sync_dir=False) as handle:
            handle.writelines(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in errors)


def read_errors(path: Path, base: int) -> Iterator[ErrorRow]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for text in handle:
            row = ErrorRow.from_dict(json.loads(text))
            if row.line is not None:
                row = ErrorRow(row.kind, row.code, row.message, row.file, row.line + base, row.patient, row.resource)
            yield row


def task_done(layout: Layout, index: int) -> TaskStats | None:
    marker = layout.unit(MAP, index, ".json")
    if not marker.exists():
        return None
    return TaskStats.from_json(json.loads(marker.read_text(encoding="utf-8")))


def line_bases(layout: Layout, stats: list[TaskStats]) -> list[int]:
    """For each task, the number of lines of its file before the task's first line."""
    bases = [0] * len(layout.tasks)
    running: dict[int, int] = {}
    for task in layout.tasks:  # tasks of a file are in file order
        bases[task.index] = running.get(task.file, 0)
        running[task.file] = bases[task.index] + stats[task.index].lines
    return bases


def read_shared(layout: Layout, bases: list[int]) -> Iterator[tuple[str, str, int, bytes]]:
    """Every shared resource as ``(ref, file, line, raw)``, in input order."""
    for task in layout.tasks:
        name = layout.files[task.file].name
        path = layout.unit(MAP, task.index, ".shared")
        if not path.exists():
            continue
        with open(path, "rb") as handle:
            for rec in handle:
                ref, line, raw = rec.rstrip(b"\n").split(b"\t", 2)
                yield ref.decode(), name, bases[task.index] + int(line), raw


def section(layout: Layout, kind: str, index: int, bucket: int) -> bytes:
    """Bucket ``bucket``'s section of one unit's data file."""
    with open(layout.unit(kind, index, ".idx"), "rb") as handle:
        handle.seek(bucket * 24)
        idx = array.array("q")
        idx.frombytes(handle.read(24))
    offset, length, _count = idx
    if not length:
        return b""
    with open(layout.unit(kind, index, ".data"), "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def bucket_counts(layout: Layout, kind: str, index: int) -> list[int]:
    idx = array.array("q")
    idx.frombytes(layout.unit(kind, index, ".idx").read_bytes())
    return list(idx[2::3])


def read_bucket(
    layout: Layout, bucket: int, bases: list[int], provenance_units: list[int]
) -> dict[str, list[SourceLine]]:
    """Every patient of a bucket with their lines, in input order (task, then line).

    Args:
        bases: :func:`line_bases`, to make line numbers absolute.
        provenance_units: the tasks whose deferred Provenances were placed (provenance.py).
    """
    groups: dict[str, list[SourceLine]] = {}
    units = [(MAP, t.index) for t in layout.tasks] + [(PROVENANCE, i) for i in provenance_units]
    for kind, index in units:
        blob = section(layout, kind, index, bucket)
        for rec in blob.split(b"\n"):
            if not rec:
                continue
            key, _ref, task, line, raw = rec.split(b"\t", 4)
            t = int(task)
            groups.setdefault(key.decode(), []).append(SourceLine(layout.file_of(t).name, bases[t] + int(line), raw))
    if provenance_units:
        # a placed Provenance comes after every map unit; put each patient's lines back in
        # input order so the evaluation sees the export's order whatever the path taken
        order = {f.name: i for i, f in enumerate(layout.files)}
        for lines in groups.values():
            lines.sort(key=lambda s: (order[s.file], s.line))
    return groups
