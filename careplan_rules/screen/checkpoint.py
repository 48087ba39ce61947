"""The commit protocol that makes a screen resumable without losing or repeating a finding.

Everything a run produces goes to ``RESULTS/.screen/`` first. Each unit of work (a grouping
task, a bucket of patients) writes its output to a temporary file, flushes it to disk, and
renames it to its final name; a rename is atomic, so a unit's output either exists whole or
not at all, and its existence is the durable "done" marker. A rerun of the same command skips
every unit whose output exists and redoes the others from scratch; a unit that was half
written when the run stopped left only a temporary file, which is deleted. Since every
patient is in exactly one bucket and every bucket's rows are in exactly one committed file,
the final merge writes each finding exactly once.

The manifest (``manifest.json``, also replaced atomically) records what the run is — the
input files with size and mtime, ``now``, a hash of the rule files and parameters — so a
rerun with different inputs or rules is refused instead of mixing two screens, and the stages
that are not per-unit (building the shared index, placing deferred Provenances) are marked
done only once they are complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

MANIFEST = "manifest.json"
TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", *, sync_dir: bool = True) -> Iterator[IO[Any]]:
    """Write ``path`` all or nothing: a temporary file, fsync, rename, fsync of the folder.

    Args:
        sync_dir: fsync the folder after the rename; a unit that writes several files may
            skip it for all but its last file (its commit marker): one folder fsync then
            makes every rename before it durable.
    """
    tmp = path.with_name(path.name + TMP_SUFFIX)
    text = "b" not in mode
    handle: IO[Any] = open(tmp, mode, encoding="utf-8" if text else None, newline="" if text else None)  # noqa: SIM115
    try:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(tmp, path)
        if sync_dir:
            fsync_dir(path.parent)
    except BaseException:
        handle.close()
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    with atomic_file(path, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def remove_partial(folder: Path) -> None:
    """Delete what a stopped run left half written (never a committed file)."""
    if folder.is_dir():
        for tmp in folder.rglob("*" + TMP_SUFFIX):
            tmp.unlink(missing_ok=True)


def digest(*parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def hash_tree(roots: list[Path]) -> str:
    """A hash of every file under the rule pack folders (content and relative path)."""
    h = hashlib.sha256()
    for root in roots:
        for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:32]
