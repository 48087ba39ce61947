"""Syntax of the output template language (rendering lives in ``outputs/templates.py``).

Templates are plain text with ``{reference}`` placeholders, not Jinja: every reference can be
checked when the pack loads, and the worst-case length of a card summary can be computed
(CDS Hooks wants summaries under 140 characters). ``{{`` and ``}}`` are literal braces.

References:

* ``{criterion.medication}`` name of the first matched concept (ingredient or token);
  ``{criterion.medications}`` every distinct name; ``{criterion.count}`` how many distinct;
  ``{criterion.date}`` latest record date; ``{criterion.value}`` latest observation value;
  ``{criterion.mme}`` total morphine milligram equivalents per day of known doses;
  ``{criterion.rules}`` titles of the findings a finding-criterion matched;
* ``{params.name}``, ``{rule.title}``, ``{rule.id}``, ``{rule.version}``, ``{severity}``,
  ``{indicator}``, ``{patient.age}``;
* ``{a.medication | b.medication}`` the first reference that renders non-empty, for a rule
  whose ``when`` accepts either criterion (a sedative drug *or* an alcohol-use diagnosis).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from careplan_rules.diagnostics import did_you_mean

CRITERION_FIELDS: dict[str, int] = {
    # field -> longest rendering (characters), used for worst-case length checks
    "medication": 40,
    "medications": 80,
    "count": 2,
    "date": 10,
    "value": 16,
    "rules": 80,
    "mme": 6,
}
OTHER_ROOTS: dict[str, dict[str, int]] = {
    "rule": {"title": 80, "id": 64, "version": 16},
    "patient": {"age": 3},
}
SCALARS: dict[str, int] = {"severity": 8, "indicator": 8}
PARAM_MAX = 20

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@dataclass(frozen=True, slots=True)
class Placeholder:
    root: str
    field: str | None
    start: int
    otherwise: Placeholder | None = None  # ``{a.x | b.y}``: used when this one renders empty

    def chain(self) -> tuple[Placeholder, ...]:
        """This reference and its fallbacks, in order."""
        return (self, *(self.otherwise.chain() if self.otherwise else ()))


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    parts: tuple[str | Placeholder, ...]


class TemplateSyntaxError(ValueError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def parse_template(text: str) -> Template:
    """Split a template into literal text and placeholders.

    Raises:
        TemplateSyntaxError: for an unbalanced brace or an empty placeholder.
    """
    parts: list[str | Placeholder] = []
    pos = 0
    buffer: list[str] = []
    for m in _TOKEN.finditer(text):
        buffer.append(text[pos : m.start()])
        token = m.group(0)
        if token == "{{":
            buffer.append("{")
        elif token == "}}":
            buffer.append("}")
        elif token in ("{", "}"):
            raise TemplateSyntaxError(
                f"unbalanced {token!r} in template (write {token * 2!r} for a literal brace)", m.start()
            )
        else:
            inner = (m.group(1) or "").strip()
            if not inner:
                raise TemplateSyntaxError("empty placeholder '{}' in template", m.start())
            if buffer:
                parts.append("".join(buffer))
                buffer = []
            choices = [c.strip() for c in inner.split("|")]
            if any(not c for c in choices):
                raise TemplateSyntaxError(f"empty alternative in placeholder '{{{inner}}}'", m.start())
            placeholder: Placeholder | None = None
            for choice in reversed(choices):
                root, _, field = choice.partition(".")
                placeholder = Placeholder(root.strip(), field.strip() or None, m.start(), placeholder)
            assert placeholder is not None
            parts.append(placeholder)
        pos = m.end()
    buffer.append(text[pos:])
    if "".join(buffer):
        parts.append("".join(buffer))
    return Template(text, tuple(parts))


def check_placeholder(ph: Placeholder, criteria: set[str], params: set[str]) -> str | None:
    """Return a problem description for an unknown reference, or None when it is valid."""
    if ph.root in SCALARS:
        return None if ph.field is None else f"'{{{ph.root}}}' takes no field"
    if ph.root == "params":
        if ph.field in params:
            return None
        guess = did_you_mean(ph.field or "", params)
        return f"unknown param {ph.field!r} in template" + (f" (did you mean {guess!r}?)" if guess else "")
    if ph.root in OTHER_ROOTS:
        fields = OTHER_ROOTS[ph.root]
        if ph.field in fields:
            return None
        return f"'{{{ph.root}.{ph.field}}}' is not available; use one of " + ", ".join(f"{ph.root}.{f}" for f in fields)
    if ph.root in criteria:
        if ph.field in CRITERION_FIELDS:
            return None
        guess = did_you_mean(ph.field or "", CRITERION_FIELDS)
        return (
            f"unknown field {ph.field!r} of criterion {ph.root!r}; use one of "
            + ", ".join(CRITERION_FIELDS)
            + (f" (did you mean {guess!r}?)" if guess else "")
        )
    guess = did_you_mean(ph.root, [*criteria, "params", "rule", "patient", *SCALARS])
    return f"template refers to unknown criterion {ph.root!r}" + (f" (did you mean {guess!r}?)" if guess else "")


def worst_case_length(template: Template, rule_values: dict[str, str] | None = None) -> int:
    """Longest possible rendering of a template (placeholders at their maximum length)."""
    total = 0
    for part in template.parts:
        if isinstance(part, str):
            total += len(part)
        else:
            total += max(_longest(ph, rule_values) for ph in part.chain())
    return total


def _longest(ph: Placeholder, rule_values: dict[str, str] | None) -> int:
    if ph.root in SCALARS:
        return SCALARS[ph.root]
    if ph.root == "params":
        return PARAM_MAX
    if ph.root in OTHER_ROOTS:
        known = (rule_values or {}).get(f"{ph.root}.{ph.field}")
        return len(known) if known is not None else OTHER_ROOTS[ph.root].get(ph.field or "", 20)
    return CRITERION_FIELDS.get(ph.field or "", 20)
