"""Value-set matches remembered across patients, per concept.

Matching a record's concept against a value set is a pure function of the two: the compiled
value set never changes and facts are frozen. Records repeat the same concepts from patient
to patient (one metformin product coding, one heart-rate LOINC code, one "Kratom powder"
text), and each is matched against every value set the rules name, so the results are kept:
per concept, one dict of results by value set. The concept is hashed and compared once per
record; each value set after that is a dictionary lookup.

The memo is bounded (it starts afresh when full), so memory stays flat however many patients
an engine sees, and needs no lock: dict operations are atomic, and two threads that miss at
once only compute the same result twice. Callers must not modify the shared result lists.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from careplan_rules.facts import CodingFact, ConceptMatch, MedicationConcept, TextField
from careplan_rules.terminology.valueset import CompiledValueSet, Rejection

MatchPair = tuple[list[ConceptMatch], list[Rejection]]
ResultsByValueSet = dict[CompiledValueSet, MatchPair]

DEFAULT_SIZE = 2048  # concepts of each kind; a few MB at most


class MatchMemo:
    """Bounded memo of value-set matches, keyed by what matching reads of a concept."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._medications: dict[Hashable, ResultsByValueSet] = {}
        self._concepts: dict[Hashable, ResultsByValueSet] = {}

    def medication(self, concept: MedicationConcept, notes: Sequence[TextField]) -> ResultsByValueSet:
        """The results of :meth:`CompiledValueSet.match_medication` for this concept, by value set.

        The key is exactly what matching reads: codings, texts, the ingredients' codings and
        texts, and the notes; not the Medication's reference, which differs per patient for
        a bundled Medication of the same drug.
        """
        key = (
            concept.codings,
            concept.texts,
            tuple((i.codings, i.texts) for i in concept.ingredients),
            tuple(notes),
        )
        return self._slot(self._medications, key)

    def concept(self, codings: Sequence[CodingFact], texts: Sequence[TextField]) -> ResultsByValueSet:
        """The results of :meth:`CompiledValueSet.match_concept_codings`, by value set."""
        return self._slot(self._concepts, (tuple(codings), tuple(texts)))

    def _slot(self, table: dict[Hashable, ResultsByValueSet], key: Hashable) -> ResultsByValueSet:
        try:
            found = table.get(key)
        except TypeError:  # facts built by hand with lists cannot be keys: nothing is shared
            return {}
        if found is None:
            if len(table) >= self.size:
                table.clear()
            found = table[key] = {}
        return found
