"""Client JWT verification (CDS Hooks 2.0.1 "Trusting CDS Clients"), CORS and trust configuration."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from careplan_rules.service.config import ConfigError
from tests.factories import external, read_json
from tests.service.helpers import (
    BASE,
    EHR,
    PV,
    Client,
    FhirStub,
    SigningKey,
    es384_key,
    jwks,
    make_config,
    mint,
    rs384_key,
    running,
    start,
)

Body = Callable[..., dict[str, Any]]
DISCOVERY = f"{BASE}/cds-services"
HOOK = f"{BASE}/cds-services/{PV}"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def es() -> SigningKey:
    return es384_key()


@pytest.fixture(scope="module")
def rs() -> SigningKey:
    return rs384_key()


@pytest.fixture
def secured(tmp_path: Path, es: SigningKey, rs: SigningKey) -> Iterator[Client]:
    keyfile = tmp_path / "ehr-jwks.json"
    keyfile.write_text(json.dumps(jwks(es, rs)))
    auth = {"issuers": [{"iss": EHR, "jwks_file": str(keyfile)}]}
    with running(start(tmp_path, auth=auth)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def is_401(response: Any) -> bool:
    if response.status_code != 401:
        return False
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "login"
    assert response.headers["www-authenticate"].startswith("Bearer")
    return True


def test_es384_and_rs384_tokens_are_accepted(secured: Client, es: SigningKey, rs: SigningKey, pv_body: Body) -> None:
    assert secured.get("/cds-services", headers=bearer(mint(es, DISCOVERY))).status_code == 200
    assert secured.get("/cds-services", headers=bearer(mint(rs, DISCOVERY, tenant="t1"))).status_code == 200
    response = secured.post(f"/cds-services/{PV}", json=pv_body(), headers=bearer(mint(es, [HOOK, "https://x"])))
    assert response.status_code == 200


def test_every_endpoint_needs_a_token(secured: Client, pv_body: Body) -> None:
    assert is_401(secured.get("/cds-services"))
    assert is_401(secured.post(f"/cds-services/{PV}", json=pv_body()))
    assert is_401(secured.post(f"/cds-services/{PV}/feedback", json={"feedback": []}))
    assert is_401(secured.get("/cds-services", headers={"authorization": "Basic dXNlcjpwYXNz"}))
    assert is_401(secured.get("/cds-services", headers={"authorization": "Bearer not-a-jwt"}))


def test_each_bad_token_kind_is_refused(secured: Client, es: SigningKey, rs: SigningKey) -> None:
    refused = {
        "audience of another endpoint": mint(es, HOOK),
        "unknown issuer": mint(es, DISCOVERY, iss="https://evil.example"),
        "expired": mint(es, DISCOVERY, now=time.time() - 3600),
        "issued in the future": mint(es, DISCOVERY, now=time.time() + 3600),
        "lifetime too long": mint(es, DISCOVERY, lifetime=86400),
        "no jti": mint(es, DISCOVERY, drop=("jti",)),
        "no iat": mint(es, DISCOVERY, drop=("iat",)),
        "no exp": mint(es, DISCOVERY, drop=("exp",)),
        "unknown kid": mint(es, DISCOVERY, header={"kid": "nope"}),
        "kid of an RSA key with ES384": mint(es, DISCOVERY, header={"kid": rs.kid}),
        "wrong typ": mint(es, DISCOVERY, header={"typ": "at+jwt"}),
        "unknown signing key": mint(es384_key(es.kid), DISCOVERY),
        "tampered signature": mint(es, DISCOVERY)[:-6] + "AAAAAA",
        "alg none": jwt.encode(
            {"iss": EHR, "aud": DISCOVERY, "exp": int(time.time()) + 60, "iat": int(time.time()), "jti": "n"},
            None,
            algorithm="none",
            headers={"kid": es.kid},
        ),
        "symmetric HS256": jwt.encode(
            {"iss": EHR, "aud": DISCOVERY, "exp": int(time.time()) + 60, "iat": int(time.time()), "jti": "h"},
            "k" * 32,
            algorithm="HS256",
            headers={"kid": es.kid},
        ),
    }
    for name, token in refused.items():
        assert is_401(secured.get("/cds-services", headers=bearer(token))), name
    assert secured.get("/cds-services", headers=bearer(mint(es, DISCOVERY + "/"))).status_code == 200


def test_tenant_allowlist(tmp_path: Path, es: SigningKey) -> None:
    auth = {"issuers": [{"iss": EHR, "jwks": jwks(es), "tenants": ["t1"]}]}
    with running(start(tmp_path, auth=auth)) as c:
        assert c.get("/cds-services", headers=bearer(mint(es, DISCOVERY, tenant="t1"))).status_code == 200
        assert is_401(c.get("/cds-services", headers=bearer(mint(es, DISCOVERY, tenant="t2"))))
        assert is_401(c.get("/cds-services", headers=bearer(mint(es, DISCOVERY))))


def test_unknown_services_are_not_revealed_without_a_token(secured: Client, es: SigningKey) -> None:
    assert is_401(secured.post("/cds-services/guess", json={}))
    signed = bearer(mint(es, f"{BASE}/cds-services/guess"))
    assert secured.post("/cds-services/guess", json={}, headers=signed).status_code == 404


def test_a_replayed_jti_is_refused(secured: Client, es: SigningKey) -> None:
    token = mint(es, DISCOVERY)
    assert secured.get("/cds-services", headers=bearer(token)).status_code == 200
    assert is_401(secured.get("/cds-services", headers=bearer(token)))


def test_feedback_accepts_its_own_url_or_the_service_url(secured: Client, es: SigningKey) -> None:
    body = {"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
    for aud in (f"{HOOK}/feedback", HOOK):
        response = secured.post(f"/cds-services/{PV}/feedback", json=body, headers=bearer(mint(es, aud)))
        assert response.status_code == 200, aud
    assert is_401(secured.post(f"/cds-services/{PV}/feedback", json=body, headers=bearer(mint(es, DISCOVERY))))


def test_tokens_are_never_logged(secured: Client, es: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    token = mint(es, HOOK)
    secured.get("/cds-services", headers=bearer(token))
    assert "401" in caplog.text and "aud" in caplog.text
    assert token not in caplog.text and token.split(".")[1] not in caplog.text


def test_what_a_bad_token_says_is_logged_only_in_part(secured: Client, caplog: pytest.LogCaptureFixture) -> None:
    import base64

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    token = f"{part({'alg': 'X' * 5000, 'kid': 'k'})}.{part({'iss': EHR})}.c2ln"
    assert is_401(secured.get("/cds-services", headers=bearer(token)))
    assert "X" * 20 in caplog.text and "X" * 21 not in caplog.text
    assert is_401(secured.post("/cds-services/" + "Y" * 5000, json={}))
    assert "Y" * 180 in caplog.text and "Y" * 201 not in caplog.text


def test_the_spec_test_vector_verifies(tmp_path: Path) -> None:
    vector = read_json(external("cds-hooks", "spec-2.0.1", "jwt-es384-test-vector.json"))
    claims = vector["jwt_payload"]
    clock = Clock(claims["exp"] - 60)  # its exp is in 2015: freeze the clock before it
    auth = {
        "issuers": [{"iss": claims["iss"], "jwks": vector["jwks_public"], "tenants": [claims["tenant"]]}],
        "max_token_lifetime_seconds": 10**9,  # the vector was issued in 2011
    }
    app = start(
        tmp_path,
        clock=clock,
        auth=auth,
        public_url="https://cds.example.org",
        service_ids={"patient-view": "some-service"},
    )
    with running(app) as c:
        token = bearer(vector["compact_jwt"])
        response = c.post("/cds-services/some-service", json={}, headers=token)
        assert response.status_code == 400  # authenticated; the empty body is what is wrong
        assert is_401(c.post("/cds-services/some-service", json={}, headers=token))  # its jti is now spent
    clock.now = claims["exp"] + 3600
    with running(
        start(
            tmp_path / "later",
            clock=clock,
            auth=auth,
            public_url="https://cds.example.org",
            service_ids={"patient-view": "some-service"},
        )
    ) as c:
        assert is_401(c.post("/cds-services/some-service", json={}, headers=token))  # expired


def test_keys_from_an_allowlisted_jku_are_fetched_cached_and_rotated(tmp_path: Path, es: SigningKey) -> None:
    jku = f"{EHR}/.well-known/jwks.json"
    stub = FhirStub(jwks={jku: jwks(es)})
    clock = Clock(time.time())
    auth = {"issuers": [{"iss": EHR, "jku": [jku]}]}
    with running(start(tmp_path, stub=stub, clock=clock, auth=auth)) as c:
        for _ in range(3):
            ok = c.get("/cds-services", headers=bearer(mint(es, DISCOVERY, now=clock.now, header={"jku": jku})))
            assert ok.status_code == 200
        assert [str(r.url) for r in stub.requests] == [jku]  # cached
        rotated = es384_key("es-key-2")
        stub.jwks[jku] = jwks(es, rotated)
        clock.now += 120
        token = mint(rotated, DISCOVERY, now=clock.now, header={"jku": jku})
        assert c.get("/cds-services", headers=bearer(token)).status_code == 200
        assert len(stub.requests) == 2  # re-fetched once for the new kid
        other = mint(es, DISCOVERY, now=clock.now, header={"jku": "https://evil.example/jwks.json"})
        assert is_401(c.get("/cds-services", headers=bearer(other)))  # unlisted jku: not fetched, no key
        assert len(stub.requests) == 2


def test_sandbox_public_jwks_loads_as_an_issuer(tmp_path: Path) -> None:
    path = external("cds-hooks", "sandbox", "sandbox-jwks.public.json")
    auth = {"issuers": [{"iss": "https://sandbox.cds-hooks.org", "jwks_file": str(path)}]}
    with running(start(tmp_path, auth=auth)) as c:
        assert is_401(c.get("/cds-services"))


def test_authentication_cannot_be_left_unconfigured(tmp_path: Path) -> None:
    from careplan_rules.service.app import create_app

    with pytest.raises(ConfigError, match="no trusted issuers"):
        create_app(make_config(tmp_path))
    with pytest.raises(ConfigError, match="jwks_file, jwks or an allowlisted jku"):
        make_config(tmp_path, auth={"issuers": [{"iss": EHR}]})


def test_insecure_mode_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with running(start(tmp_path)) as c:
        assert c.get("/cds-services").status_code == 200
    assert "authentication is DISABLED" in caplog.text


def test_cors_allowlist(tmp_path: Path) -> None:
    origin = "https://sandbox.cds-hooks.org"
    with running(start(tmp_path, cors_origins=[origin])) as c:
        preflight = {
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        }
        ok = c.request("OPTIONS", f"/cds-services/{PV}", headers=preflight)
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == origin
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        refused = c.request("OPTIONS", f"/cds-services/{PV}", headers={**preflight, "origin": "https://evil.example"})
        assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"
        simple = c.get("/cds-services", headers={"origin": origin})
        assert simple.headers["access-control-allow-origin"] == origin
        assert (
            "access-control-allow-origin"
            not in c.get("/cds-services", headers={"origin": "https://evil.example"}).headers
        )
