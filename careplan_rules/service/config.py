"""Service configuration: one YAML file (``careplan-rules serve --config FILE``), validated by pydantic.

Every setting has a safe default except trust: with authentication on (the default) the
service refuses to start until at least one trusted issuer is configured, so a forgotten
setting can never leave it open. Command-line options (``--host``, ``--port``, ``--rules``,
``--insecure-no-auth``) override the file. This module imports only pydantic and PyYAML, so
``careplan-rules feedback export --config FILE`` works without the ``[service]`` extra.

Example (docs/cds-hooks.md has the full reference)::

    public_url: https://cds.example.org
    rules: [/srv/rules/kratom-safety]
    cors_origins: [https://sandbox.cds-hooks.org]
    feedback:
      database: /var/lib/careplan-rules/feedback.sqlite3
    auth:
      issuers:
        - iss: https://ehr.example.org
          jwks_file: /etc/careplan-rules/ehr-jwks.json
          jku: [https://ehr.example.org/.well-known/jwks.json]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from careplan_rules.errors import CarePlanRulesError

HOOKS = ("patient-view", "order-select", "order-sign")
ENV_CONFIG_JSON = "CAREPLAN_RULES_SERVICE_CONFIG_JSON"


class ConfigError(CarePlanRulesError):
    """The service configuration is unreadable or invalid."""

    default_code = "CPR-S001"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrustedIssuer(_Settings):
    """A CDS client (EHR) allowed to call the service, and where its signing keys come from."""

    iss: str = Field(description="the JWT 'iss' the client signs with, compared exactly")
    jwks_file: Path | None = Field(default=None, description="JWKS (public keys) exchanged out of band")
    jwks: dict[str, Any] | None = Field(default=None, description="the JWKS inline, instead of a file")
    jku: list[str] = Field(
        default_factory=list, description="JWKS URLs the client may name in its JWT 'jku' header (exact match)"
    )
    tenants: list[str] | None = Field(default=None, description="allowed 'tenant' claims; unset allows any")

    @model_validator(mode="after")
    def _has_keys(self) -> TrustedIssuer:
        if self.jwks_file is None and self.jwks is None and not self.jku:
            raise ValueError(f"issuer {self.iss!r} needs jwks_file, jwks or an allowlisted jku URL")
        for url in self.jku:
            if not url.startswith("https://"):
                raise ValueError(f"jku URL {url!r} must use https")
        return self


class AuthSettings(_Settings):
    insecure_no_auth: bool = Field(default=False, description="accept unauthenticated calls (local development)")
    issuers: list[TrustedIssuer] = Field(default_factory=list)
    leeway_seconds: int = Field(default=60, ge=0, le=600, description="clock skew tolerated on exp/iat")
    max_token_lifetime_seconds: int = Field(
        default=3600, ge=1, description="a JWT whose exp is further than this after its iat is refused"
    )
    jwks_cache_seconds: int = Field(default=3600, ge=0, description="how long keys fetched from a jku are cached")
    jwks_fetch_timeout_seconds: float = Field(default=5.0, gt=0)


class FhirClientSettings(_Settings):
    """How the service fetches data the client did not prefetch, from the client's ``fhirServer``."""

    timeout_seconds: float = Field(default=4.0, gt=0, description="per HTTP request")
    budget_seconds: float = Field(default=8.0, gt=0, description="for all fetches of one hook call")
    max_pages: int = Field(default=20, ge=1, description="pages followed per search (Bundle 'next' links)")
    max_response_bytes: int = Field(default=20_000_000, ge=1024)
    allow_http: bool = Field(default=False, description="allow a plain-http fhirServer (development only)")
    allowed_servers: list[str] = Field(
        default_factory=list, description="fhirServer URL prefixes the service may call; empty allows any"
    )


class FeedbackSettings(_Settings):
    database: Path = Field(default=Path("careplan-rules-feedback.sqlite3"), description="SQLite file")
    card_retention_days: int = Field(default=90, ge=1, description="issued-card records kept for joining feedback")


