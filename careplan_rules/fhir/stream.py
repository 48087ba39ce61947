"""Stream NDJSON one line at a time, so a multi-gigabyte Bulk Data export never sits in memory.

:func:`careplan_rules.fhir.reader.read_path` reads a whole file and stops at the first bad line,
which suits evaluation (one record at a time) but not validation of an export: there every
line is reported on its own and reading goes on after a malformed one. Each line becomes an
:class:`NdjsonLine` holding either the line's resources (a Bundle on one line is flattened,
as the reader does) or the diagnostic that explains why the line could not be read, with the
same CPR-F codes and line/column positions the reader uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.errors import FhirInputError
from careplan_rules.fhir.reader import Entry, parse_data

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class NdjsonLine:
    """One non-blank NDJSON line: its resources, or why it could not be read."""

    number: int  # 1-based line number in the file
    size: int  # bytes of the line, newline included (for progress)
    entries: tuple[Entry, ...] = ()
    error: Diagnostic | None = None
    data: dict[str, Any] | None = None  # the parsed JSON object (a Bundle's shell is checked too)


def _error(source: str, code: str, message: str, line: int, col: int | None = None) -> Diagnostic:
    return Diagnostic(code, message, location=SourceLocation(source, line, col))


def parse_line(raw: bytes, number: int, source: str) -> NdjsonLine:
    """Parse one NDJSON line (bytes, newline optional) into its resources or an input error.

    Args:
        raw: the bytes of the line.
        number: its 1-based line number, for positions in messages.
        source: the file name shown in messages.

    Returns:
        The parsed line; ``error`` is set (and ``entries`` empty) when it is not one FHIR
        resource as JSON.
    """
    size = len(raw)
    raw = raw.rstrip(b"\r\n")  # so a column is a column of the line, not past its end
    if number == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return NdjsonLine(
            number, size, error=_error(source, "CPR-F003", "line is not UTF-8 text", number, exc.start + 1)
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return NdjsonLine(
            number, size, error=_error(source, "CPR-F005", f"malformed JSON: {exc.msg}", number, exc.colno)
        )
    except RecursionError:
        return NdjsonLine(number, size, error=_error(source, "CPR-F005", "malformed JSON: nested too deeply", number))
    if not isinstance(data, dict):
        return NdjsonLine(
            number,
            size,
            error=_error(source, "CPR-F006", "each NDJSON line must be one FHIR resource (a JSON object)", number),
        )
    try:
        doc = parse_data(data, source)
    except FhirInputError as exc:
        first = exc.diagnostics[0]
        # the reader knows nothing of lines here; put the problem on this one
        return NdjsonLine(number, size, error=_error(source, first.code, first.message, number))
    if doc.kind == "resource":
        entry = doc.entries[0]
        entries: tuple[Entry, ...] = (Entry(entry.resource, entry.resource_type, None, number),)
    else:
        entries = tuple(Entry(e.resource, e.path, e.full_url, number) for e in doc.entries)
    return NdjsonLine(number, size, entries, data=data)


def iter_ndjson(lines: Iterable[bytes], source: str) -> Iterator[NdjsonLine]:
    """Parse NDJSON lazily from an iterable of byte lines (an open binary file, ``sys.stdin.buffer``).

    Blank lines are skipped (their bytes still count in ``size`` of the next line so progress
    adds up to the file size). Only one line is held in memory at a time.

    Args:
        lines: byte lines, e.g. ``open(path, "rb")``.
        source: the file name shown in messages.

    Yields:
        One :class:`NdjsonLine` per non-blank line, in order.
    """
    pending = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip() or (number == 1 and raw.strip() == _BOM):
            pending += len(raw)
            continue
        line = parse_line(raw, number, source)
        if pending:
            line = NdjsonLine(line.number, line.size + pending, line.entries, line.error, line.data)
            pending = 0
        yield line
