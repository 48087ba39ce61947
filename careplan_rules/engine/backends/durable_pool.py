"""Crash isolation for the durable backend: the C engine runs in worker processes.

durable_rules can take the interpreter down (SIGSEGV/SIGABRT: research/durable-rules.md §4 D2,
D3, D6, D10). Its ``create_ruleset`` can also spin forever while holding the GIL (D13). In the
caller's process either one kills or freezes the web server. Here each worker process owns its
own :class:`~careplan_rules.engine.backends.durable_driver.DurableDriver`, built from the
compiled ruleset JSON. The parent sends one batch of facts and reads back the names of the rules
that fired:

- a worker that dies (signal or exit) fails that request with :class:`EvaluationError` and is
  replaced by a fresh process on the next request. Other workers and their requests carry on;
- a worker that does not answer within ``timeout`` seconds is killed, and its request fails the
  same way;
- workers start with ``spawn``, never ``fork``: forking a threaded server is unsafe, and a
  forked child would inherit the parent's C state;
- the pool hands work to idle workers through a queue. It is not
  ``multiprocessing.Pool``: with that, a segfaulting worker made ``Pool.map`` hang forever
  (research §5.6).

All rule logic stays in the parent (criteria, outcomes, outputs). Only the Rete decision crosses
the process boundary, so messages are small lists of flat facts.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from careplan_rules.engine.backends.durable_driver import DurableDriver
from careplan_rules.errors import EvaluationError

Serve = Callable[[Connection, str], None]


def serve(conn: Connection, rules_json: str) -> None:
    """Worker process main loop: build a driver, then answer ``fire`` requests until told to stop.

    Replies are ``("ok", [rule names])`` or ``("error", message)``. The first reply is
    ``("ready", pid)`` once the ruleset is built and pre-warmed.
    """
    try:
        driver = DurableDriver(json.loads(rules_json))
        driver.fire([])  # build and pre-warm now, not on the first patient
    except Exception as exc:
        conn.send(("error", f"the durable worker could not build its ruleset: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            conn.send(("ok", sorted(driver.fire(request))))
        except EvaluationError as exc:
            conn.send(("error", str(exc)))


@dataclass(slots=True)
class _Worker:
    process: BaseProcess
    conn: Connection


class _Lost(Exception):
    """The worker died or hung; it has to be replaced."""


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


class WorkerPool:
    """Worker processes, each with its own durable_rules ruleset, answering one batch at a time.

    Args:
        rules_json: the compiled durable ruleset (as for :class:`DurableDriver`), as JSON text.
        workers: how many worker processes (started lazily, on demand).
        timeout: seconds a worker may take for one batch before it is killed.
        start_timeout: seconds a new worker may take to start and build its ruleset.
        target: the worker's main function (default :func:`serve`; tests inject failing ones).
    """

    def __init__(
        self,
        rules_json: str,
        *,
        workers: int = 2,
        timeout: float = 30.0,
        start_timeout: float = 120.0,
        target: Serve | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self._rules_json = rules_json
        self._timeout = timeout
        self._start_timeout = start_timeout
        self._target = target if target is not None else serve
        self._size = workers
        self._context = multiprocessing.get_context("spawn")
        # a None slot is a worker not started yet (or replaced after a crash); LIFO reuses warm ones
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(workers):
            self._idle.put(None)
        self._closed = threading.Event()
        self.replaced = 0

    def fire(self, facts: Sequence[Mapping[str, Any]]) -> frozenset[str]:
        """Evaluate one batch of facts in a worker; same contract as :meth:`DurableDriver.fire`.

        Raises:
            EvaluationError: the worker reported an engine error, crashed, or timed out.
        """
        if self._closed.is_set():
            raise EvaluationError("the durable worker pool is closed")
        worker = self._idle.get()
        try:
            if worker is None:
                worker = self._start()
            status, value = self._ask(worker, list(facts))
        except _Lost as exc:
            code = self._stop(worker, kill=True) if worker is not None else None
            worker = None
            self.replaced += 1
            raise EvaluationError(
                f"the durable worker {exc} and {_describe_exit(code)}; it will be replaced "
                "(this patient was not evaluated)"
            ) from None
        finally:
            self._idle.put(worker)
        if status == "ok":
            return frozenset(value)
        raise EvaluationError(str(value))

    def _ask(self, worker: _Worker, facts: list[Mapping[str, Any]]) -> tuple[str, Any]:
        try:
            worker.conn.send(facts)
            if not worker.conn.poll(self._timeout):
                raise _Lost(f"(pid {worker.process.pid}) did not answer within {self._timeout:g} s")
            reply: tuple[str, Any] = worker.conn.recv()
            return reply
        except (EOFError, OSError) as exc:
            raise _Lost(f"(pid {worker.process.pid}) died while evaluating ({type(exc).__name__})") from None

    def _start(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=self._target, args=(child, self._rules_json), name="careplan-rules-durable", daemon=True
        )
        process.start()
        child.close()
        worker = _Worker(process, parent)
        try:
            if not parent.poll(self._start_timeout):
                raise _Lost(f"(pid {process.pid}) did not start within {self._start_timeout:g} s")
            status, value = parent.recv()
        except (_Lost, EOFError, OSError) as exc:
            what = str(exc) if isinstance(exc, _Lost) else f"(pid {process.pid}) died while starting"
            code = self._stop(worker, kill=True)
            raise EvaluationError(f"the durable worker {what} and {_describe_exit(code)}") from None
        if status != "ready":
            self._stop(worker, kill=True)
            raise EvaluationError(str(value))
        return worker

    @staticmethod
    def _stop(worker: _Worker, *, kill: bool) -> int | None:
        if kill:
            worker.process.kill()
        else:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        worker.process.join(5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(5)
        worker.conn.close()
        return worker.process.exitcode

    def close(self) -> None:
        """Stop every worker (waits for requests in flight, up to their timeout)."""
        if self._closed.is_set():
            return
        self._closed.set()
        for _ in range(self._size):
            try:
                worker = self._idle.get(timeout=self._timeout + 5)
            except queue.Empty:
                break
            if worker is not None:
                self._stop(worker, kill=False)
