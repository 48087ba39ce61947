"""Crash isolation: the durable engine in worker processes (``DurableBackend(isolated=True)``).

A worker that segfaults or hangs fails that request with EvaluationError (the caller shows "could
not evaluate"), and a fresh worker takes over. Workers here are real ``spawn`` processes. The
crashing and hanging behaviour is injected through a worker main function defined in this
module.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from careplan_rules import Engine, EvaluationError
from careplan_rules.engine.backends import durable_pool
from careplan_rules.engine.backends.durable import DurableBackend, import_problem
from careplan_rules.engine.backends.durable_driver import DurableDriver
from careplan_rules.engine.backends.durable_pool import WorkerPool
from tests.factories import bundle, iter_examples, kratom, patient, sertraline

pytestmark = [
    pytest.mark.durable,
    pytest.mark.skipif(import_problem() is not None, reason=str(import_problem())),
]
NOW = "2026-06-01T12:00:00Z"
RULES = {"first": {"all": [{"p0": {"$and": [{"t": "g0"}, {"a": 0}, {"v": True}]}}]}}
CRASH_MARKER = "CAREPLAN_RULES_TEST_CRASH_MARKER"


def misbehaving_serve(conn: Connection, rules_json: str) -> None:
    """A worker main that segfaults on a ``crash`` fact (or once, if a marker file exists) and hangs on ``hang``."""
    driver = DurableDriver(json.loads(rules_json))
    conn.send(("ready", os.getpid()))
    while True:
        request = conn.recv()
        if request is None:
            return
        marker = os.environ.get(CRASH_MARKER)
        kinds = {fact["t"] for fact in request}
        if "crash" in kinds or (marker and os.path.exists(marker)):
            if marker and os.path.exists(marker):
                os.remove(marker)
            os.kill(os.getpid(), signal.SIGSEGV)
        if "hang" in kinds:
            time.sleep(600)
        conn.send(("ok", sorted(driver.fire(request))))


def exiting_serve(conn: Connection, rules_json: str) -> None:
    os._exit(3)


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(json.dumps(RULES), workers=1, timeout=5, target=misbehaving_serve)
    yield p
    p.close()


def test_a_worker_segfault_fails_that_request_and_the_worker_is_replaced(pool: WorkerPool) -> None:
    assert pool.fire([{"t": "g0", "a": 0, "v": True}]) == {"first"}
    with pytest.raises(EvaluationError, match=r"died while evaluating .* killed by SIGSEGV; it will be replaced"):
        pool.fire([{"t": "crash"}])
    assert pool.replaced == 1
    assert pool.fire([{"t": "g0", "a": 0, "v": True}]) == {"first"}


def test_a_hung_worker_is_killed_after_the_timeout() -> None:
    pool = WorkerPool(json.dumps(RULES), workers=1, timeout=1, target=misbehaving_serve)
    try:
        assert pool.fire([{"t": "g0", "a": 0, "v": False}]) == frozenset()
        started = time.monotonic()
        with pytest.raises(EvaluationError, match=r"did not answer within 1 s and was killed by SIGKILL"):
            pool.fire([{"t": "hang"}])
        assert time.monotonic() - started < 10
        assert pool.fire([{"t": "g0", "a": 0, "v": True}]) == {"first"}
    finally:
        pool.close()


def test_a_worker_that_cannot_start_is_an_evaluation_error() -> None:
    pool = WorkerPool(json.dumps(RULES), workers=1, target=exiting_serve)
    try:
        with pytest.raises(EvaluationError, match=r"died while starting and exited with status 3"):
            pool.fire([{"t": "g0", "a": 0, "v": True}])
    finally:
        pool.close()


def test_engine_errors_in_a_worker_come_back_as_evaluation_errors() -> None:
    pool = WorkerPool(json.dumps(RULES), workers=1)
    try:
        with pytest.raises(EvaluationError, match="malformed fact"):
            pool.fire([{"a": 0}])
        assert pool.fire([{"t": "g0", "a": 0, "v": True}]) == {"first"}
        assert pool.replaced == 0
    finally:
        pool.close()


def test_a_closed_pool_refuses_work(pool: WorkerPool) -> None:
    pool.fire([])
    pool.close()
    with pytest.raises(EvaluationError, match="closed"):
        pool.fire([])


@pytest.fixture(scope="module")
def isolated(engine: Engine) -> Iterator[Engine]:
    backend = DurableBackend(isolated=True, workers=2, timeout=30)
    yield Engine(engine.packs, backend=backend)
    backend.close()


def test_isolated_backend_matches_python_on_every_example(engine: Engine, isolated: Engine) -> None:
    for path in iter_examples():
        a = engine.evaluate(path, now=NOW, trace=True)
        b = isolated.evaluate(path, now=NOW, trace=True)
        assert [p.outcomes for p in a] == [p.outcomes for p in b], path.name
        assert a.to_json() == b.to_json()


def test_a_crash_fails_one_patient_with_an_error_and_the_next_evaluates(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "crash-once"
    marker.write_text("")
    monkeypatch.setenv(CRASH_MARKER, str(marker))  # inherited by the worker when it is spawned
    monkeypatch.setattr(durable_pool, "serve", misbehaving_serve)
    backend = DurableBackend(isolated=True, workers=1)
    try:
        durable = Engine(engine.packs, backend=backend)
        data = bundle(patient(), kratom(), sertraline())
        crashed = durable.evaluate(data, now=NOW, on_error="collect")[0]
        assert crashed.findings == ()
        (error,) = crashed.errors
        assert error.code == "CPR-X001"
        assert "could not evaluate Patient/p1" in error.message and "SIGSEGV" in error.message
        with pytest.raises(EvaluationError):  # the default on_error raises instead
            marker.write_text("")
            durable.evaluate(data, now=NOW)
        assert durable.evaluate(data, now=NOW).to_json() == engine.evaluate(data, now=NOW).to_json()
    finally:
        backend.close()
