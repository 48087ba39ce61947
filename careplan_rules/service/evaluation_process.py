"""The main of an evaluation process (see :mod:`careplan_rules.service.evaluators`).

Started by the service as ``python -m careplan_rules.service.evaluation_process``; it talks to
its parent over stdin/stdout in frames: a 4-byte big-endian length, then a pickle. The first
frame is the service configuration (JSON text); the process builds its engine from it, warms
up, and answers ``("ready", pid)`` (or ``("failed", reason)``). Then each frame is one call,
``("body", service id, request bytes, caller, time)`` or ``("gathered", service id, call,
data, caller, time)`` (see :mod:`careplan_rules.service.calls`), answered with ``("ok",
Answer | NeedsFetch)``, ``("refused", ServiceError)`` or ``("failed", exception type)``. End
of input ends the process. Pickles only travel between the service and the processes it
started, over their private pipes.
"""

from __future__ import annotations

import copyreg
import logging
import os
import pickle
import signal
import struct
import sys
from datetime import UTC, datetime
from typing import Any, BinaryIO

from careplan_rules.service.calls import Answer
from careplan_rules.service.errors import ServiceError
from careplan_rules.service.store import IssuedCard

HEADER = struct.Struct(">I")
log = logging.getLogger("careplan_rules.service")


def _by_fields(obj: Answer | IssuedCard) -> tuple[type, tuple[Any, ...]]:
    return type(obj), tuple(getattr(obj, name) for name in obj.__slots__)


# Every answer carries these back to the service process, whose event loop unpickles them.
# A frozen dataclass unpickles through dataclasses' __setstate__, which lists the fields
# anew for each instance (about 40 us per answer); by its constructor, half that.
copyreg.pickle(Answer, _by_fields)
copyreg.pickle(IssuedCard, _by_fields)


def read_frame(stream: BinaryIO) -> Any:
    """The next frame's object, or None at end of input."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)


def frame(obj: Any) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def main() -> int:
    # Ctrl-C reaches the whole process group; the service stops its processes itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # frames go to the original stdout; anything else printed (a library's warning) to stderr
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    source = sys.stdin.buffer
    try:
        from careplan_rules.service.calls import answer_body, answer_gathered
        from careplan_rules.service.config import from_json
        from careplan_rules.service.discovery import build_services
        from careplan_rules.service.evaluation import warm_up
        from careplan_rules.service.evaluators import engine_for
        from careplan_rules.service.heap import settle
        from careplan_rules.service.logs import configure_logging

        config = from_json(read_frame(source) or "")
        configure_logging(config.log_level)
        engine = engine_for(config)
        services = {s.id: s for s in build_services(engine.ruleset, config)}
        if config.warm_up:
            warm_up(engine, datetime.now(UTC))
    except Exception as exc:  # the service reports it and stops starting
        out.write(frame(("failed", f"{type(exc).__name__}: {exc}")))
        return 1
    settle()  # see careplan_rules.service.heap
    out.write(frame(("ready", os.getpid())))
    while (job := read_frame(source)) is not None:
        try:
            if job[0] == "body":
                _, service_id, raw, caller, now = job
                answer: tuple[str, Any] = ("ok", answer_body(engine, config, services[service_id], raw, caller, now))
            else:
                _, service_id, call, data, caller, now = job
                answer = ("ok", answer_gathered(engine, config, services[service_id], call, data, caller, now))
        except ServiceError as exc:
            answer = ("refused", exc)
        except Exception as exc:  # a bug: the service answers 500, as it would have itself
            log.error("a call failed in an evaluation process with %s (no patient data logged)", type(exc).__name__)
            answer = ("failed", type(exc).__name__)
        out.write(frame(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
