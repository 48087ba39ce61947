"""Verify the CDS client's JWT (CDS Hooks 2.0.1 "Trusting CDS Clients").

Checks, in order (cds-hooks best practices; research §2.7): the header names an asymmetric
algorithm we accept (ES384 or RS384: never ``none``, never HMAC) and a ``kid``; ``iss`` is
a configured issuer; the key comes from the issuer's ``jku`` header when that URL is
allowlisted for the issuer (fetched keys are cached, and re-fetched once when a new ``kid``
appears, for key rotation), otherwise from the issuer's JWKS file (an unlisted ``jku`` is never
fetched); the signature verifies; ``aud`` is exactly the endpoint URL
called; ``exp`` and ``iat`` are present and sane; ``tenant`` is allowed when an allowlist is
set; ``jti`` has not been seen before. Any failure is one :class:`AuthError` whose reason is
logged (never the token) and answered with a bare 401.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from careplan_rules.service.config import AuthSettings, ConfigError, TrustedIssuer

ALGORITHMS = ("ES384", "RS384")
JWKS_REFRESH_MIN_SECONDS = 60.0
MAX_JWKS_BYTES = 1_000_000


class AuthError(Exception):
    """The client JWT is not acceptable; ``reason`` is safe to log (it never holds the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReplayCache(Protocol):
    def seen_jti(self, iss: str, jti: str, expires_at: float, now: float) -> bool: ...


class MemoryReplayCache:
    """A per-process replay cache (tests; single-process deployments without a database)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}

    def seen_jti(self, iss: str, jti: str, expires_at: float, now: float) -> bool:
        if len(self._seen) > 10_000:
            self._seen = {k: v for k, v in self._seen.items() if v >= now}
        key = (iss, jti)
        previous = self._seen.get(key)
        if previous is not None and previous >= now:
            return True
        self._seen[key] = expires_at
        return False


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called (from verified claims; safe to store and log)."""

    iss: str | None = None
    tenant: str | None = None
    jti: str | None = None


def _load_jwks(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError(f"{where}: not a JWKS (a JSON object with a 'keys' list)")
    keys: dict[str, Any] = {}
    for jwk in data["keys"]:
        if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
            keys[jwk["kid"]] = jwk
    return keys


def load_issuer_keys(issuer: TrustedIssuer) -> dict[str, Any]:
    """The issuer's out-of-band keys by ``kid``.

    Raises:
        ConfigError: the JWKS file cannot be read or is not a JWKS.
    """
    keys: dict[str, Any] = {}
    try:
        if issuer.jwks is not None:
            keys.update(_load_jwks(issuer.jwks, f"the JWKS of {issuer.iss}"))
        if issuer.jwks_file is not None:
            try:
                data = json.loads(issuer.jwks_file.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ValueError(f"{issuer.jwks_file}: cannot read the JWKS ({exc.strerror or exc})") from None
            except json.JSONDecodeError as exc:
                raise ValueError(f"{issuer.jwks_file}: cannot read the JWKS (malformed JSON: {exc.msg})") from None
            keys.update(_load_jwks(data, str(issuer.jwks_file)))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return keys


def _public_key(jwk: Mapping[str, Any], alg: str) -> Any:
    kty = jwk.get("kty")
    if alg.startswith("ES"):
        if kty != "EC" or jwk.get("crv") != "P-384":
            raise AuthError("the key named by kid is not an EC P-384 key, as ES384 needs")
        return ECAlgorithm.from_jwk(json.dumps(dict(jwk)))
    if kty != "RSA":
        raise AuthError("the key named by kid is not an RSA key, as RS384 needs")
    return RSAAlgorithm.from_jwk(json.dumps(dict(jwk)))


class JwtVerifier:
    """Verifies client JWTs against the configured issuers."""

    def __init__(
        self,
        settings: AuthSettings,
        replay: ReplayCache,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._replay = replay
        self.http = http  # set by the app once its client exists
        self._clock = clock
        self._issuers = {i.iss: i for i in settings.issuers}
        self._static = {i.iss: load_issuer_keys(i) for i in settings.issuers}
        self._jku_cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._jku_lock = asyncio.Lock()

    async def verify(self, token: str, audiences: tuple[str, ...]) -> Caller:
        """Verify a compact JWT for a call to one of ``audiences`` (exact endpoint URLs).

        Raises:
            AuthError: on any failure.
        """
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("the bearer token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            # the header is the caller's text and the reason is logged: a bounded quote of it
            raise AuthError(f"JWT algorithm {str(alg)[:20]!r} is not accepted (only {', '.join(ALGORITHMS)})")
        typ = header.get("typ")
        if typ is not None and str(typ).upper() != "JWT":
            raise AuthError("JWT header typ must be JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("JWT header has no kid")
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError("JWT iss is not a trusted issuer")
        jwk = await self._key(issuer, kid, header.get("jku"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                _public_key(jwk, alg),
                algorithms=[alg],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"JWT signature or format rejected ({type(exc).__name__})") from None
        self._check_claims(claims, issuer, audiences)
        exp = float(claims["exp"])
        now = self._clock()
        if self._replay.seen_jti(issuer.iss, str(claims["jti"]), exp + self._settings.leeway_seconds, now):
            raise AuthError("JWT jti was already used (replay)")
        tenant = claims.get("tenant")
        return Caller(issuer.iss, tenant if isinstance(tenant, str) else None, str(claims["jti"]))

    def _check_claims(self, claims: Mapping[str, Any], issuer: TrustedIssuer, audiences: tuple[str, ...]) -> None:
        for name in ("iss", "aud", "exp", "iat", "jti"):
            if name not in claims:
                raise AuthError(f"JWT has no {name} claim")
        aud = claims["aud"]
        given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        wanted = {a.rstrip("/") for a in audiences}
        if not any(isinstance(a, str) and a.rstrip("/") in wanted for a in given):
            raise AuthError("JWT aud is not this endpoint's URL")
        exp, iat = claims["exp"], claims["iat"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, iat)):
            raise AuthError("JWT exp and iat must be numbers")
        now = self._clock()
        leeway = self._settings.leeway_seconds
        if exp < now - leeway:
            raise AuthError("JWT has expired")
        if iat > now + leeway:
            raise AuthError("JWT iat is in the future")
        if exp - iat > self._settings.max_token_lifetime_seconds:
            raise AuthError("JWT lifetime (exp - iat) is longer than allowed")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise AuthError("JWT jti must be a non-empty string")
        if issuer.tenants is not None and claims.get("tenant") not in issuer.tenants:
            raise AuthError("JWT tenant is not allowed for this issuer")

    async def _key(self, issuer: TrustedIssuer, kid: str, jku: Any) -> Mapping[str, Any]:
        # A jku outside the allowlist is never fetched; the token may still verify with the
        # issuer's out-of-band keys (clients such as the Sandbox always send a jku).
        if isinstance(jku, str) and jku in issuer.jku:
            keys = await self._jku_keys(jku, kid)
        else:
            keys = self._static.get(issuer.iss, {})
        jwk = keys.get(kid) or self._static.get(issuer.iss, {}).get(kid)
        if not isinstance(jwk, dict):
            raise AuthError("JWT kid names no known key of this issuer")
        return jwk

    async def _jku_keys(self, url: str, kid: str) -> dict[str, Any]:
        now = self._clock()
        cached = self._jku_cache.get(url)
        fresh = cached is not None and now - cached[0] < self._settings.jwks_cache_seconds
        rotated = cached is not None and kid not in cached[1] and now - cached[0] >= JWKS_REFRESH_MIN_SECONDS
        if cached is not None and fresh and not rotated:
            return cached[1]
        async with self._jku_lock:
            cached = self._jku_cache.get(url)
            if cached is not None and self._clock() - cached[0] < JWKS_REFRESH_MIN_SECONDS:
                return cached[1]
            keys = await self._fetch_jwks(url)
            self._jku_cache[url] = (self._clock(), keys)
            return keys

    async def _fetch_jwks(self, url: str) -> dict[str, Any]:
        if self.http is None:
            raise AuthError("JWKS cannot be fetched: no HTTP client")
        try:
            response = await self.http.get(url, timeout=self._settings.jwks_fetch_timeout_seconds)
        except httpx.HTTPError as exc:
            raise AuthError(f"JWKS fetch failed ({type(exc).__name__})") from None
        if response.status_code != 200 or len(response.content) > MAX_JWKS_BYTES:
            raise AuthError(f"JWKS fetch failed (HTTP {response.status_code})")
        try:
            return _load_jwks(json.loads(response.content), "fetched JWKS")
        except (ValueError, UnicodeDecodeError):
            raise AuthError("the fetched JWKS is not a JWKS") from None
