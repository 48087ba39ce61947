"""The feedback request (``POST /cds-services/{id}/feedback``), checked against CDS Hooks 2.0.1.

Invariants (HL7/cds-hooks 3.0 ballot): ``cds-fb-1`` outcome is ``accepted`` or ``overridden``;
``cds-fb-2`` accepted feedback names its accepted suggestions; ``cds-fb-3`` an override reason
has a ``reason`` coding or a ``userComment``. Every problem is collected into one 400.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from careplan_rules.service.context import MAX_ID_LENGTH
from careplan_rules.service.errors import Problems
from careplan_rules.service.store import FeedbackItem

OUTCOMES = ("accepted", "overridden")
MAX_ITEMS = 1000
MAX_COMMENT = 4000


def _timestamp(value: Any) -> str | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return value if parsed.tzinfo is not None else None


def parse_feedback(body: Any) -> list[FeedbackItem]:
    """The feedback items of a request body.

    Raises:
        ServiceError: 400 listing every problem.
    """
    problems = Problems()
    items = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        problems.add("required", "the body must be {'feedback': [ ... ]} with at least one item", "feedback")
        problems.raise_if_any()
        raise AssertionError("unreachable")
    if len(items) > MAX_ITEMS:
        problems.add("too-long", f"at most {MAX_ITEMS} feedback items per request", "feedback")
        problems.raise_if_any()
    out = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]"
        if not isinstance(item, dict):
            problems.add("structure", "each feedback item must be a JSON object", where)
            continue
        card = item.get("card")
        if not isinstance(card, str) or not card:
            problems.add("required", "card (the card's uuid) is required", f"{where}.card")
        elif len(card) > MAX_ID_LENGTH:
            too_long = f"card must be at most {MAX_ID_LENGTH} characters (a UUID has 36)"
            problems.add("too-long", too_long, f"{where}.card")
            card = None
        outcome = item.get("outcome")
        if outcome not in OUTCOMES:
            problems.add("value", "outcome must be 'accepted' or 'overridden'", f"{where}.outcome")
        stamp = _timestamp(item.get("outcomeTimestamp"))
        if stamp is None:
            problems.add(
                "value", "outcomeTimestamp must be an RFC 3339 date-time with a zone", f"{where}.outcomeTimestamp"
            )
        accepted = _accepted(item, outcome, where, problems)
        reason = _override(item, where, problems)
        if isinstance(card, str) and card and outcome in OUTCOMES and stamp is not None:
            out.append(FeedbackItem(card, str(outcome), stamp, accepted, *reason))
    problems.raise_if_any()
    return out


def _accepted(item: dict[str, Any], outcome: Any, where: str, problems: Problems) -> tuple[str, ...]:
    raw = item.get("acceptedSuggestions")
    if raw is None:
        if outcome == "accepted":
            problems.add(
                "required", "acceptedSuggestions is required when outcome is accepted", f"{where}.acceptedSuggestions"
            )
        return ()
    ids = []
    if not isinstance(raw, list) or not raw:
        problems.add("structure", "acceptedSuggestions must be a non-empty list", f"{where}.acceptedSuggestions")
        return ()
    for j, sugg in enumerate(raw):
        sid = sugg.get("id") if isinstance(sugg, dict) else None
        if not isinstance(sid, str) or not sid:
            problems.add("required", "each accepted suggestion needs its id", f"{where}.acceptedSuggestions[{j}].id")
        elif len(sid) > MAX_ID_LENGTH:
            problems.add(
                "too-long",
                f"a suggestion id must be at most {MAX_ID_LENGTH} characters (a UUID has 36)",
                f"{where}.acceptedSuggestions[{j}].id",
            )
        else:
            ids.append(sid)
    return tuple(ids)


def _override(
    item: dict[str, Any], where: str, problems: Problems
) -> tuple[str | None, str | None, str | None, str | None]:
    raw = item.get("overrideReason")
    if raw is None:
        return (None, None, None, None)
    if not isinstance(raw, dict):
        problems.add("structure", "overrideReason must be a JSON object", f"{where}.overrideReason")
        return (None, None, None, None)
    reason = raw.get("reason")
    comment = raw.get("userComment")
    system = code = display = None
    if reason is not None:
        if not isinstance(reason, dict) or not isinstance(reason.get("code"), str) or not reason.get("code"):
            problems.add(
                "value", "overrideReason.reason must be a Coding with a code", f"{where}.overrideReason.reason"
            )
        else:
            code = reason["code"]
            system = reason.get("system") if isinstance(reason.get("system"), str) else None
            display = reason.get("display") if isinstance(reason.get("display"), str) else None
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        problems.add(
            "value",
            f"overrideReason.userComment must be text of at most {MAX_COMMENT} characters",
            f"{where}.overrideReason.userComment",
        )
        comment = None
    if reason is None and comment is None:
        problems.add(
            "required", "overrideReason needs a reason, a userComment or both (cds-fb-3)", f"{where}.overrideReason"
        )
    return (system, code, display, comment if isinstance(comment, str) else None)
