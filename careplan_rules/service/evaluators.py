"""Where a hook call is evaluated: on the service's event loop, in a thread, or in a pool of processes.

Evaluation is CPU-bound Python, so a service process evaluates one call at a time whatever it
does. Where it does so matters (measured with 8 keep-alive clients, a 100-resource
patient-view call, on 2 cores; benchmarks/bench_service.py):

* in a worker thread, the event loop thread (reading and parsing the next calls) and the
  evaluating thread trade the GIL, which cost 5.5 ms of CPU per call (18 ms against 12.5 ms
  evaluating on the loop itself: 55 against 80 calls/s). So the python backend evaluates on
  the event loop (:class:`InlineEvaluator`); the durable backend, which waits on its own
  processes, keeps a thread (:class:`ThreadEvaluator`).
* ``workers: N`` (N uvicorn processes) uses N cores but balances badly: each uvicorn process
  keeps the connections it accepted and EHRs keep connections alive, so the calls of the
  connections one process happened to accept queue behind each other while another core
  idles (one process got 1 of 8 connections and answered in 29 ms on average; the other 7,
  98-137 ms). ``evaluation_processes: N`` (:class:`ProcessEvaluator`) keeps one service
  process for HTTP, authentication and fetching, and hands each call to the next free
  process of a pool: one queue, first come first served, whatever the connection.

The pool's processes (:mod:`careplan_rules.service.evaluation_process`) build their engine
from the service's configuration and do a call's CPU work (:mod:`careplan_rules.service.calls`:
parse, take the data from the prefetch, evaluate, render). They get the request body as
received (it can hold the ``fhirAuthorization`` token; they do no network I/O and log no
data); when data must be fetched, the service process fetches it and hands over the call
without its prefetch, context or token, and the gathered resources. They talk over their
stdin/stdout pipes, read and written by the event loop itself:
``concurrent.futures.ProcessPoolExecutor`` was tried first, and its two helper threads in the
service process brought the GIL hand-offs back (measured: the service process spent 10.7 ms
of CPU per call with it, 8.4 ms with these pipes while it still parsed and gathered, about
2 ms now that the processes do that too). A process that dies (out of memory, a crash in a native library), hangs
past ``evaluation_timeout_seconds`` or answers garbage costs the call it was running a "could
not evaluate" card, never an empty answer or a hung call, and is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pickle
import sys
from datetime import datetime
from typing import Any, Protocol

import anyio
import anyio.to_thread

from careplan_rules.api import Engine
from careplan_rules.outputs.cards import could_not_evaluate_card
from careplan_rules.service.calls import Answer, NeedsFetch, answer_body, answer_gathered, issued_cards
from careplan_rules.service.config import ConfigError, ServiceConfig, to_json
from careplan_rules.service.context import HookCall, parse_hook_call
from careplan_rules.service.discovery import ServiceDefinition
from careplan_rules.service.errors import ServiceError
from careplan_rules.service.evaluation import topic_of, warm_up
from careplan_rules.service.evaluation_process import HEADER, frame
from careplan_rules.service.gather import Gathered
from careplan_rules.service.http import parse_json, render_json
from careplan_rules.service.security import Caller

log = logging.getLogger("careplan_rules.service")
START_TIMEOUT = 300.0  # seconds for a process to import, load the rules and warm up
STOP_TIMEOUT = 10.0


def engine_for(config: ServiceConfig) -> Engine:
    """The engine a service process (or evaluation process) runs; durable_rules runs isolated,
    so a crash in it fails one call, not the service."""
    if config.backend == "durable":
        from careplan_rules.engine.backends.durable import DurableBackend

        backend = DurableBackend(isolated=True, workers=config.durable_workers)
        if config.rules:
            return Engine.from_paths(*config.rules, backend=backend)
        return Engine.default(backend=backend)
    return Engine.from_paths(*config.rules) if config.rules else Engine.default()


class Evaluator(Protocol):
    """Answers hook calls for the app (see :mod:`careplan_rules.service.calls`).

    Both methods raise ServiceError as the functions of that module do.
    """

    engine: Engine

    async def start(self, now: datetime) -> None: ...

    async def answer_body(
        self, service: ServiceDefinition, raw: bytes, caller: Caller, now: datetime
    ) -> Answer | NeedsFetch: ...

    async def answer_gathered(
        self, service: ServiceDefinition, call: HookCall, data: Gathered, caller: Caller, now: datetime
    ) -> Answer: ...

    def healthy(self) -> bool:
        """False when calls can only get could-not-evaluate cards (for /healthz)."""
        ...

    async def close(self) -> None: ...


class InlineEvaluator:
    """Answers on the event loop: calls queue in arrival order, with no GIL hand-offs."""

    def __init__(self, config: ServiceConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine

    async def start(self, now: datetime) -> None:
        if self.config.warm_up:
            warm_up(self.engine, now)

    async def answer_body(
        self, service: ServiceDefinition, raw: bytes, caller: Caller, now: datetime
    ) -> Answer | NeedsFetch:
        return answer_body(self.engine, self.config, service, raw, caller, now)

    async def answer_gathered(
        self, service: ServiceDefinition, call: HookCall, data: Gathered, caller: Caller, now: datetime
    ) -> Answer:
        return answer_gathered(self.engine, self.config, service, call, data, caller, now)

    def healthy(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class ThreadEvaluator(InlineEvaluator):
    """Answers in a worker thread, one call at a time (for a backend that waits on I/O)."""

    def __init__(self, config: ServiceConfig, engine: Engine) -> None:
        super().__init__(config, engine)
        self._limiter = anyio.CapacityLimiter(1)

    async def answer_body(
        self, service: ServiceDefinition, raw: bytes, caller: Caller, now: datetime
    ) -> Answer | NeedsFetch:
        return await anyio.to_thread.run_sync(
            lambda: answer_body(self.engine, self.config, service, raw, caller, now), limiter=self._limiter
        )

    async def answer_gathered(
        self, service: ServiceDefinition, call: HookCall, data: Gathered, caller: Caller, now: datetime
    ) -> Answer:
        return await anyio.to_thread.run_sync(
            lambda: answer_gathered(self.engine, self.config, service, call, data, caller, now), limiter=self._limiter
        )


class EvaluationProcessError(RuntimeError):
    """An evaluation process could not start, or stopped in the middle of a call."""


class _Process:
    """One evaluation process and its pipes."""

    def __init__(self, child: asyncio.subprocess.Process) -> None:
        self.child = child
        assert child.stdin is not None and child.stdout is not None
        self.stdin = child.stdin
        self.stdout = child.stdout

    @classmethod
    async def start(cls, config_json: str) -> _Process:
        """Raises: EvaluationProcessError."""
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "careplan_rules.service.evaluation_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        process = cls(child)
        try:
            answer = await asyncio.wait_for(process.ask(config_json), START_TIMEOUT)
        except Exception as exc:  # ended, silent, or answered garbage
            await process.stop(kill=True)
            raise EvaluationProcessError(f"{_describe(exc, START_TIMEOUT)} while starting") from None
        if answer[0] != "ready":
            await process.stop()
            raise EvaluationProcessError(f"an evaluation process could not start: {answer[1]}")
        return process

    async def ask(self, message: Any) -> Any:
        """Send one frame and read the answer.

        Raises:
            EvaluationProcessError: the process ended (crashed, was killed) first.
        """
        try:
            self.stdin.write(frame(message))
            await self.stdin.drain()
            (size,) = HEADER.unpack(await self.stdout.readexactly(HEADER.size))
            payload = await self.stdout.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise EvaluationProcessError(f"the evaluation process ended ({type(exc).__name__})") from None
        return pickle.loads(payload)

    async def stop(self, *, kill: bool = False) -> None:
        """End the process: close its input (it returns from main), or kill it (it may be stuck)."""
        if kill:
            with contextlib.suppress(ProcessLookupError):
                self.child.kill()
        with contextlib.suppress(ProcessLookupError, ConnectionError):
            self.stdin.close()
        try:
            await asyncio.wait_for(self.child.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.child.kill()
            await self.child.wait()


class ProcessEvaluator:
    """Evaluates in ``processes`` processes fed from one first-come-first-served queue."""

    def __init__(self, config: ServiceConfig, engine: Engine, processes: int) -> None:
        self.config = config
        self.engine = engine  # the service process's own: discovery, prefetch templates, card topics
        self.topic = topic_of(engine)
        self.processes = processes
        self._config_json = to_json(config)
        self._queue: asyncio.Queue[tuple[tuple[Any, ...], asyncio.Future[Any]]] | None = None
        self._runners: list[asyncio.Task[None]] = []
        self._processes: list[_Process | None] = []
        self._cannot_spawn = False  # the last attempt to start a replacement failed

    async def start(self, now: datetime) -> None:
        """Start every process; return when each has its engine (and is warm, if configured).

        Raises:
            EvaluationProcessError: a process could not start (the rules failed to load in it,
                or it was not ready within START_TIMEOUT seconds).
        """
        self._queue = asyncio.Queue()
        results = await asyncio.gather(
            *(_Process.start(self._config_json) for _ in range(self.processes)), return_exceptions=True
        )
        started = [r for r in results if not isinstance(r, BaseException)]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await asyncio.gather(*(p.stop() for p in started))
            raise _describe(failed[0], START_TIMEOUT)
        self._processes = list(started)
        self._runners = [asyncio.create_task(self._run(i)) for i in range(len(started))]

    def healthy(self) -> bool:
        """Unhealthy when no process is alive and the last one could not be replaced: every call
        would get a could-not-evaluate card (a dead process alone is replaced on the next call)."""
        alive = any(p is not None and p.child.returncode is None for p in self._processes)
        return alive or not self._cannot_spawn

    def pids(self) -> list[int]:
        """The process ids of the running evaluation processes."""
        return [p.child.pid for p in self._processes if p is not None]

    async def _run(self, slot: int) -> None:
        """Feed one process from the queue for as long as the service runs; replace it if it dies."""
        assert self._queue is not None
        try:
            while True:
                job, reply = await self._queue.get()
                if reply.cancelled():  # the client went away while the call waited
                    continue
                current = self._processes[slot]
                if current is not None and current.child.returncode is not None:
                    # it died between calls (killed, out of memory): do not spend a call finding out
                    log.error("an evaluation process ended between calls; starting another")
                    self._processes[slot] = None
                    await current.stop()
                    current = None
                if current is None:
                    current = self._processes[slot] = await self._replacement(reply)
                    if current is None:
                        continue
                try:
                    # asyncio.timeout, not wait_for: no extra task per call on the service's loop
                    async with asyncio.timeout(self.config.evaluation_timeout_seconds):
                        answer = await current.ask(job)
                except Exception as exc:  # died, hung, or sent something unreadable: never a hung call
                    problem = _describe(exc, self.config.evaluation_timeout_seconds)
                    log.error("%s during a call; it gets a could-not-evaluate card; starting another", problem)
                    if not reply.done():
                        reply.set_exception(problem)
                    self._processes[slot] = None
                    await current.stop(kill=True)
                    continue
                if not reply.done():
                    reply.set_result(answer)
        finally:
            process, self._processes[slot] = self._processes[slot], None
            if process is not None:
                await process.stop()

    async def _replacement(self, reply: asyncio.Future[Any]) -> _Process | None:
        try:
            process = await _Process.start(self._config_json)
        except Exception as exc:  # e.g. OSError: no process could be spawned
            self._cannot_spawn = True
            problem = _describe(exc, START_TIMEOUT)
            log.error("%s; the call gets a could-not-evaluate card", problem)
            if not reply.done():
                reply.set_exception(problem)
            return None
        self._cannot_spawn = False
        return process

    async def answer_body(
        self, service: ServiceDefinition, raw: bytes, caller: Caller, now: datetime
    ) -> Answer | NeedsFetch:
        try:
            answer: Answer | NeedsFetch = await self._ask(("body", service.id, raw, caller, now))
        except EvaluationProcessError:
            call = parse_hook_call(parse_json(raw), service.hook, lenient_user=True)
            return self._stopped(service, call, caller)
        return answer

    async def answer_gathered(
        self, service: ServiceDefinition, call: HookCall, data: Gathered, caller: Caller, now: datetime
    ) -> Answer:
        # the data arrives gathered; the prefetch and the fhirAuthorization token stay here
        slim = dataclasses.replace(call, prefetch={}, context={}, fhir=None)
        try:
            answer: Answer = await self._ask(("gathered", service.id, slim, data, caller, now))
        except EvaluationProcessError:
            return self._stopped(service, call, caller)
        return answer

    async def _ask(self, job: tuple[Any, ...]) -> Any:
        assert self._queue is not None, "start() first"
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, reply))
        kind, value = await reply
        if kind == "refused":
            assert isinstance(value, ServiceError)
            raise value
        if kind == "failed":  # a bug in the process's code: a 500, as it would be here
            raise RuntimeError(f"an evaluation process failed with {value}")
        return value

    def _stopped(self, service: ServiceDefinition, call: HookCall, caller: Caller) -> Answer:
        """The answer when the process evaluating the call died: a card saying so."""
        card = could_not_evaluate_card(
            "the rules engine stopped unexpectedly", salt=call.hook_instance, topic=self.topic
        )
        issued = issued_cards([card], service, call.hook_instance, call.user_id, caller)
        return Answer(render_json({"cards": [card]}), issued, 1, call.hook_instance)

    async def close(self) -> None:
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        self._runners = []


def _describe(exc: BaseException, timeout: float) -> EvaluationProcessError:
    if isinstance(exc, EvaluationProcessError):
        return exc
    if isinstance(exc, TimeoutError):
        return EvaluationProcessError(f"an evaluation process did not answer within {timeout:g} s")
    return EvaluationProcessError(f"an evaluation process failed ({type(exc).__name__})")


def evaluator_for(config: ServiceConfig, engine: Engine, *, injected_engine: bool) -> Evaluator:
    """The evaluator the configuration asks for.

    Raises:
        ConfigError: evaluation processes were asked for with an engine given in code: the
            processes could not build the same one.
    """
    if config.evaluation_processes:
        if injected_engine:
            raise ConfigError("evaluation_processes needs the engine built from the configuration, not passed in")
        return ProcessEvaluator(config, engine, config.evaluation_processes)
    if config.backend == "durable":
        return ThreadEvaluator(config, engine)
    return InlineEvaluator(config, engine)
