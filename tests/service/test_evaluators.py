"""Where calls are evaluated: on the event loop (default) or in a pool of evaluation processes.

The pool tests start real processes (a few seconds each), so one pool serves most of them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from careplan_rules import Engine
from careplan_rules.engine.backends.durable import import_problem
from careplan_rules.service.app import create_app
from careplan_rules.service.calls import run_without_io
from careplan_rules.service.config import ConfigError
from careplan_rules.service.evaluators import (
    EvaluationProcessError,
    InlineEvaluator,
    ProcessEvaluator,
    ThreadEvaluator,
    _Process,
)
from tests.factories import external, kratom, patient, read_json, sertraline
from tests.service.helpers import FHIR, OSEL, OSIGN, PV, Client, FhirStub, make_config, running, start

Body = Callable[..., dict[str, Any]]
NOW = 1_780_000_000.0  # a fixed clock: both apps stamp the same times on the same cards


@pytest.fixture(scope="module")
def pool_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Any]]:
    """A service evaluating in 2 processes, and its app (to reach the evaluator)."""
    stub = FhirStub(resources=[patient(), kratom(), sertraline()])
    app = start(tmp_path_factory.mktemp("pool"), stub=stub, clock=lambda: NOW, evaluation_processes=2)
    with running(app) as client:
        yield client, app


def test_the_python_backend_evaluates_on_the_event_loop(tmp_path: Path) -> None:
    assert isinstance(start(tmp_path).state.service.evaluator, InlineEvaluator)


@pytest.mark.durable
@pytest.mark.skipif(import_problem() is not None, reason=str(import_problem()))
def test_the_durable_backend_evaluates_in_a_thread(tmp_path: Path) -> None:
    # it waits on its own crash-isolated processes: the event loop must stay free meanwhile
    assert isinstance(start(tmp_path, backend="durable").state.service.evaluator, ThreadEvaluator)


@pytest.mark.slow
def test_processes_answer_exactly_as_the_service_process(
    pool_client: tuple[Client, Any], tmp_path: Path, pv_body: Body
) -> None:
    client, _ = pool_client
    with running(start(tmp_path, clock=lambda: NOW)) as inline:
        for body in (pv_body(), pv_body(patient(), sertraline()), pv_body(patient())):
            here = inline.post(f"/cds-services/{PV}", json=body)
            there = client.post(f"/cds-services/{PV}", json=body)
            assert there.status_code == here.status_code == 200
            assert there.content == here.content  # the same bytes, not only the same cards
    assert json.loads(here.content) == {"cards": []}


@pytest.mark.slow
def test_public_example_requests_get_the_same_answers_from_a_process(
    tmp_path: Path, full_prefetch: Callable[..., dict[str, Any]]
) -> None:
    """Requests written by others (Inferno's CRD test kit, the PDDI CDS artifacts, the hook
    library with a sertraline order that cannot be read): identical status and bytes."""
    inferno = [
        (OSIGN, read_json(external("cds-hooks", "inferno-crd-test-kit", "order_sign_hook_request.json"))),
        (OSEL, read_json(external("cds-hooks", "inferno-crd-test-kit", "order_select_hook_request.json"))),
    ]
    pddi = read_json(external("cds-hooks", "pddi-cds", "warfarin-nsaids-order-sign-no-coordination.json"))
    library = read_json(external("cds-hooks", "hook-library-1.0.1", "order-sign-context-examples.json"))
    context = copy.deepcopy(library["examples"]["Example (R4)"]["context"])
    for entry in context["draftOrders"]["entry"]:
        if entry["resource"]["resourceType"] == "MedicationRequest":
            entry["resource"]["medicationCodeableConcept"] = sertraline()["medicationCodeableConcept"]
    unreadable = {
        "hook": "order-sign",
        "hookInstance": "i-0",
        "context": context,
        "prefetch": full_prefetch(pid="1288992"),
    }
    requests = [*inferno, (OSIGN, pddi), (OSIGN, unreadable)]
    base = inferno[0][1]["fhirServer"]
    token = inferno[0][1]["fhirAuthorization"]["access_token"]

    def answers(**settings: Any) -> list[tuple[int, bytes]]:
        stub = FhirStub([patient("example"), patient("1288992")], base=base, token=token)
        folder = tmp_path / str(settings.get("evaluation_processes", 0))
        folder.mkdir()
        with running(start(folder, stub=stub, clock=lambda: NOW, **settings)) as client:
            return [
                (r.status_code, r.content) for r in (client.post(f"/cds-services/{s}", json=b) for s, b in requests)
            ]

    here, there = answers(), answers(evaluation_processes=1)
    assert there == here
    assert [status for status, _ in here] == [200, 200, 400, 200]
    assert b"could not" in here[3][1]  # the sertraline order in STU3 shape: said, not skipped


@pytest.mark.slow
def test_errors_found_in_a_process_are_the_same_outcomes(pool_client: tuple[Client, Any], pv_body: Body) -> None:
    client, _ = pool_client
    malformed = client.post(f"/cds-services/{PV}", content=b'{"hook": ', headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and "line 1, column" in malformed.text
    other = pv_body()
    other["prefetch"]["patient"] = patient("someone-else")
    assert client.post(f"/cds-services/{PV}", json=other).status_code == 400
    no_hook = client.post(f"/cds-services/{PV}", json={**pv_body(), "hook": 7})
    assert no_hook.status_code == 400 and "hook" in no_hook.text


@pytest.mark.slow
def test_data_to_fetch_is_gathered_here_and_evaluated_there(pool_client: tuple[Client, Any]) -> None:
    client, _ = pool_client
    body = {
        "hook": "patient-view",
        "hookInstance": "5e0b1b6c-51d4-4bd5-9ae9-1c9f0a1c3c0e",
        "context": {"userId": "Practitioner/example", "patientId": "p1"},
        "fhirServer": FHIR,
        "fhirAuthorization": {
            "access_token": "fhir-token-123",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "careplan-rules",
        },
    }
    response = client.post(f"/cds-services/{PV}", json=body)
    assert response.status_code == 200, response.text
    assert "kratom-serotonergic" in {_rule(c) for c in response.json()["cards"]}


@pytest.mark.slow
def test_a_process_found_dead_is_replaced_before_it_is_given_a_call(
    pool_client: tuple[Client, Any], pv_body: Body
) -> None:
    client, app = pool_client
    evaluator = app.state.service.evaluator
    assert isinstance(evaluator, ProcessEvaluator)
    killed = evaluator.pids()
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not all(p.child.returncode is not None for p in evaluator._processes if p) and time.monotonic() < deadline:
        time.sleep(0.05)  # the event loop notices the exits
    for _ in range(3):
        cards = client.post(f"/cds-services/{PV}", json=pv_body()).json()["cards"]
        assert any(_rule(c) == "kratom-serotonergic" for c in cards)
    assert not set(killed) & set(evaluator.pids())


class _Failing:
    """Stands in for an evaluation process that fails the call it is given in ``how``."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.child = type("Child", (), {"pid": 0, "returncode": None})()
        self.killed = False

    async def ask(self, _job: Any) -> Any:
        if self.how == "hangs":
            await asyncio.sleep(3600)
        if self.how == "garbles":  # e.g. an answer that does not unpickle
            raise ValueError("unreadable answer")
        raise EvaluationProcessError("the evaluation process ended (IncompleteReadError)")

    async def stop(self, *, kill: bool = False) -> None:
        self.killed = kill


