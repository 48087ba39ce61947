"""The CDS Hooks 2.0.1 ASGI app: discovery, hook calls, feedback.

Endpoints::

    GET  /cds-services                     discovery (JWT required)
    POST /cds-services/{id}                a hook call (JWT required) -> {"cards": [...]}
    POST /cds-services/{id}/feedback       card outcomes (JWT required)
    GET  /healthz                          liveness (503 when calls cannot be evaluated), no
                                           authentication, no data

Every non-2xx answer is a FHIR OperationOutcome. The app holds no clinical logic: the same
:class:`~careplan_rules.api.Engine` as the CLI evaluates, :mod:`careplan_rules.outputs.cards`
renders. A call's CPU work (parsing, evaluation, cards) runs where the configured evaluator
puts it (:mod:`careplan_rules.service.evaluators`: the event loop, or a pool of evaluation
processes); the service process keeps HTTP, authentication, fetching from the client's FHIR
server and the feedback store. ``create_app`` is for embedding and tests; ``app_from_env`` is
the factory uvicorn workers start from (``careplan-rules serve`` puts the resolved
configuration in the environment).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import anyio.to_thread
import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from careplan_rules._version import __version__
from careplan_rules.api import Engine
from careplan_rules.service import heap
from careplan_rules.service.calls import NeedsFetch
from careplan_rules.service.card_log import IssuedCardLog
from careplan_rules.service.config import ENV_CONFIG_JSON, ServiceConfig, from_json
from careplan_rules.service.context import parse_hook_call
from careplan_rules.service.discovery import ServiceDefinition, build_services, discovery_document
from careplan_rules.service.errors import Issue, ServiceError, unauthorized
from careplan_rules.service.evaluators import Evaluator, engine_for, evaluator_for
from careplan_rules.service.feedback import parse_feedback
from careplan_rules.service.gather import gather
from careplan_rules.service.http import (
    OutcomeCORSMiddleware,
    SafetyNetMiddleware,
    outcome_response,
    parse_json,
    read_body,
    read_json,
)
from careplan_rules.service.logs import configure_logging
from careplan_rules.service.security import AuthError, Caller, JwtVerifier, load_issuer_keys
from careplan_rules.service.store import FeedbackStore, StoreError

log = logging.getLogger("careplan_rules.service")
INSECURE_WARNING = (
    "authentication is DISABLED (--insecure-no-auth): anyone who can reach this port can call the service; "
    "use this only for local development"
)


class _State:
    """What the routes share (one per app)."""

    def __init__(
        self,
        config: ServiceConfig,
        evaluator: Evaluator,
        store: FeedbackStore,
        verifier: JwtVerifier | None,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.evaluator = evaluator
        self.engine: Engine = evaluator.engine  # discovery, prefetch templates, what the rules read
        self.store = store
        self.issued = IssuedCardLog(store, retention_days=config.feedback.card_retention_days)
        self.verifier = verifier
        self.clock = clock
        self.http: httpx.AsyncClient | None = None
        ruleset = self.engine.ruleset
        self.services: dict[str, ServiceDefinition] = {s.id: s for s in build_services(ruleset, config)}
        self.discovery = discovery_document(list(self.services.values()), ruleset, __version__)

    async def authenticate(self, request: Request, *paths: str) -> Caller:
        if self.verifier is None:
            return Caller()
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        path = request.url.path[:200]  # the caller's text (an unknown service id): logged in part
        if scheme.lower() != "bearer" or not token.strip():
            log.warning("401 on %s: no bearer token", path)
            raise unauthorized()
        base = self.config.public_url or str(request.base_url).rstrip("/")
        try:
            return await self.verifier.verify(token.strip(), tuple(base + p for p in paths))
        except AuthError as exc:
            log.warning("401 on %s: %s", path, exc.reason)
            raise unauthorized() from None

    def service(self, service_id: str) -> ServiceDefinition:
        found = self.services.get(service_id)
        if found is None:
            raise ServiceError.single(
                404,
                "not-found",
                f"no CDS service with id {service_id!r} here (GET /cds-services lists them)",
            )
        return found


def create_app(
    config: ServiceConfig,
    *,
    engine: Engine | None = None,
    store: FeedbackStore | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
    freeze_heap: bool = False,
) -> FastAPI:
    """Build the app.

    Args:
        config: the service settings.
        engine: a prebuilt engine (default: from ``config.rules``, else the bundled pack).
        store: a feedback store (default: ``config.feedback.database``).
        http_transport: transport for outgoing HTTP (FHIR fetches, JWKS); tests inject mocks.
        clock: epoch seconds; used for JWT checks and as the evaluation time.
        freeze_heap: after start-up, move everything loaded so far out of the garbage
            collector's sight (``gc.freeze``) and collect the young generation less often
            (:mod:`careplan_rules.service.heap`); process-wide, so only for a process that is
            the service (``careplan-rules serve`` sets it), not for an app embedded elsewhere.

    Raises:
        ConfigError: the configuration would start an open or broken service, a JWKS file is
            unreadable, or evaluation processes are configured with an ``engine`` passed in.
        RuleLoadError: the rule packs do not load.
        StoreError: the feedback database cannot be opened.
    """
    config.check_startable()
    for issuer in config.auth.issuers if not config.auth.insecure_no_auth else ():
        load_issuer_keys(issuer)  # a bad JWKS file fails here, before anything is created on disk
    evaluator = evaluator_for(config, engine or engine_for(config), injected_engine=engine is not None)
    store = store or FeedbackStore(config.feedback.database)
    verifier = None if config.auth.insecure_no_auth else JwtVerifier(config.auth, store, None, clock)
    state = _State(config, evaluator, store, verifier, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if config.auth.insecure_no_auth:
            log.warning(INSECURE_WARNING)
        elif config.public_url is None:
            log.warning("public_url is not set: JWT audiences are checked against the Host of each request")
        started = time.perf_counter()
        await evaluator.start(datetime.fromtimestamp(clock(), UTC))
        if freeze_heap:
            heap.settle()  # freeze what is loaded by now, fewer young collections
        log.info("evaluation ready in %.0f ms", (time.perf_counter() - started) * 1000)
        try:
            async with httpx.AsyncClient(transport=http_transport, follow_redirects=False) as http:
                state.http = http
                if verifier is not None:
                    verifier.http = http
                yield
        finally:
            try:
                await state.issued.flush()  # the records of the last cards sent
                await evaluator.close()
            finally:
                store.close()

    app = FastAPI(
        title="careplan-rules CDS Hooks service",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.service = state
    app.add_middleware(SafetyNetMiddleware)
    if config.cors_origins:
        app.add_middleware(
            OutcomeCORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    _install_error_handlers(app)
    _install_routes(app, state)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    async def service_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return outcome_response(exc.status, exc.issues, exc.headers)

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        text = {404: "no such endpoint; GET /cds-services lists the services", 405: "method not allowed here"}
        message = text.get(exc.status_code, str(exc.detail))
        return outcome_response(exc.status_code, (Issue(code, message),), dict(exc.headers or {}))

    async def validation_error(_request: Request, _exc: Exception) -> Response:
        return outcome_response(400, (Issue("invalid", "the request does not fit this endpoint"),))

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _install_routes(app: FastAPI, state: _State) -> None:
    config = state.config

    @app.get("/healthz", include_in_schema=False)
    async def health() -> Response:
        if not state.evaluator.healthy():
            # a load balancer should send calls elsewhere: here they would only get "could not run" cards
            message = "no evaluation process is running and none could be started"
            return outcome_response(503, (Issue("transient", message),))
        return JSONResponse({"status": "ok"})

    @app.get("/cds-services")
    async def discovery(request: Request) -> JSONResponse:
        await state.authenticate(request, "/cds-services")
        return JSONResponse(state.discovery)

    # A plain Starlette route, not a FastAPI one: FastAPI's parameter solving cost 0.1 ms of CPU
    # per call, measured, and this route is every hook call (the service's only busy path).
    async def call_service(request: Request) -> Response:
        started = time.perf_counter()
        service_id: str = request.path_params["service_id"]
        # authenticate first: an unauthenticated caller learns nothing, not even which ids exist
        caller = await state.authenticate(request, f"/cds-services/{service_id}")
        service = state.service(service_id)
        raw = await read_body(request, config.max_request_bytes)
        now = datetime.fromtimestamp(state.clock(), UTC).replace(microsecond=0)
        try:
            answer = await state.evaluator.answer_body(service, raw, caller, now)
            if isinstance(answer, NeedsFetch):  # the slow path (network): parsing twice costs little here
                call = parse_hook_call(
                    parse_json(raw), service.hook, lenient_user=config.context_validation == "lenient"
                )
                data = await gather(call, service.templates, state.http, config.fhir, state.engine.ruleset.read_types)
                answer = await state.evaluator.answer_gathered(service, call, data, caller, now)
        except ServiceError as exc:
            if exc.status == 412:
                log.info("412 on %s: %d data gap(s)", service.id, len(exc.issues))
            raise
        state.issued.add(answer.issued)  # written in a batch, off the loop, within 50 ms
        log.info(
            "%s %s: %d card(s), %d could-not-evaluate, fetched %s, %.1f ms",
            service.id,
            answer.hook_instance,
            len(answer.issued),
            answer.errors,
            ",".join(answer.fetched) or "nothing",
            (time.perf_counter() - started) * 1000,
        )
        return Response(answer.content, media_type="application/json")

    app.add_route("/cds-services/{service_id}", call_service, methods=["POST"])

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> JSONResponse:
        # the feedback URL is its own endpoint; clients that sign for the service URL are accepted too
        caller = await state.authenticate(
            request, f"/cds-services/{service_id}/feedback", f"/cds-services/{service_id}"
        )
        service = state.service(service_id)
        items = parse_feedback(await read_json(request, config.max_request_bytes))
        await state.issued.flush()  # the cards this feedback is about may still be queued
        try:
            new, duplicates = await anyio.to_thread.run_sync(
                lambda: state.store.record_feedback(service.id, items, client_iss=caller.iss, tenant=caller.tenant)
            )
        except (StoreError, sqlite3.Error) as exc:
            log.error("could not store feedback (%s)", type(exc).__name__)
            raise ServiceError.single(500, "exception", "the feedback could not be stored; please retry") from None
        log.info("%s feedback: %d item(s), %d new", service.id, len(items), new)
        return JSONResponse({"received": len(items), "stored": new, "duplicates": duplicates})


def app_from_env() -> FastAPI:
    """The uvicorn factory: the configuration comes from ``CAREPLAN_RULES_SERVICE_CONFIG_JSON``.

    Raises:
        ConfigError: the variable is missing or invalid.
    """
    text = os.environ.get(ENV_CONFIG_JSON)
    config = from_json(text) if text else ServiceConfig()
    configure_logging(config.log_level)
    return create_app(config, freeze_heap=True)
