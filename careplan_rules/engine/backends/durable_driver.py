"""The hardened driver over durable_rules' C API (``durable_rules_engine``, durable-rules 2.0.28).

This is the embedding described in research/durable-rules.md §6; each guard names the defect
(§4, D1–D16) it avoids:

- The C module is driven directly, never through ``durable.engine.Host`` or ``durable.lang``. That
  means no background timer threads (D6, D8–D10), no action exceptions swallowed into
  ``state["exception"]`` (D7), no ``MessageNotHandledException`` trap and no mutation of the
  definition (D15).
- One compiled ruleset handle per driver, built lazily and rebuilt in a process that inherited
  it through ``fork``.
- One session per :meth:`DurableDriver.fire`, under a lock, with a fresh sid from a counter and
  deleted before the lock is released. At most one session is ever live, so the 1024-session
  limit (D3) and sid hash collisions that join two patients (D4) cannot happen. Each action's
  facts are still checked to belong to the session.
- Fact ids are ``"1".."N"``, checked once to be collision-free under the engine's 32-bit FNV-1a
  hash (D5). Result code 2 ("already observed") is an error. It cannot be relied on alone:
  ``assert_facts`` reports only the last non-zero code of a batch, so a later unmatched fact (1)
  hides a dropped duplicate. The ids themselves are the guard.
- A sentinel fact and rule (lowest priority) must fire in every session. That proves the agenda
  drained and guarantees an action per session. With the state pool pre-warmed at build time,
  it keeps ``delete_state`` away from uninitialised pointers (D2).
- A fact durable_rules' JSON reader rejects (e.g. more than 255 properties, nested ones counted)
  does not raise. ``assert_facts`` silently drops it and *every later fact of the batch* and
  returns "ok". When the rejected fact is the first one, the state offset it returns is
  uninitialised memory, and the next call segfaults. This was found while building this backend
  and is not in the research note; see src/rules/events.c ``handleMessages``. So facts are
  checked to be flat, small scalars before they reach the engine; every batch opens with a
  fixed, valid fact, so the offset is always real; and the sentinel comes last, so a batch cut
  short is an error.
- Fail closed: any engine error, malformed result, runaway action count or missing sentinel
  discards the ruleset, rebuilds it and raises :class:`EvaluationError`. No partial result is
  ever returned.

The C extension never releases the GIL (research §2.5), so two threads cannot run rules in
parallel anyway: the lock costs no throughput. Scale with processes (``durable_pool``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

from careplan_rules.errors import EvaluationError

SENTINEL_TYPE = "$sentinel"
OPENING_TYPE = "$open"
SENTINEL_RULE = "zz_sentinel"
# ``pri`` is parsed with atoi() into an unsigned short and lower fires first (D16): 65535 is last.
SENTINEL_PRIORITY = 65535
# Fact ids "1".."MAX_FACTS" are verified collision-free under FNV-1a (D5).
MAX_FACTS = 5000
# A fact holds at most 255 properties, sid and id included (MAX_OBJECT_PROPERTIES; D12: error 302).
MAX_FACT_PROPERTIES = 250
# Longest string value a fact may carry (the engine's limit is 16 MB: MAX_OBJECT_PROPERTY_SIZE).
MAX_STRING = 4096
_SCALARS = frozenset({bool, int, float, str})
# Sessions run at build time so the state-pool slots we reuse have run an action (D2).
PREWARM_SESSIONS = 16


def fnv1a32(text: str) -> int:
    """The 32-bit FNV-1a hash durable_rules identifies sids, fact ids and property names by.

    The C code hashes ``char`` values, which are signed on x86, so bytes above 127 are sign-extended
    (src/rules/state.c ``fnv1Hash32``).
    """
    h = 0x811C9DC5
    for b in text.encode("utf-8"):
        h ^= (b - 256 if b > 127 else b) & 0xFFFFFFFF
        h = (h * 16777619) & 0xFFFFFFFF
    return h


@functools.cache
def _fact_id_hashes() -> Mapping[int, int]:
    """hash -> fact number for the ids we hand out; built once, asserted collision-free (D5)."""
    table: dict[int, int] = {}
    for i in range(1, MAX_FACTS + 1):
        h = fnv1a32(str(i))
        if h in table:  # pragma: no cover - a fixed property of FNV-1a over these strings
            raise AssertionError(f"fact ids {table[h]} and {i} collide under FNV-1a")
        table[h] = i
    return table


def dumps(value: Any) -> str:
    """Serialise rules and facts identically: the engine compares strings as raw JSON bytes (§2.1)."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def engine_module() -> ModuleType:
    """Import the C extension (callers check availability first, see ``durable.import_problem``)."""
    import durable_rules_engine

    module: ModuleType = durable_rules_engine
    return module


