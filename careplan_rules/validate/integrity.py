"""Check 3, bundle integrity: references resolve, identities are unique, contained resources are used.

Resolution follows the engine (:mod:`careplan_rules.fhir.references`): contained ``#id``,
``urn:uuid:``/``urn:oid:`` fullUrls, absolute URLs and relative ``Type/id``. How bad an
unresolved reference is depends on what the engine does with it:

* a medication reference (``medicationReference``, R5 ``medication.reference``) is an error:
  the engine cannot tell what was taken and refuses to evaluate the patient (CPR-F030);
* a ``subject``/``patient`` pointing at a patient that is not in the input is a warning: the
  engine still groups by it, but nothing is known about the patient;
* anything else (Practitioner, Organization, Encounter…) is a warning: CDS Hooks prefetch and
  partial exports routinely leave these out.

Two scopes exist. A JSON document (Bundle, resource, array) is resolved on its own with the
engine's :class:`~careplan_rules.fhir.references.ReferenceIndex`. NDJSON files are one Bulk
Data export together (one file per resource type), streamed: only ``Type/id`` keys are kept,
and references not yet seen wait until the end of the run, reported once per target.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.fhir.raw import items
from careplan_rules.fhir.reader import Entry
from careplan_rules.fhir.references import ReferenceIndex
from careplan_rules.fhir.version import MED_TYPES
from careplan_rules.validate.bindings import check_target_type
from careplan_rules.validate.codes import diag
from careplan_rules.validate.walker import Digest, RefSite

_HISTORY = re.compile(r"/_history/[^/]+$")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# FHIR's uuid and oid data types (https://hl7.org/fhir/R4/datatypes.html#uuid)
_UUID = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_OID = re.compile(r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$")
MEDICATION_FIELDS = ("medicationReference", "medication")
_PARSED_MAX = 1 << 13
PATIENT_FIELDS = ("subject", "patient")


class Lookup(NamedTuple):
    state: str  # found | missing | pending
    target_type: str | None = None
    key: str | None = None  # what a pending reference waits for


def urn_problem(value: str) -> str | None:
    """Why a ``urn:uuid:``/``urn:oid:`` value is malformed, or None."""
    if value.startswith("urn:uuid:"):
        if _UUID.match(value):
            return None
        if _UUID.match(value.lower()):
            return f"{value!r} uses upper-case hex digits; FHIR uuids are lower case"
        return f"{value!r} is not a UUID (expected urn:uuid: and 8-4-4-4-12 hex digits)"
    if value.startswith("urn:oid:") and not _OID.match(value):
        return f"{value!r} is not an OID (expected urn:oid: and dot-separated numbers such as 2.16.840.1)"
    return None


def _plain(reference: str) -> str:
    return _HISTORY.sub("", reference) if "/_history/" in reference else reference


def rest_key(reference: str) -> tuple[str, str] | None:
    """``(type, id)`` of a RESTful reference, relative or absolute; None for other forms.

    Same forms as the engine's reference index (``[base/]Type/id[/_history/v]``), parsed by
    splitting rather than by its regular expression, as this runs for every reference.
    """
    head, slash, rid = _plain(reference).rpartition("/")
    if not slash or not _ID.fullmatch(rid):
        return None
    rtype = head.rpartition("/")[2]
    if len(rtype) < 2 or not (rtype.isascii() and rtype.isalpha() and rtype[0].isupper()):
        return None
    return rtype, rid


def _contained_ids(resource: dict[str, Any]) -> set[str]:
    return {c["id"] for c in items(resource.get("contained")) if isinstance(c, dict) and isinstance(c.get("id"), str)}


class DocumentResolver:
    """References of one JSON document, resolved with the engine's index."""

    def __init__(self, entries: tuple[Entry, ...]) -> None:
        self.index = ReferenceIndex(entries)

    def lookup(self, site: RefSite, entry: Entry) -> Lookup:
        r = entry.resource
        resolved = self.index.resolve(site.reference, container=r, from_entry=entry)
        if resolved is not None:
            rt = resolved.resource.get("resourceType")
            return Lookup("found", rt if isinstance(rt, str) else None)
        return Lookup("missing", self.index.target_type(site.reference, container=r, from_entry=entry))


