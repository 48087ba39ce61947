"""Issued cards are recorded in batches off the event loop, and none is lost on the way."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from careplan_rules.service.card_log import IssuedCardLog
from careplan_rules.service.store import FeedbackStore, IssuedCard
from tests.service.helpers import PV, running, start

Body = Callable[..., dict[str, Any]]


def recorded(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT card_uuid FROM issued_cards ORDER BY card_uuid")]


def card(n: int) -> IssuedCard:
    return IssuedCard(f"card-{n}", "svc", "patient-view", "h", "warning")


class CountingStore(FeedbackStore):
    def __init__(self, path: Path, *, fail: bool = False) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.fail = fail

    def record_cards(self, cards: Any, *, retention_days: int = 90) -> None:
        self.batches.append(len(cards))
        if self.fail:
            raise sqlite3.OperationalError("database or disk is full")
        super().record_cards(cards, retention_days=retention_days)


def test_cards_of_many_calls_are_written_in_few_transactions(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "fb.sqlite3")

    async def calls() -> None:
        log = IssuedCardLog(store, retention_days=90, delay=0.05)
        for n in range(40):
            log.add([card(2 * n), card(2 * n + 1)])
            await asyncio.sleep(0)
        log.add([])  # a call without cards
        await asyncio.sleep(0.2)  # the timer fires: one batch
        assert store.batches == [80]
        log.add([card(100)])
        await log.flush()  # written now, without waiting for the timer
        assert store.batches == [80, 1]

    asyncio.run(calls())
    assert len(recorded(tmp_path / "fb.sqlite3")) == 81
    store.close()


def test_every_call_card_is_recorded_by_the_time_the_service_stops(tmp_path: Path, pv_body: Body) -> None:
    sent: list[str] = []
    with running(start(tmp_path)) as client:
        for _ in range(5):
            body = pv_body(hookInstance=str(uuid.uuid4()))
            sent += [c["uuid"] for c in client.post(f"/cds-services/{PV}", json=body).json()["cards"]]
    assert sent and recorded(tmp_path / "feedback.sqlite3") == sorted(sent)


def test_a_store_that_cannot_write_costs_no_card(
    tmp_path: Path, pv_body: Body, caplog: pytest.LogCaptureFixture
) -> None:
    from careplan_rules.service.app import create_app
    from tests.service.helpers import FhirStub, make_config

    store = CountingStore(tmp_path / "broken.sqlite3", fail=True)
    config = make_config(tmp_path, auth={"insecure_no_auth": True}, fhir={})
    app = create_app(config, store=store, http_transport=FhirStub().transport())
    with running(app) as client:
        response = client.post(f"/cds-services/{PV}", json=pv_body())
        assert response.status_code == 200 and response.json()["cards"]
        feedback = {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
        client.post(f"/cds-services/{PV}/feedback", json=feedback)  # flushes first: the write fails, logged
    assert store.batches and "could not record" in caplog.text and "disk is full" not in caplog.text
