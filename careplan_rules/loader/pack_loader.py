"""Load rule packs from folders: ``pack.yaml``, ``valuesets/*.yaml`` and ``*.rule.yaml``.

Loading collects every problem of every file (file:line:col, stable code) before deciding;
an author fixing a pack sees all its errors at once, not one per run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from careplan_rules.diagnostics import (
    Diagnostic,
    Severity,
    SourceLocation,
    did_you_mean,
    has_errors,
    sort_diagnostics,
)
from careplan_rules.errors import RuleLoadError
from careplan_rules.loader.model_errors import validation_diagnostics
from careplan_rules.loader.pack import LoadedRule, LoadedValueSet, Pack
from careplan_rules.loader.rule_checks import RuleCheck, dependency_cycles
from careplan_rules.loader.yaml_reader import YamlDocument, read_yaml_file
from careplan_rules.model.pack import PackModel
from careplan_rules.model.rule import RuleModel
from careplan_rules.model.valueset import ValueSetModel
from careplan_rules.terminology.ingredient_map import IngredientMap, IngredientMapError, parse_ingredient_map
from careplan_rules.terminology.mme import MmeTable, MmeTableError, parse_mme_table

PACK_FILE = "pack.yaml"
RULE_SUFFIX = ".rule.yaml"
TEST_SUFFIX = ".test.yaml"

M = TypeVar("M", bound=BaseModel)


def display_path(path: Path) -> str:
    """A path as users should see it: relative to the working directory when inside it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)