class ExportResolver:
    """References across streamed NDJSON: only keys are kept, unknown ones wait for the end."""

    def __init__(self) -> None:
        # "Type/id" -> where it was first seen, packed as source index << 32 | line: one small
        # int per resource instead of a location object keeps the index to ~150 bytes a resource
        self.ids: dict[str, int] = {}
        self.sources: list[str] = []
        self.full_urls: dict[str, str] = {}  # only Bundles on a line have fullUrls
        self._parsed: dict[str, tuple[str | None, str | None]] = {}

    def claim(self, key: str, location: SourceLocation) -> str | None:
        """Record a resource identity; return where it was seen before (``file:line``), if it was."""
        packed = self.ids.get(key)
        if packed is not None:
            return f"{self.sources[packed >> 32]}:{packed & 0xFFFFFFFF}"
        if not self.sources or self.sources[-1] != location.file:
            self.sources.append(location.file)
        self.ids[key] = ((len(self.sources) - 1) << 32) | (location.line or 0)
        return None

    def add_full_url(self, full_url: str, resource_type: str) -> None:
        self.full_urls[_plain(full_url)] = resource_type

    def lookup(self, site: RefSite, entry: Entry) -> Lookup:
        ref = site.reference.get("reference")
        if not isinstance(ref, str):
            return Lookup("missing", _declared_type(site))
        if ref.startswith("#"):
            found = ref == "#" or ref[1:] in _contained_ids(entry.resource)
            return Lookup("found" if found else "missing", _declared_type(site))
        if self.full_urls:
            plain = _plain(ref)
            if plain in self.full_urls:
                return Lookup("found", self.full_urls[plain])
        parsed = self._parsed.get(ref)
        if parsed is None:
            # in Bulk Data order most references point forward (to Patient.ndjson, read late) and
            # the same few targets recur, so their parse is remembered (bounded)
            parsed = self._parse(ref)
            if len(self._parsed) >= _PARSED_MAX:
                self._parsed.clear()
            self._parsed[ref] = parsed
        rtype, key = parsed
        if key is None:
            return Lookup("missing", _declared_type(site))
        state = "found" if key in self.ids else "pending"
        return Lookup(state, rtype or _declared_type(site), key)

    @staticmethod
    def _parse(ref: str) -> tuple[str | None, str | None]:
        """``(type, key)`` of a reference: ``Type/id`` for RESTful ones, the urn for ``urn:`` ones."""
        rest = rest_key(ref)
        if rest is not None:
            return rest[0], f"{rest[0]}/{rest[1]}"
        if ref.startswith("urn:"):
            return None, _plain(ref)
        return None, None


def _declared_type(site: RefSite) -> str | None:
    declared = site.reference.get("type")
    return declared.rsplit("/", 1)[-1] if isinstance(declared, str) and declared else None


@dataclass(slots=True)
class _Pending:
    """A reference waiting for its target; the message is only built if it never comes."""

    path: str
    ref: str
    location: SourceLocation
    count: int = 1


_UNRESOLVED = {
    "CPR-V202": "is not in the input, so the engine cannot tell which medication this is",
    "CPR-V207": "is a patient that is not in the input",
    "CPR-V201": "does not resolve inside the input",
}


