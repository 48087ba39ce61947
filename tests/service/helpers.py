"""Test helpers for the CDS Hooks service: an in-process client, signing keys, a FHIR stub,
and the spec's response invariants (run with fhirpathpy on every response a test gets)."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio.from_thread
import fhirpathpy
import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from careplan_rules.service.app import create_app
from careplan_rules.service.config import ServiceConfig, parse_config

BASE = "https://cds.example.org"
EHR = "https://ehr.example.org"
FHIR = "https://ehr.example.org/fhir"
PV = "careplan-rules-patient-view"
OSEL = "careplan-rules-order-select"
OSIGN = "careplan-rules-order-sign"

# --- CDS Hooks response invariants (HL7/cds-hooks input/fsh/invariants, 3.0 ballot) ------------
CARD_INVARIANTS = {
    "cds-resp-1": "(selectionBehavior = 'at-most-one') implies suggestions.where(isRecommended).count() <= 1",
    "cds-resp-4": "overrideReasons.all(display.exists())",
    "cds-resp-6": "suggestions.exists() implies selectionBehavior.exists()",
}
SUGGESTION_INVARIANTS = {
    "cds-resp-5": "actions.all(description.exists())",
    "cds-resp-7": (
        "actionSelectionBehavior.empty() or actionSelectionBehavior = 'all' or actionSelectionBehavior = 'any' "
        "or actionSelectionBehavior = 'at-most-one'"
    ),
}
ACTION_INVARIANTS = {"cds-resp-2": "(type = 'delete') implies (resourceId.exists() and resource.empty())"}
LINK_INVARIANTS = {"cds-resp-3": "(type != 'smart') implies (appContext.empty())"}


@functools.cache
def _compiled(expression: str) -> Callable[..., list[Any]]:
    compiled: Callable[..., list[Any]] = fhirpathpy.compile(expression)  # parsing is the costly part
    return compiled


def _holds(node: dict[str, Any], expression: str) -> bool:
    result = _compiled(expression)(node)
    return result in ([], [True])  # an empty result does not violate a constraint


def invariant_violations(response: dict[str, Any], *, ours: bool = True) -> list[str]:
    """Every violated invariant and core field rule of a CDS Hooks response body.

    ``ours`` adds this project's stricter policy: every card and suggestion has a UUID (feedback
    needs them) and no element is empty.
    """
    bad: list[str] = []
    assert isinstance(response.get("cards"), list), "a response needs a cards array"
    for i, card in enumerate(response["cards"]):
        where = f"cards[{i}]"
        for name, expr in CARD_INVARIANTS.items():
            if not _holds(card, expr):
                bad.append(f"{where}: {name}")
        if not isinstance(card.get("summary"), str) or not 0 < len(card["summary"]) < 140:
            bad.append(f"{where}: summary must be 1-139 characters")
        if card.get("indicator") not in ("info", "warning", "critical"):
            bad.append(f"{where}: indicator")
        if not isinstance(card.get("source"), dict) or not card["source"].get("label"):
            bad.append(f"{where}: source.label")
        if ours:
            try:
                uuid.UUID(str(card.get("uuid")))
            except ValueError:
                bad.append(f"{where}: uuid")
        elif "uuid" in card and not (isinstance(card["uuid"], str) and card["uuid"]):
            bad.append(f"{where}: uuid")
        if card.get("selectionBehavior") not in (None, "at-most-one", "any"):
            bad.append(f"{where}: selectionBehavior")
        for j, sugg in enumerate(card.get("suggestions", [])):
            for name, expr in SUGGESTION_INVARIANTS.items():
                if not _holds(sugg, expr):
                    bad.append(f"{where}.suggestions[{j}]: {name}")
            if not sugg.get("label") or (ours and "uuid" not in sugg):
                bad.append(f"{where}.suggestions[{j}]: label and uuid")
            for k, action in enumerate(sugg.get("actions", [])):
                for name, expr in ACTION_INVARIANTS.items():
                    if not _holds(action, expr):
                        bad.append(f"{where}.suggestions[{j}].actions[{k}]: {name}")
                if action.get("type") not in ("create", "update", "delete"):
                    bad.append(f"{where}.suggestions[{j}].actions[{k}]: type")
                if action.get("type") in ("create", "update") and not isinstance(action.get("resource"), dict):
                    bad.append(f"{where}.suggestions[{j}].actions[{k}]: resource")
        for j, link in enumerate(card.get("links", [])):
            for name, expr in LINK_INVARIANTS.items():
                if not _holds(link, expr):
                    bad.append(f"{where}.links[{j}]: {name}")
            if not str(link.get("url", "")).startswith(("https://", "http://")) or not link.get("label"):
                bad.append(f"{where}.links[{j}]: label and absolute url")
        for j, reason in enumerate(card.get("overrideReasons", [])):
            if not (reason.get("code") and reason.get("system")):
                bad.append(f"{where}.overrideReasons[{j}]: code and system")
        if ours:
            bad.extend(f"{where}: empty element {k}" for k, v in card.items() if v in ("", [], {}, None))
    return bad


def assert_valid_response(response: dict[str, Any]) -> None:
    problems = invariant_violations(response)
    assert not problems, problems


# --- keys and JWTs ------------------------------------------------------------------------------


@dataclass
class SigningKey:
    alg: str
    kid: str
    private: Any

    @property
    def public_jwk(self) -> dict[str, Any]:
        algo = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        jwk: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk


def es384_key(kid: str = "es-key") -> SigningKey:
    return SigningKey("ES384", kid, ec.generate_private_key(ec.SECP384R1()))


def rs384_key(kid: str = "rs-key") -> SigningKey:
    return SigningKey("RS384", kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.public_jwk for k in keys]}


def mint(
    key: SigningKey,
    aud: str | list[str],
    *,
    iss: str = EHR,
    now: float | None = None,
    lifetime: int = 300,
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """A client JWT as an EHR signs it (fresh jti each time)."""
    moment = time.time() if now is None else now
    payload: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "iat": int(moment),
        "exp": int(moment) + lifetime,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    for name in drop:
        payload.pop(name, None)
    headers = {"kid": key.kid, "typ": "JWT", **(header or {})}
    return jwt.encode(payload, key.private, algorithm=key.alg, headers=headers)


# --- a FHIR server stub -------------------------------------------------------------------------


@dataclass
class FhirStub:
    """Answers reads and ``?patient=`` searches from a list of resources (httpx.MockTransport).

    ``fail`` maps a resource type to an HTTP status (or ``"timeout"``); ``page_size`` splits
    searches into pages linked with ``next``.
    """

    resources: list[dict[str, Any]] = field(default_factory=list)
    base: str = FHIR
    fail: dict[str, int | str] = field(default_factory=dict)
    page_size: int | None = None
    token: str | None = "fhir-token-123"
    requests: list[httpx.Request] = field(default_factory=list)
    jwks: dict[str, dict[str, Any]] = field(default_factory=dict)  # jku URL -> JWKS

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url)
        if url in self.jwks:
            return httpx.Response(200, json=self.jwks[url])
        if not url.startswith(self.base):
            return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"resourceType": "OperationOutcome", "issue": []})
        parts = urlsplit(url)
        path = parts.path[len(urlsplit(self.base).path) :].strip("/")
        rtype = path.split("/")[0]
        failure = self.fail.get(rtype)
        if failure == "timeout":
            raise httpx.ReadTimeout("stub timeout", request=request)
        if isinstance(failure, int):
            return httpx.Response(failure, json={"resourceType": "OperationOutcome", "issue": []})
        query = parse_qs(parts.query)
        if "/" in path:
            rid = path.split("/")[1]
            found = [r for r in self.resources if r["resourceType"] == rtype and r.get("id") == rid]
            return httpx.Response(200, json=found[0]) if found else httpx.Response(404, json={})
        matches = [r for r in self.resources if r["resourceType"] == rtype]
        if "patient" in query:
            pid = query["patient"][0]
            matches = [r for r in matches if _patient_of(r) == pid]
        if "_id" in query:
            ids = set(query["_id"][0].split(","))
            matches = [r for r in matches if r.get("id") in ids]
        page = int(query.get("_page", ["0"])[0])
        size = self.page_size or max(len(matches), 1)
        chunk = matches[page * size : (page + 1) * size]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"fullUrl": f"{self.base}/{r['resourceType']}/{r['id']}", "resource": r} for r in chunk],
        }
        if (page + 1) * size < len(matches):
            rest = {k: v[0] for k, v in query.items() if k != "_page"}
            qs = "&".join(f"{k}={v}" for k, v in rest.items())
            bundle["link"] = [{"relation": "next", "url": f"{self.base}/{rtype}?{qs}&_page={page + 1}"}]
        return httpx.Response(200, json=bundle)

    def calls(self, rtype: str | None = None) -> list[str]:
        """URLs the service fetched from this server (optionally of one resource type)."""
        out = [str(r.url) for r in self.requests if str(r.url).startswith(self.base)]
        prefix = urlsplit(self.base).path.rstrip("/") + "/"
        return [u for u in out if rtype is None or urlsplit(u).path[len(prefix) :].split("/")[0] == rtype]


def _patient_of(resource: dict[str, Any]) -> str | None:
    for name in ("subject", "patient", "for"):
        ref = resource.get(name)
        if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("Patient/"):
            return str(ref["reference"]).split("/", 1)[1]
    return None


# --- an in-process client -----------------------------------------------------------------------


class Client:
    """A synchronous client for the ASGI app that also runs its lifespan (startup/shutdown).

    Every card response it receives is checked against the CDS Hooks invariants, and every
    error response must be an OperationOutcome, whatever the test goes on to assert.
    """

    def __init__(self, portal: Any, client: httpx.AsyncClient) -> None:
        self._portal = portal
        self._client = client

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self._portal.call(lambda: self._client.request(method, url, **kwargs))
        if response.status_code >= 400:
            assert response.json()["resourceType"] == "OperationOutcome", response.text
        elif method == "POST" and url.startswith("/cds-services/") and not url.endswith("/feedback"):
            assert_valid_response(response.json())
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@contextmanager
def running(app: Any, base_url: str = BASE) -> Iterator[Client]:
    with anyio.from_thread.start_blocking_portal() as portal:
        lifespan = app.router.lifespan_context(app)
        portal.call(lifespan.__aenter__)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
        try:
            yield Client(portal, client)
        finally:
            portal.call(client.aclose)
            portal.call(lifespan.__aexit__, None, None, None)


def make_config(tmp_path: Any, **settings: Any) -> ServiceConfig:
    data: dict[str, Any] = {
        "feedback": {"database": str(tmp_path / "feedback.sqlite3")},
        "public_url": BASE,
        "warm_up": False,  # the real-process test keeps it on
    }
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data)


def start(
    tmp_path: Any, *, stub: FhirStub | None = None, clock: Callable[[], float] | None = None, **settings: Any
) -> Any:
    """The app with a test config (insecure unless ``auth`` is given) and the stub as its network."""
    settings.setdefault("auth", {"insecure_no_auth": True})
    settings.setdefault("fhir", {})
    config = make_config(tmp_path, **settings)
    kwargs: dict[str, Any] = {"http_transport": (stub or FhirStub()).transport()}
    if clock is not None:
        kwargs["clock"] = clock
    return create_app(config, **kwargs)