class ServiceConfig(_Settings):
    """All settings of ``careplan-rules serve``."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes")
    evaluation_processes: int = Field(
        default=0,
        ge=0,
        le=64,
        description="processes that evaluate calls for each worker, from one queue; 0 = the worker's event loop",
    )
    evaluation_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="an evaluation process that has not answered a call by then is killed and replaced; "
        "the call gets a could-not-evaluate card",
    )
    public_url: str | None = Field(
        default=None,
        description="base URL clients call (e.g. https://cds.example.org); JWT 'aud' is checked against it",
    )
    rules: list[Path] = Field(default_factory=list, description="rule pack folders; empty = the bundled pack")
    backend: Literal["python", "durable"] = Field(
        default="python",
        description="evaluation backend; durable runs in crash-isolated worker processes (docs/backends.md)",
    )
    durable_workers: int = Field(default=2, ge=1, le=64, description="worker processes of the durable backend")
    service_ids: dict[str, str] = Field(default_factory=dict, description="hook -> service id overrides")
    hooks: list[Literal["patient-view", "order-select", "order-sign"]] = Field(
        default_factory=lambda: list(HOOKS)  # type: ignore[arg-type]
    )
    context_validation: Literal["strict", "lenient"] = Field(
        default="strict", description="lenient accepts a missing context.userId (some EHRs omit it)"
    )
    missing_data: Literal["412", "card"] = Field(
        default="412",
        description="412: answer 412 when needed data cannot be had; card: evaluate what there is and add a card",
    )
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed (CORS)")
    max_request_bytes: int = Field(default=10_000_000, ge=1024)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    forwarded_allow_ips: str = Field(default="127.0.0.1", description="proxies trusted for X-Forwarded-* headers")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    warm_up: bool = Field(default=True, description="load FHIR models before serving, so the first call is fast")
    auth: AuthSettings = Field(default_factory=AuthSettings)
    fhir: FhirClientSettings = Field(default_factory=FhirClientSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"public_url {value!r} must be an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator("service_ids")
    @classmethod
    def _ids(cls, value: dict[str, str]) -> dict[str, str]:
        for hook, sid in value.items():
            if hook not in HOOKS:
                raise ValueError(f"service_ids names unknown hook {hook!r} (known: {', '.join(HOOKS)})")
            if not sid or not all(c.isalnum() or c in "-_." for c in sid):
                raise ValueError(f"service id {sid!r} may only hold letters, digits, '-', '_' and '.'")
        return value

    def service_id(self, hook: str) -> str:
        return self.service_ids.get(hook, f"careplan-rules-{hook}")

    def check_startable(self) -> None:
        """Refuse configurations that would start an open or broken service.

        Raises:
            ConfigError: authentication on without a trusted issuer, half a TLS pair, or
                evaluation processes with the durable backend.
        """
        if not self.auth.insecure_no_auth and not self.auth.issuers:
            raise ConfigError(
                "no trusted issuers are configured: add auth.issuers to the config file, "
                "or pass --insecure-no-auth for local development"
            )
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ConfigError("tls_certfile and tls_keyfile must be given together")
        if self.evaluation_processes and self.backend == "durable":
            raise ConfigError(
                "evaluation_processes cannot be combined with backend: durable, which evaluates in its own "
                "processes already (durable_workers)"
            )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    count = len(exc.errors())
    more = f" (and {count - 1} more)" if count > 1 else ""
    return f"{where}: {err['msg']}{more}"


def parse_config(data: Any, source: str = "<config>") -> ServiceConfig:
    """Validate already-parsed settings.

    Raises:
        ConfigError: with the first problem's dotted path.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping of settings")
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None


def load_config(path: str | Path | None, **overrides: Any) -> ServiceConfig:
    """Read the YAML file (if any) and apply command-line overrides (``None`` values are ignored).

    Raises:
        ConfigError: unreadable file, malformed YAML, unknown or invalid settings.
    """
    data: dict[str, Any] = {}
    source = str(path) if path is not None else "<defaults>"
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the configuration file: {exc.strerror or exc}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"{source}{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the configuration must be a mapping of settings")
        data = _anchor_paths(dict(loaded or {}), Path(path).resolve().parent)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "insecure_no_auth":
            if value:
                data["auth"] = {**dict(data.get("auth") or {}), "insecure_no_auth": True}
            continue
        data[key] = value
    return parse_config(data, source)


def _anchor(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and not Path(value).is_absolute():
        return str(base / value)
    return value


def _anchor_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in the file are relative to the file, not to the working directory."""
    if isinstance(data.get("rules"), list):
        data["rules"] = [_anchor(p, base) for p in data["rules"]]
    for key in ("tls_certfile", "tls_keyfile"):
        if key in data:
            data[key] = _anchor(data[key], base)
    feedback = data.get("feedback")
    if isinstance(feedback, dict) and "database" in feedback:
        data["feedback"] = {**feedback, "database": _anchor(feedback["database"], base)}
    auth = data.get("auth")
    if isinstance(auth, dict) and isinstance(auth.get("issuers"), list):
        issuers = []
        for issuer in auth["issuers"]:
            if isinstance(issuer, dict) and "jwks_file" in issuer:
                issuer = {**issuer, "jwks_file": _anchor(issuer["jwks_file"], base)}
            issuers.append(issuer)
        data["auth"] = {**auth, "issuers": issuers}
    return data


def to_json(config: ServiceConfig) -> str:
    """Serialise (for handing a resolved configuration to uvicorn worker processes)."""
    return config.model_dump_json()


def from_json(text: str) -> ServiceConfig:
    """Inverse of :func:`to_json`.

    Raises:
        ConfigError: the text is not a serialised configuration.
    """
    try:
        return parse_config(json.loads(text), ENV_CONFIG_JSON)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{ENV_CONFIG_JSON}: not JSON ({exc.msg})") from None
