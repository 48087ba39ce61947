"""Benchmark: the python backend against the durable_rules backend on the same synthetic patients.

usage: python benchmarks/bench_backends.py [--patients N] [--seed S] [--passes P] [--isolated] [--pack PATH]

Synthetic patients (5-30 medication records of kratom, serotonergic drugs, opioids,
benzodiazepines and others, with random statuses and dates; reviews, social history and care
plans sometimes) are read and normalised once. That cost is shared by both backends and left
out. Each backend then evaluates every patient's facts; each call is timed with
``perf_counter_ns``. Passes alternate between backends and each backend's best pass is reported,
so both see the same machine state. The numbers to compare are the ratios printed from one run;
absolute numbers depend on the machine. Outcomes are compared patient by patient, and any
mismatch is reported (it must be 0).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from careplan_rules import Engine
from careplan_rules.engine.backend import Backend
from careplan_rules.engine.backends.python import PythonBackend
from careplan_rules.facts import PatientRecord
from careplan_rules.fhir.pipeline import prepare
from careplan_rules.fhir.reader import read_any
from careplan_rules.findings import RuleOutcome

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TODAY = date(2026, 6, 1)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DRUGS: dict[str, list[dict[str, Any]]] = {
    "kratom": [{"text": "Kratom powder 3 g daily"}, {"text": "kratom capsules"}, {"text": "ketum tea"}],
    "serotonergic": [
        {"coding": [{"system": RXNORM, "code": c, "display": d}]}
        for c, d in (("36437", "sertraline"), ("4493", "fluoxetine"), ("39786", "venlafaxine"), ("8123", "phenelzine"))
    ],
    "opioid": [
        {"coding": [{"system": RXNORM, "code": c, "display": d}]}
        for c, d in (("7804", "oxycodone"), ("7052", "morphine"), ("10689", "tramadol"), ("6813", "methadone"))
    ],
    "benzodiazepine": [
        {"coding": [{"system": RXNORM, "code": c, "display": d}]}
        for c, d in (("596", "alprazolam"), ("6470", "lorazepam"), ("3322", "diazepam"))
    ],
    "other": [
        {"coding": [{"system": RXNORM, "code": c, "display": d}]}
        for c, d in (("29046", "lisinopril"), ("6809", "metformin"), ("25480", "gabapentin"), ("83367", "atorvastatin"))
    ],
}
WEIGHTS = {"kratom": 0.12, "serotonergic": 0.18, "opioid": 0.15, "benzodiazepine": 0.1, "other": 0.45}


def day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def synthetic_patient(rng: random.Random, pid: str) -> list[dict[str, Any]]:
    """One patient's resources (all valid FHIR R4)."""
    subject = {"reference": f"Patient/{pid}"}
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "gender": rng.choice(["female", "male"]),
            "birthDate": day(rng.randint(6000, 29000)),
        }
    ]
    kinds, weights = zip(*WEIGHTS.items(), strict=True)
    for i in range(rng.randint(5, 30)):
        concept = rng.choice(DRUGS[rng.choices(kinds, weights)[0]])
        start = rng.randint(0, 800)
        if rng.random() < 0.5:
            end = None if rng.random() < 0.6 else max(0, start - rng.randint(1, 400))
            period = {"start": day(start), **({"end": day(end)} if end is not None else {})}
            out.append(
                {
                    "resourceType": "MedicationStatement",
                    "id": f"{pid}-m{i}",
                    "status": rng.choice(["active", "active", "active", "completed", "stopped"]),
                    "medicationCodeableConcept": concept,
                    "subject": subject,
                    "effectivePeriod": period,
                }
            )
        else:
            out.append(
                {
                    "resourceType": "MedicationRequest",
                    "id": f"{pid}-m{i}",
                    "status": rng.choice(["active", "active", "completed", "stopped", "cancelled"]),
                    "intent": "order",
                    "medicationCodeableConcept": concept,
                    "subject": subject,
                    "authoredOn": day(start),
                }
            )
    if rng.random() < 0.3:
        out.append(
            {
                "resourceType": "Procedure",
                "id": f"{pid}-review",
                "status": "completed",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "428191000124101"}]},
                "subject": subject,
                "performedDateTime": day(rng.randint(0, 200)) + "T09:00:00Z",
                "performer": [{"actor": {"reference": "Practitioner/dr1"}}],
            }
        )
    if rng.random() < 0.2:
        out.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-social",
                "status": "final",
                "code": {"text": "Herbal or botanical supplement use"},
                "subject": subject,
                "effectiveDateTime": day(rng.randint(0, 120)),
                "valueString": rng.choice(["ketum tea most mornings", "chamomile tea"]),
            }
        )
    if rng.random() < 0.3:
        out.append(
            {"resourceType": "CarePlan", "id": f"{pid}-cp", "status": "active", "intent": "plan", "subject": subject}
        )
    rng.shuffle(out)
    return out


def records(engine: Engine, n: int, seed: int) -> list[PatientRecord]:
    rng = random.Random(seed)
    resources = [r for i in range(n) for r in synthetic_patient(rng, f"p{i}")]
    doc = read_any({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]})
    prepared = prepare(doc, read_types=engine.ruleset.read_types)
    if prepared.errors or any(p.record is None for p in prepared.patients):
        raise SystemExit(f"synthetic data did not prepare cleanly: {prepared.errors[:1]}")
    return [p.record for p in prepared.patients if p.record is not None]


