"""Speed and memory of ``careplan-rules validate`` on a Bulk-Data-like NDJSON export.

    .venv/bin/python benchmarks/bench_validate.py [--mb 100] [--synthea DIR] [--keep DIR] [--no-memory] [--no-split]

Builds an export of at least ``--mb`` MB in a temporary folder from the Synthea bundles in
``../shared/external`` (one ``Type.ndjson`` per resource type, ``urn:uuid:`` references
rewritten to ``Type/id`` as a Bulk Data server writes them, every copy of the data with its own
ids so nothing is a duplicate), then measures in this one run:

* the JSON floor (``json.loads`` of every line);
* fhir.resources' own validation alone (the validator with structure checks only) and all
  checks (structure + bindings + integrity + readiness), interleaved block by block over the
  same lines: MB/s, resources/s, and the overhead of checks 2–4 relative to structure alone
  (target: at most +30 %);
* the same split by component within one all-checks run (structure, checks 2–4, reading);
* peak memory (RSS) of a fresh process validating 1/4, 1/2 and all of the export, to show it
  stays flat as the input grows (the data is streamed; only ids are kept).

Timings use process CPU time (the VM's wall clock is shared with other work). Nothing is
written outside the temporary folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from careplan_rules.diagnostics import Diagnostic  # noqa: E402
from careplan_rules.validate.runner import Validator  # noqa: E402
from careplan_rules.validate.unit import CHECKS, Options  # noqa: E402

SYNTHEA = ROOT.parent / "shared" / "external" / "smart-on-fhir-generated-sample-data-synthea-r4"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
_UUID = re.compile(rb"[0-9a-f]{8}(-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
_URN_REF = re.compile(r'"reference":"urn:uuid:([0-9a-f-]{36})"')


def synthea_lines(folder: Path) -> dict[str, list[bytes]]:
    """Compact NDJSON lines per resource type, references rewritten to ``Type/id``."""
    by_url: dict[str, str] = {}
    resources: list[dict[str, object]] = []
    for path in sorted(folder.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        for entry in bundle.get("entry", []):
            res = entry["resource"]
            by_url[entry["fullUrl"].removeprefix("urn:uuid:")] = f"{res['resourceType']}/{res['id']}"
            resources.append(res)
    lines: dict[str, list[bytes]] = {}
    for res in resources:
        text = json.dumps(res, separators=(",", ":"), ensure_ascii=False)
        text = _URN_REF.sub(lambda m: f'"reference":"{by_url.get(m[1], "urn:uuid:" + m[1])}"', text)
        lines.setdefault(str(res["resourceType"]), []).append(text.encode() + b"\n")
    return lines


def write_export(lines: dict[str, list[bytes]], folder: Path, megabytes: float) -> tuple[int, int]:
    """Write copies of the data (ids renumbered per copy) until the export reaches the size."""
    folder.mkdir(parents=True, exist_ok=True)
    target = int(megabytes * 1_000_000)
    handles = {rt: (folder / f"{rt}.ndjson").open("wb") for rt in lines}
    written = count = copy = 0
    try:
        while written < target:
            prefix = f"{copy:08x}".encode()
            for rt, items in lines.items():
                for line in items:
                    data = _UUID.sub(lambda m: prefix + m[1], line)  # noqa: B023 - used at once
                    handles[rt].write(data)
                    written += len(data)
                    count += 1
            copy += 1
    finally:
        for h in handles.values():
            h.close()
    return written, count


def run(folder: Path, checks: frozenset[str]) -> tuple[float, int]:
    """CPU seconds to validate every NDJSON file of the folder; and the number of diagnostics."""
    found: list[Diagnostic] = []
    options = Options(now=NOW, checks=checks)
    started = time.process_time()
    validator = Validator(options, found.append)
    for path in sorted(folder.glob("*.ndjson")):
        validator.file(path)
    validator.finish()
    return time.process_time() - started, len(found)


def interleaved(folder: Path, block: int = 200) -> tuple[float, float, int]:
    """CPU seconds of structure alone and of all checks, over the same lines, block by block.

    Two validators (structure only; all checks) take turns on every block of ``block`` lines,
    the order flipping each time, so that load from other processes on this shared VM falls on
    both alike; back-to-back whole runs differed by up to ±30 % here. Returns (structure seconds,
    all-checks seconds, diagnostics of the all-checks run).
    """
    found: list[Diagnostic] = []
    validators = (
        Validator(Options(now=NOW, checks=frozenset()), lambda d: None),
        Validator(Options(now=NOW, checks=CHECKS), found.append),
    )
    spent = [0.0, 0.0]
    turn = 0
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as handle:
            while chunk := list(itertools.islice(handle, block)):
                turn ^= 1
                for k in (turn, 1 - turn):
                    started = time.process_time()
                    validators[k].ndjson(chunk, path.name)
                    spent[k] += time.process_time() - started
    for k, validator in enumerate(validators):
        started = time.process_time()
        validator.finish()
        spent[k] += time.process_time() - started
    return spent[0], spent[1], len(found)


def split_run(folder: Path) -> tuple[float, float, float]:
    """One run with all checks, timing structure and checks 2-4 separately, resource by resource.

    Interleaving the two at the scale of microseconds means a change in machine load hits both
    alike, so their ratio is the stable figure; returns (structure, checks 2-4, total) seconds.
    """
    from careplan_rules.validate import integrity, unit

    spent = {"structure": 0.0, "checks": 0.0}
    originals: list[tuple[object, str, object]] = []

    def timed(owner: object, name: str, bucket: str) -> None:
        original = getattr(owner, name)
        originals.append((owner, name, original))

        def wrapper(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[bucket] += time.perf_counter() - started

        setattr(owner, name, wrapper)

    timed(unit, "check_structure", "structure")
    for name in ("walk", "check_bindings", "check_readiness", "check_patients"):
        timed(unit, name, "checks")
    for name in ("check", "register", "finish"):
        timed(integrity.IntegrityChecker, name, "checks")
    try:
        started = time.perf_counter()
        run(folder, CHECKS)
        total = time.perf_counter() - started
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    return spent["structure"], spent["checks"], total


def json_floor(folder: Path) -> float:
    started = time.process_time()
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as handle:
            for line in handle:
                json.loads(line)
    return time.process_time() - started


def peak_rss_mb(folder: Path) -> float:
    """Peak RSS of a fresh process that validates the folder (MB)."""
    code = (
        "import resource, sys; from pathlib import Path; from datetime import UTC, datetime;"
        f"sys.path.insert(0, {str(ROOT)!r});"
        "from careplan_rules.validate.runner import Validator;"
        "from careplan_rules.validate.unit import Options;"
        "v = Validator(Options(now=datetime(2026, 6, 1, tzinfo=UTC)), lambda d: None);"
        f"[v.file(p) for p in sorted(Path({str(folder)!r}).glob('*.ndjson'))]; v.finish();"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=100.0, help="size of the generated export (default 100)")
    parser.add_argument("--synthea", type=Path, default=SYNTHEA, help="folder of Synthea R4 bundles")
    parser.add_argument("--no-split", action="store_true", help="skip the per-component timing run")
    parser.add_argument("--keep", type=Path, help="write the export here and keep it (default: a temp folder)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    args = parser.parse_args()
    if not args.synthea.is_dir():
        sys.exit(f"{args.synthea}: no Synthea bundles (clone ../shared next to the project)")

    lines = synthea_lines(args.synthea)
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        base = args.keep or Path(tmp)
        full = base / "full"
        size, resources = write_export(lines, full, args.mb)
        mb = size / 1e6
        print(f"export: {mb:.1f} MB, {resources:,} resources, {len(lines)} files ({full})")

        run(full if mb < 5 else _small(lines, base), CHECKS)  # import and warm the model caches
        floor = json_floor(full)
        s, c, diagnostics = interleaved(full)
        print(f"json.loads floor          : {floor:7.2f} s CPU  {mb / floor:7.1f} MB/s")
        print(
            f"structure (fhir.resources): {s:7.2f} s CPU  {mb / s:7.1f} MB/s  {resources / s:8,.0f} resources/s"
            f"  ({s / floor:.0f}x the floor)"
        )
        print(
            f"all checks                : {c:7.2f} s CPU  {mb / c:7.1f} MB/s  {resources / c:8,.0f} resources/s"
            f"  ({diagnostics} diagnostics)"
        )
        overhead = (c - s) / s * 100
        verdict = "OK" if overhead <= 30 else "OVER TARGET"
        print(f"checks 2-4 overhead       : {overhead:+.1f} % of structure alone (target <= +30 %: {verdict})")
        if not args.no_split:
            st, extra, total = split_run(full)
            print(
                f"  by component (one run)  : structure {st:.2f} s, checks 2-4 {extra:.2f} s "
                f"({extra / st * 100:+.1f} %), reading and the rest {total - st - extra:.2f} s (wall clock)"
            )

        if not args.no_memory:
            print("peak RSS of a fresh process (import + caches + streaming):")
            sizes = (args.mb / 4, args.mb / 2)
            for part in sizes:
                folder = base / f"part-{part:g}"
                part_size, _ = write_export(lines, folder, part)
                print(f"  {part_size / 1e6:7.1f} MB: {peak_rss_mb(folder):7.1f} MB")
            print(f"  {mb:7.1f} MB: {peak_rss_mb(full):7.1f} MB")
        print(f"(peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


def _small(lines: dict[str, list[bytes]], base: Path) -> Path:
    folder = base / "warm"
    write_export(lines, folder, 1)
    return folder


if __name__ == "__main__":
    main()
