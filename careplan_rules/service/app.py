"""The CDS Hooks 2.0.1 ASGI app: discovery, hook calls, feedback.

Endpoints::

    GET  /cds-services                     discovery (JWT required)
    POST /cds-services/{id}                a hook call (JWT required) -> {"cards": [...]}
    POST /cds-services/{id}/feedback       card outcomes (JWT required)
    GET  /healthz                          liveness, no authentication, no data

Every non-2xx answer is a FHIR OperationOutcome. The app holds no clinical logic: the same
:class:`~careplan_rules.api.Engine` as the CLI evaluates, :mod:`careplan_rules.outputs.cards`
renders. Blocking work (evaluation, SQLite) runs in worker threads; the engine is immutable and
shared. ``create_app`` is for embedding and tests; ``app_from_env`` is the factory uvicorn
workers start from (``careplan-rules serve`` puts the resolved configuration in the environment).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from careplan_rules._version import __version__
from careplan_rules.api import Engine
from careplan_rules.outputs.cards import EXTENSION_KEY
from careplan_rules.service.config import ENV_CONFIG_JSON, ServiceConfig, from_json
from careplan_rules.service.context import parse_hook_call
from careplan_rules.service.discovery import ServiceDefinition, build_services, discovery_document
from careplan_rules.service.errors import Issue, ServiceError, unauthorized
from careplan_rules.service.evaluation import evaluate_call, warm_up
from careplan_rules.service.feedback import parse_feedback
from careplan_rules.service.gather import gather
from careplan_rules.service.http import OutcomeCORSMiddleware, SafetyNetMiddleware, outcome_response, read_json
from careplan_rules.service.security import AuthError, Caller, JwtVerifier, load_issuer_keys
from careplan_rules.service.store import FeedbackStore, IssuedCard, StoreError

log = logging.getLogger("careplan_rules.service")
INSECURE_WARNING = (
    "authentication is DISABLED (--insecure-no-auth): anyone who can reach this port can call the service; "
    "use this only for local development"
)


def _engine(config: ServiceConfig) -> Engine:
    """The service's engine; durable_rules runs isolated so a crash fails one request, not the service."""
    if config.backend == "durable":
        from careplan_rules.engine.backends.durable import DurableBackend

        backend = DurableBackend(isolated=True, workers=config.durable_workers)
        if config.rules:
            return Engine.from_paths(*config.rules, backend=backend)
        return Engine.default(backend=backend)
    return Engine.from_paths(*config.rules) if config.rules else Engine.default()


