"""How to build the engine in a worker process: the rule packs and options, not the engine.

An :class:`~careplan_rules.api.Engine` is built once per worker process (local processes or
Spark executors) from an :class:`EngineSpec`, which is small and picklable (and rebuilt in a
process only when the spec or the rule files change). Its
:meth:`~EngineSpec.fingerprint` hashes the rule files themselves, so resuming a screen after
the rules changed is refused rather than mixing findings of two rule versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from careplan_rules._version import __version__
from careplan_rules.api import Engine, bundled_rules_dir
from careplan_rules.model.rule import ParamValue
from careplan_rules.screen.checkpoint import digest, hash_tree


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """The recipe of an engine: rule pack folders (empty: the bundled pack) and options."""

    rules: tuple[str, ...] = ()
    params: tuple[tuple[str, str, ParamValue], ...] = ()  # (rule, param, value)
    include_draft: bool = False
    backend: str = "python"

    @classmethod
    def of(
        cls,
        rules: tuple[str, ...] | list[str] = (),
        params: Mapping[str, Mapping[str, ParamValue]] | None = None,
        include_draft: bool = False,
        backend: str = "python",
    ) -> EngineSpec:
        flat = tuple(sorted((r, p, v) for r, ps in (params or {}).items() for p, v in ps.items()))
        return cls(tuple(str(Path(r).resolve()) for r in rules), flat, include_draft, backend)

    def folders(self) -> list[Path]:
        return [Path(r) for r in self.rules] or [bundled_rules_dir()]

    def build(self) -> Engine:
        """Load and compile the packs (once per process for the same spec and rule files).

        Raises:
            RuleLoadError: a pack does not load.
        """
        key = (self, hash_tree(self.folders()))
        engine = _BUILT.get(key)
        if engine is None:
            params: dict[str, dict[str, ParamValue]] = {}
            for rule, name, value in self.params:
                params.setdefault(rule, {})[name] = value
            engine = Engine.from_paths(
                *self.folders(), params=params or None, include_draft=self.include_draft, backend=self.backend
            )
            _BUILT.clear()  # keep one: a process screens with one spec at a time
            _BUILT[key] = engine
        return engine

    def fingerprint(self) -> str:
        """A hash of what decides the findings: rule files, parameters, options, engine version."""
        return digest(hash_tree(self.folders()), self.params, self.include_draft, self.backend, __version__)


_BUILT: dict[tuple[EngineSpec, str], Engine] = {}
