"""Free-text matching for names and synonyms found in clinical records.

Kratom has no RxNorm, SNOMED CT or ICD-10-CM code, so real records carry it as text
("Kratom capsules", "MAENG DA KRATOM", "ketum tea"), and product-level medication codings
carry ingredient names ("Sertraline 100MG", "Clonazepam [Klonopin]"). Matching is:

* Unicode-normalised (NFKC) and case-folded, with every dash/hyphen read as a space, so
  "Kra-thom", "KRA THOM" and a full-width "ｋｒａｔｏｍ" agree;
* on word boundaries for Latin-script tokens ("mg" never matches inside "mgso4"); tokens in
  scripts written without spaces (Thai กระท่อม) match as substrings;
* strong tokens match alone; weak tokens ("thang", "biak") only when a context word
  ("tea", "leaf", "powder"…) is in the same field;
* a match is vetoed by an exclusion phrase in the same field, or negated by a cue shortly
  before it ("denies kratom", "no history of kratom use").
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_DASHES = re.compile(r"[\u002d\u2010-\u2015\u2212\ufe58\ufe63\uff0d_]+")
_SPACES = re.compile(r"\s+")
_SENTENCE_BREAK = re.compile(r"[.;:!?\n|]")
_WORD_START = r"(?<![0-9a-z])"
NEGATION_WINDOW_WORDS = 5


def normalize_text(text: str) -> str:
    """The matching form of a text: NFKC, case-folded, dashes as spaces, single spaces."""
    if len(text) <= _SHORT_TEXT:
        return _normalize_short(text)
    return _normalize(text)


def _normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACES.sub(" ", _DASHES.sub(" ", folded)).strip()


# Codes' texts and displays ("Heart rate", "sertraline 50 MG Oral Tablet") recur in every
# record and are normalised for each; notes are long and unique, so only short texts are kept.
_SHORT_TEXT = 200
_normalize_short = functools.lru_cache(maxsize=8192)(_normalize)


def _needs_boundary(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def token_pattern(token: str) -> str:
    """A regex for one normalised token with word boundaries where the script has them."""
    norm = normalize_text(token)
    if not norm:
        raise ValueError(f"empty token {token!r}")
    return (_WORD_START if _needs_boundary(norm[0]) else "") + _token_body(norm)


def _token_body(norm: str) -> str:
    """The token without its leading boundary: the text, then the trailing boundary if any."""
    body = re.escape(norm).replace(r"\ ", r"\s+")
    return body + (r"(?![0-9a-z])" if _needs_boundary(norm[-1]) else "")


def compile_alternation(tokens: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any of the tokens; longest first so "kratom tea" beats "kratom".

    Python's ``re`` tries the alternatives one by one at every position of the text, and can
    reject one cheaply only when it starts with a literal character; a word-boundary
    lookbehind at the head of each of hundreds of ingredient names made name matching some
    thirty times slower. Tokens that need the boundary therefore share one lookbehind in
    front of their group. Two tokens that match at the same place start with the same
    character, so they sit in the same group in the same longest-first order: every match
    is what the plain alternation of :func:`token_pattern` finds.
    """
    norms = sorted({normalize_text(t) for t in tokens if normalize_text(t)}, key=lambda t: (-len(t), t))
    if not norms:
        return None
    bounded = [_token_body(t) for t in norms if _needs_boundary(t[0])]
    free = [_token_body(t) for t in norms if not _needs_boundary(t[0])]
    groups = []
    if bounded:
        groups.append(_WORD_START + "(?:" + "|".join(bounded) + ")")
    if free:
        groups.append("(?:" + "|".join(free) + ")")
    return re.compile("|".join(groups))


@dataclass(frozen=True, slots=True)
class TextHit:
    token: str  # the normalised token that matched
    matched: str  # the normalised text that matched
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class TextOutcome:
    """A match, or the reason the text did not count (for explanations)."""

    hit: TextHit | None
    rejected: str | None = None


class TextMatcher:
    """Strong/weak tokens with context words, exclusions and negation cues."""

    def __init__(
        self,
        strong: Sequence[str] = (),
        weak: Sequence[str] = (),
        context: Sequence[str] = (),
        exclude: Sequence[str] = (),
        negation: Sequence[str] = (),
    ) -> None:
        self.strong = compile_alternation(strong)
        self.weak = compile_alternation(weak)
        self.context = compile_alternation(context)
        self.exclude = compile_alternation(exclude)
        self.negation = compile_alternation(negation)
        self.tokens = tuple(sorted({normalize_text(t) for t in (*strong, *weak)}))

    def match(self, norm: str) -> TextOutcome:
        """Match one normalised field; the first acceptable hit wins."""
        if not norm:
            return TextOutcome(None)
        first_rejection: str | None = None
        for pattern, weak in ((self.strong, False), (self.weak, True)):
            if pattern is None:
                continue
            for m in pattern.finditer(norm):
                hit = TextHit(m.group(0), m.group(0), m.start(), m.end())
                reason = self.reject_reason(norm, hit, weak)
                if reason is None:
                    return TextOutcome(hit)
                first_rejection = first_rejection or reason
        return TextOutcome(None, first_rejection)

    def reject_reason(self, norm: str, hit: TextHit, weak: bool) -> str | None:
        if self.exclude is not None:
            veto = self.exclude.search(norm)
            if veto is not None:
                return f"{hit.matched!r} vetoed by exclusion {veto.group(0)!r} in the same field"
        if weak and (self.context is None or self.context.search(norm) is None):
            return f"weak token {hit.matched!r} without a context word"
        if self.negation is not None:
            cue = negation_before(norm, hit.start, self.negation)
            if cue is not None:
                return f"{hit.matched!r} negated by {cue!r}"
        return None


def negation_before(norm: str, start: int, cues: re.Pattern[str]) -> str | None:
    """A negation cue among the few words before ``start`` in the same sentence, if any."""
    before = norm[:start]
    breaks = list(_SENTENCE_BREAK.finditer(before))
    if breaks:
        before = before[breaks[-1].end() :]
    words = before.split()
    window = " ".join(words[-NEGATION_WINDOW_WORDS:])
    found = None
    for m in cues.finditer(window):
        found = m.group(0)
    return found
