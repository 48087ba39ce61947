"""Read FHIR input: a Bundle of any type, one resource, a JSON array of resources, or NDJSON.

Inputs come from files, standard input or memory (dict, list, JSON text, bytes). Malformed
JSON is reported with the parser's line and column; a document that is JSON but not FHIR
(no ``resourceType``) is reported with its path. Nested Bundles (a searchset inside a
collection, as CDS Hooks prefetch produces) are flattened so every resource is seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.errors import FhirInputError

MAX_BUNDLE_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Entry:
    """One resource of an input and where it sits in it."""

    resource: dict[str, Any]
    path: str  # FHIR path of the resource: "Bundle.entry[3].resource", "MedicationStatement"
    full_url: str | None = None
    line: int | None = None  # NDJSON line
    # read once: every step of the pipeline asks (about five times per resource)
    resource_type: str = field(init=False, repr=False, compare=False)

    # Written out: every resource of every input makes one, and the generated __init__ of a
    # frozen dataclass (object.__setattr__ by name for each field, then __post_init__) took
    # twice as long.
    def __init__(
        self, resource: dict[str, Any], path: str, full_url: str | None = None, line: int | None = None
    ) -> None:
        rt = resource.get("resourceType")
        _set_resource(self, resource)
        _set_path(self, path)
        _set_full_url(self, full_url)
        _set_line(self, line)
        _set_resource_type(self, rt if isinstance(rt, str) else "")


# the slots' own setters: what object.__setattr__ ends up calling, without its lookup by name
_set_resource, _set_path, _set_full_url, _set_line, _set_resource_type = (
    Entry.__dict__[name].__set__ for name in ("resource", "path", "full_url", "line", "resource_type")
)


@dataclass(frozen=True, slots=True)
class FhirDocument:
    source: str
    kind: str  # bundle | resource | array | ndjson
    entries: tuple[Entry, ...]
    bundle_type: str | None = None


def input_error(
    source: str, code: str, message: str, line: int | None = None, col: int | None = None
) -> FhirInputError:
    diag = Diagnostic(code, message, location=SourceLocation(source, line, col))
    return FhirInputError(diag.render(), [diag])


def read_path(path: str | Path, display: str | None = None) -> FhirDocument:
    """Read one file.

    Raises:
        FhirInputError: unreadable file, malformed JSON/NDJSON, or not FHIR.
    """
    name = display or str(path)
    p = Path(path)
    try:
        raw = p.read_bytes()
    except IsADirectoryError:
        raise input_error(name, "CPR-F002", "is a directory; give files, or a directory to the CLI") from None
    except OSError as exc:
        raise input_error(name, "CPR-F002", f"cannot read file: {exc.strerror or exc}") from None
    return parse_bytes(raw, name, ndjson=p.suffix.lower() in (".ndjson", ".jsonl"))


def parse_bytes(raw: bytes, source: str, *, ndjson: bool | None = None) -> FhirDocument:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise input_error(source, "CPR-F003", "input is not UTF-8 text", line) from None
    return parse_text(text, source, ndjson=ndjson)


def parse_text(text: str, source: str, *, ndjson: bool | None = None) -> FhirDocument:
    if not text.strip():
        raise input_error(source, "CPR-F004", "input is empty; expected FHIR JSON or NDJSON")
    if ndjson:
        return _parse_ndjson(text, source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if ndjson is None and exc.msg == "Extra data":
            # several JSON values one after another: NDJSON without the .ndjson suffix
            try:
                return _parse_ndjson(text, source)
            except FhirInputError:
                pass
        raise input_error(source, "CPR-F005", f"malformed JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise input_error(source, "CPR-F005", "malformed JSON: nested too deeply") from None
    return parse_data(data, source)


def _parse_ndjson(text: str, source: str) -> FhirDocument:
    entries: list[Entry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise input_error(source, "CPR-F005", f"malformed JSON: {exc.msg}", number, exc.colno) from None
        if not isinstance(data, dict):
            raise input_error(source, "CPR-F006", "each NDJSON line must be one FHIR resource (a JSON object)", number)
        rt = _resource_type(data, source, f"line {number}", number)
        if rt == "Bundle":
            entries.extend(_bundle_entries(data, source, "Bundle", number, 0))
        else:
            entries.append(Entry(data, rt, None, number))
    if not entries:
        raise input_error(source, "CPR-F004", "input is empty; expected FHIR JSON or NDJSON")
    return FhirDocument(source, "ndjson", tuple(entries))


def parse_data(data: Any, source: str) -> FhirDocument:
    """Turn already-parsed JSON (dict or list) into a document."""
    if isinstance(data, list):
        entries: list[Entry] = []
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise input_error(source, "CPR-F006", f"item [{i}] of the array is not a FHIR resource")
            rt = _resource_type(item, source, f"[{i}]")
            if rt == "Bundle":
                entries.extend(_bundle_entries(item, source, f"[{i}]", None, 0))
            else:
                entries.append(Entry(item, f"[{i}]"))
        return FhirDocument(source, "array", tuple(entries))
    if not isinstance(data, dict):
        raise input_error(source, "CPR-F006", f"expected a FHIR resource (a JSON object), got {type(data).__name__}")
    rt = _resource_type(data, source, "document")
    if rt == "Bundle":
        btype = data.get("type") if isinstance(data.get("type"), str) else None
        return FhirDocument(source, "bundle", tuple(_bundle_entries(data, source, "Bundle", None, 0)), btype)
    return FhirDocument(source, "resource", (Entry(data, rt),))


def _resource_type(data: dict[str, Any], source: str, where: str, line: int | None = None) -> str:
    rt = data.get("resourceType")
    if not isinstance(rt, str) or not rt:
        raise input_error(source, "CPR-F006", f"{where} is not a FHIR resource: it has no 'resourceType'", line)
    return rt


def _bundle_entries(bundle: dict[str, Any], source: str, path: str, line: int | None, depth: int) -> Iterator[Entry]:
    if depth > MAX_BUNDLE_DEPTH:
        raise input_error(source, "CPR-F006", f"{path}: Bundles nested more than {MAX_BUNDLE_DEPTH} deep", line)
    raw_entries = bundle.get("entry", [])
    if raw_entries is None:
        return
    if not isinstance(raw_entries, list):
        raise input_error(source, "CPR-F007", f"{path}.entry must be a list", line)
    for i, entry in enumerate(raw_entries):
        epath = f"{path}.entry[{i}]"
        if not isinstance(entry, dict):
            raise input_error(source, "CPR-F007", f"{epath} must be an object", line)
        full_url = entry.get("fullUrl")
        yield from _entries_of(
            entry.get("resource"), full_url if isinstance(full_url, str) else None, source, epath, line, depth
        )


def _entries_of(
    resource: Any, full_url: str | None, source: str, epath: str, line: int | None, depth: int
) -> Iterator[Entry]:
    """The entries of one Bundle entry's resource (several when it is a Bundle itself)."""
    if resource is None:
        # transaction DELETEs and search "outcome"-less entries carry no resource
        return
    if not isinstance(resource, dict):
        raise input_error(source, "CPR-F007", f"{epath}.resource must be a FHIR resource object", line)
    rt = _resource_type(resource, source, f"{epath}.resource", line)
    if rt == "Bundle":
        yield from _bundle_entries(resource, source, f"{epath}.resource", line, depth + 1)
    else:
        yield Entry(resource, f"{epath}.resource", full_url, line)