@pytest.mark.parametrize(
    ("how", "logged"),
    [
        ("dies", "ended (IncompleteReadError) during a call"),
        ("hangs", "did not answer within 0.2 s"),
        ("garbles", "failed (ValueError)"),
    ],
)
def test_a_process_that_fails_a_call_costs_that_call_a_card_never_a_hang(
    tmp_path: Path,
    pv_body: Body,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    how: str,
    logged: str,
) -> None:
    started: list[_Failing] = []

    async def failing(_config_json: str) -> Any:
        started.append(_Failing(how))
        return started[-1]

    monkeypatch.setattr(_Process, "start", staticmethod(failing))
    with running(start(tmp_path, evaluation_processes=1, evaluation_timeout_seconds=0.2)) as client:
        for _ in range(2):  # the replacement fails too: every call still gets an answer
            cards = client.post(f"/cds-services/{PV}", json=pv_body()).json()["cards"]
            assert len(cards) == 1 and cards[0]["summary"].startswith("Medication safety rules could not run")
    assert logged in caplog.text
    assert len(started) == 2 and all(p.killed for p in started)  # failed ones are killed, not waited for


def test_a_process_that_cannot_be_replaced_costs_the_call_a_card(
    tmp_path: Path, pv_body: Body, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []

    async def first_dies_then_no_spawn(_config_json: str) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            return _Failing("dies")
        raise OSError("no more processes")

    monkeypatch.setattr(_Process, "start", staticmethod(first_dies_then_no_spawn))
    with running(start(tmp_path, evaluation_processes=1)) as client:
        assert client.get("/healthz").status_code == 200
        for _ in range(2):
            cards = client.post(f"/cds-services/{PV}", json=pv_body()).json()["cards"]
            assert cards[0]["summary"].startswith("Medication safety rules could not run")
        unhealthy = client.get("/healthz")  # a load balancer takes this service out
        assert unhealthy.status_code == 503 and unhealthy.json()["issue"][0]["code"] == "transient"
    assert "failed (OSError); the call gets a could-not-evaluate card" in caplog.text


def _rule(card: dict[str, Any]) -> str | None:
    finding: dict[str, Any] = card.get("extension", {}).get("org.careplan-rules.finding", {})
    return finding.get("rule")


def test_processes_need_the_engine_from_the_configuration(tmp_path: Path, engine: Engine) -> None:
    with pytest.raises(ConfigError, match="evaluation_processes"):
        create_app(make_config(tmp_path, auth={"insecure_no_auth": True}, evaluation_processes=2), engine=engine)
    with pytest.raises(ConfigError, match="durable"):
        make_config(
            tmp_path, auth={"insecure_no_auth": True}, evaluation_processes=2, backend="durable"
        ).check_startable()


@pytest.mark.slow
def test_a_process_that_cannot_start_says_why() -> None:
    with pytest.raises(EvaluationProcessError, match="ConfigError"):
        asyncio.run(_Process.start("not a configuration"))


def test_gathering_without_a_client_must_not_wait() -> None:
    async def waits() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="waited"):
        run_without_io(waits())

    async def returns() -> int:
        return 3

    assert run_without_io(returns()) == 3


