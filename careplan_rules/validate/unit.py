"""The checks of one unit, in order: a JSON document on its own, or all NDJSON of a run together.

Per resource: structure (check 1), then — with the release the structure check settled on —
one walk feeding bindings (2), integrity (3) and readiness (4). Per unit: release problems,
several patients, and for NDJSON the references that never resolved. A bundle's own elements
(``Bundle.type``, ``entry.fullUrl``, ``entry.request``) are checked on a copy without the
entry resources, which are checked one by one so that every path names its entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.fhir.reader import Entry, FhirDocument
from careplan_rules.validate.bindings import check_bindings
from careplan_rules.validate.integrity import DocumentResolver, ExportResolver, IntegrityChecker
from careplan_rules.validate.readiness import check_patients, check_readiness
from careplan_rules.validate.releases import ReleaseTracker
from careplan_rules.validate.structure import check_structure
from careplan_rules.validate.walker import walk

CHECKS = frozenset({"bindings", "integrity", "readiness"})  # structure always runs


@dataclass(frozen=True, slots=True)
class Options:
    """What to check and how.

    Args:
        now: dates of past events after this instant are reported (CPR-V306).
        fhir_version: ``auto``, ``R4``, ``R4B`` or ``R5``.
        checks: which of the checks beyond structure to run (default: all).
    """

    now: datetime
    fhir_version: str = "auto"
    checks: frozenset[str] = CHECKS


def _stripped_shell(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return bundle
    return {
        **bundle,
        "entry": [{k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e for e in entries],
    }


def bundle_shells(data: Any, path: str = "Bundle") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Bundle in a parsed document (nested ones too), without its entry resources."""
    if isinstance(data, list):  # an array of resources, as the reader accepts
        for i, item in enumerate(data):
            yield from bundle_shells(item, f"[{i}]")
        return
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        return
    yield path, _stripped_shell(data)
    entries = data.get("entry")
    if isinstance(entries, list):
        for i, e in enumerate(entries):
            if isinstance(e, dict):
                yield from bundle_shells(e.get("resource"), f"{path}.entry[{i}].resource")


@dataclass(slots=True)
class _Checks:
    """The per-resource pipeline shared by both kinds of unit."""

    options: Options
    tracker: ReleaseTracker
    integrity: IntegrityChecker

    def resource(self, entry: Entry, location: SourceLocation) -> list[Diagnostic]:
        release = self.tracker.release_for(entry, location)
        result = check_structure(entry.resource, release, entry.path, location)
        if result.hint is not None:
            self.tracker.on_hint(result.hint, entry.path, location)
        out = list(result.diagnostics)
        checks = self.options.checks
        if not checks or not result.release:
            return out
        digest = walk(entry.resource, result.release, entry.path)
        if "bindings" in checks:
            bound = check_bindings(digest, location)
            if bound:
                structural = {d.path for d in out}
                out.extend(d for d in bound if d.path not in structural)
        if "integrity" in checks:
            out.extend(self.integrity.check(entry, digest, location))
        if "readiness" in checks:
            out.extend(check_readiness(entry, digest, self.options.now, location))
        return out

    def shell(self, shell: dict[str, Any], path: str, location: SourceLocation) -> list[Diagnostic]:
        release = self.tracker.current
        result = check_structure(shell, release, path, location, try_others=False)
        out = list(result.diagnostics)
        if "bindings" in self.options.checks and result.release:
            structural = {d.path for d in out}
            out.extend(d for d in check_bindings(walk(shell, release, path), location) if d.path not in structural)
        return out


def check_document(doc: FhirDocument, data: Any, options: Options) -> tuple[list[Diagnostic], str]:
    """All checks of one JSON document (a Bundle, a resource or an array of resources).

    Args:
        doc: the document as the reader split it into entries.
        data: the parsed JSON it came from (for the Bundle's own elements).
        options: what to check.

    Returns:
        The diagnostics (release problems first, then in document order) and the FHIR release
        the document was read as.
    """
    location = SourceLocation(doc.source)
    tracker = ReleaseTracker(options.fhir_version)
    tracker.prime(doc.entries, location)
    btype = doc.bundle_type or ""
    integrity = IntegrityChecker(
        DocumentResolver(doc.entries),
        standalone=doc.kind == "resource",
        conditional_ok=btype in ("transaction", "batch"),
        history=btype == "history",
    )
    checks = _Checks(options, tracker, integrity)
    body: list[Diagnostic] = []
    for path, shell in bundle_shells(data):
        body.extend(checks.shell(shell, path, location))
    if "integrity" in options.checks:
        for entry in doc.entries:
            body.extend(integrity.register(entry, location))
    for entry in doc.entries:
        body.extend(checks.resource(entry, location))
    head = tracker.finish()
    if "readiness" in options.checks and doc.kind in ("bundle", "array"):
        many = check_patients(integrity.patients, "Bundle" if doc.kind == "bundle" else "[]", location)
        if many is not None:
            body.append(many)
    return head + body, tracker.current


@dataclass(slots=True)
class ExportChecker:
    """All checks of NDJSON streamed line by line; references wait for the end of the run."""

    options: Options
    tracker: ReleaseTracker = field(init=False)
    integrity: IntegrityChecker = field(init=False)
    _checks: _Checks = field(init=False)

    def __post_init__(self) -> None:
        self.tracker = ReleaseTracker(self.options.fhir_version)
        self.integrity = IntegrityChecker(ExportResolver())
        self._checks = _Checks(self.options, self.tracker, self.integrity)

    def line(self, source: str, number: int, entries: tuple[Entry, ...], data: Any) -> list[Diagnostic]:
        """Check the resources of one NDJSON line (a Bundle on a line brings several)."""
        location = SourceLocation(source, number)
        out: list[Diagnostic] = []
        for path, shell in bundle_shells(data):
            out.extend(self._checks.shell(shell, path, location))
        if "integrity" in self.options.checks:
            for entry in entries:
                out.extend(self.integrity.register(entry, location))
        for entry in entries:
            out.extend(self._checks.resource(entry, location))
        return out

    def finish(self) -> list[Diagnostic]:
        """Release problems and references that never resolved."""
        return self.tracker.finish() + self.integrity.finish()
