"""The files of an export and the byte ranges (tasks) the grouping pass reads them in.

A Bulk Data export may hold one huge file per resource type, so files are cut into ranges of
about ``task_bytes`` that end on a line boundary; each range is one task of the parallel
grouping pass. Gzipped files (``.ndjson.gz``, what ``$export`` gives with
``Accept-Encoding: gzip`` saved as is) cannot be cut and are one task each. Line numbers are
counted per task and made absolute once every task of a file is done (the number of lines
before a range is the sum of the lines of the ranges before it), so no extra pass is needed.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.errors import FhirInputError

SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")


@dataclass(frozen=True, slots=True)
class InputFile:
    """One NDJSON file of the export."""

    name: str  # as shown in rows and errors (the path as given, or found under a given folder)
    path: str  # absolute
    size: int
    mtime_ns: int

    @property
    def gzipped(self) -> bool:
        return self.path.endswith(".gz")

    def fingerprint(self) -> list[object]:
        return [self.path, self.size, self.mtime_ns]


@dataclass(frozen=True, slots=True)
class Task:
    """A byte range of one file; ``end`` is -1 for a whole gzipped file."""

    index: int
    file: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start if self.end >= 0 else 0


def _not_found(where: str, message: str) -> FhirInputError:
    diag = Diagnostic("CPR-F002", message, location=SourceLocation(where))
    return FhirInputError(diag.render(), [diag])


def _is_ndjson(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def expand_inputs(paths: Sequence[str | Path]) -> list[InputFile]:
    """The NDJSON files named by the arguments: files as given, folders searched recursively.

    Raises:
        FhirInputError: a path does not exist, a folder holds no NDJSON file, or a file is
            given twice.
    """
    found: list[InputFile] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _is_ndjson(p))
            if not files:
                raise _not_found(str(raw), f"no {', '.join(SUFFIXES)} files in this directory")
        elif path.is_file():
            files = [path]
        else:
            raise _not_found(str(raw), "no such file or directory")
        for f in files:
            absolute = str(f.resolve())
            if absolute in seen:
                raise _not_found(str(f), "this file is given twice (its resources would be counted twice)")
            seen.add(absolute)
            st = f.stat()
            found.append(InputFile(str(f), absolute, st.st_size, st.st_mtime_ns))
    if not found:
        raise _not_found("<arguments>", "no input files")
    return found


def plan_tasks(files: Sequence[InputFile], task_bytes: int) -> list[Task]:
    """Cut the files into line-aligned byte ranges of about ``task_bytes``."""
    tasks: list[Task] = []
    for fi, f in enumerate(files):
        if f.gzipped:
            tasks.append(Task(len(tasks), fi, 0, -1))
            continue
        with open(f.path, "rb") as handle:
            start = 0
            while start < f.size or (start == 0 and f.size == 0):
                target = start + task_bytes
                if target >= f.size:
                    end = f.size
                else:
                    handle.seek(target)
                    handle.readline()  # finish the line the cut falls in
                    end = handle.tell()
                tasks.append(Task(len(tasks), fi, start, end))
                if end <= start:
                    break
                start = end
    return tasks


def read_lines(f: InputFile, task: Task) -> Iterator[bytes]:
    """The lines of one task, newline included (the last line of a file may lack it)."""
    if task.end < 0:
        with gzip.open(f.path, "rb") as gz:
            yield from gz
        return
    with open(f.path, "rb") as handle:
        handle.seek(task.start)
        yield from _bounded(handle, task.end - task.start)


def _bounded(handle: IO[bytes], remaining: int) -> Iterator[bytes]:
    while remaining > 0:
        line = handle.readline()
        if not line:
            return
        remaining -= len(line)
        yield line
