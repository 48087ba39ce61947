"""Validate files, standard input or in-memory data, and hand every diagnostic to a sink.

JSON documents are read whole (a Bundle has to be, to resolve its references) and checked on
their own. NDJSON is streamed line by line through one :class:`ExportChecker` shared by every
NDJSON input of the run, because a Bulk Data export spreads one patient's data over one file
per resource type; references between them are resolved at :meth:`Validator.finish`.

Diagnostics go to the sink as soon as they are known rather than into a list, so a run over a
large export keeps memory flat and shows problems while it works.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

from careplan_rules.diagnostics import Diagnostic
from careplan_rules.errors import FhirInputError
from careplan_rules.fhir.reader import input_error, parse_data
from careplan_rules.fhir.stream import iter_ndjson
from careplan_rules.validate.unit import ExportChecker, Options, check_document

Sink = Callable[[Diagnostic], None]
Progress = Callable[[int], None]  # bytes done since the last call
NDJSON_SUFFIXES = (".ndjson", ".jsonl")
_PROGRESS_STEP = 1 << 20  # report NDJSON progress every MiB, not every line


@dataclass(slots=True)
class InputStats:
    """What one input held."""

    source: str
    kind: str = ""  # bundle | resource | array | ndjson | unreadable
    resources: int = 0
    bytes: int = 0
    fhir_version: str = ""


class Validator:
    """Validate inputs one after another; call :meth:`finish` once at the end.

    Args:
        options: what to check.
        sink: receives every diagnostic, in order.
        progress: receives bytes read, for a progress bar.
    """

    def __init__(self, options: Options, sink: Sink, progress: Progress | None = None) -> None:
        self.options = options
        self.sink = sink
        self.progress = progress
        self.inputs: list[InputStats] = []
        self._export: ExportChecker | None = None
        self._ndjson_stats: list[InputStats] = []

    # -- entry points ---------------------------------------------------------------------------

    def file(self, path: Path, name: str | None = None) -> InputStats:
        """Validate one file: ``*.ndjson``/``*.jsonl`` streamed, anything else as one JSON document.

        A ``.gz`` suffix (Bulk Data servers may compress their output) is read through gzip.
        """
        shown = name or str(path)
        compressed = path.suffix.lower() == ".gz"
        inner = Path(path.stem).suffix.lower() if compressed else path.suffix.lower()
        try:
            if inner in NDJSON_SUFFIXES:
                if not compressed:
                    with path.open("rb") as handle:
                        return self.ndjson(handle, shown)
                with gzip.open(path, "rb") as handle:
                    # progress counts the file's (compressed) bytes, so advance once at the end
                    stats = self.ndjson(handle, shown, progress=False)
                self._advance(path.stat().st_size)
                return stats
            raw = gzip.decompress(path.read_bytes()) if compressed else path.read_bytes()
        except IsADirectoryError:
            return self._unreadable(shown, input_error(shown, "CPR-F002", "is a directory"))
        except (OSError, EOFError, zlib.error) as exc:
            message = f"cannot read file: {getattr(exc, 'strerror', None) or exc}"
            return self._unreadable(shown, input_error(shown, "CPR-F002", message))
        return self.raw(raw, shown)

    def stream(self, handle: BinaryIO, name: str = "<stdin>") -> InputStats:
        """Validate a binary stream of unknown shape (standard input).

        Several JSON lines are NDJSON and are streamed; otherwise the stream is one JSON
        document (pretty-printed, or a whole Bundle on one line).
        """
        lines = iter(handle)
        head: list[bytes] = []
        for raw in lines:
            head.append(raw)
            if raw.strip():
                break
        if head and _complete_object(head[-1]):
            for raw in lines:
                head.append(raw)
                if raw.strip():
                    return self.ndjson(chain(head, lines), name)
            return self.raw(b"".join(head), name)
        return self.raw(b"".join(head) + b"".join(lines), name)

    def raw(self, raw: bytes, name: str) -> InputStats:
        """Validate the bytes of one JSON document (NDJSON without the suffix is recognised)."""
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            return self._unreadable(name, input_error(name, "CPR-F003", "input is not UTF-8 text", line), len(raw))
        if not text.strip():
            return self._unreadable(
                name, input_error(name, "CPR-F004", "input is empty; expected FHIR JSON or NDJSON"), len(raw)
            )
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":
                # several JSON values one after another: NDJSON without the suffix
                return self.ndjson(io.BytesIO(raw), name)
            err = input_error(name, "CPR-F005", f"malformed JSON: {exc.msg}", exc.lineno, exc.colno)
            return self._unreadable(name, err, len(raw))
        except RecursionError:
            return self._unreadable(name, input_error(name, "CPR-F005", "malformed JSON: nested too deeply"), len(raw))
        return self.data(data, name, len(raw))

    def data(self, data: Any, name: str = "<input>", size: int = 0) -> InputStats:
        """Validate already-parsed JSON: a Bundle, a resource or a list of resources."""
        try:
            doc = parse_data(data, name)
        except FhirInputError as exc:
            return self._unreadable(name, exc, size)
        diagnostics, release = check_document(doc, data, self.options)
        for d in diagnostics:
            self.sink(d)
        stats = InputStats(name, doc.kind, len(doc.entries), size, release)
        self.inputs.append(stats)
        self._advance(size)
        return stats

    def ndjson(self, lines: Iterable[bytes], name: str, *, progress: bool = True) -> InputStats:
        """Stream NDJSON lines; references to other lines and files are settled at :meth:`finish`.

        Args:
            lines: byte lines (an open binary file, a generator).
            name: the source name shown in locations.
            progress: report the bytes of the lines to the progress callback.
        """
        if self._export is None:
            self._export = ExportChecker(self.options)
        export = self._export
        stats = InputStats(name, "ndjson")
        self.inputs.append(stats)
        self._ndjson_stats.append(stats)
        unreported = 0
        for line in iter_ndjson(lines, name):
            stats.bytes += line.size
            unreported += line.size
            if line.error is not None:
                self.sink(line.error)
            else:
                stats.resources += len(line.entries)
                for d in export.line(name, line.number, line.entries, line.data):
                    self.sink(d)
            if progress and unreported >= _PROGRESS_STEP:
                self._advance(unreported)
                unreported = 0
        if progress:
            self._advance(unreported)
        if stats.resources == 0 and not stats.bytes:
            self.sink(input_error(name, "CPR-F004", "input is empty; expected FHIR JSON or NDJSON").diagnostics[0])
            stats.kind = "unreadable"
        return stats

    def finish(self) -> None:
        """Report what only the end of the run can tell (NDJSON references, release mix)."""
        if self._export is not None:
            for d in self._export.finish():
                self.sink(d)
            for stats in self._ndjson_stats:
                stats.fhir_version = self._export.tracker.current
            self._export = None

    # -- helpers ----------------------------------------------------------------------------------

    def _unreadable(self, name: str, exc: FhirInputError, size: int = 0) -> InputStats:
        for d in exc.diagnostics:
            self.sink(d)
        stats = InputStats(name, "unreadable", 0, size)
        self.inputs.append(stats)
        self._advance(size)
        return stats

    def _advance(self, size: int) -> None:
        if self.progress is not None and size:
            self.progress(size)


def _complete_object(line: bytes) -> bool:
    """Whether a line holds one whole JSON object (the first line of NDJSON does)."""
    text = line.strip()
    if not text.startswith((b"{", b"\xef\xbb\xbf{")) or not text.endswith(b"}"):
        return False
    try:
        return isinstance(json.loads(text.decode("utf-8-sig")), dict)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False


def validate(data: Any, options: Options, name: str = "<input>") -> list[Diagnostic]:
    """Validate one in-memory input (a Bundle, resource or list of resources) and return the diagnostics.

    Args:
        data: parsed FHIR JSON.
        options: what to check.
        name: the source name shown in locations.

    Returns:
        Every diagnostic, release problems first, then in document order.
    """
    out: list[Diagnostic] = []
    validator = Validator(options, out.append)
    validator.data(data, name)
    validator.finish()
    return out
