"""One hook call from request bytes to response bytes, wherever no network is needed.

The service process reads the body (within the size limit) and authenticates the caller;
what follows is CPU work: parse and check the request, take the data from the prefetch,
evaluate, build and render the cards. :func:`answer_body` does all of it, so an evaluation
process can (see :mod:`careplan_rules.service.evaluators`) and the service process only moves
bytes. When data is missing and the request names a ``fhirServer``, it answers
:data:`NEEDS_FETCH`: the service process gathers with its HTTP client (network, timeouts,
paging) and hands the gathered data to :func:`answer_gathered`.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from careplan_rules.api import Engine
from careplan_rules.outputs.cards import EXTENSION_KEY
from careplan_rules.service.config import ServiceConfig
from careplan_rules.service.context import HookCall, parse_hook_call
from careplan_rules.service.discovery import ServiceDefinition
from careplan_rules.service.errors import ServiceError
from careplan_rules.service.evaluation import evaluate_call
from careplan_rules.service.gather import Gathered, gather
from careplan_rules.service.http import parse_json, render_json
from careplan_rules.service.security import Caller
from careplan_rules.service.store import IssuedCard

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Answer:
    """A hook call's response body and what the service records and logs about it."""

    content: bytes  # {"cards": [...]} as JSON
    issued: tuple[IssuedCard, ...]
    errors: int  # "could not evaluate" cards among the cards
    hook_instance: str
    fetched: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NeedsFetch:
    """The request's data is incomplete and its fhirServer may have the rest."""


NEEDS_FETCH = NeedsFetch()


def answer_body(
    engine: Engine, config: ServiceConfig, service: ServiceDefinition, raw: bytes, caller: Caller, now: datetime
) -> Answer | NeedsFetch:
    """Answer a call from its body alone.

    Raises:
        ServiceError: 400 (malformed request, another patient's data), 412 (data missing,
            no fhirServer to fetch it from, and ``missing_data: 412``).
    """
    call = parse_hook_call(parse_json(raw), service.hook, lenient_user=config.context_validation == "lenient")
    # without an HTTP client, gathering never waits: what needs fetching comes back as missing
    data = run_without_io(gather(call, service.templates, None, config.fhir, engine.ruleset.read_types))
    if data.missing and call.fhir is not None:
        return NEEDS_FETCH
    return answer_gathered(engine, config, service, call, data, caller, now)


def answer_gathered(
    engine: Engine,
    config: ServiceConfig,
    service: ServiceDefinition,
    call: HookCall,
    data: Gathered,
    caller: Caller,
    now: datetime,
) -> Answer:
    """Evaluate a call's gathered data and render the response.

    Raises:
        ServiceError: 412 (data missing and ``missing_data: 412``), 400 (another patient's data).
    """
    if data.missing and config.missing_data == "412":
        raise ServiceError(412, data.missing)
    result = evaluate_call(engine, call, data.resources, now, missing=data.missing)
    return Answer(
        render_json({"cards": result.cards}),
        issued_cards(result.cards, service, call.hook_instance, call.user_id, caller),
        result.errors,
        call.hook_instance,
        data.fetched,
    )


def issued_cards(
    cards: list[dict[str, Any]], service: ServiceDefinition, call_instance: str, user: str | None, caller: Caller
) -> tuple[IssuedCard, ...]:
    """What the feedback store keeps of each card (to join feedback to rule, user and client)."""
    out = []
    for card in cards:
        finding = card.get("extension", {}).get(f"{EXTENSION_KEY}.finding", {})
        out.append(
            IssuedCard(
                card_uuid=card["uuid"],
                service_id=service.id,
                hook=service.hook,
                hook_instance=call_instance,
                indicator=card["indicator"],
                rule_id=finding.get("rule"),
                rule_version=finding.get("ruleVersion"),
                pack_id=finding.get("pack"),
                pack_version=finding.get("packVersion"),
                user_id=user,
                client_iss=caller.iss,
                tenant=caller.tenant,
                suggestions=tuple((s["uuid"], s["label"]) for s in card.get("suggestions", ())),
            )
        )
    return tuple(out)


def run_without_io(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that finishes without waiting for anything.

    Raises:
        RuntimeError: it did wait (a bug: it was given no way to do I/O).
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("gathering without an HTTP client waited for I/O")
