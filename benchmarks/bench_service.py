"""Benchmark: the CDS Hooks service under concurrent load, on loopback.

usage: python benchmarks/bench_service.py [--requests N] [--concurrency C] [--entries E]
                                          [--workers W] [--evaluation-processes P] [--auth]
                                          [--client raw|httpx] [--distinct] [--port P]

Starts ``careplan-rules serve`` (uvicorn) in a child process on 127.0.0.1, with
``--insecure-no-auth`` or, with ``--auth``, a freshly generated ES384 key that the client signs
every call with (tokens are minted before the timed run, so the client's signing cost is not
counted). The request is a patient-view call whose prefetch holds about ``--entries`` resources
(kratom, a serotonergic drug, other medications, observations and conditions of one patient),
each call with its own hookInstance. The service runs as docs/cds-hooks.md recommends for this
machine (one evaluation process per CPU) unless told otherwise. With ``--distinct`` each call is
another patient's (other ids, dates and values), so nothing the service remembers from call to
call helps more than it would with real traffic. Figures printed, all from this run:

* in-process engine time for the same data (``Engine.evaluate_document``): the floor;
* sequential latency (1 client): engine + HTTP + request checks + card building + SQLite;
* latency p50/p90/p99/max and requests/s with ``--concurrency`` keep-alive clients for a
  bounded number of requests, and p99 against the 50 ms target; the clients are a lean asyncio
  HTTP/1.1 client (``--client raw``, the default, ~1 ms of CPU per call, as wrk or h2load would
  be) or httpx's AsyncClient (``--client httpx``, ~4-5 ms per call taken from the server's cores);
* the server's CPU time per request (from /proc, the service and its evaluation processes, so
  it does not depend on how much CPU other processes took meanwhile) against the engine's CPU
  time, and the client's CPU time per request.

The client runs on the same machine and takes CPU from the server; the machine may deliver
less than its nominal cores (research/fhir-perf-scale.md caveat), so compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from careplan_rules import Engine  # noqa: E402
from careplan_rules.fhir.reader import parse_data  # noqa: E402
from careplan_rules.service.prefetch import templates_for  # noqa: E402

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
SERVICE = "careplan-rules-patient-view"
TARGET_P99_MS = 50.0


def _med(kind: str, rid: str, concept: dict[str, Any], status: str = "active") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": kind,
        "id": rid,
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": concept,
    }
    if kind == "MedicationRequest":
        resource.update({"intent": "order", "authoredOn": "2026-04-01"})
    else:
        resource["effectiveDateTime"] = "2026-05-01"
    return resource


def synthetic_record(entries: int) -> list[dict[str, Any]]:
    """One patient's record of about ``entries`` resources, with kratom + sertraline in it."""
    out: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1984-03-12"},
        _med("MedicationStatement", "k1", {"text": "Kratom powder, 3 g daily"}),
        _med(
            "MedicationRequest",
            "s1",
            {"coding": [{"system": RXNORM, "code": "328670", "display": "Sertraline 100 MG"}]},
        ),
    ]
    others = (("29046", "lisinopril"), ("6809", "metformin"), ("83367", "atorvastatin"), ("17767", "amlodipine"))
    i = 0
    while len(out) < entries:
        code, name = others[i % len(others)]
        kind = i % 4
        if kind == 0:
            out.append(
                _med(
                    "MedicationRequest",
                    f"m{i}",
                    {"coding": [{"system": RXNORM, "code": code, "display": name}]},
                    "active" if i % 3 else "completed",
                )
            )
        elif kind in (1, 2):
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"o{i}",
                    "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
                    "subject": {"reference": "Patient/p1"},
                    "effectiveDateTime": "2026-05-01T10:00:00Z",
                    "valueQuantity": {"value": 60 + i % 40, "unit": "/min"},
                }
            )
        else:
            out.append(
                {
                    "resourceType": "Condition",
                    "id": f"c{i}",
                    "clinicalStatus": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                        ]
                    },
                    "code": {"coding": [{"system": SNOMED, "code": "38341003", "display": "Hypertension"}]},
                    "subject": {"reference": "Patient/p1"},
                }
            )
        i += 1
    return out


