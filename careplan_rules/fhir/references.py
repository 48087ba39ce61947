"""Resolve FHIR references inside one input.

Forms handled (https://hl7.org/fhir/R4/references.html#contained,
https://hl7.org/fhir/R4/bundle.html#references):

* contained ``#id``, looked up in the resource that holds the reference (``#`` alone is the
  container itself);
* ``urn:uuid:`` / ``urn:oid:`` fullUrls (Synthea and transaction bundles);
* absolute RESTful URLs, matched against entry fullUrls, ``/_history/n`` ignored;
* relative ``Type/id``, resolved against the referring entry's base URL when it has one,
  otherwise by type and id within the input.

Every resource also gets a canonical reference string (``Type/id``) that facts, findings and
outputs use; a resource without an id gets a stable synthetic one derived from its content,
so outputs stay deterministic.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from careplan_rules.fhir.raw import items
from careplan_rules.fhir.reader import Entry

_HISTORY = re.compile(r"/_history/[^/]+$")
_REST = re.compile(r"^(?P<base>.*/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})$")
_TYPE = re.compile(r"[A-Z][A-Za-z]+")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _without_history(url: str) -> str:
    """The URL without a trailing ``/_history/n`` (the regex only when there may be one)."""
    return _HISTORY.sub("", url) if "/_history/" in url else url


@dataclass(frozen=True, slots=True)
class Resolved:
    resource: dict[str, Any]
    ref: str  # canonical "Type/id" (or "#id" inside its container)
    contained: bool = False
    entry: Entry | None = None  # the input entry, for resources that are not contained


def canonical_ref(entry: Entry) -> str:
    rt = entry.resource_type
    rid = entry.resource.get("id")
    if isinstance(rid, str) and rid:
        return f"{rt}/{rid}"
    if entry.full_url:
        m = _REST.match(_without_history(entry.full_url))
        if m:
            return f"{m['type']}/{m['id']}"
        if entry.full_url.startswith("urn:uuid:"):
            return f"{rt}/{entry.full_url[len('urn:uuid:') :]}"
    digest = hashlib.sha1(json.dumps(entry.resource, sort_keys=True).encode()).hexdigest()[:16]
    return f"{rt}/anon-{digest}"


class ReferenceIndex:
    """Lookup of the resources of one input by fullUrl and by ``Type/id``."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = entries
        self.by_full_url: dict[str, Entry] = {}
        self.by_type_id: dict[str, list[Entry]] = {}
        self.refs: dict[int, str] = {}
        self._bases: dict[str, str | None] = {}
        self._heads: dict[str, str | None] = {}  # fullUrl without its id -> base, when RESTful
        self._resolved: dict[tuple[str, str | None], Resolved | None] = {}
        for entry in entries:
            ref = canonical_ref(entry)
            self.refs[id(entry.resource)] = ref
            if entry.full_url:
                self.by_full_url.setdefault(_without_history(entry.full_url), entry)
            self.by_type_id.setdefault(ref, []).append(entry)

    def _base_of(self, full_url: str) -> str | None:
        """The server base of a RESTful fullUrl (``http://x/fhir/``), remembered per fullUrl."""
        url = _without_history(full_url)
        base: str | None
        # What _REST.match(url)["base"] gives, without matching the whole URL: every entry of a
        # prefetch has its own fullUrl, so this runs for each, but the part before the id
        # ("http://x/fhir/Observation") is the same for all of a type.
        head, _, resource_id = url.rpartition("/")
        if head in self._heads:
            base = self._heads[head]
        else:
            prefix, slash, resource_type = head.rpartition("/")
            plain = slash and "\n" not in head and _TYPE.fullmatch(resource_type)
            base = self._heads[head] = prefix + "/" if plain else None
        if base is None or _ID.fullmatch(resource_id) is None:
            m = _REST.match(url)
            base = m["base"] if m else None
        self._bases[full_url] = base
        return base

    def ref_of(self, entry: Entry) -> str:
        return self.refs.get(id(entry.resource)) or canonical_ref(entry)

    def resolve(
        self, reference: Any, *, container: dict[str, Any] | None = None, from_entry: Entry | None = None
    ) -> Resolved | None:
        """Resolve a Reference (dict) or reference string; None when it is not in the input."""
        ref = reference.get("reference") if isinstance(reference, dict) else reference
        if not isinstance(ref, str) or not ref:
            return None
        if ref.startswith("#"):
            if container is None:
                return None
            if ref == "#":
                return Resolved(container, self.refs.get(id(container), "#"), False)
            for item in items(container.get("contained")):
                if isinstance(item, dict) and item.get("id") == ref[1:]:
                    return Resolved(item, ref, True)
            return None
        # every resource of a patient names the same Patient: resolve each (reference, base of
        # the referring entry) once; nothing else of the referring entry matters here
        entry_base = None
        if from_entry is not None and from_entry.full_url:
            url = from_entry.full_url
            entry_base = self._bases[url] if url in self._bases else self._base_of(url)
        try:
            return self._resolved[ref, entry_base]
        except KeyError:
            found = self._resolved[ref, entry_base] = self._resolve_url(ref, entry_base)
            return found

    def _resolve_url(self, ref: str, entry_base: str | None) -> Resolved | None:
        plain = _without_history(ref)
        hit = self.by_full_url.get(plain)
        if hit is not None:
            return Resolved(hit.resource, self.ref_of(hit), False, hit)
        m = _REST.match(plain)
        if m is None:
            return None
        key = f"{m['type']}/{m['id']}"
        candidates = self.by_type_id.get(key, [])
        if not candidates:
            return None
        base = m["base"]
        if base is None and entry_base:
            exact = self.by_full_url.get(entry_base + key)
            if exact is not None:
                return Resolved(exact.resource, self.ref_of(exact), False, exact)
        if base is not None:
            # an absolute reference resolves only to an entry from the same server (or one
            # without a RESTful fullUrl), never to a same-named resource of another server
            for c in candidates:
                cm = _REST.match(_without_history(c.full_url or ""))
                if cm is None or cm["base"] == base:
                    return Resolved(c.resource, self.ref_of(c), False, c)
            return None
        return Resolved(candidates[0].resource, self.ref_of(candidates[0]), False, candidates[0])

    def ref_string(
        self, reference: Any, *, container: dict[str, Any] | None = None, from_entry: Entry | None = None
    ) -> str | None:
        """The canonical form of a reference: resolved when possible, else normalised text."""
        resolved = self.resolve(reference, container=container, from_entry=from_entry)
        if resolved is not None and not resolved.contained:
            return resolved.ref
        ref = reference.get("reference") if isinstance(reference, dict) else reference
        if not isinstance(ref, str) or not ref:
            return None
        m = _REST.match(_without_history(ref))
        return f"{m['type']}/{m['id']}" if m else ref

    def target_type(
        self, reference: Any, *, container: dict[str, Any] | None = None, from_entry: Entry | None = None
    ) -> str | None:
        """The resource type a reference points to, from the data, the string or ``Reference.type``."""
        resolved = self.resolve(reference, container=container, from_entry=from_entry)
        if resolved is not None:
            rt = resolved.resource.get("resourceType")
            return rt if isinstance(rt, str) else None
        if isinstance(reference, dict):
            declared = reference.get("type")
            if isinstance(declared, str) and declared:
                return declared.rsplit("/", 1)[-1]
            ref = reference.get("reference")
        else:
            ref = reference
        if isinstance(ref, str):
            m = _REST.match(_without_history(ref))
            if m:
                return m["type"]
        return None
