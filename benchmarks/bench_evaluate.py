"""End-to-end evaluation speed against a parse + validation baseline, and memory over a long run.

    .venv/bin/python benchmarks/bench_evaluate.py                   # 1,000 patients, 100,000 evaluations
    .venv/bin/python benchmarks/bench_evaluate.py --quick           # smoke run (a few seconds)
    .venv/bin/python benchmarks/bench_evaluate.py --no-memory       # timings only

Generates deterministic synthetic patients (``synthetic_patients.py``: about 30 resources
each, medications, conditions, observations, a few procedures and provenances; several rules
fire for some patients), one JSON Bundle text each, then prints, from one run:

* baseline: ``json.loads`` of the Bundle text + fhir.resources (R4B models) validation of the
  resources of the types the loaded rules read (``engine.ruleset.read_types``) - what any
  reader of the same data pays before a rule looks at it; and, for scale, the same with every
  resource validated;
* end to end: ``engine.evaluate(text, now=...)`` + ``results.to_dict()`` (parse, validate,
  normalise, evaluate, build the DetectedIssues, CarePlan and JSON document);
* their ratio (target: at most 1.50, the engine adds at most 50 % on top of the baseline) and
  patients/s on one core (target: at least 300), from CPU time; wall-clock figures too;
* where the end-to-end time goes (read, validation, normalisation, rules, outputs);
* memory over ``--evaluations`` evaluations (cycling through the patients): RSS and live
  Python objects at 0, 10, 25, 50, 75 and 100 %, and peak RSS; flat means no growth.

Baseline and engine take turns on every patient (the order flipping), and the best of
``--passes`` passes of each is kept, so both see the same state of this shared machine.
Timings use process CPU time; the process is single-threaded, so patients/s is per core.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir.resources.R4B import get_fhir_model_class  # noqa: E402
from synthetic_patients import NOW, generate  # noqa: E402

from careplan_rules import Engine  # noqa: E402

TARGET_RATIO = 1.50
TARGET_PER_CORE = 300.0


# --- the measured steps ------------------------------------------------------------------------


def baseline_step(types: frozenset[str] | None) -> Callable[[str], int]:
    """``json.loads`` + R4B model validation of every resource whose type is in ``types`` (all: None)."""
    classes: dict[str, Any] = {}

    def step(text: str) -> int:
        data = json.loads(text)
        n = 0
        for entry in data["entry"]:
            res = entry["resource"]
            rt = res["resourceType"]
            if types is not None and rt not in types:
                continue
            cls = classes.get(rt)
            if cls is None:
                cls = classes[rt] = get_fhir_model_class(rt)
            cls.model_validate(res)
            n += 1
        return n

    return step


def engine_step(engine: Engine) -> Callable[[str], int]:
    def step(text: str) -> int:
        results = engine.evaluate(text, now=NOW)
        doc = results.to_dict()
        return sum(len(r["findings"]) for r in doc["results"])

    return step


@dataclass(frozen=True, slots=True)
class Timing:
    cpu_s: float  # summed CPU seconds over the patients
    wall_s: float
    count: int

    @property
    def per_s(self) -> float:
        return self.count / self.cpu_s

    @property
    def wall_per_s(self) -> float:
        return self.count / self.wall_s

    @property
    def ms(self) -> float:
        return self.cpu_s / self.count * 1e3


def interleaved(steps: dict[str, Callable[[str], int]], texts: Sequence[str], passes: int) -> dict[str, Timing]:
    """Run every step on patient 0, then every step on patient 1, ...; rotate the order per patient.

    Each step's time is summed over the patients; the best pass of each step is kept.
    """
    names = list(steps)
    best: dict[str, Timing] = {}
    cpu, wall = time.process_time_ns, time.perf_counter_ns
    for _ in range(passes):
        spent = {name: [0, 0] for name in names}
        gc.collect()
        for i, text in enumerate(texts):
            for k in range(len(names)):
                name = names[(i + k) % len(names)]
                c0, w0 = cpu(), wall()
                steps[name](text)
                c1, w1 = cpu(), wall()
                spent[name][0] += c1 - c0
                spent[name][1] += w1 - w0
        for name in names:
            t = Timing(spent[name][0] / 1e9, spent[name][1] / 1e9, len(texts))
            if name not in best or t.cpu_s < best[name].cpu_s:
                best[name] = t
    return best


STAGES = (
    "read (json.loads + entries)",
    "prepare (version, split, validate, normalise)",
    "  of which: validation (fhir.resources)",
    "  of which: normalisation (facts)",
    "rules (criteria, when, escalations)",
    "outputs (findings, DetectedIssue, CarePlan)",
)


def stage_breakdown(engine: Engine, texts: Sequence[str]) -> dict[str, float]:
    """CPU ms per patient of each stage of ``Engine.evaluate``, by wrapping the functions it calls.

    The wrappers cost a little; the shares, not the sum, are the figures to read.
    """
    from careplan_rules import api
    from careplan_rules.fhir import pipeline

    spent: Counter[str] = Counter()
    originals: list[tuple[object, str, object]] = []

    def timed(owner: object, name: str, bucket: str) -> None:
        original = getattr(owner, name)
        originals.append((owner, name, original))

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time_ns()
            try:
                return original(*args, **kwargs)
            finally:
                spent[bucket] += time.process_time_ns() - t0

        setattr(owner, name, wrapper)

    for bucket in STAGES:
        spent[bucket] = 0
    timed(api, "read_any", STAGES[0])
    timed(api, "prepare", STAGES[1])
    timed(pipeline, "validate_entry", STAGES[2])
    timed(pipeline, "build_record", STAGES[3])
    timed(engine.backend, "evaluate", STAGES[4])
    timed(api, "build_patient_result", STAGES[5])
    total = 0
    dict_ns = 0
    try:
        for text in texts:
            t0 = time.process_time_ns()
            results = engine.evaluate(text, now=NOW)
            t1 = time.process_time_ns()
            results.to_dict()
            t2 = time.process_time_ns()
            total += t2 - t0
            dict_ns += t2 - t1
    finally:
        for owner, name, original in reversed(originals):
            if owner is engine.backend:
                delattr(owner, name)  # back to the class attribute
            else:
                setattr(owner, name, original)
    out = {k: v / len(texts) / 1e6 for k, v in spent.items()}
    out["to_dict (JSON document)"] = dict_ns / len(texts) / 1e6
    out["total"] = total / len(texts) / 1e6
    return out


# --- memory ------------------------------------------------------------------------------------


def rss_mb() -> tuple[float, float]:
    """Current and peak resident set size (MB), from /proc (``ru_maxrss`` as a fallback for the peak)."""
    found: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    found[line[:5]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = found.get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return found.get("VmRSS", float("nan")), peak


def memory_run(engine: Engine, texts: Sequence[str], evaluations: int) -> None:
    """Evaluate ``evaluations`` times, cycling through the patients; print RSS at checkpoints."""
    step = engine_step(engine)
    marks = sorted({0, *(int(evaluations * f) for f in (0.1, 0.25, 0.5, 0.75)), evaluations})
    print(f"\nmemory over {evaluations:,} evaluations (cycling through the {len(texts):,} patients)")
    print(f"  {'done':>8}{'':>6}{'RSS MB':>9}{'peak MB':>9}{'objects':>11}{'patients/s':>12}")
    rows: list[tuple[int, float, int]] = []  # done, RSS, live objects
    started = last = time.perf_counter()
    done = 0
    for mark in marks:
        while done < mark:
            step(texts[done % len(texts)])
            done += 1
        now = time.perf_counter()
        rss, peak = rss_mb()
        objects = len(gc.get_objects())
        rate = (done - rows[-1][0]) / (now - last) if rows else float("nan")
        share = done / evaluations if evaluations else 0.0
        print(f"  {done:>8,}{share:>6.0%}{rss:>9.1f}{peak:>9.1f}{objects:>11,}{rate:>12.0f}", flush=True)
        rows.append((done, rss, objects))
        last = now
    first, end = rows[0], rows[-1]
    tenth = next(r for r in rows if r[0] >= evaluations // 10)
    print(
        f"  RSS {first[1]:.1f} -> {end[1]:.1f} MB ({end[1] - first[1]:+.1f} MB), {end[1] - tenth[1]:+.1f} MB "
        f"from 10 % to the end; live objects {end[2] - first[2]:+,}; "
        f"{done / (time.perf_counter() - started):,.0f} patients/s (wall) over the run"
    )


# --- report ------------------------------------------------------------------------------------


def describe(texts: Sequence[str], engine: Engine) -> tuple[float, Counter[str], Counter[str], int]:
    """Resources per patient, resource types, findings per rule, patients with a finding."""
    types: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    resources = 0
    with_finding = 0
    for text in texts:
        for entry in json.loads(text)["entry"]:
            types[entry["resource"]["resourceType"]] += 1
            resources += 1
        results = engine.evaluate(text, now=NOW)  # raises on any patient error
        found = {f.rule for f in results.findings}
        rules.update(found)
        with_finding += bool(found)
    return resources / len(texts), types, rules, with_finding


def check_valid(texts: Sequence[str]) -> None:
    """The synthetic data must be valid R4 (else the baseline and the engine measure errors)."""
    validate_all = baseline_step(None)
    for text in texts:
        validate_all(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000, help="synthetic patients (default 1000)")
    parser.add_argument("--seed", type=int, default=20260601)
    parser.add_argument("--passes", type=int, default=3, help="timing passes; the best is kept (default 3)")
    parser.add_argument("--evaluations", type=int, default=100_000, help="evaluations in the memory run")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory run")
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage breakdown")
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 patients, 1 pass, 600 evaluations")
    parser.add_argument(
        "--unique-text",
        action="store_true",
        help="suffix every code display and text with the patient number: no concept recurs across "
        "patients, so the engine's memo of value-set matches never helps (its worst case)",
    )
    args = parser.parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # a long run shows its progress even when redirected
    if args.quick:
        args.patients, args.passes, args.evaluations = min(args.patients, 60), 1, min(args.evaluations, 600)

    t0 = time.perf_counter()
    engine = Engine.default()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    texts = generate(args.patients, args.seed, args.unique_text)
    gen_s = time.perf_counter() - t0
    check_valid(texts)
    per_patient, types, fired, with_finding = describe(texts, engine)
    read_types = frozenset(engine.ruleset.read_types)
    read = sum(n for t, n in types.items() if t in read_types)
    size = sum(len(t.encode()) for t in texts) / len(texts)

    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"{len(engine.rules)} rules (engine built in {load_s:.2f} s)"
    )
    print(
        f"{len(texts):,} patients (seed {args.seed}{', unique texts' if args.unique_text else ''}, generated in "
        f"{gen_s:.1f} s): {per_patient:.1f} resources and "
        f"{size / 1024:.1f} KiB of JSON each; {read / len(texts):.1f} of the types the rules read"
    )
    print("  types: " + ", ".join(f"{t} {n / len(texts):.1f}" for t, n in types.most_common()))
    print(
        f"  {with_finding:,} patients ({with_finding / len(texts):.0%}) with a finding; by rule: "
        + ", ".join(f"{r} {n}" for r, n in sorted(fired.items()))
    )

    steps = {
        "baseline": baseline_step(read_types),
        "engine": engine_step(engine),
        "validate-all": baseline_step(None),
    }
    for step in steps.values():
        step(texts[0])  # import models, warm caches
    best = interleaved(steps, texts, args.passes)
    base, eng, full = best["baseline"], best["engine"], best["validate-all"]
    ratio = eng.cpu_s / base.cpu_s
    print(f"\ntimings: best of {args.passes} pass(es), CPU time, one process (= one core)")
    print(f"  {'step':<58}{'ms/patient':>11}{'patients/s':>12}{'wall /s':>10}{'x baseline':>12}")
    rows = [
        ("baseline: json.loads + R4B validation of the read types", base),
        ("engine end to end: evaluate + to_dict", eng),
        ("(for scale) json.loads + R4B validation of every resource", full),
    ]
    for label, t in rows:
        print(f"  {label:<58}{t.ms:>11.3f}{t.per_s:>12.0f}{t.wall_per_s:>10.0f}{t.cpu_s / base.cpu_s:>11.2f}x")
    print(
        f"  engine adds {ratio - 1:+.0%} on top of the baseline (target <= +{TARGET_RATIO - 1:.0%}: "
        f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); "
        f"{eng.per_s:,.0f} patients/s per core (target >= {TARGET_PER_CORE:.0f}: "
        f"{'met' if eng.per_s >= TARGET_PER_CORE else 'NOT met'})"
    )

    if not args.no_stages:
        stages = stage_breakdown(engine, texts)
        total = stages.pop("total")
        print("\nwhere the end-to-end time goes (one instrumented pass; CPU ms/patient)")
        for name, ms in stages.items():
            print(f"  {name:<50}{ms:>8.3f}  {ms / total:>4.0%}")
        print(f"  {'total (instrumented)':<50}{total:>8.3f}")

    if not args.no_memory:
        gc.collect()
        memory_run(engine, texts, args.evaluations)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