def _property_names(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not str(key).startswith("$"):
                yield str(key)
            yield from _property_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from _property_names(item)


def check_property_hashes(rules: Mapping[str, Any]) -> None:
    """Fail when two property or alias names used by the rules collide under FNV-1a.

    The engine identifies property names by hash only, so a collision would make two fields one.

    Raises:
        ValueError: naming the colliding pair.
    """
    names = {"sid", "id"}
    for body in rules.values():
        names.update(_property_names(body.get("all", body.get("any", []))))
    seen: dict[int, str] = {}
    for name in sorted(names):
        other = seen.setdefault(fnv1a32(name), name)
        if other != name:
            raise ValueError(f"property names {other!r} and {name!r} collide under durable_rules' 32-bit hash")


def check_fact(fact: Mapping[str, Any]) -> None:
    """Refuse a fact the C engine could mis-handle, before it reaches the engine.

    Raises:
        EvaluationError: naming what is wrong with the fact.
    """
    # Every fact needs a type discriminator: an untyped pattern matches the engine's own state
    # fact and re-triggers forever (D8). sid and id are assigned by the driver (D4, D5).
    if not isinstance(fact.get("t"), str) or "sid" in fact or "id" in fact:
        raise EvaluationError(f"malformed fact for the durable driver (needs 't', no 'sid'/'id'): {dict(fact)!r}")
    # A fact the engine's JSON reader rejects (too many properties, counting nested ones: D12;
    # oversized values) does not raise. assert_facts silently drops it and every later fact of
    # the batch, and returns "ok" (src/rules/events.c handleMessages). So facts are flat, small
    # scalars.
    if len(fact) + 2 > MAX_FACT_PROPERTIES:
        raise EvaluationError(f"a fact has {len(fact)} properties; durable_rules holds {MAX_FACT_PROPERTIES}")
    for key, value in fact.items():
        kind = type(value)
        if (
            kind not in _SCALARS
            or type(key) is not str
            or not key
            or key[0] == "$"
            or (kind is str and len(value) > MAX_STRING)
            or (kind is float and not math.isfinite(value))
        ):
            raise EvaluationError(
                f"fact property {key!r} must be a short scalar with a plain name for the durable driver, got {value!r}"
            )


class DurableDriver:
    """One durable_rules ruleset, evaluated one short-lived session at a time.

    Args:
        rules: the ruleset as durable_rules JSON (rule name -> ``{"all": [...]}``), without the
            sentinel, which the driver adds. Every pattern must test ``t``.
    """

    _ruleset_numbers = itertools.count(1)

    def __init__(self, rules: Mapping[str, Any]) -> None:
        if SENTINEL_RULE in rules:
            raise ValueError(f"rule name {SENTINEL_RULE!r} is reserved for the driver's sentinel")
        definition = dict(rules)
        definition[SENTINEL_RULE] = {"all": [{"sentinel": {"t": SENTINEL_TYPE}}], "pri": SENTINEL_PRIORITY}
        check_property_hashes(definition)
        self._json = dumps(definition)
        self._names = frozenset(definition)
        # every pattern binds one distinct fact, so each rule fires at most once per session
        self._action_limit = len(definition)
        self._lock = threading.Lock()
        self._sids = itertools.count(1)
        self._handle: int | None = None
        self._pid = os.getpid()
        self.rebuilds = 0

    def fire(self, facts: Sequence[Mapping[str, Any]]) -> frozenset[str]:
        """Assert one batch of facts in a fresh session, drain the agenda, return the rules that fired.

        Args:
            facts: flat facts, each with a ``t`` type discriminator and no ``sid``/``id`` (the
                driver assigns both).

        Returns:
            The names of the rules that fired (the sentinel excluded).

        Raises:
            EvaluationError: on any engine error or inconsistency; the ruleset is then rebuilt.
        """
        if self._pid != os.getpid():  # inherited through fork: the handle and lock are the parent's
            self._lock, self._handle, self._pid = threading.Lock(), None, os.getpid()
        with self._lock:
            try:
                if self._handle is None:
                    self._handle = self._build()
                return self._session(self._handle, facts)
            except Exception as exc:
                self._discard()
                if isinstance(exc, EvaluationError):
                    raise
                raise EvaluationError(f"durable_rules failed: {type(exc).__name__}: {exc}") from exc
            except BaseException:
                self._discard()
                raise

    def close(self) -> None:
        """Free the C ruleset (sessions are always deleted already)."""
        with self._lock:
            self._discard(count=False)

    def _discard(self, *, count: bool = True) -> None:
        # "Rebuild" is lazy: the next fire() builds a fresh ruleset, so an error during the
        # rebuild surfaces as that evaluation's EvaluationError rather than here.
        handle, self._handle = self._handle, None
        if count:
            self.rebuilds += 1
        if handle is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                engine_module().delete_ruleset(handle)

    def _build(self) -> int:
        dre = engine_module()
        name = f"careplan_rules_{os.getpid()}_{next(self._ruleset_numbers)}"
        handle: int = dre.create_ruleset(name, self._json)
        try:
            self._prewarm(dre, handle)
        except BaseException:
            with contextlib.suppress(Exception):
                dre.delete_ruleset(handle)
            raise
        return handle

    @staticmethod
    def _prewarm(dre: ModuleType, handle: int) -> None:
        """Run one sentinel action in each of the first state-pool slots, then free them.

        durable_rules never initialises a session's action-context pointers, so ``delete_state``
        on a session that never started an action frees garbage (D2, SIGSEGV). A slot that has run
        an action keeps them NULL; with one live session at a time only these slots are reused.
        """
        sids = [f"warm-{i}" for i in range(PREWARM_SESSIONS)]
        offsets = []
        for sid in sids:
            _, offset = dre.assert_facts(handle, dumps([{"sid": sid, "id": "1", "t": SENTINEL_TYPE}]))
            offsets.append(offset)
        for sid, offset in zip(sids, offsets, strict=True):
            result = dre.start_action_for_state(handle, offset)
            if not result or SENTINEL_RULE not in json.loads(result[1]):
                raise EvaluationError(f"durable_rules pre-warm session {sid} did not fire the sentinel")
            while dre.complete_and_start_action(handle, offset):
                pass
        for sid in sids:
            dre.delete_state(handle, sid)

    def _new_sid(self, n_facts: int) -> str:
        # The session's implicit state fact has id "sid-<sid>"; it must not collide with a fact id
        # of this batch under FNV-1a (D5), so skip counter values whose state id would.
        ids = _fact_id_hashes()
        while True:
            sid = str(next(self._sids))
            number = ids.get(fnv1a32("sid-" + sid))
            if number is None or number > n_facts:
                return sid

    def _messages(self, sid: str, facts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if len(facts) + 2 > MAX_FACTS:
            raise EvaluationError(f"{len(facts)} facts in one session; the durable driver allows {MAX_FACTS - 2}")
        # The opening fact creates the session, so assert_facts always reports a real state
        # offset; the sentinel comes last, so a batch the engine cut short cannot go unnoticed.
        messages: list[dict[str, Any]] = [{"t": OPENING_TYPE, "sid": sid, "id": "1"}]
        for number, fact in enumerate(facts, 2):
            check_fact(fact)
            message = dict(fact)
            message["sid"], message["id"] = sid, str(number)
            messages.append(message)
        messages.append({"t": SENTINEL_TYPE, "sid": sid, "id": str(len(facts) + 2)})
        return messages

    def _session(self, handle: int, facts: Sequence[Mapping[str, Any]]) -> frozenset[str]:
        dre = engine_module()
        sid = self._new_sid(len(facts) + 2)
        messages = self._messages(sid, facts)
        fired: set[str] = set()
        sentinels = 0
        offset: int | None = None
        in_action = False
        failed = True
        try:
            # One batch, never fact by fact: results are read only after the whole patient is in.
            code, offset = dre.assert_facts(handle, dumps(messages))
            if code not in (0, 1):  # 1: some fact matched no rule, which is normal here
                raise EvaluationError(
                    f"durable_rules assert_facts returned {code} "
                    "(2: a fact id was already present, research D5; 3: deferred)"
                )
            result = dre.start_action_for_state(handle, offset)
            payload: str | None = result[1] if result else None
            actions = 0
            while payload is not None:
                in_action = True
                actions += 1
                if actions > self._action_limit:
                    raise EvaluationError(f"durable_rules ran more than {self._action_limit} actions in one session")
                for name, frames in json.loads(payload).items():
                    self._check_action(name, frames, sid)
                    if name == SENTINEL_RULE:
                        sentinels += 1
                    else:
                        fired.add(name)
                payload = dre.complete_and_start_action(handle, offset)
                in_action = payload is not None
            if sentinels != 1:
                raise EvaluationError(f"the durable_rules sentinel fired {sentinels} times, expected once")
            failed = False
        finally:
            if failed and in_action and offset is not None:
                with contextlib.suppress(Exception):
                    dre.abandon_action(handle, offset)
            try:
                dre.delete_state(handle, sid)
            except Exception:
                if not failed:  # otherwise the first error is the one worth reporting
                    raise
        return frozenset(fired)

    def _check_action(self, name: str, frames: Any, sid: str) -> None:
        if name not in self._names:
            raise EvaluationError(f"durable_rules reported an unknown rule {name!r}")
        frames = frames if isinstance(frames, list) else [frames]
        if not frames:
            raise EvaluationError(f"durable_rules returned a malformed action for {name!r}: no frames")
        for frame in frames:
            if not isinstance(frame, Mapping) or not frame:
                raise EvaluationError(f"durable_rules returned a malformed action for {name!r}: {frame!r}")
            for fact in frame.values():
                # a fact from another session here would mean two sessions were joined (D4)
                if not isinstance(fact, Mapping) or fact.get("sid") != sid:
                    raise EvaluationError(f"durable_rules joined a fact from another session into {name!r}")
