"""``careplan-rules serve``: its error paths in-process, and one real uvicorn process over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from careplan_rules.cli.main import cli
from tests.factories import ROOT
from tests.service.helpers import EHR, PV, es384_key, jwks, mint

Body = Callable[..., dict[str, Any]]


def test_serve_without_the_extra_prints_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    out = CliRunner().invoke(cli, ["serve", "--insecure-no-auth"])
    assert out.exit_code == 2
    assert (
        out.stderr.strip()
        == "careplan-rules serve needs the service extra: pip install 'careplan-rules[service]' (missing: uvicorn)"
    )


def test_serve_refuses_to_start_open(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["serve"])
    assert out.exit_code == 2
    assert "no trusted issuers are configured" in out.stderr and "--insecure-no-auth" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port: [1\n", "malformed YAML"),
        ("prot: 8080\n", "prot: Extra inputs are not permitted"),
        ("auth:\n  issuers:\n    - iss: https://x\n      jwks_file: missing.json\n", "cannot read the JWKS"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_serve_config_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "service.yaml"
    config.write_text(text)
    out = CliRunner().invoke(cli, ["serve", "--config", str(config)])
    assert out.exit_code == 2, out.output
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not list(Path.cwd().glob("careplan-rules-feedback.sqlite3*"))  # nothing created on the way


def test_serve_rules_must_load(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["serve", "--insecure-no-auth", "--rules", str(tmp_path / "nothing")])
    assert out.exit_code == 2 and "Traceback" not in out.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(command: list[str], base: str, *, within: float = 90) -> Iterator[httpx.Client]:
    """Start ``careplan-rules serve``, wait for /healthz, yield a client; terminate it afterwards."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + within
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, f"the service did not start within {within:.0f} s"
                time.sleep(0.2)
            yield client
    finally:
        process.terminate()
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    assert process.returncode is not None


@pytest.mark.slow
def test_a_real_uvicorn_process_serves_discovery_hooks_and_feedback(tmp_path: Path, pv_body: Body) -> None:
    key = es384_key()
    (tmp_path / "ehr-jwks.json").write_text(json.dumps(jwks(key)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "service.yaml").write_text(
        f"public_url: {base}\n"
        "feedback: {database: feedback.sqlite3}\n"
        f"auth:\n  issuers:\n    - iss: {EHR}\n      jwks_file: ehr-jwks.json\n"
    )
    command = [
        sys.executable,
        "-m",
        "careplan_rules.cli.main",
        "serve",
        "--config",
        str(tmp_path / "service.yaml"),
        "--port",
        str(port),
    ]
    with serving(command, base) as client:
        assert client.get("/cds-services").status_code == 401
        services = client.get("/cds-services", headers={"authorization": f"Bearer {mint(key, f'{base}/cds-services')}"})
        assert services.status_code == 200 and services.json()["services"][0]["id"] == PV
        url = f"{base}/cds-services/{PV}"
        response = client.post(
            f"/cds-services/{PV}", json=pv_body(), headers={"authorization": f"Bearer {mint(key, url)}"}
        )
        assert response.status_code == 200, response.text
        card = response.json()["cards"][0]
        feedback = {
            "feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-06-01T12:00:00Z"}]
        }
        stored = client.post(
            f"/cds-services/{PV}/feedback",
            json=feedback,
            headers={"authorization": f"Bearer {mint(key, url + '/feedback')}"},
        )
        assert stored.json() == {"received": 1, "stored": 1, "duplicates": 0}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("processes", "evaluating"),
    [
        (("--workers", "2"), 0),
        (("--evaluation-processes", "2"), 2),
        (("--workers", "2", "--evaluation-processes", "1"), 2),  # one pool per worker
    ],
    ids=["uvicorn-workers", "evaluation-processes", "both"],
)
def test_several_processes_serve_the_same_app(
    tmp_path: Path, pv_body: Body, processes: tuple[str, ...], evaluating: int
) -> None:
    """--workers N: uvicorn's supervisor, app_from_env in each worker, our HTTP protocol;
    --evaluation-processes N: the pool behind each worker, stopped with the service."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "service.yaml").write_text(f"public_url: {base}\nfeedback: {{database: feedback.sqlite3}}\n")
    command = [sys.executable, "-m", "careplan_rules.cli.main", "serve", "--config", str(tmp_path / "service.yaml")]
    command += ["--port", str(port), *processes, "--insecure-no-auth"]
    with serving(command, base) as client:
        for _ in range(4):  # keep-alive calls, answered by either worker or process
            response = client.post(f"/cds-services/{PV}", json=pv_body())
            assert response.status_code == 200, response.text
            assert response.json()["cards"]
        evaluators = _evaluation_processes()
    if not Path("/proc/self").is_dir():
        return  # counting processes needs Linux's /proc
    assert len(evaluators) == evaluating
    deadline = time.monotonic() + 20
    while _evaluation_processes() & evaluators and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _evaluation_processes() & evaluators, "evaluation processes outlived the service"


def _evaluation_processes() -> set[int]:
    """Pids of running evaluation processes (Linux /proc; empty elsewhere)."""
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if b"careplan_rules.service.evaluation_process" in (entry / "cmdline").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.add(int(entry.name))
        except OSError:
            continue
    return found
