"""Compiled value sets and how a medication, condition or observation matches one.

Every match records *how* it matched, for the evidence trail a reviewer reads:

* ``code``            a coding's (system, code) is a concept of the value set;
* ``ingredient-code`` a product coding maps to an ingredient concept through the pack's
                      ingredient map, or a referenced Medication lists the ingredient;
* ``ingredient-name`` an ingredient concept's name (or brand name) is a word of the text or
                      a coding's display ("Sertraline 100MG", "Clonazepam [Klonopin]");
* ``text``            a free-text synonym of the value set ("kratom powder").

A product with two ingredients in the value set yields two matches (two drugs for counting).

Exclusions are scoped like a FHIR ValueSet's ``compose.exclude``: a value set's excluded codes
and exclusion phrases remove what *it* contributes (its own concepts, synonyms and includes),
never what a sibling include contributes to a value set that includes it. A union set must
not lose kratom leaf because the 7-OH product set it includes vetoes laboratory test names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from careplan_rules.facts import CodingFact, ConceptMatch, MedicationConcept, TextField
from careplan_rules.model.valueset import ValueSetModel
from careplan_rules.terminology.ingredient_map import IngredientMap
from careplan_rules.terminology.systems import canonical_system
from careplan_rules.terminology.text import TextMatcher, compile_alternation, normalize_text

MATCH_RANK = {"code": 0, "ingredient-code": 1, "ingredient-name": 2, "text": 3}


@dataclass(frozen=True, slots=True)
class ConceptEntry:
    system: str
    code: str | None  # None: a name-only concept whose code is not verified yet
    display: str | None
    names: tuple[str, ...]
    ingredient_level: bool
    unverified: bool
    valueset: str  # the value set that defines it (may be an included one)
    prefix: bool = False  # hierarchical code family (ICD-10-CM F32 → F32.A, F32.9)
    scope: tuple[str, ...] = ()  # value sets whose exclusions apply: the definer and its includers

    @property
    def key(self) -> str:
        return f"{self.system}|{self.code}" if self.code else f"{self.system}|name:{self.display}"

    @property
    def name(self) -> str:
        return self.display or self.code or "?"


@dataclass(frozen=True, slots=True)
class Rejection:
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class Exclusions:
    """The excluded codes and exclusion phrases that apply to one scope."""

    codes: frozenset[tuple[str, str]] = frozenset()
    text: re.Pattern[str] | None = None

    def veto(self, norm: str) -> str | None:
        if self.text is None:
            return None
        m = self.text.search(norm)
        return m.group(0) if m else None


NO_EXCLUSIONS = Exclusions()


class CompiledValueSet:
    """A value set expanded (includes resolved) and indexed for matching."""

    def __init__(
        self,
        model: ValueSetModel,
        entries: Sequence[ConceptEntry],
        text_matchers: Sequence[tuple[TextMatcher, str, tuple[str, ...]]],
        exclusions: Mapping[str, tuple[Sequence[tuple[str, str]], Sequence[str]]],
        ingredient_map: IngredientMap,
    ) -> None:
        self.id = model.id
        self.version = model.version
        self.title = model.title
        self.entries = tuple(entries)
        self.codes: dict[tuple[str, str], ConceptEntry] = {}
        self.ingredient_codes: dict[str, ConceptEntry] = {}
        self.prefixes: dict[str, list[tuple[str, ConceptEntry]]] = {}
        names: dict[str, ConceptEntry] = {}
        for entry in self.entries:
            if entry.code is not None and entry.prefix:
                self.prefixes.setdefault(entry.system, []).append((_undotted(entry.code), entry))
            if entry.code is not None:
                self.codes.setdefault((entry.system, entry.code), entry)
                if entry.ingredient_level:
                    self.ingredient_codes.setdefault(entry.code, entry)
            if entry.ingredient_level:
                for name in (entry.display, *entry.names):
                    if name and normalize_text(name):
                        names.setdefault(normalize_text(name), entry)
        self.names = names
        self.name_pattern = compile_alternation(names)
        self.text_matchers = tuple((matcher, label) for matcher, label, _ in text_matchers)
        self._scopes: dict[tuple[str, ...], Exclusions] = {}
        self._exclusions = exclusions
        self._matcher_scopes = tuple(self.scoped(scope) for _, _, scope in text_matchers)
        # every excluded code, whatever its scope (reporting and tests)
        self.excluded = frozenset((canonical_system(s) or s, c) for codes, _ in exclusions.values() for s, c in codes)
        self.ingredient_map = ingredient_map

    def __repr__(self) -> str:
        return f"<ValueSet {self.id}|{self.version}: {len(self.entries)} concepts>"

    def scoped(self, scope: tuple[str, ...]) -> Exclusions:
        """The exclusions of the value sets in ``scope`` (cached: scopes are few)."""
        found = self._scopes.get(scope)
        if found is None:
            codes = [(canonical_system(s) or s, c) for vs in scope for s, c in self._exclusions.get(vs, ((), ()))[0]]
            phrases = [t for vs in scope for t in self._exclusions.get(vs, ((), ()))[1]]
            found = Exclusions(frozenset(codes), compile_alternation(phrases)) if codes or phrases else NO_EXCLUSIONS
            self._scopes[scope] = found
        return found

    @property
    def unverified_codes(self) -> tuple[ConceptEntry, ...]:
        return tuple(e for e in self.entries if e.unverified)

    # -- matching --------------------------------------------------------------------------

    def match_codings(
        self, codings: Iterable[CodingFact], *, via_ingredient_list: bool = False
    ) -> tuple[list[ConceptMatch], list[Rejection]]:
        matches: list[ConceptMatch] = []
        rejections: list[Rejection] = []
        for coding in codings:
            if not coding.code:
                continue
            system = canonical_system(coding.system)
            if system is None:
                rejections.append(Rejection(coding.path, f"coding {coding.code!r} has no system"))
                continue
            entry = self.codes.get((system, coding.code)) or self._prefix_entry(system, coding.code)
            if entry is not None and (system, coding.code) in self.scoped(entry.scope).codes:
                rejections.append(Rejection(coding.path, f"code {coding.code} is excluded from {entry.valueset}"))
                continue
            if entry is not None:
                keys = self._ingredient_keys(entry)
                for key, name in keys:
                    matches.append(
                        ConceptMatch(
                            self.id,
                            "ingredient-code" if via_ingredient_list else "code",
                            coding.code,
                            key,
                            name,
                            coding.path,
                            entry.unverified,
                        )
                    )
                continue
            mapped = False
            for ingredient in self.ingredient_map.ingredients(system, coding.code):
                found = self.ingredient_codes.get(ingredient)
                if found is not None and (system, coding.code) in self.scoped(found.scope).codes:
                    rejections.append(Rejection(coding.path, f"code {coding.code} is excluded from {found.valueset}"))
                    mapped = True  # rejected with its reason, not "not in"
                    continue
                if found is not None:
                    mapped = True
                    matches.append(
                        ConceptMatch(
                            self.id,
                            "ingredient-code",
                            f"{coding.code}->{ingredient}",
                            found.key,
                            found.name,
                            coding.path,
                            found.unverified,
                        )
                    )
            if not mapped and (system, coding.code) in self.excluded:
                rejections.append(Rejection(coding.path, f"code {coding.code} is excluded from {self.id}"))
            elif not mapped:
                rejections.append(
                    Rejection(coding.path, f"code {_short_system(system)} {coding.code} is not in {self.id}")
                )
        return matches, rejections

    def _prefix_entry(self, system: str, code: str) -> ConceptEntry | None:
        """The most specific prefix concept covering ``code`` (ICD-10-CM families)."""
        candidates = self.prefixes.get(system)
        if not candidates:
            return None
        plain = _undotted(code)
        best: tuple[int, ConceptEntry] | None = None
        for prefix, entry in candidates:
            if plain.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), entry)
        return best[1] if best else None

    def _ingredient_keys(self, entry: ConceptEntry) -> list[tuple[str, str]]:
        """Distinct-drug keys of a concept: its ingredients when it is a mapped product."""
        if entry.ingredient_level or entry.code is None:
            return [(entry.key, entry.name)]
        keys = []
        for ingredient in self.ingredient_map.ingredients(entry.system, entry.code):
            found = self.ingredient_codes.get(ingredient)
            if found is not None:
                keys.append((found.key, found.name))
        return keys or [(entry.key, entry.name)]

    def match_names(
        self, fields: Iterable[TextField], display_codes: Mapping[str, tuple[str, str]] | None = None
    ) -> tuple[list[ConceptMatch], list[Rejection]]:
        """Ingredient names in text; ``display_codes`` maps a display field's path to its coding."""
        matches: list[ConceptMatch] = []
        rejections: list[Rejection] = []
        if self.name_pattern is None:
            return matches, rejections
        for f in fields:
            if not f.norm:
                continue
            for m in self.name_pattern.finditer(f.norm):
                entry = self.names[_norm_key(m.group(0))]
                exclusions = self.scoped(entry.scope)
                veto = exclusions.veto(f.norm)
                if veto:
                    rejections.append(Rejection(f.path, f"{m.group(0)!r} vetoed by {veto!r} in the same text"))
                    continue
                coded = (display_codes or {}).get(f.path)
                if coded is not None and coded in exclusions.codes:
                    # the display of a code the value set excludes ("Buprenorphine / Naloxone")
                    rejections.append(Rejection(f.path, f"display of code {coded[1]}, excluded from {entry.valueset}"))
                    continue
                matches.append(
                    ConceptMatch(
                        self.id, "ingredient-name", m.group(0), entry.key, entry.name, f.path, entry.unverified
                    )
                )
        return matches, rejections

    def match_text(
        self, fields: Iterable[TextField], display_codes: Mapping[str, tuple[str, str]] | None = None
    ) -> tuple[list[ConceptMatch], list[Rejection]]:
        matches: list[ConceptMatch] = []
        rejections: list[Rejection] = []
        if not self.text_matchers:
            return matches, rejections
        for f in fields:
            if not f.norm:
                continue
            for (matcher, label), exclusions in zip(self.text_matchers, self._matcher_scopes, strict=True):
                outcome = matcher.match(f.norm)
                if outcome.hit is not None:
                    veto = exclusions.veto(f.norm)
                    coded = (display_codes or {}).get(f.path)
                    if veto is None and coded is not None and coded in exclusions.codes:
                        veto = f"the display of excluded code {coded[1]}"
                    if veto:
                        rejections.append(Rejection(f.path, f"{outcome.hit.matched!r} vetoed by {veto!r}"))
                        continue
                    matches.append(ConceptMatch(self.id, "text", outcome.hit.matched, f"text:{label}", label, f.path))
                    break
                if outcome.rejected:
                    rejections.append(Rejection(f.path, outcome.rejected))
        return matches, rejections

    def match_medication(
        self, concept: MedicationConcept, notes: Sequence[TextField] = ()
    ) -> tuple[list[ConceptMatch], list[Rejection]]:
        """Match a medication (with its ingredients) and, for text synonyms only, free-text notes.

        Notes are searched for the value set's text synonyms but never for ingredient names: a
        note saying "switched from sertraline" on a fluoxetine statement is not sertraline use.
        """
        matches, rejections = self.match_codings(concept.codings)
        display_codes: dict[str, tuple[str, str]] = {}
        name_fields = list(concept.texts) + self._display_fields(concept.codings, display_codes)
        for ingredient in concept.ingredients:
            m, r = self.match_codings(ingredient.codings, via_ingredient_list=True)
            matches += m
            rejections += r
            name_fields += list(ingredient.texts) + self._display_fields(ingredient.codings, display_codes)
        m, r = self.match_names(name_fields, display_codes)
        matches += m
        rejections += r
        m, r = self.match_text([*name_fields, *notes])
        matches += m
        rejections += r
        return best_per_key(matches), rejections

    def _display_fields(
        self, codings: Iterable[CodingFact], display_codes: dict[str, tuple[str, str]] | None = None
    ) -> list[TextField]:
        """Displays of codings as text fields; ``display_codes`` records which coding each came from."""
        fields = []
        for c in codings:
            if not c.display:
                continue
            path = c.path
            fields.append(TextField(path, c.display, normalize_text(c.display)))
            system = canonical_system(c.system)
            if display_codes is not None and system is not None and c.code:
                display_codes[path] = (system, c.code)
        return fields

    def match_concept_codings(
        self, codings: Sequence[CodingFact], texts: Sequence[TextField]
    ) -> tuple[list[ConceptMatch], list[Rejection]]:
        """Match a coded concept (Condition.code, Observation.code, Procedure.code…)."""
        matches, rejections = self.match_codings(codings)
        display_codes: dict[str, tuple[str, str]] = {}
        fields = list(texts) + self._display_fields(codings, display_codes)
        m, r = self.match_text(fields, display_codes)
        return best_per_key(matches + m), rejections + r


