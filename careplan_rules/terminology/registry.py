"""The value sets of one pack, looked up by id; an unknown id is an error, never an empty set."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from careplan_rules.diagnostics import did_you_mean
from careplan_rules.errors import TerminologyError
from careplan_rules.model.valueset import ValueSetModel
from careplan_rules.terminology.ingredient_map import IngredientMap
from careplan_rules.terminology.memo import MatchMemo
from careplan_rules.terminology.mme import MmeTable
from careplan_rules.terminology.valueset import CompiledValueSet, compile_valuesets


class ValueSetRegistry:
    def __init__(
        self,
        pack_id: str,
        models: Mapping[str, ValueSetModel],
        ingredient_map: IngredientMap,
        mme_table: MmeTable | None = None,
    ) -> None:
        self.pack_id = pack_id
        self.ingredient_map = ingredient_map
        self.mme_table = mme_table or MmeTable()
        self._valuesets = compile_valuesets(models, ingredient_map)
        self.memo = MatchMemo()  # matches shared by the evaluations of this pack

    def get(self, ref: str) -> CompiledValueSet:
        """Look up ``id`` or ``id|version``.

        Raises:
            TerminologyError: when the pack has no such value set (or another version).
        """
        vs_id, _, version = ref.partition("|")
        found = self._valuesets.get(vs_id)
        if found is None:
            guess = did_you_mean(vs_id, self._valuesets)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise TerminologyError(f"unknown value set {vs_id!r} in pack {self.pack_id!r}{hint}")
        if version and found.version != version:
            raise TerminologyError(
                f"value set {vs_id!r} version {version!r} requested, pack {self.pack_id!r} has {found.version!r}"
            )
        return found

    def __iter__(self) -> Iterator[CompiledValueSet]:
        return iter(self._valuesets[k] for k in sorted(self._valuesets))

    def __len__(self) -> int:
        return len(self._valuesets)
