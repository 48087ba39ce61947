"""Lint checks beyond loading: what loads fine but will hurt a clinician or an integrator.

Each check is a plain function ``check_x(pack, context) -> list[Diagnostic]`` with a stable
code (documented in docs/authoring.md); the loader's own errors (CPR-E001…E061) come first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date

from careplan_rules.diagnostics import Diagnostic, Severity
from careplan_rules.loader.pack import LoadedRule, Pack
from careplan_rules.loader.ruletests import LoadedTest
from careplan_rules.model.common import CodingSpec, YamlPath
from careplan_rules.model.template import Placeholder, worst_case_length
from careplan_rules.model.when import references
from careplan_rules.temporal import parse_duration, try_parse_fhir_datetime
from careplan_rules.terminology.systems import SYSTEM_NAMES, looks_like_uri

SUMMARY_LIMIT = 139  # CDS Hooks: a summary must be shorter than 140 characters


@dataclass(slots=True)
class LintContext:
    today: date
    tests: list[LoadedTest] = field(default_factory=list)
    backend: str = "python"


Check = Callable[[Pack, LintContext], list[Diagnostic]]


def _warn(
    code: str, message: str, rule: LoadedRule, path: YamlPath, hint: str | None = None, key: bool = False
) -> Diagnostic:
    return Diagnostic(code, message, Severity.WARNING, rule.doc.location(path, key=key), rule.id, hint)


def _err(code: str, message: str, rule: LoadedRule, path: YamlPath, hint: str | None = None) -> Diagnostic:
    return Diagnostic(code, message, Severity.ERROR, rule.doc.location(path), rule.id, hint)


def _used_criteria(rule: LoadedRule) -> set[str]:
    model = rule.model
    used = {r.name for r in references(rule.when)}
    for expr in (*rule.escalations, *rule.activity_whens):
        if expr is not None:
            used |= {r.name for r in references(expr)}
    used |= {e.inherit for e in model.escalate if e.inherit}
    used |= set(model.outputs.detected_issue.implicated or [])
    for crit in model.criteria.values():
        if crit.review is not None:
            used |= set(crit.review.targets) | ({crit.review.after} if crit.review.after else set())
    for activity in model.outputs.careplan_activities:
        used |= set(activity.addresses)
    for template in rule.templates.values():
        used |= {ref.root for p in template.parts if isinstance(p, Placeholder) for ref in p.chain()}
    return used


def check_unused_criteria(pack: Pack, ctx: LintContext) -> list[Diagnostic]:
    out = []
    for rule in pack.rules:
        used = _used_criteria(rule)
        for name in rule.model.criteria:
            if name not in used:
                out.append(
                    _warn(
                        "CPR-W011",
                        f"criterion {name!r} is never used (not in when, escalate, outputs or another criterion)",
                        rule,
                        ("criteria", name),
                        key=True,
                    )
                )
    return out


def check_summary_length(pack: Pack, ctx: LintContext) -> list[Diagnostic]:
    out = []
    for rule in pack.rules:
        template = rule.templates.get("summary")
        if template is None:
            continue
        worst = worst_case_length(template, {"rule.title": rule.model.title, "rule.id": rule.id})
        if worst > SUMMARY_LIMIT:
            out.append(
                _err(
                    "CPR-E033",
                    f"summary can render {worst} characters; CDS Hooks cards need fewer than 140",
                    rule,
                    ("outputs", "summary"),
                    hint="shorten the text or use {criterion.medication} instead of {criterion.medications}",
                )
            )
    return out


def _codings(rule: LoadedRule) -> Iterator[tuple[CodingSpec, YamlPath]]:
    outputs = rule.model.outputs
    if isinstance(outputs.detected_issue.code, CodingSpec):
        yield outputs.detected_issue.code, ("outputs", "detected_issue", "code", "system")
    for i, activity in enumerate(outputs.careplan_activities):
        if activity.code is not None:
            yield activity.code, ("outputs", "careplan_activities", i, "code", "system")
    for i, reason in enumerate(outputs.card.override_reasons or []):
        yield reason, ("outputs", "card", "override_reasons", i, "system")


def _system_problem(system: str) -> tuple[str, str | None] | None:
    if looks_like_uri(system):
        return None
    uri = SYSTEM_NAMES.get(system.strip().lower())
    return (f"code system {system!r} is a name, not a URI", f"write {uri}" if uri else "use the system's canonical URI")


def check_system_uris(pack: Pack, ctx: LintContext) -> list[Diagnostic]:
    out = []
    for rule in pack.rules:
        for coding, path in _codings(rule):
            problem = _system_problem(coding.system)
            if problem:
                out.append(_err("CPR-E034", problem[0], rule, path, problem[1]))
    for vs in pack.valuesets.values():
        for i, inc in enumerate(vs.model.include):
            if inc.system is not None:
                problem = _system_problem(inc.system)
                if problem:
                    out.append(
                        Diagnostic(
                            "CPR-E034",
                            problem[0],
                            Severity.ERROR,
                            vs.doc.location(("include", i, "system")),
                            None,
                            problem[1],
                        )
                    )
    return out


def check_unverified_codes(pack: Pack, ctx: LintContext) -> list[Diagnostic]:
    out = []
    for vs in pack.valuesets.values():
        for i, inc in enumerate(vs.model.include):
            for j, concept in enumerate(inc.concepts):
                if concept.unverified:
                    what = f"code {concept.code}" if concept.code else "name-only concept"
                    out.append(
                        Diagnostic(
                            "CPR-W023",
                            f"value set {vs.model.id!r}: {what} ({concept.display or '?'}) is marked unverified",
                            Severity.WARNING,
                            vs.doc.location(("include", i, "concepts", j)),
                            hint="verify it against the terminology release, then remove 'unverified'",
                        )
                    )
    return out


def check_tests_exist(pack: Pack, ctx: LintContext) -> list[Diagnostic]:
    declared: dict[str, set[str]] = {}
    for test in ctx.tests:
        if test.pack is pack:
            declared.setdefault(test.model.rule, set()).update(c.expect for c in test.model.cases)
    out = []
    for rule in pack.rules:
        if rule.model.status != "active":
            continue
        expects = declared.get(rule.id, set())
        missing = [e for e in ("fire", "no-fire") if e not in expects]
        if missing:
            out.append(
                _err(
                    "CPR-E035",
                    f"active rule has no {' and no '.join(repr(m) for m in missing)} test case",
                    rule,
                    ("id",),
                    hint=f"add cases to a *.test.yaml with 'rule: {rule.id}'",
                )
            )
    return out


def check_evidence(pack: Pack, ctx: LintContext) -> list[Diagnostic]:
    out = []
    for rule in pack.rules:
        if rule.model.status != "active":
            continue
        if not rule.model.metadata.citations:
            out.append(_warn("CPR-W041", "active rule cites no evidence (metadata.citations)", rule, ("metadata",)))
        if rule.model.dsi is None:
            out.append(_warn("CPR-W042", "active rule has no HTI-1 source attributes ('dsi' block)", rule, ("id",)))
    return out


def check_review_due(pack: Pack, ctx: LintContext) -> list[Diagnostic]:
    out = []
    for rule in pack.rules:
        meta = rule.model.metadata
        if not meta.last_reviewed or not meta.review_every:
            continue
        last = try_parse_fhir_datetime(meta.last_reviewed)
        try:
            every = parse_duration(meta.review_every)
        except ValueError as exc:
            out.append(_err("CPR-E013", str(exc), rule, ("metadata", "review_every")))
            continue
        if last is None:
            out.append(
                _err(
                    "CPR-E002",
                    f"last_reviewed {meta.last_reviewed!r} is not a date",
                    rule,
                    ("metadata", "last_reviewed"),
                )
            )
            continue
        due = every.after(last.earliest).date()
        if due < ctx.today:
            out.append(
                _warn("CPR-W050", f"clinical review was due on {due.isoformat()}", rule, ("metadata", "last_reviewed"))
            )
    return out


def check_escalations(pack: Pack, ctx: LintContext) -> list[Diagnostic]:
    order = {"low": 0, "moderate": 1, "high": 2, "info": 0, "warning": 1, "critical": 2}
    out = []
    for rule in pack.rules:
        model = rule.model
        for i, esc in enumerate(model.escalate):
            if esc.when is None:
                continue
            raises = (esc.severity is not None and order[esc.severity] > order[model.severity]) or (
                esc.indicator is not None and order[esc.indicator] > order[model.indicator]
            )
            if not raises:
                out.append(
                    _warn(
                        "CPR-W043",
                        "escalation never raises the grade (it is not above the rule's default severity/indicator)",
                        rule,
                        ("escalate", i),
                    )
                )
    return out


def check_backend(pack: Pack, ctx: LintContext) -> list[Diagnostic]:
    """Rules the durable backend cannot express (a lint error when that backend is chosen)."""
    try:
        from careplan_rules.engine.backends import durable
    except Exception:  # the extra is optional; nothing to check without it
        return []
    reasons_of = getattr(durable, "unsupported_reasons", None)
    if reasons_of is None:
        return []
    out = []
    severity = Severity.ERROR if ctx.backend == "durable" else Severity.INFO
    for rule in pack.rules:
        for reason in reasons_of(rule):
            out.append(
                Diagnostic(
                    "CPR-E070",
                    f"rule cannot run on the durable backend: {reason}",
                    severity,
                    rule.doc.location(("id",)),
                    rule.id,
                )
            )
    return out


CHECKS: tuple[Check, ...] = (
    check_unused_criteria,
    check_summary_length,
    check_system_uris,
    check_unverified_codes,
    check_tests_exist,
    check_evidence,
    check_review_due,
    check_escalations,
    check_backend,
)
