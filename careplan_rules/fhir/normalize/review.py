"""Records that may document a clinician's review → :class:`ReviewEvent` (one per actor).

What counts is decided by the rule's review criterion (research/kratom-knowledge.md §4.5);
this module only says who did what, when, to which records:

* Provenance: each agent with its role codes (verifier, attester, author…) and the targets;
* Procedure (completed, with a code) performed by each performer;
* Task (with a code) owned by someone, focused on a record;
* DetectedIssue mitigations, each with its author, date and the implicated records;
* CarePlan activities with a code and a status.

The actor's type comes from the resolved resource, the reference text or ``Reference.type``;
a reference whose type cannot be told gives an actor of unknown type, which never counts as
a clinician (an unattributable review is not a documented one).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from careplan_rules.facts import ReviewEvent
from careplan_rules.fhir.normalize.common import Context, codeable, codes_of, instant, time_of


def _actor(ctx: Context, reference: Any) -> tuple[str | None, str | None]:
    if not isinstance(reference, dict):
        return None, None
    r = ctx.entry.resource
    return (
        ctx.index.target_type(reference, container=r, from_entry=ctx.entry),
        ctx.index.ref_string(reference, container=r, from_entry=ctx.entry),
    )


def _refs(ctx: Context, references: Any) -> tuple[str, ...]:
    out = []
    for ref in references or []:
        s = ctx.index.ref_string(ref, container=ctx.entry.resource, from_entry=ctx.entry)
        if s:
            out.append(s)
    return tuple(out)


def reviews_from(ctx: Context) -> Iterator[ReviewEvent]:
    r = ctx.entry.resource
    rt = ctx.entry.resource_type
    status = r.get("status") if isinstance(r.get("status"), str) else None
    if rt == "Provenance":
        start, end = time_of(r, "occurred")
        when = instant(r.get("recorded")) or end or start
        targets = _refs(ctx, r.get("target"))
        for agent in r.get("agent") or []:
            if not isinstance(agent, dict):
                continue
            actor_type, actor_ref = _actor(ctx, agent.get("who"))
            roles = codes_of(agent.get("type")) + tuple(c for role in agent.get("role") or [] for c in codes_of(role))
            yield ReviewEvent(ctx.ref, "provenance", when, actor_type, actor_ref, roles, (), None, None, targets)
    elif rt == "Procedure":
        codings, _ = codeable(r.get("code"), "code")
        start, end = time_of(r, "occurrence" if ctx.r5 else "performed")
        when = end or start or instant(r.get("recorded"))
        excluded = None if status == "completed" else f"status {status!r} (only completed procedures count)"
        targets = _refs(ctx, r.get("reasonReference")) + _refs(ctx, r.get("focalDevice"))
        performers = [p for p in r.get("performer") or [] if isinstance(p, dict)]
        if not performers:
            yield ReviewEvent(ctx.ref, "procedure", when, None, None, (), codings, status, excluded, targets)
        for p in performers:
            actor_type, actor_ref = _actor(ctx, p.get("actor"))
            roles = codes_of(p.get("function"))
            yield ReviewEvent(
                ctx.ref, "procedure", when, actor_type, actor_ref, roles, codings, status, excluded, targets
            )
    elif rt == "Task":
        codings, _ = codeable(r.get("code"), "code")
        _, exec_end = time_of(r, "execution")
        when = exec_end or instant(r.get("lastModified")) or instant(r.get("authoredOn"))
        excluded = None if status == "completed" else f"status {status!r} (only completed tasks count)"
        actor_type, actor_ref = _actor(ctx, r.get("owner"))
        targets = _refs(ctx, [r.get("focus")] if r.get("focus") else [])
        yield ReviewEvent(ctx.ref, "task", when, actor_type, actor_ref, (), codings, status, excluded, targets)
    elif rt == "DetectedIssue":
        excluded = "status 'entered-in-error'" if status == "entered-in-error" else None
        targets = _refs(ctx, r.get("implicated"))
        for i, mitigation in enumerate(r.get("mitigation") or []):
            if not isinstance(mitigation, dict):
                continue
            codings, _ = codeable(mitigation.get("action"), f"mitigation[{i}].action")
            actor_type, actor_ref = _actor(ctx, mitigation.get("author"))
            when = instant(mitigation.get("date"), latest=True)
            yield ReviewEvent(
                ctx.ref, "detected-issue", when, actor_type, actor_ref, (), codings, status, excluded, targets
            )
    elif rt == "CarePlan":
        for i, act in enumerate(r.get("activity") or []):
            detail = act.get("detail") if isinstance(act, dict) else None
            if not isinstance(detail, dict) or not isinstance(detail.get("code"), dict):
                continue
            codings, _ = codeable(detail["code"], f"activity[{i}].detail.code")
            act_status = detail.get("status") if isinstance(detail.get("status"), str) else None
            excluded = None if act_status == "completed" else f"activity status {act_status!r}"
            start, end = time_of(detail, "scheduled")
            performers = [p for p in detail.get("performer") or [] if isinstance(p, dict)]
            actor_type, actor_ref = _actor(ctx, performers[0]) if performers else (None, None)
            yield ReviewEvent(
                ctx.ref,
                "careplan-activity",
                end or start,
                actor_type,
                actor_ref,
                (),
                codings,
                act_status,
                excluded,
                (ctx.ref,),
            )
