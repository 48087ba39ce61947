"""Find and load rule tests (``*.test.yaml``) and their fixture files, with positions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from careplan_rules.diagnostics import Diagnostic, did_you_mean
from careplan_rules.loader.model_errors import validation_diagnostics
from careplan_rules.loader.pack import Pack
from careplan_rules.loader.pack_loader import TEST_SUFFIX, display_path
from careplan_rules.loader.yaml_reader import YamlDocument, read_yaml_file
from careplan_rules.model.common import YamlPath
from careplan_rules.model.ruletest import FixtureFile, RuleTestModel


@dataclass(frozen=True, slots=True)
class Fixture:
    name: str
    resource: dict[str, Any]
    doc: YamlDocument
    path: YamlPath


@dataclass(slots=True)
class LoadedTest:
    file: Path
    doc: YamlDocument
    model: RuleTestModel
    pack: Pack
    fixtures: dict[str, Fixture] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.doc.file


def discover_test_files(pack: Pack) -> list[Path]:
    return sorted(p for p in pack.root.rglob("*" + TEST_SUFFIX) if ".git" not in p.parts)


def load_tests(
    packs: Sequence[Pack], only_files: Iterable[Path] | None = None
) -> tuple[list[LoadedTest], list[Diagnostic]]:
    """Load the rule tests of the packs (or only the given files).

    Returns every test that loaded and a diagnostic for every problem (positioned).
    """
    wanted = {p.resolve() for p in only_files} if only_files is not None else None
    tests: list[LoadedTest] = []
    problems: list[Diagnostic] = []
    rule_ids = {r.id: pack for pack in packs for r in pack.rules}
    broken = {rid for pack in packs for rid in pack.broken_rule_ids}
    for pack in packs:
        for file in discover_test_files(pack):
            if wanted is not None and file.resolve() not in wanted:
                continue
            loaded = _load_one(file, pack, rule_ids, broken, problems)
            if loaded is not None:
                tests.append(loaded)
    return tests, problems


def _load_one(
    file: Path, pack: Pack, rule_ids: dict[str, Pack], broken: set[str], problems: list[Diagnostic]
) -> LoadedTest | None:
    doc, diags = read_yaml_file(file, display_path(file))
    problems.extend(diags)
    if doc is None:
        return None
    if not isinstance(doc.data, dict):
        problems.append(
            Diagnostic("CPR-E002", "expected a YAML mapping describing a RuleTest", location=doc.location())
        )
        return None
    if doc.data.get("kind") not in (None, "RuleTest"):
        problems.append(
            Diagnostic(
                "CPR-E031",
                f"file declares kind {doc.data.get('kind')!r} but *.test.yaml files hold a RuleTest",
                location=doc.location(("kind",)),
            )
        )
        return None
    try:
        model = RuleTestModel.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(validation_diagnostics(exc, RuleTestModel, doc))
        return None
    if model.rule in broken:
        return None  # the rule file's own errors say what is wrong
    if model.rule not in rule_ids:
        guess = did_you_mean(model.rule, rule_ids)
        problems.append(
            Diagnostic(
                "CPR-T001",
                f"test names rule {model.rule!r}, which no loaded pack defines",
                location=doc.location(("rule",)),
                hint=f"did you mean {guess!r}?" if guess else None,
            )
        )
        return None
    loaded = LoadedTest(file, doc, model, rule_ids[model.rule])
    for i, rel in enumerate(model.fixtures):
        _load_fixtures(file.parent / rel, doc, ("fixtures", i), loaded, problems)
    return loaded


def _load_fixtures(
    file: Path, owner: YamlDocument, where: YamlPath, test: LoadedTest, problems: list[Diagnostic]
) -> None:
    if not file.is_file():
        problems.append(
            Diagnostic("CPR-T002", f"fixture file {display_path(file)} does not exist", location=owner.location(where))
        )
        return
    doc, diags = read_yaml_file(file, display_path(file))
    problems.extend(diags)
    if doc is None:
        return
    try:
        model = FixtureFile.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(validation_diagnostics(exc, FixtureFile, doc))
        return
    for name, resource in model.fixtures.items():
        if name in test.fixtures:
            problems.append(
                Diagnostic(
                    "CPR-T003",
                    f"fixture {name!r} is defined twice ({test.fixtures[name].doc.file} and {doc.file})",
                    location=doc.location(("fixtures", name), key=True),
                )
            )
            continue
        test.fixtures[name] = Fixture(name, resource, doc, ("fixtures", name))