def parse_collection(resources: Iterable[tuple[Any, str | None]], source: str) -> FhirDocument:
    """What :func:`parse_data` makes of a collection Bundle of these (resource, fullUrl) pairs,
    without building the Bundle first (the service's gathered data, on every call)."""
    entries: list[Entry] = []
    for i, (resource, full_url) in enumerate(resources):
        rt = resource.get("resourceType") if type(resource) is dict else None
        if type(rt) is str and rt and rt != "Bundle":  # the usual entry, without a generator per entry
            entries.append(Entry(resource, f"Bundle.entry[{i}].resource", full_url or None))
        else:
            entries.extend(_entries_of(resource, full_url or None, source, f"Bundle.entry[{i}]", None, 0))
    return FhirDocument(source, "bundle", tuple(entries), "collection")


def read_any(data: Any, source: str = "<input>") -> FhirDocument:
    """Accept what :meth:`Engine.evaluate` accepts: dict, list, JSON text, bytes, or a path."""
    if isinstance(data, FhirDocument):
        return data
    if isinstance(data, dict | list):
        return parse_data(data, source)
    if isinstance(data, bytes | bytearray):
        return parse_bytes(bytes(data), source)
    if isinstance(data, Path):
        return read_path(data, source if source != "<input>" else str(data))
    if isinstance(data, str):
        stripped = data.lstrip()
        if stripped.startswith(("{", "[")):
            return parse_text(data, source)
        if "\n" not in data and len(data) < 4096 and Path(data).is_file():
            return read_path(data, source if source != "<input>" else data)
        if "\n" not in data and len(data) < 4096 and not stripped.startswith(("{", "[")):
            raise input_error(data, "CPR-F002", "no such file, and the text is not FHIR JSON")
        return parse_text(data, source)
    raise input_error(source, "CPR-F006", f"cannot read FHIR input from a {type(data).__name__}")


def read_many(paths: Sequence[str | Path]) -> Iterator[FhirDocument]:
    for path in paths:
        yield read_path(path, str(path))
