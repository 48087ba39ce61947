"""Write finding rows as NDJSON, CSV or Parquet, and error rows as NDJSON.

Writers stream (memory does not grow with the number of findings) and are all-or-nothing:
the file appears under its final name only once complete (checkpoint.atomic_file), so a
results folder never shows a half-written ``findings`` file. Parquet needs pyarrow
(``careplan-rules[parquet]``); asking for it without pyarrow is a one-line error before any
work starts (:func:`check_format`).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from careplan_rules.screen.checkpoint import TMP_SUFFIX, atomic_file, fsync_dir
from careplan_rules.screen.errors import ScreenError
from careplan_rules.screen.rows import FINDING_COLUMNS, LIST_COLUMNS, ErrorRow, FindingRow

FORMATS = ("ndjson", "csv", "parquet")
FINDINGS = {"ndjson": "findings.ndjson", "csv": "findings.csv", "parquet": "findings.parquet"}
ERRORS = "errors.ndjson"
BATCH = 10_000


def check_format(fmt: str) -> None:
    """Fail early and clearly when a format cannot be written here.

    Raises:
        ScreenError: unknown format, or Parquet without pyarrow.
    """
    if fmt not in FORMATS:
        raise ScreenError(f"unknown result format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ScreenError(
            "--format parquet needs pyarrow, which is not installed: pip install 'careplan-rules[parquet]' "
            "(or use --format ndjson or csv)"
        )


def write_findings(path: Path, fmt: str, rows: Iterable[FindingRow]) -> int:
    """Write every row to ``path`` in ``fmt``; returns the number of rows."""
    if fmt == "parquet":
        return _write_parquet(path, rows)
    count = 0
    with atomic_file(path, "w") as handle:
        if fmt == "csv":
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(FINDING_COLUMNS)
            for row in rows:
                writer.writerow([" ".join(v) if c in LIST_COLUMNS else v for c, v in row.to_dict().items()])
                count += 1
        else:
            for row in rows:
                handle.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
                count += 1
    return count


def write_error_rows(path: Path, rows: Iterable[ErrorRow]) -> int:
    count = 0
    with atomic_file(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
            count += 1
    return count


def parquet_schema() -> Any:
    import pyarrow as pa

    return pa.schema([(c, pa.list_(pa.string())) if c in LIST_COLUMNS else (c, pa.string()) for c in FINDING_COLUMNS])


def _write_parquet(path: Path, rows: Iterable[FindingRow]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    tmp = path.with_name(path.name + TMP_SUFFIX)
    count = 0
    with contextlib.ExitStack() as stack:
        writer = pq.ParquetWriter(str(tmp), schema)
        stack.callback(writer.close)
        for batch in _batches(rows):
            writer.write_table(pa.Table.from_pylist([r.to_dict() for r in batch], schema=schema))
            count += len(batch)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return count


def _batches(rows: Iterable[FindingRow]) -> Iterator[list[FindingRow]]:
    batch: list[FindingRow] = []
    written = False
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch, written = [], True
    if batch or not written:
        yield batch  # a screen without findings still gets a (typed, empty) table