class _State:
    """What the routes share (one per app)."""

    def __init__(
        self,
        config: ServiceConfig,
        engine: Engine,
        store: FeedbackStore,
        verifier: JwtVerifier | None,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.engine = engine
        self.store = store
        self.verifier = verifier
        self.clock = clock
        self.http: httpx.AsyncClient | None = None
        # one evaluation at a time per process: evaluation is CPU-bound Python, so more threads
        # only trade the GIL back and forth (slower for all); requests queue in arrival order
        self.evaluations: anyio.CapacityLimiter | None = None
        self.services: dict[str, ServiceDefinition] = {s.id: s for s in build_services(engine.ruleset, config)}
        self.discovery = discovery_document(list(self.services.values()), engine.ruleset, __version__)

    async def authenticate(self, request: Request, *paths: str) -> Caller:
        if self.verifier is None:
            return Caller()
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            log.warning("401 on %s: no bearer token", request.url.path)
            raise unauthorized()
        base = self.config.public_url or str(request.base_url).rstrip("/")
        try:
            return await self.verifier.verify(token.strip(), tuple(base + p for p in paths))
        except AuthError as exc:
            log.warning("401 on %s: %s", request.url.path, exc.reason)
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
) -> FastAPI:
    """Build the app.

    Args:
        config: the service settings.
        engine: a prebuilt engine (default: from ``config.rules``, else the bundled pack).
        store: a feedback store (default: ``config.feedback.database``).
        http_transport: transport for outgoing HTTP (FHIR fetches, JWKS); tests inject mocks.
        clock: epoch seconds; used for JWT checks and as the evaluation time.

    Raises:
        ConfigError: the configuration would start an open or broken service, or a JWKS file is
            unreadable.
        RuleLoadError: the rule packs do not load.
        StoreError: the feedback database cannot be opened.
    """
    config.check_startable()
    for issuer in config.auth.issuers if not config.auth.insecure_no_auth else ():
        load_issuer_keys(issuer)  # a bad JWKS file fails here, before anything is created on disk
    engine = engine or _engine(config)
    store = store or FeedbackStore(config.feedback.database)
    verifier = None if config.auth.insecure_no_auth else JwtVerifier(config.auth, store, None, clock)
    state = _State(config, engine, store, verifier, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if config.auth.insecure_no_auth:
            log.warning(INSECURE_WARNING)
        elif config.public_url is None:
            log.warning("public_url is not set: JWT audiences are checked against the Host of each request")
        if config.warm_up:
            started = time.perf_counter()
            try:
                await anyio.to_thread.run_sync(lambda: warm_up(state.engine, datetime.fromtimestamp(clock(), UTC)))
                log.info("warmed up in %.0f ms", (time.perf_counter() - started) * 1000)
            except Exception as exc:  # only a speed-up: serving must not depend on it
                log.warning("warm-up failed (%s); the first call will be slower", type(exc).__name__)
        state.evaluations = anyio.CapacityLimiter(1)
        async with httpx.AsyncClient(transport=http_transport, follow_redirects=False) as http:
            state.http = http
            if verifier is not None:
                verifier.http = http
            yield
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


def _issued(
    cards: list[dict[str, Any]], service: ServiceDefinition, call_instance: str, user: str | None, caller: Caller
) -> list[IssuedCard]:
    out = []
    for card in cards:
        finding = card.get("extension", {}).get(f"{EXTENSION_KEY}.finding", {})
        out.append(
            IssuedCard(
                card_uuid=card["uuid"],
                service_id=service.id,
                hook=service.hook,
                hook_instance=call_instance,
                indicator=card["indicator"],
                rule_id=finding.get("rule"),
                rule_version=finding.get("ruleVersion"),
                pack_id=finding.get("pack"),
                pack_version=finding.get("packVersion"),
                user_id=user,
                client_iss=caller.iss,
                tenant=caller.tenant,
                suggestions=tuple((s["uuid"], s["label"]) for s in card.get("suggestions", ())),
            )
        )
    return out


def _install_routes(app: FastAPI, state: _State) -> None:
    config = state.config

    @app.get("/healthz", include_in_schema=False)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/cds-services")
    async def discovery(request: Request) -> JSONResponse:
        await state.authenticate(request, "/cds-services")
        return JSONResponse(state.discovery)

    @app.post("/cds-services/{service_id}")
    async def call_service(service_id: str, request: Request) -> JSONResponse:
        started = time.perf_counter()
        # authenticate first: an unauthenticated caller learns nothing, not even which ids exist
        caller = await state.authenticate(request, f"/cds-services/{service_id}")
        service = state.service(service_id)
        body = await read_json(request, config.max_request_bytes)
        call = parse_hook_call(body, service.hook, lenient_user=config.context_validation == "lenient")
        data = await gather(call, service.templates, state.http, config.fhir, state.engine.ruleset.read_types)
        if data.missing and config.missing_data == "412":
            log.info("412 on %s: %d data gap(s)", service.id, len(data.missing))
            raise ServiceError(412, data.missing)
        now = datetime.fromtimestamp(state.clock(), UTC).replace(microsecond=0)
        result = await anyio.to_thread.run_sync(
            lambda: evaluate_call(state.engine, call, data.resources, now, missing=data.missing),
            limiter=state.evaluations,
        )
        try:
            issued = _issued(result.cards, service, call.hook_instance, call.user_id, caller)
            await anyio.to_thread.run_sync(
                lambda: state.store.record_cards(issued, retention_days=config.feedback.card_retention_days)
            )
        except (StoreError, sqlite3.Error) as exc:
            # the cards still go out: a clinician must not lose a warning to a full disk
            log.error(
                "could not record issued cards (%s); feedback on them will lack rule and user", type(exc).__name__
            )
        log.info(
            "%s %s: %d card(s), %d could-not-evaluate, fetched %s, %.1f ms",
            service.id,
            call.hook_instance,
            len(result.cards),
            result.errors,
            ",".join(data.fetched) or "nothing",
            (time.perf_counter() - started) * 1000,
        )
        return JSONResponse({"cards": result.cards})

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> JSONResponse:
        # the feedback URL is its own endpoint; clients that sign for the service URL are accepted too
        caller = await state.authenticate(
            request, f"/cds-services/{service_id}/feedback", f"/cds-services/{service_id}"
        )
        service = state.service(service_id)
        items = parse_feedback(await read_json(request, config.max_request_bytes))
        try:
            new, duplicates = await anyio.to_thread.run_sync(
                lambda: state.store.record_feedback(service.id, items, client_iss=caller.iss, tenant=caller.tenant)
            )
        except (StoreError, sqlite3.Error) as exc:
            log.error("could not store feedback (%s)", type(exc).__name__)
            raise ServiceError.single(500, "exception", "the feedback could not be stored; please retry") from None
        log.info("%s feedback: %d item(s), %d new", service.id, len(items), new)
        return JSONResponse({"received": len(items), "stored": new, "duplicates": duplicates})


def configure_logging(level: str) -> None:
    """Log lines for the service's own logger (uvicorn configures its loggers itself)."""
    logger = logging.getLogger("careplan_rules.service")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())


def app_from_env() -> FastAPI:
    """The uvicorn factory: the configuration comes from ``CAREPLAN_RULES_SERVICE_CONFIG_JSON``.

    Raises:
        ConfigError: the variable is missing or invalid.
    """
    text = os.environ.get(ENV_CONFIG_JSON)
    config = from_json(text) if text else ServiceConfig()
    configure_logging(config.log_level)
    return create_app(config)