def find_pack_roots(paths: Iterable[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Resolve user-given paths to pack folders.

    A folder with ``pack.yaml`` is a pack; a folder without one is searched for packs below it;
    a file belongs to the nearest pack above it.
    """
    roots: list[Path] = []
    problems: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(Diagnostic("CPR-E009", "no such file or directory", location=SourceLocation(str(raw))))
            continue
        if path.is_file():
            root = _pack_above(path.parent)
            if root is None:
                problems.append(
                    Diagnostic(
                        "CPR-E030",
                        f"not inside a rule pack (no {PACK_FILE} in this folder or above)",
                        location=SourceLocation(str(raw)),
                    )
                )
            elif root not in roots:
                roots.append(root)
            continue
        if (path / PACK_FILE).is_file():
            if path.resolve() not in [r.resolve() for r in roots]:
                roots.append(path)
            continue
        found = sorted(p.parent for p in path.rglob(PACK_FILE))
        if not found:
            problems.append(
                Diagnostic(
                    "CPR-E030",
                    f"no rule pack here (no {PACK_FILE} in this folder or below)",
                    location=SourceLocation(str(raw)),
                )
            )
        for root in found:
            if root.resolve() not in [r.resolve() for r in roots]:
                roots.append(root)
    return roots, problems


def _pack_above(folder: Path) -> Path | None:
    for candidate in [folder, *folder.parents]:
        if (candidate / PACK_FILE).is_file():
            return candidate
    return None


def load_pack(path: str | Path) -> Pack:
    """Load and check one rule pack.

    Raises:
        RuleLoadError: with every error diagnostic of the pack.
    """
    pack, diagnostics = load_pack_with_diagnostics(path)
    if pack is None or has_errors(diagnostics):
        errors = [d for d in diagnostics if d.severity is Severity.ERROR]
        first = errors[0].render() if errors else "invalid rule pack"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise RuleLoadError(f"{first}{more}", sort_diagnostics(diagnostics))
    return pack


def load_pack_with_diagnostics(path: str | Path) -> tuple[Pack | None, list[Diagnostic]]:
    """Load a pack, returning every diagnostic instead of raising (lint uses this)."""
    root = Path(path)
    diagnostics: list[Diagnostic] = []
    manifest_path = root / PACK_FILE
    manifest_doc, manifest = _read_model(manifest_path, PackModel, diagnostics, "Pack")

    valuesets: dict[str, LoadedValueSet] = {}
    broken: set[str] = set()  # ids of files that exist but failed: no cascade of "not defined"
    for file in sorted((root / "valuesets").glob("*.y*ml")) if (root / "valuesets").is_dir() else []:
        vs_doc, vs_model = _read_model(file, ValueSetModel, diagnostics, "ValueSet")
        if vs_doc is None or vs_model is None:
            broken.update(_declared_id(vs_doc))
            continue
        if vs_model.id in valuesets:
            diagnostics.append(
                Diagnostic(
                    "CPR-E061",
                    f"value set id {vs_model.id!r} is already defined in {valuesets[vs_model.id].file}",
                    location=vs_doc.location(("id",)),
                )
            )
            continue
        valuesets[vs_model.id] = LoadedValueSet(vs_model, vs_doc.file, vs_doc)
    _check_valuesets(valuesets, broken, diagnostics)

    rule_files = sorted(p for p in root.rglob("*" + RULE_SUFFIX) if ".git" not in p.parts)
    raw_rules: list[tuple[YamlDocument, RuleModel]] = []
    broken_rules: set[str] = set()
    for file in rule_files:
        doc, model = _read_model(file, RuleModel, diagnostics, "Rule")
        if doc is not None and model is not None:
            raw_rules.append((doc, model))
        else:
            broken_rules.update(_declared_id(doc))

    seen: dict[str, str] = {}
    rule_ids = {model.id for _, model in raw_rules}
    versions = {vs_id: vs.model.version for vs_id, vs in valuesets.items()}
    pack_id = manifest.id if manifest else root.name
    pack_version = manifest.version if manifest else "0"
    rules: list[LoadedRule] = []
    for doc, model in raw_rules:
        if model.id in seen:
            diagnostics.append(
                Diagnostic(
                    "CPR-E060",
                    f"rule id {model.id!r} is already used by {seen[model.id]}",
                    location=doc.location(("id",)),
                    rule_id=model.id,
                )
            )
            continue
        seen[model.id] = doc.file
        check = RuleCheck(model, doc, versions, rule_ids, diagnostics, broken, broken_rules)
        when, escalations, activity_whens, templates = check.run()
        if when is None or any(
            e is None and esc.inherit is None for e, esc in zip(escalations, model.escalate, strict=True)
        ):
            continue
        rules.append(
            LoadedRule(
                model=model,
                file=doc.file,
                doc=doc,
                pack_id=pack_id,
                pack_version=pack_version,
                when=when,
                escalations=tuple(escalations),
                activity_whens=tuple(activity_whens),
                templates=templates,
            )
        )
    _check_rule_graph(rules, diagnostics)

    ingredient_map = IngredientMap()
    mme_table = MmeTable()
    if manifest is not None and manifest_doc is not None:
        ingredient_map = _read_ingredient_maps(root, manifest, manifest_doc, diagnostics)
        mme_table = _read_mme_table(root, manifest, manifest_doc, diagnostics)
    if manifest is None or manifest_doc is None:
        return None, diagnostics
    pack = Pack(
        root=root,
        manifest=manifest,
        manifest_file=manifest_doc.file,
        rules=tuple(sorted(rules, key=lambda r: r.id)),
        valuesets=valuesets,
        ingredient_map=ingredient_map,
        warnings=tuple(d for d in diagnostics if d.severity is not Severity.ERROR),
        mme_table=mme_table,
        broken_rule_ids=frozenset(broken_rules),
    )
    return pack, diagnostics


def _read_model(
    file: Path, model: type[M], diagnostics: list[Diagnostic], kind: str
) -> tuple[YamlDocument | None, M | None]:
    name = display_path(file)
    if not file.is_file():
        diagnostics.append(
            Diagnostic("CPR-E030", f"missing {file.name}: every pack needs a manifest", location=SourceLocation(name))
        )
        return None, None
    doc, problems = read_yaml_file(file, name)
    diagnostics.extend(problems)
    if doc is None:
        return None, None
    data: Any = doc.data
    if not isinstance(data, dict):
        diagnostics.append(
            Diagnostic("CPR-E002", f"expected a YAML mapping describing a {kind}", location=doc.location())
        )
        return doc, None
    declared = data.get("kind")
    if declared is not None and declared != kind:
        diagnostics.append(
            Diagnostic(
                "CPR-E031",
                f"file declares kind {declared!r} but files named like this hold a {kind}",
                location=doc.location(("kind",)),
            )
        )
        return doc, None
    rule_id = data.get("id") if kind == "Rule" and isinstance(data.get("id"), str) else None
    try:
        return doc, model.model_validate(data)
    except ValidationError as exc:
        diagnostics.extend(validation_diagnostics(exc, model, doc, rule_id))
        return doc, None


def _declared_id(doc: YamlDocument | None) -> set[str]:
    data = doc.data if doc is not None else None
    return {data["id"]} if isinstance(data, dict) and isinstance(data.get("id"), str) else set()


def _check_valuesets(valuesets: dict[str, LoadedValueSet], broken: set[str], diagnostics: list[Diagnostic]) -> None:
    graph: dict[str, list[str]] = {}
    for vs_id, vs in valuesets.items():
        graph[vs_id] = []
        for i, inc in enumerate(vs.model.include):
            if inc.valueset is None:
                continue
            if inc.valueset in broken:
                continue
            if inc.valueset not in valuesets:
                guess = did_you_mean(inc.valueset, valuesets)
                diagnostics.append(
                    Diagnostic(
                        "CPR-E020",
                        f"value set {inc.valueset!r} is not defined in this pack",
                        location=vs.doc.location(("include", i, "valueset")),
                        hint=f"did you mean {guess!r}?" if guess else None,
                    )
                )
            else:
                graph[vs_id].append(inc.valueset)
        has_concepts = any(inc.concepts or inc.valueset for inc in vs.model.include)
        has_text = vs.model.text is not None and bool(vs.model.text.strong or vs.model.text.weak)
        if not has_concepts and not has_text:
            diagnostics.append(
                Diagnostic(
                    "CPR-E021",
                    f"value set {vs_id!r} has no concepts and no text synonyms; it could never match",
                    location=vs.doc.location(),
                )
            )
    for cycle in dependency_cycles(graph):
        vs = valuesets[cycle[0]]
        diagnostics.append(
            Diagnostic(
                "CPR-E022",
                "value sets include each other in a cycle: " + " -> ".join(cycle),
                location=vs.doc.location(("include",)),
            )
        )


def _check_rule_graph(rules: Sequence[LoadedRule], diagnostics: list[Diagnostic]) -> None:
    graph: dict[str, list[str]] = {}
    for rule in rules:
        deps: list[str] = []
        for criterion in rule.model.criteria.values():
            if criterion.finding is not None:
                deps.extend(criterion.finding.rules)
        graph[rule.id] = deps
    by_id = {r.id: r for r in rules}
    for cycle in dependency_cycles(graph):
        rule = by_id[cycle[0]]
        diagnostics.append(
            Diagnostic(
                "CPR-E016",
                "rules depend on each other's findings in a cycle: " + " -> ".join(cycle),
                location=rule.doc.location(("criteria",)),
                rule_id=rule.id,
            )
        )


def _read_ingredient_maps(
    root: Path, manifest: PackModel, doc: YamlDocument, diagnostics: list[Diagnostic]
) -> IngredientMap:
    combined = IngredientMap()
    for i, rel in enumerate(manifest.ingredient_maps):
        file = root / rel
        name = display_path(file)
        try:
            with file.open(encoding="utf-8") as handle:
                parsed = parse_ingredient_map(handle, name)
        except OSError as exc:
            diagnostics.append(
                Diagnostic(
                    "CPR-E024",
                    f"cannot read ingredient map {rel!r}: {exc.strerror or exc}",
                    location=doc.location(("ingredient_maps", i)),
                )
            )
            continue
        except IngredientMapError as exc:
            diagnostics.append(Diagnostic("CPR-E024", str(exc), location=SourceLocation(name, exc.line)))
            continue
        except UnicodeDecodeError:
            diagnostics.append(
                Diagnostic("CPR-E024", "ingredient map is not UTF-8 text", location=SourceLocation(name))
            )
            continue
        combined = combined.merged(parsed)
    return combined


def _read_mme_table(root: Path, manifest: PackModel, doc: YamlDocument, diagnostics: list[Diagnostic]) -> MmeTable:
    if manifest.mme_factors is None:
        return MmeTable()
    file = root / manifest.mme_factors
    name = display_path(file)
    try:
        with file.open(encoding="utf-8") as handle:
            return parse_mme_table(handle, name)
    except OSError as exc:
        diagnostics.append(
            Diagnostic(
                "CPR-E025",
                f"cannot read MME factors {manifest.mme_factors!r}: {exc.strerror or exc}",
                location=doc.location(("mme_factors",)),
            )
        )
    except MmeTableError as exc:
        diagnostics.append(Diagnostic("CPR-E025", str(exc), location=SourceLocation(name, exc.line)))
    except UnicodeDecodeError:
        diagnostics.append(Diagnostic("CPR-E025", "MME factor table is not UTF-8 text", location=SourceLocation(name)))
    return MmeTable()
