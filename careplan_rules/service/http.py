"""HTTP edges of the service: reading a JSON body safely, CORS, and the last-resort 500.

* :func:`read_json` enforces the content type (415), the size limit while streaming, so a
  client cannot make the service buffer more than ``max_request_bytes`` (413), and JSON syntax
  (400, with line and column).
* :class:`SafetyNetMiddleware` turns an unexpected exception into a 500 OperationOutcome and
  logs only the exception type and code location: an exception *message* may quote data; a
  failed start-up is reported in one line, not as a traceback.
* :class:`OutcomeCORSMiddleware` is Starlette's CORS with an origin allowlist whose refused
  preflights also answer with an OperationOutcome.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from careplan_rules.service.errors import Issue, ServiceError, operation_outcome

try:  # the service extra installs it on CPython; PyPy runs on the standard library alone
    import orjson
except ImportError:
    orjson = None  # type: ignore[assignment]

log = logging.getLogger("careplan_rules.service")
JSON_TYPES = ("application/json", "application/fhir+json")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: Request, max_bytes: int) -> Any:
    """The parsed JSON body.

    Raises:
        ServiceError: 415 (not JSON), 413 (too large), 400 (empty or malformed).
    """
    return parse_json(await read_body(request, max_bytes))


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body of a request that says it is JSON (or says nothing).

    Raises:
        ServiceError: 415 (another content type), 413 (too large), 400 (empty).
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # a missing Content-Type is tolerated (curl, some clients); a declared non-JSON type is not
    if media and media not in JSON_TYPES and not media.endswith("+json"):
        raise ServiceError.single(415, "not-supported", f"the request body must be JSON (got {media})")
    too_large = ServiceError.single(413, "too-long", f"the request body is larger than {max_bytes} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ServiceError.single(400, "required", "the request body is empty; a JSON object is expected")
    return raw


def parse_json(raw: bytes) -> Any:
    """Parse a request body.

    Raises:
        ServiceError: 400 (malformed JSON, not UTF-8, NaN/Infinity, nested too deeply).
    """
    if orjson is not None:
        # orjson parses a 37 KiB prefetch in half the time; it is stricter than the standard
        # parser (byte order marks, lone surrogates), so whatever it refuses goes to the
        # standard parser, which decides and words the error. One difference stays: an integer
        # beyond 64 bits becomes a float, as any decimal does. No code of a value set is that
        # long (SNOMED CT identifiers have at most 18 digits), and FHIR integers are 32-bit.
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ServiceError.single(
            400, "structure", f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError:
        raise ServiceError.single(400, "structure", "the request body is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise ServiceError.single(400, "structure", f"malformed JSON: {message}") from None


def render_json(content: Any) -> bytes:
    """A JSON response body: compact UTF-8, as Starlette's JSONResponse renders one.

    orjson writes the same bytes for what cards hold (strings, integers, booleans, null,
    objects, lists) ten times faster; what it cannot write (a non-string key, an integer
    beyond 64 bits) goes to the standard encoder. Floats, which cards do not hold, could
    differ in form (``1e16`` for ``1e+16``), and orjson writes a non-finite one as null.
    """
    if orjson is not None:
        try:
            return orjson.dumps(content)
        except TypeError:  # orjson.JSONEncodeError
            pass
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def outcome_response(status: int, issues: tuple[Issue, ...], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(operation_outcome(issues), status_code=status, headers=headers)


class SafetyNetMiddleware:
    """Last resort: a 500 OperationOutcome for any exception nothing else handled."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, _one_line_failures(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames[-4:]))
            log.error(
                "internal error %s at %s (message withheld: it may quote request data)", type(exc).__name__, where
            )
            if started:
                raise
            response = outcome_response(
                500, (Issue("exception", "internal error in the CDS service; the request was not processed"),)
            )
            await response(scope, receive, send)


def _one_line_failures(send: Send) -> Send:
    """Starlette reports a failed start-up (an evaluation process that cannot start) with the
    whole traceback, which uvicorn prints; the service's start-up errors are written to be read
    alone, so only their last line goes out (all of it when the log level is debug)."""

    async def one_line(message: Message) -> None:
        failed = message["type"] in ("lifespan.startup.failed", "lifespan.shutdown.failed")
        if failed and not log.isEnabledFor(logging.DEBUG):
            lines = [line for line in str(message.get("message", "")).splitlines() if line.strip()]
            message = {**message, "message": lines[-1] if lines else "start-up failed"}
        await send(message)

    return one_line


class OutcomeCORSMiddleware(CORSMiddleware):
    """CORS with an origin allowlist; a refused preflight gets an OperationOutcome body."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        reason = response.body.decode("utf-8", "replace") if isinstance(response.body, bytes) else "refused"
        return outcome_response(
            response.status_code, (Issue("security", f"CORS preflight refused: {reason}"),), headers=headers
        )