@dataclass(slots=True)
class IntegrityChecker:
    """Integrity checks of one unit (a JSON document, or all NDJSON of a run).

    Args:
        resolver: a :class:`DocumentResolver` or :class:`ExportResolver`.
        standalone: the unit is a single resource, not a Bundle: references to other
            resources cannot be in it, so only medication and contained references are checked.
        conditional_ok: a transaction/batch Bundle, where ``Type?search`` references are
            resolved by the server.
        history: a history Bundle, where one resource appears once per version.
    """

    resolver: DocumentResolver | ExportResolver
    standalone: bool = False
    conditional_ok: bool = False
    history: bool = False
    patients: set[str] = field(default_factory=set)
    _full_urls: dict[str, str] = field(default_factory=dict)
    _type_ids: dict[str, str] = field(default_factory=dict)
    _pending: dict[str, dict[str, _Pending]] = field(default_factory=dict)
    _ids: dict[str, int] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._ids = self.resolver.ids if isinstance(self.resolver, ExportResolver) else None

    # -- identities ---------------------------------------------------------------------------

    def register(self, entry: Entry, location: SourceLocation) -> list[Diagnostic]:
        """Record an entry's identity; report duplicates and malformed or mismatched fullUrls."""
        out: list[Diagnostic] = []
        r = entry.resource
        rt = entry.resource_type
        rid = r.get("id") if isinstance(r.get("id"), str) else None
        meta = r.get("meta")
        version = meta.get("versionId") if isinstance(meta, dict) and isinstance(meta.get("versionId"), str) else None
        suffix = f"/_history/{version}" if version else ""
        if rt == "Patient":
            self.patients.add(f"Patient/{rid}" if rid else entry.path)
        full_url = entry.full_url
        restful = None
        if full_url:
            fpath = entry.path.removesuffix(".resource") + ".fullUrl"
            problem = urn_problem(full_url)
            if problem:
                out.append(diag("CPR-V206", f"{fpath}: {problem}", location, fpath))
            restful = rest_key(full_url)
            if restful is not None and (restful[0] != rt or restful[1] != rid):
                has = f"{rt}/{rid}" if rid else f"a {rt} without id"
                out.append(
                    diag(
                        "CPR-V209",
                        f"{fpath}: {full_url!r} names {restful[0]}/{restful[1]} but the resource is {has}",
                        location,
                        fpath,
                    )
                )
            if not self.history:
                key = _plain(full_url) + suffix
                first = self._full_urls.get(key)
                if first is not None:
                    out.append(
                        diag("CPR-V203", f"{fpath}: fullUrl {full_url!r} is also used by {first}", location, fpath)
                    )
                else:
                    self._full_urls[key] = self._where(entry)
        export = self.resolver if isinstance(self.resolver, ExportResolver) else None
        if rid and (restful is None or export is not None) and not self.history:
            key = f"{rt}/{rid}{suffix}"
            first = self._first_seen(key, entry, location)
            if first is not None:
                ipath = f"{entry.path}.id"
                out.append(diag("CPR-V204", f"{ipath}: {rt}/{rid} is also at {first}", location, ipath))
        if export is not None:
            if rid:
                if suffix:  # references name the resource without its version
                    export.claim(f"{rt}/{rid}", location)
                self._pending.pop(f"{rt}/{rid}", None)
            if full_url:
                export.add_full_url(full_url, rt)
                self._pending.pop(_plain(full_url), None)
        return out

    def _first_seen(self, key: str, entry: Entry, location: SourceLocation) -> str | None:
        if isinstance(self.resolver, ExportResolver):
            return self.resolver.claim(key, location)
        first = self._type_ids.get(key)
        if first is None:
            self._type_ids[key] = self._where(entry)
        return first

    @staticmethod
    def _where(entry: Entry) -> str:
        return f"line {entry.line}" if entry.line is not None and not entry.path.startswith("Bundle") else entry.path

    # -- references -----------------------------------------------------------------------------

    def check(self, entry: Entry, digest: Digest, location: SourceLocation) -> list[Diagnostic]:
        """Check every reference of an entry, and its contained resources."""
        out: list[Diagnostic] = []
        for site in digest.refs:
            self._check_site(entry, site, location, out)
        if digest.contained:
            out.extend(self._check_contained(entry, digest, location))
        return out

    def _check_site(self, entry: Entry, site: RefSite, location: SourceLocation, out: list[Diagnostic]) -> None:
        ref = site.reference.get("reference")
        if self._ids is not None and type(ref) is str and ref in self._ids:
            # the common case in an export: a relative "Type/id" already seen
            target = ref[: ref.index("/")]
            if site.targets is not None and target not in site.targets:
                wrong = check_target_type(site, target, location)
                if wrong is not None:
                    out.append(wrong)
            return
        medication = site.top_level and site.contained_id is None and site.field in MEDICATION_FIELDS
        medication = medication and entry.resource_type in MED_TYPES
        if not isinstance(ref, str) or not ref:
            if medication:
                out.append(
                    diag(
                        "CPR-V202",
                        f"{site.path}: names no reference (only display or identifier), so the engine cannot "
                        "tell which medication this is",
                        location,
                        site.path,
                    )
                )
            return
        if ref.startswith("urn:"):
            problem = urn_problem(ref)
            if problem:
                out.append(diag("CPR-V206", f"{site.path}.reference: {problem}", location, f"{site.path}.reference"))
        if "?" in ref and not ref.startswith("#"):
            if not self.conditional_ok and not self.standalone:
                out.append(
                    diag(
                        "CPR-V201",
                        f"{site.path}: {ref!r} is a conditional (search) reference, which only a server resolves "
                        "in a transaction",
                        location,
                        site.path,
                    )
                )
            return
        found = self.resolver.lookup(site, entry)
        if site.targets is not None and found.target_type is not None and found.target_type not in site.targets:
            checked = check_target_type(site, found.target_type, location)
            if checked is not None:
                out.append(checked)
        if found.state == "found":
            return
        patient = site.top_level and site.field in PATIENT_FIELDS and found.target_type == "Patient"
        if patient:
            self.patients.add(found.key or ref)
        if ref.startswith("#"):
            out.append(
                diag(
                    "CPR-V208",
                    f"{site.path}: {ref!r} names no contained resource of this resource",
                    location,
                    site.path,
                )
            )
            return
        if medication:
            code = "CPR-V202"
        elif self.standalone:
            return
        else:
            code = "CPR-V207" if patient else "CPR-V201"
        if found.state == "pending" and found.key is not None:
            by_code = self._pending.get(found.key)
            if by_code is None:
                self._pending[found.key] = {code: _Pending(site.path, ref, location)}
            elif code in by_code:
                by_code[code].count += 1
            else:
                by_code[code] = _Pending(site.path, ref, location)
            return
        out.append(diag(code, f"{site.path}: {ref!r} {_UNRESOLVED[code]}", location, site.path))

    def _check_contained(self, entry: Entry, digest: Digest, location: SourceLocation) -> Iterator[Diagnostic]:
        if not digest.contained:
            return
        referenced = {r for s in digest.refs if isinstance(r := s.reference.get("reference"), str)}
        to_container = {s.contained_id for s in digest.refs if s.reference.get("reference") == "#"}
        for site in digest.contained:
            cid = site.resource.get("id")
            if not isinstance(cid, str) or not cid:
                yield diag(
                    "CPR-V205",
                    f"{site.path}: contained resource has no id, so nothing can reference it",
                    location,
                    site.path,
                )
                continue
            if f"#{cid}" in referenced or cid in to_container or _mentions(entry.resource, f"#{cid}"):
                continue
            yield diag(
                "CPR-V205",
                f"{site.path}: contained {site.resource.get('resourceType')} '#{cid}' is not referenced from "
                "the resource (invariant dom-3), so readers such as the engine never see it",
                location,
                site.path,
            )

    def finish(self) -> list[Diagnostic]:
        """Report references that waited for targets that never came (NDJSON exports)."""
        out = []
        for waiting in self._pending.values():
            for code, p in waiting.items():
                more = f" (and {p.count - 1} more reference(s) to it)" if p.count > 1 else ""
                out.append(diag(code, f"{p.path}: {p.ref!r} {_UNRESOLVED[code]}{more}", p.location, p.path))
        self._pending.clear()
        return out


def _mentions(node: Any, text: str) -> bool:
    """Whether any string below ``node`` equals ``text`` (canonical/uri references to contained)."""
    if isinstance(node, str):
        return node == text
    if isinstance(node, dict):
        return any(_mentions(v, text) for v in node.values())
    if isinstance(node, list):
        return any(_mentions(v, text) for v in node)
    return False