@dataclass(frozen=True, slots=True)
class Timing:
    per_second: float
    p50_us: float
    p99_us: float
    max_us: float

    @classmethod
    def of(cls, latencies_ns: list[int]) -> Timing:
        ordered = sorted(latencies_ns)

        def quantile(f: float) -> float:
            return ordered[min(len(ordered) - 1, int(len(ordered) * f))] / 1e3

        return cls(len(ordered) / (sum(ordered) / 1e9), quantile(0.5), quantile(0.99), ordered[-1] / 1e3)


def interleaved(
    steps: dict[str, Callable[[int], Any]], count: int, passes: int
) -> tuple[dict[str, Timing], dict[str, list[Any]]]:
    """Run every step on item 0, then every step on item 1, ...; rotate the order per item.

    Interleaving gives each step the same machine state (a shared, noisy host drifts over a run);
    throughput is items / summed latency of that step. The best pass of each step is kept.
    """
    names = list(steps)
    best: dict[str, Timing] = {}
    outputs: dict[str, list[Any]] = {}
    for _ in range(passes):
        latencies: dict[str, list[int]] = {name: [] for name in names}
        outputs = {name: [] for name in names}
        gc.collect()
        for i in range(count):
            for k in range(len(names)):
                name = names[(i + k) % len(names)]
                t0 = time.perf_counter_ns()
                out = steps[name](i)
                latencies[name].append(time.perf_counter_ns() - t0)
                outputs[name].append(out)
        for name in names:
            timing = Timing.of(latencies[name])
            if name not in best or timing.per_second > best[name].per_second:
                best[name] = timing
    return best, outputs


def decision_steps(engine: Engine, durable: Any, patients: Sequence[PatientRecord]) -> dict[str, Callable[[int], Any]]:
    """Only the step the backends do differently: deciding which conditions hold.

    Criterion results come from one python evaluation per patient. The python step evaluates every
    ``when`` (rule, escalations, activities) over them; the durable step builds the atom facts
    and runs one durable_rules session per layer.
    """
    from careplan_rules.engine.expressions import evaluate_when

    rules = engine.ruleset.rules
    program, runner = durable._program(engine.ruleset)
    criteria = [[o.criteria for o in PythonBackend().evaluate(engine.ruleset, record, NOW)] for record in patients]

    def python_decide(i: int) -> None:
        for rule, res in zip(rules, criteria[i], strict=True):
            for when in (rule.when, *(e.when for e in rule.escalations), *rule.source.activity_whens):
                if when is not None:
                    evaluate_when(when, res, rule.params)

    def durable_decide(i: int) -> None:
        for layer in program.layers:
            facts: list[dict[str, Any]] = []
            for r in layer:
                facts += program.plans[r].atom_facts(program.bases[r], criteria[i][r], rules[r].params)
            runner.fire(facts)

    return {"python": python_decide, "durable": durable_decide}


def report(best: dict[str, Timing], mismatches: dict[str, int] | None = None) -> None:
    base = best["python"]
    print(
        f"  {'backend':<18}{'patients/s':>11}{'p50 us':>10}{'p99 us':>10}{'max us':>10}"
        f"{'throughput/python':>19}{'p99/python':>12}" + (f"{'mismatches':>12}" if mismatches else "")
    )
    for name, t in best.items():
        print(
            f"  {name:<18}{t.per_second:>11.0f}{t.p50_us:>10.1f}{t.p99_us:>10.1f}{t.max_us:>10.0f}"
            f"{t.per_second / base.per_second:>18.2f}x{t.p99_us / base.p99_us:>11.2f}x"
            + (f"{mismatches[name]:>12}" if mismatches else "")
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--isolated", action="store_true", help="also time DurableBackend(isolated=True)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pack", type=Path, default=None, help="rule pack folder (default: the bundled packs)")
    args = parser.parse_args(argv)

    from careplan_rules.engine.backends.durable import DurableBackend, import_problem

    problem = import_problem()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    engine = Engine.from_paths(args.pack) if args.pack else Engine.default()
    t0 = time.perf_counter()
    patients = records(engine, args.patients, args.seed)
    prep = (time.perf_counter() - t0) / len(patients) * 1e6
    facts = sum(len(r.exposures) + len(r.reviews) + len(r.observations) + len(r.care_plans) for r in patients)
    backends: dict[str, Backend] = {"python": PythonBackend(), "durable": DurableBackend()}
    if args.isolated:
        backends["durable-isolated"] = DurableBackend(isolated=True, workers=args.workers)
    for backend in backends.values():
        prepare_backend = getattr(backend, "prepare", None)
        if prepare_backend is not None:
            prepare_backend(engine.ruleset)
        backend.evaluate(engine.ruleset, patients[0], NOW)  # build rulesets / start workers
    print(
        f"python {sys.version.split()[0]}; {len(engine.rules)} rules; {len(patients)} patients, "
        f"{facts / len(patients):.1f} facts each; reading + normalising took {prep:.0f} us/patient (excluded)"
    )

    def evaluate_with(backend: Backend) -> Callable[[int], tuple[RuleOutcome, ...]]:
        return lambda i: backend.evaluate(engine.ruleset, patients[i], NOW)

    best, outputs = interleaved({n: evaluate_with(b) for n, b in backends.items()}, len(patients), args.passes)
    mismatches = {n: sum(a != b for a, b in zip(outputs["python"], out, strict=True)) for n, out in outputs.items()}
    print("whole evaluation of a patient's facts (criteria + decision + outcome):")
    report(best, mismatches)
    decide, _ = interleaved(decision_steps(engine, backends["durable"], patients), len(patients), args.passes)
    print("decision step only (criteria precomputed; python evaluates every when, durable runs its sessions):")
    report(decide)
    for backend in backends.values():
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    return 0


if __name__ == "__main__":  # required: isolated workers are spawned and re-import this module
    raise SystemExit(main())