def test_warm_up_runs_through(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    # a failing warm-up is only logged (serving goes on), so a broken one would go unnoticed
    from datetime import UTC, datetime

    from careplan_rules.service.evaluation import warm_up

    warm_up(engine, datetime.now(UTC))
    assert "warm-up failed" not in caplog.text


def test_a_serving_process_freezes_its_start_up_heap() -> None:
    # process-wide settings: checked in a process of its own
    import subprocess
    import sys

    code = (
        "import gc; from careplan_rules.service.heap import YOUNG_THRESHOLD, settle; settle(); "
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count(); "
        "assert gc.get_threshold()[0] == YOUNG_THRESHOLD, gc.get_threshold()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_evaluation_processes_that_cannot_start_fail_the_start_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def cannot(_config_json: str) -> Any:
        raise EvaluationProcessError("an evaluation process could not start: MemoryError")

    monkeypatch.setattr(_Process, "start", staticmethod(cannot))
    app = start(tmp_path, evaluation_processes=1)
    sent: list[dict[str, Any]] = []

    async def lifespan() -> None:
        messages = iter([{"type": "lifespan.startup"}])

        async def receive() -> dict[str, Any]:
            return next(messages, {"type": "lifespan.shutdown"})

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        with pytest.raises(EvaluationProcessError):
            await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

    asyncio.run(lifespan())
    failed = [m for m in sent if m["type"] == "lifespan.startup.failed"]
    assert len(failed) == 1 and "\n" not in failed[0]["message"]  # uvicorn prints it, then exits
    assert failed[0]["message"].endswith("EvaluationProcessError: an evaluation process could not start: MemoryError")


def test_answers_cross_the_pipe_unchanged() -> None:
    import io

    from careplan_rules.service.calls import Answer
    from careplan_rules.service.evaluation_process import frame, read_frame
    from careplan_rules.service.store import IssuedCard

    issued = IssuedCard("c1", "svc", "patient-view", "h1", "warning", "KR-SER-01", "1.0.0", "kratom", "1.0.0")
    answer = Answer(b'{"cards":[]}', (issued, IssuedCard("c2", "svc", "order-sign", "h1", "info")), 0, "h1", ("x",))
    back = read_frame(io.BytesIO(frame(("ok", answer))))
    assert back == ("ok", answer)
    assert [type(i) for i in back[1].issued] == [IssuedCard, IssuedCard]
