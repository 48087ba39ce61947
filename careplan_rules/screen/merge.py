"""The last stage of a local screen: the buckets' rows into the result files, and the counts.

Findings are streamed bucket by bucket (memory flat), so their order is: bucket, then
patient, then the engine's order of findings (critical first). The same export, rules and
``now`` give byte-identical result files, whatever the number of workers or interruptions.
Errors come in the order: grouping errors by file and line, deferred Provenances that could
not be placed, then evaluation errors by bucket and patient.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

from careplan_rules.screen.grouping import MAP, PROVENANCE, Layout, TaskStats, read_errors
from careplan_rules.screen.rows import ErrorRow, FindingRow
from careplan_rules.screen.summary import Tally
from careplan_rules.screen.workers import result_path
from careplan_rules.screen.writers import ERRORS, FINDINGS, write_error_rows, write_findings


def _bucket_rows(layout: Layout, bucket: int) -> Iterator[tuple[str, dict[str, object]]]:
    with open(result_path(layout.work, bucket), encoding="utf-8") as handle:
        for text in handle:
            data = json.loads(text)
            ((kind, row),) = data.items()
            yield kind, row


def _findings(layout: Layout) -> Iterator[FindingRow]:
    for k in range(layout.buckets):
        for kind, row in _bucket_rows(layout, k):
            if kind == "f":
                yield FindingRow.from_dict(row)


def _grouping_errors(layout: Layout, bases: list[int], units: list[int]) -> Iterator[ErrorRow]:
    for task in layout.tasks:
        yield from read_errors(layout.unit(MAP, task.index, ".errors"), bases[task.index])
    for i in units:
        yield from read_errors(layout.unit(PROVENANCE, i, ".errors"), bases[i])


def _evaluation_errors(layout: Layout) -> Iterator[ErrorRow]:
    for k in range(layout.buckets):
        for kind, row in _bucket_rows(layout, k):
            if kind == "e":
                yield ErrorRow.from_dict(row)


def merge_results(
    layout: Layout, stats: list[TaskStats], bases: list[int], units: list[int], out: Path, fmt: str
) -> tuple[Tally, dict[str, str]]:
    """Write ``findings.<fmt>`` and ``errors.ndjson`` into ``out`` and add up the counts.

    Returns:
        The screen's counts and the paths written.
    """
    tally = Tally()
    for st in stats:
        tally.lines.update(st.kinds)
    for k in range(layout.buckets):
        for kind, row in _bucket_rows(layout, k):
            if kind == "tally":
                tally.merge(Tally.from_json(row))
    findings = out / FINDINGS[fmt]
    errors = out / ERRORS
    write_findings(findings, fmt, _findings(layout))

    def counted(rows: Iterator[ErrorRow]) -> Iterator[ErrorRow]:
        # evaluation errors are in the buckets' tallies already; grouping errors are not
        for row in rows:
            tally.add_errors([row])
            yield row

    write_error_rows(
        errors, itertools.chain(counted(_grouping_errors(layout, bases, units)), _evaluation_errors(layout))
    )
    return tally, {"findings": str(findings), "errors": str(errors), "summary": str(out / "summary.json")}
