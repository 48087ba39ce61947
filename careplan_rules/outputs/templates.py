"""Render the ``{criterion.field}`` templates of a rule's outputs (syntax: model/template.py).

Values are short by construction (names are truncated to the lengths lint assumes), and a
card summary is cut below 140 characters as a last resort, so an unexpectedly long drug name
can never produce an invalid CDS Hooks card.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from careplan_rules.facts import PatientRecord
from careplan_rules.findings import CriterionResult, Match, RuleOutcome
from careplan_rules.model.rule import ParamValue
from careplan_rules.model.template import CRITERION_FIELDS, Placeholder, Template
from careplan_rules.temporal import age_in_years

SUMMARY_LIMIT = 139  # CDS Hooks: "<140 characters"


@dataclass(frozen=True, slots=True)
class TemplateData:
    outcome: RuleOutcome
    record: PatientRecord
    now: datetime
    params: Mapping[str, ParamValue]
    rule_values: Mapping[str, str]  # rule.title, rule.id, rule.version
    severity: str
    indicator: str
    rule_title: Callable[[str], str]


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 1)].rstrip() + "…"


def _names(matches: tuple[Match, ...]) -> list[str]:
    names: dict[str, None] = {}
    for m in matches:
        if m.evidence:
            for e in m.evidence:
                names.setdefault(e.name, None)
        else:
            names.setdefault(m.label, None)
    return list(names)


def _criterion_value(result: CriterionResult, field: str, data: TemplateData) -> str:
    allowed = data.outcome.restricted.get(result.name)
    matches = tuple(m for m in result.matches if allowed is None or m.ref in allowed)
    limit = CRITERION_FIELDS.get(field, 40)
    if field == "medication":
        names = _names(matches)
        return truncate(names[0], limit) if names else ""
    if field == "medications":
        names = _names(matches)
        text = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return truncate(text, limit)
    if field == "count":
        return str(len(result.distinct()))
    if field == "date":
        dates = [m.date for m in matches if m.date is not None]
        return max(dates).date().isoformat() if dates else "an unknown date"
    if field == "value":
        dated = sorted(
            (m for m in matches if m.value is not None), key=lambda m: (m.date is not None, m.date or data.now)
        )
        return truncate(dated[-1].value.label, limit) if dated and dated[-1].value else ""
    if field == "mme":
        return f"{result.daily_mme():.0f}"
    if field == "rules":
        titles = [data.rule_title(m.label) for m in matches if m.outcome is not None]
        return truncate(", ".join(titles), limit)
    return ""


def _value(ph: Placeholder, data: TemplateData) -> str:
    if ph.root == "severity":
        return data.severity
    if ph.root == "indicator":
        return data.indicator
    if ph.root == "params":
        return truncate(str(data.params.get(ph.field or "", "")), 20)
    if ph.root == "rule":
        return data.rule_values.get(f"rule.{ph.field}", "")
    if ph.root == "patient":
        patient = data.record.patient
        if ph.field == "age" and patient is not None and patient.birth_date is not None:
            return str(age_in_years(patient.birth_date, data.now))
        return "unknown"
    result = data.outcome.criteria.get(ph.root)
    if result is None or ph.field is None:
        return ""
    return _criterion_value(result, ph.field, data)


def render(template: Template, data: TemplateData) -> str:
    return "".join(part if isinstance(part, str) else _first_value(part, data) for part in template.parts)


def _first_value(ph: Placeholder, data: TemplateData) -> str:
    chain = ph.chain()
    for i, ref in enumerate(chain):
        result = data.outcome.criteria.get(ref.root)
        if result is not None and not result.matches and i < len(chain) - 1:
            continue  # an unmatched criterion has nothing to say ("an unknown date"): try the next
        value = _value(ref, data)
        if value:
            return value
    return ""


_BLOCK_START = ("- ", "* ", "+ ", "|", "#", ">", "```")


@functools.lru_cache(maxsize=512)  # rendered details and descriptions repeat across patients
def reflow_markdown(text: str) -> str:
    """Join the hard-wrapped lines of each paragraph (YAML block scalars keep them).

    Markdown treats a single newline as a space anyway; joining keeps JSON output and
    EHRs that render newlines literally tidy. Lists, tables, headings and code stay as they are.
    """
    out: list[str] = []
    for para in text.strip().split("\n\n"):
        lines = para.split("\n")
        if any(line.lstrip().startswith(_BLOCK_START) or line.lstrip()[:3].rstrip(".").isdigit() for line in lines):
            out.append(para)
        else:
            out.append(" ".join(line.strip() for line in lines if line.strip()))
    return "\n\n".join(out)


def render_summary(template: Template, data: TemplateData) -> str:
    text = " ".join(render(template, data).split())
    return truncate(text, SUMMARY_LIMIT)
