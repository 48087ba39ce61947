"""A loaded rule pack: validated models plus what is needed to point back into the YAML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from careplan_rules.diagnostics import Diagnostic
from careplan_rules.loader.yaml_reader import YamlDocument
from careplan_rules.model.pack import PackModel
from careplan_rules.model.rule import RuleModel
from careplan_rules.model.template import Template
from careplan_rules.model.valueset import ValueSetModel
from careplan_rules.model.when import WhenExpr
from careplan_rules.terminology.ingredient_map import IngredientMap
from careplan_rules.terminology.mme import MmeTable


@dataclass(frozen=True, slots=True)
class LoadedValueSet:
    model: ValueSetModel
    file: str
    doc: YamlDocument


@dataclass(frozen=True, slots=True)
class LoadedRule:
    model: RuleModel
    file: str
    doc: YamlDocument
    pack_id: str
    pack_version: str
    when: WhenExpr
    escalations: tuple[WhenExpr | None, ...]
    activity_whens: tuple[WhenExpr | None, ...]
    templates: Mapping[str, Template] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.model.id


@dataclass(frozen=True, slots=True)
class Pack:
    root: Path
    manifest: PackModel
    manifest_file: str
    rules: tuple[LoadedRule, ...]
    valuesets: Mapping[str, LoadedValueSet]
    ingredient_map: IngredientMap
    warnings: tuple[Diagnostic, ...] = ()
    mme_table: MmeTable = field(default_factory=MmeTable)
    # ids declared by rule files that failed to load: their errors are already reported, so
    # tests naming them must not add a misleading "unknown rule"
    broken_rule_ids: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def version(self) -> str:
        return self.manifest.version

    def rule(self, rule_id: str) -> LoadedRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)
