"""Run the engine over one hook call's data and turn the result into cards.

No clinical logic lives here: the data goes through the same ``Engine.evaluate_document`` as
the CLI's ``evaluate``, and cards come from :mod:`careplan_rules.outputs.cards`. What this
module adds is the CDS Hooks framing: only the context patient is evaluated, anything that
stops the engine becomes a visible "could not evaluate" card (never an empty answer, never a
bare 500), and draft orders the rules cannot read (DSTU2 ``MedicationOrder``) are named on a
card instead of being skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from careplan_rules._version import __version__
from careplan_rules.api import Engine
from careplan_rules.errors import FhirInputError
from careplan_rules.fhir.reader import parse_collection
from careplan_rules.outputs.cards import EXTENSION_KEY, build_cards, could_not_evaluate_card
from careplan_rules.service.context import HookCall
from careplan_rules.service.errors import Issue, ServiceError

log = logging.getLogger("careplan_rules.service")
SOURCE = "CDS Hooks request"
UNREADABLE_ORDER_TYPES = ("MedicationOrder", "MedicationPrescription")  # DSTU2 / DSTU1 medication orders


@dataclass(frozen=True, slots=True)
class CallResult:
    cards: list[dict[str, Any]]
    errors: int  # "could not evaluate" cards among them


def topic_of(engine: Engine) -> str:
    titles = [p.manifest.title for p in engine.packs]
    return "safety rules (" + "; ".join(titles) + ")" if titles else "safety rules"


def evaluate_call(
    engine: Engine,
    call: HookCall,
    resources: Sequence[tuple[dict[str, Any], str | None]],
    now: datetime,
    *,
    missing: Sequence[Issue] = (),
) -> CallResult:
    """Evaluate the context patient and build the response cards.

    Args:
        engine: the shared engine.
        call: the validated request.
        resources: (resource, fullUrl) pairs from prefetch, fetches and draft orders.
        now: the evaluation time (request time).
        missing: data that could not be obtained (only passed when the service is configured
            to evaluate anyway); it is shown on a "could not evaluate" card first.

    Returns:
        The cards, and how many of them say the rules could not (fully) run.

    Raises:
        ServiceError: 400 when the data turns out to hold another patient's records.
    """
    topic = topic_of(engine)
    salt = call.hook_instance
    lead: list[dict[str, Any]] = []
    if missing:
        lead.append(
            could_not_evaluate_card(
                "some of the patient's data could not be obtained: " + "; ".join(i.message for i in missing),
                salt=salt,
                topic=topic,
            )
        )
    for order in call.draft_orders:
        if order.get("resourceType") in UNREADABLE_ORDER_TYPES and "MedicationRequest" in engine.ruleset.read_types:
            lead.append(
                could_not_evaluate_card(
                    f"a draft order is a {order['resourceType']} (an old FHIR release) that the rules cannot read, "
                    "so it was not checked",
                    salt=f"{salt}|{order.get('id')}",
                    topic=topic,
                )
            )
    try:
        doc = parse_collection(resources, SOURCE)
        results = engine.evaluate_document(doc, now)
    except FhirInputError as exc:
        card = could_not_evaluate_card(
            "the request's FHIR data could not be read", diagnostics=exc.diagnostics, salt=salt, topic=topic
        )
        return CallResult([*lead, card], len(lead) + 1)
    except Exception as exc:  # an engine bug must still reach the clinician as a card
        log.error("evaluation failed with %s (a bug; no patient data logged)", type(exc).__name__)
        card = could_not_evaluate_card("the rules engine failed unexpectedly", salt=salt, topic=topic)
        return CallResult([*lead, card], len(lead) + 1)
    own = f"Patient/{call.patient_id}"
    if any(r.patient not in ("", own) for r in results):
        raise ServiceError(
            400,
            [
                Issue(
                    "invalid",
                    "the request's data holds records of a patient other than context.patientId; "
                    "records of two patients are never evaluated together",
                    ("prefetch",),
                )
            ],
        )
    cards = build_cards(results, engine.ruleset, now, __version__, salt=salt, topic=topic)
    _mark_orders(cards, call)
    errors = len(lead) + sum(1 for c in cards if f"{EXTENSION_KEY}.could-not-evaluate" in c.get("extension", {}))
    return CallResult([*lead, *cards], errors)


def warm_up(engine: Engine, now: datetime) -> None:
    """Load what the first call would load lazily (FHIR model classes, matchers), so the first
    clinician after a start does not wait for imports (~0.5 s measured). Only a speed-up: a
    failure is logged and serving goes on."""
    try:
        _warm_up(engine, now)
    except Exception as exc:
        log.warning("warm-up failed (%s); the first call will be slower", type(exc).__name__)


def _warm_up(engine: Engine, now: datetime) -> None:
    from careplan_rules.fhir.validation import model_class

    for release in ("R4", "R5"):
        for resource_type in {"Patient", *engine.ruleset.read_types}:
            model_class(release, resource_type)
    subject = {"reference": "Patient/warm-up"}
    for statement in (
        {"medicationCodeableConcept": {"text": "warm-up"}, "status": "active"},
        {"medication": {"concept": {"text": "warm-up"}}, "status": "recorded"},
    ):
        resource = {"resourceType": "MedicationStatement", "id": "w", "subject": subject, **statement}
        doc = parse_collection([(resource, None)], "warm-up")
        engine.evaluate_document(doc, now)


def _mark_orders(cards: list[dict[str, Any]], call: HookCall) -> None:
    """Say on each card which of the orders being placed it concerns (cds-hooks/docs #20)."""
    if not call.draft_orders:
        return
    drafts = {f"{d['resourceType']}/{d.get('id')}" for d in call.draft_orders if isinstance(d.get("id"), str)}
    for card in cards:
        finding = card.get("extension", {}).get(f"{EXTENSION_KEY}.finding")
        if not finding:
            continue
        concerned = [ref for ref in finding["implicated"] if ref in drafts]
        if concerned:
            finding["draftOrders"] = concerned
        if call.selections:
            finding["selected"] = any(ref in call.selections for ref in concerned)