def another_patient(record: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The record as patient number ``n`` would have it: other ids, dates and measured values
    (codes and drug names recur from patient to patient, as they do in an EHR)."""
    shift = timedelta(days=n % 365)

    def rewrite(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: rewrite(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v, key) for v in node]
        if key == "id" and isinstance(node, str):
            return f"{node}-{n}"
        if key == "reference" and isinstance(node, str):
            return f"{node}-{n}"
        if key in ("effectiveDateTime", "authoredOn", "birthDate") and isinstance(node, str):
            moment = datetime.fromisoformat(node[:10]) - shift
            return moment.date().isoformat() + node[10:]
        if key == "value" and isinstance(node, int | float):
            return node + n % 7
        return node

    return [rewrite(r) for r in record]


def prefetch_for(engine: Engine, record: list[dict[str, Any]]) -> dict[str, Any]:
    """The record split over the service's prefetch keys, as a client would send it."""
    out: dict[str, Any] = {}
    for template in templates_for(engine.ruleset.read_types):
        found = [r for r in record if r["resourceType"] == template.resource_type]
        if template.is_read:
            out[template.key] = found[0] if found else None
        else:
            out[template.key] = {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(found),
                "entry": [
                    {"fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r}
                    for r in found
                ],
            }
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its descendants, from /proc (Linux; 0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick

    def descends(p: int) -> bool:
        while p > 1:
            if p == pid:
                return True
            p = parent.get(p, 0)
        return False

    return sum(seconds for p, seconds in used.items() if descends(p))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class Signer:
    """Mints ES384 client JWTs with a generated key (the private key never leaves this process)."""

    def __init__(self, base: str, folder: Path) -> None:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec
        from jwt.algorithms import ECAlgorithm

        self._jwt = jwt
        self._key = ec.generate_private_key(ec.SECP384R1())
        public = json.loads(ECAlgorithm.to_jwk(self._key.public_key()))
        public.update({"kid": "bench", "alg": "ES384"})
        (folder / "jwks.json").write_text(json.dumps({"keys": [public]}))
        self.aud = f"{base}/cds-services/{SERVICE}"

    def token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://bench.example",
            "aud": self.aud,
            "iat": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
        }
        token: str = self._jwt.encode(claims, self._key, algorithm="ES384", headers={"kid": "bench", "typ": "JWT"})
        return token


def start_service(folder: Path, port: int, workers: int, processes: int, auth: bool) -> subprocess.Popen[bytes]:
    config = folder / "service.yaml"
    lines = [f"public_url: http://127.0.0.1:{port}", "feedback: {database: feedback.sqlite3}", "log_level: warning"]
    if auth:
        lines += ["auth:", "  issuers:", "    - iss: https://bench.example", "      jwks_file: jwks.json"]
    config.write_text("\n".join(lines) + "\n")
    command = [sys.executable, "-m", "careplan_rules.cli.main", "serve", "--config", str(config)]
    command += ["--port", str(port), "--workers", str(workers), "--evaluation-processes", str(processes)]
    if not auth:
        command.append("--insecure-no-auth")
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until_up(base: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the service exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the service did not start in time")


async def drive_httpx(
    base: str, bodies: list[bytes], tokens: list[str | None], concurrency: int
) -> tuple[list[float], float]:
    """Send every body with httpx, ``concurrency`` at a time; latencies in ms and the wall time in s."""
    queue = _queue(len(bodies))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(http: httpx.AsyncClient) -> None:
        while (i := _next(queue)) is not None:
            headers = {"content-type": "application/json"}
            if tokens[i] is not None:
                headers["authorization"] = f"Bearer {tokens[i]}"
            started = time.perf_counter()
            response = await http.post(f"/cds-services/{SERVICE}", content=bodies[i], headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            _check(response.status_code, response.content)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, wall


async def drive_raw(
    base: str, bodies: list[bytes], tokens: list[str | None], concurrency: int
) -> tuple[list[float], float]:
    """The same load from a lean HTTP/1.1 keep-alive client (asyncio streams, requests built in
    advance): a load generator should take as little of the shared CPU as it can, as wrk or
    h2load would. Every answer is still read in full, parsed and checked."""
    host, port = base.removeprefix("http://").split(":")
    queue = _queue(len(bodies))
    latencies: list[float] = []

    def request(i: int) -> bytes:
        head = [
            f"POST /cds-services/{SERVICE} HTTP/1.1",
            f"host: {host}:{port}",
            "content-type: application/json",
            f"content-length: {len(bodies[i])}",
        ]
        if tokens[i] is not None:
            head.append(f"authorization: Bearer {tokens[i]}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + bodies[i]

    requests = [request(i) for i in range(len(bodies))]

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while (i := _next(queue)) is not None:
                started = time.perf_counter()
                writer.write(requests[i])
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                content = await reader.readexactly(length)
                latencies.append((time.perf_counter() - started) * 1000)
                _check(status, content)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


try:  # the service extra installs it: the load generator parses each answer in a third of the time
    from orjson import loads as _loads
except ImportError:
    _loads = json.loads  # type: ignore[assignment]


def _queue(n: int) -> asyncio.Queue[int]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    return queue


def _next(queue: asyncio.Queue[int]) -> int | None:
    try:
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        return None


def _check(status: int, content: bytes) -> None:
    if status != 200 or not _loads(content)["cards"]:
        raise SystemExit(f"unexpected answer {status}: {content[:300]!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=800, help="timed concurrent requests (default 800)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--entries", type=int, default=100, help="resources in the prefetch (default 100)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    parser.add_argument(
        "--evaluation-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="evaluation processes per worker (default: one per CPU, the recommended deployment in "
        "docs/cds-hooks.md; 0: each worker evaluates on its event loop, serve's default)",
    )
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="a different patient in every call (ids, dates, values; codes and names recur), "
        "instead of the same record each time",
    )
    parser.add_argument("--auth", action="store_true", help="verify an ES384 JWT on every call")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: a lean keep-alive client (default) or httpx's AsyncClient (more client CPU)",
    )
    args = parser.parse_args(argv)

    engine = Engine.default()
    record = synthetic_record(args.entries)
    prefetch = prefetch_for(engine, record)
    entries = sum(
        len(v.get("entry", [])) if v and v["resourceType"] == "Bundle" else int(v is not None)
        for v in prefetch.values()
    )

    # floor: the engine alone, in this process, on the same data
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in record]}
    now = datetime.now(UTC).replace(microsecond=0)
    for _ in range(5):
        engine.evaluate_document(parse_data(bundle, "bench"), now)
    engine_ms = []
    cpu_started = time.process_time()
    for _ in range(50):
        started = time.perf_counter()
        engine.evaluate_document(parse_data(bundle, "bench"), now)
        engine_ms.append((time.perf_counter() - started) * 1000)
    engine_cpu_ms = (time.process_time() - cpu_started) / 50 * 1000

    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        signer = Signer(base, folder) if args.auth else None
        process = start_service(folder, port, args.workers, args.evaluation_processes, args.auth)
        try:
            wait_until_up(base, process)
            total = args.requests + 60

            def body(i: int) -> bytes:
                call: dict[str, Any] = {
                    "hook": "patient-view",
                    "hookInstance": str(uuid.UUID(int=i + 1)),
                    "context": {"userId": "Practitioner/bench", "patientId": "p1"},
                    "prefetch": prefetch,
                }
                if args.distinct:
                    call["context"]["patientId"] = f"p1-{i}"
                    call["prefetch"] = prefetch_for(engine, another_patient(record, i))
                return json.dumps(call).encode()

            bodies = [body(i) for i in range(total)]
            tokens = [signer.token() if signer else None for _ in range(total)]
            drive = drive_raw if args.client == "raw" else drive_httpx
            asyncio.run(drive(base, bodies[:20], tokens[:20], args.concurrency))  # warm-up
            sequential, _ = asyncio.run(drive(base, bodies[20:60], tokens[20:60], 1))
            cpu_before = cpu_seconds(process.pid)
            client_before = time.process_time()
            latencies, wall = asyncio.run(drive(base, bodies[60:], tokens[60:], args.concurrency))
            client_cpu_ms = (time.process_time() - client_before) / len(latencies) * 1000
            server_cpu_ms = (cpu_seconds(process.pid) - cpu_before) / len(latencies) * 1000
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    p50, p90, p99 = (percentile(latencies, p) for p in (50, 90, 99))
    seq50 = statistics.median(sequential)
    eng50 = statistics.median(engine_ms)
    auth = "ES384 JWT" if args.auth else "off"
    print(
        f"machine: {os.cpu_count()} CPUs; service: uvicorn, {args.workers} worker(s) x "
        f"{args.evaluation_processes} evaluation processes, auth {auth}; client {args.client}"
    )
    same = "a different patient each call" if args.distinct else "the same patient each call"
    print(f"request: patient-view, {entries} prefetched resources, {len(bodies[0]) / 1024:.0f} KiB body, {same}")
    print(f"in-process engine (evaluate_document), median of 50: {eng50:.1f} ms wall, {engine_cpu_ms:.1f} ms CPU")
    print(f"sequential (1 client), median of 40:                {seq50:.1f} ms  ({seq50 / eng50:.2f}x the engine)")
    print(f"{args.concurrency} concurrent clients, {len(latencies)} requests:")
    print(f"  p50 {p50:.1f} ms   p90 {p90:.1f} ms   p99 {p99:.1f} ms   max {max(latencies):.1f} ms")
    print(f"  throughput {len(latencies) / wall:.1f} requests/s   ({wall:.1f} s wall)")
    print(f"  p99 / {TARGET_P99_MS:.0f} ms target: {p99 / TARGET_P99_MS:.2f}")
    print(
        f"  server CPU per request: {server_cpu_ms:.1f} ms ({server_cpu_ms / engine_cpu_ms:.2f}x the engine's CPU); "
        f"lower bound on p50 with {args.concurrency} in flight on {os.cpu_count()} cores: "
        f"{args.concurrency * server_cpu_ms / (os.cpu_count() or 1):.0f} ms"
    )
    print(f"  client CPU per request: {client_cpu_ms:.1f} ms (the load generator shares the machine)")
    print(f"  service capacity bound: {1000 / seq50:.1f} requests/s per busy core (1000 / sequential median)")


if __name__ == "__main__":
    main()
