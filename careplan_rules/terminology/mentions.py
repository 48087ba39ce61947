"""Could anything in a resource match a value set of the loaded packs? A cheap, conservative test.

The engine validates what the rules read (issue: a malformed resource must not feed a rule).
Observations are most of any real record (vital signs, laboratory panels) and most of the
validation time, yet a heart-rate Observation can never reach a kratom or depression rule:
every fact an Observation or Condition gives the rules passes a value-set match first (see
:data:`careplan_rules.fhir.pipeline.SCREENED_TYPES`). So those two types are validated when
they *mention* the packs' terminology, and this module answers that question.

The test must never say "no" where a value set would say "yes", whatever the resource's
shape, so it does not read the resource the way normalisation does. It walks the raw JSON
and looks at every string under a key that can carry a code or a term (``code``,
``display``, ``text``, ``value[x]``…), wherever it sits: a code given as a bare string, a
``coding`` that is an object instead of a list, a note, a component. A string counts when it
is one of the packs' codes (exact, undotted, an ICD-10 family prefix, or a product whose
ingredient is listed) or when any of the packs' names and synonyms - strong *and* weak
tokens, ignoring exclusions, context words and negation - occurs in it. Everything a value
set can match is therefore a mention; the converse is not needed (a mention is only
validated, not matched).

Strings recur from patient to patient ("Heart rate", "8867-4", "vital-signs"), so each
answer is remembered in a bounded memo (dict operations are atomic; two threads that miss
at once compute the same answer twice).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from careplan_rules.terminology.ingredient_map import IngredientMap
from careplan_rules.terminology.text import compile_alternation, normalize_text
from careplan_rules.terminology.valueset import CompiledValueSet

# keys whose string values are codes or terms; anything else (ids, references, dates,
# systems, units, narrative) is never matched by a value set
TERM_KEYS = frozenset({"code", "display", "text"})
# value[x] types that are never terms; every other value[x] string is looked at, even under a
# name that should hold an object ("valueCodeableConcept": "kratom" is malformed, not silent)
_NOT_TERMS = ("DateTime", "Date", "Time", "Instant", "Uri", "Url", "Canonical", "Id", "Base64Binary")
MEMO_SIZE = 8192
MEMO_TEXT = 200  # longer strings (notes) are unique: not worth remembering


def _undotted(code: str) -> str:
    return code.replace(".", "").strip().upper()


class TermIndex:
    """Every code, ingredient and term of a set of value sets, to test resources against."""

    def __init__(self, valuesets: Iterable[CompiledValueSet]) -> None:
        codes: set[str] = set()
        prefixes: set[str] = set()
        ingredients: set[str] = set()
        tokens: set[str] = set()
        maps: dict[int, IngredientMap] = {}
        for vs in valuesets:
            maps.setdefault(id(vs.ingredient_map), vs.ingredient_map)
            ingredients.update(vs.ingredient_codes)
            tokens.update(vs.names)
            for matcher, _ in vs.text_matchers:
                tokens.update(matcher.tokens)
            for entry in vs.entries:
                if entry.code is None:
                    continue
                codes.add(entry.code.strip())
                codes.add(_undotted(entry.code))
                if entry.prefix:
                    prefixes.add(_undotted(entry.code))
        self.codes = frozenset(codes)
        self.prefixes = tuple(sorted(prefixes))
        self.ingredients = frozenset(ingredients)
        self._maps = tuple(maps.values())
        self._pattern = compile_alternation(tokens)
        self._memo: dict[str, bool] = {}
        self._keys: dict[object, bool] = {}  # element name -> is_term_key

    def mentions(self, resource: Mapping[str, Any]) -> bool:
        """True when some code or term in ``resource`` belongs to one of the value sets."""
        return self._dict_mentions(resource)

    # The same walk as term_strings, recursive with plain loops and stopping at the first term:
    # it runs over every Observation of every record, where generators, the ABC checks of
    # Mapping and even the lru_cache of is_term_key cost more than the rest. Exact-type tests
    # first: strings, dicts and lists of dicts are nearly every value; anything else (numbers,
    # subclasses: an API caller's OrderedDict, tuples) takes the general path, which walks
    # them as normalisation would read them.
    def _dict_mentions(self, node: Mapping[str, Any]) -> bool:
        memo = self._memo
        keys = self._keys
        for key, value in node.items():
            kind = type(value)
            if kind is str:
                term_key = keys.get(key)
                if term_key is None:
                    if len(keys) >= MEMO_SIZE:  # an API caller's made-up keys
                        keys.clear()
                    term_key = keys[key] = is_term_key(key)
                if term_key:
                    found = memo.get(value)
                    if found is None:
                        found = self._hit(value)
                    if found:
                        return True
            elif kind is dict:
                if self._dict_mentions(value):
                    return True
            elif kind is list:
                for item in value:
                    if type(item) is dict:
                        if self._dict_mentions(item):
                            return True
                    elif self._value_mentions(key, item):
                        return True
            elif value is None or kind is bool:
                continue
            elif self._value_mentions(key, value):
                return True
        return False

    def _value_mentions(self, key: str, value: Any) -> bool:
        if isinstance(value, str):
            return is_term_key(key) and self._hit(value)
        if isinstance(value, dict):
            return self._dict_mentions(value)
        if isinstance(value, (list, tuple)):
            for item in value:  # noqa: SIM110
                if self._value_mentions(key, item):
                    return True
            return False
        return (
            key == "code" and isinstance(value, int | float) and not isinstance(value, bool) and self._hit(str(value))
        )

    def _hit(self, text: str) -> bool:
        if len(text) > MEMO_TEXT:
            return self._is_term(text)
        found = self._memo.get(text)
        if found is None:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            found = self._memo[text] = self._is_term(text)
        return found

    def _is_term(self, text: str) -> bool:
        plain = text.strip()
        undotted = _undotted(plain)
        if plain in self.codes or undotted in self.codes:
            return True
        if any(undotted.startswith(p) for p in self.prefixes):
            return True
        for ingredient_map in self._maps:
            if any(i in self.ingredients for i in ingredient_map.products.get(plain, ())):
                return True
        return self._pattern is not None and self._pattern.search(normalize_text(text)) is not None


def term_strings(resource: Mapping[str, Any]) -> Iterator[str]:
    """Every string under a term key (or a code written as a number), at any depth, in order."""
    stack: list[tuple[str, Any]] = [("", resource)]
    while stack:
        key, node = stack.pop()
        if isinstance(node, str):
            if is_term_key(key):
                yield node
        elif isinstance(node, dict):
            stack.extend(reversed(node.items()))
        elif isinstance(node, list | tuple):
            stack.extend((key, item) for item in reversed(node))
        elif key == "code" and isinstance(node, int | float) and not isinstance(node, bool):
            yield str(node)


@functools.lru_cache(maxsize=4096)  # element names are few
def is_term_key(key: object) -> bool:
    """Whether strings under ``key`` can be codes or terms (an API caller's odd key is not)."""
    if not isinstance(key, str):
        return False
    return key in TERM_KEYS or (key.startswith("value") and len(key) > 5 and not key.endswith(_NOT_TERMS))