def best_per_key(matches: Iterable[ConceptMatch]) -> list[ConceptMatch]:
    """Keep the strongest way each distinct concept matched, in a stable order."""
    best: dict[str, ConceptMatch] = {}
    for m in matches:
        current = best.get(m.key)
        if current is None or MATCH_RANK[m.matched_by] < MATCH_RANK[current.matched_by]:
            best[m.key] = m
    return sorted(best.values(), key=lambda m: (MATCH_RANK[m.matched_by], m.name, m.key))


def _undotted(code: str) -> str:
    return code.replace(".", "").strip().upper()


def _norm_key(matched: str) -> str:
    return re.sub(r"\s+", " ", matched)


@functools.lru_cache(maxsize=256)  # in every "not in" rejection; systems are few
def _short_system(system: str) -> str:
    tail = system.rstrip("/").rsplit("/", 1)[-1]
    return {"rxnorm": "RxNorm", "sct": "SNOMED", "loinc.org": "LOINC"}.get(tail, tail)


def compile_valuesets(
    models: Mapping[str, ValueSetModel], ingredient_map: IngredientMap
) -> dict[str, CompiledValueSet]:
    """Expand includes (already checked for cycles and unknown ids by the loader) and index."""
    exclusions = {
        vs_id: ([(e.system, c) for e in model.exclude for c in e.codes], list(model.text.exclude) if model.text else [])
        for vs_id, model in models.items()
    }

    def collect(
        vs_id: str, seen: set[str]
    ) -> tuple[list[ConceptEntry], list[tuple[TextMatcher, str, tuple[str, ...]]]]:
        model = models[vs_id]
        entries: list[ConceptEntry] = []
        matchers: list[tuple[TextMatcher, str, tuple[str, ...]]] = []
        for inc in model.include:
            if inc.valueset is not None:
                if inc.valueset in seen:
                    continue
                sub_entries, sub_matchers = collect(inc.valueset, seen | {inc.valueset})
                # this set's exclusions also apply to what its includes contribute
                entries += [replace(e, scope=(*e.scope, vs_id)) for e in sub_entries]
                matchers += [(m, label, (*scope, vs_id)) for m, label, scope in sub_matchers]
                continue
            system = canonical_system(inc.system) or ""
            for concept in inc.concepts:
                entries.append(
                    ConceptEntry(
                        system=system,
                        code=concept.code,
                        display=concept.display,
                        names=tuple(concept.names),
                        ingredient_level=inc.level == "ingredient",
                        unverified=concept.unverified,
                        valueset=vs_id,
                        prefix=inc.match == "prefix",
                        scope=(vs_id,),
                    )
                )
        synonyms = model.text
        if synonyms is not None and (synonyms.strong or synonyms.weak):
            label = synonyms.strong[0] if synonyms.strong else synonyms.weak[0]
            # the matcher applies the set's own exclusion phrases itself; its scope adds the
            # excluded codes (display vetoes) and the phrases of the sets that include it
            matcher = TextMatcher(synonyms.strong, synonyms.weak, synonyms.context, synonyms.exclude, synonyms.negation)
            matchers.append((matcher, label, (vs_id,)))
        return entries, matchers

    compiled: dict[str, CompiledValueSet] = {}
    for vs_id, model in models.items():
        entries, matchers = collect(vs_id, {vs_id})
        compiled[vs_id] = CompiledValueSet(model, entries, matchers, exclusions, ingredient_map)
    return compiled
