"""Population screening benchmark: the local runner against the evaluation core, same run.

    python benchmarks/bench_screen.py                     # 20,000 and 5,000 patients
    python benchmarks/bench_screen.py --patients 2000     # a quick run

Generates a synthetic FHIR Bulk Data export (NDJSON per resource type, each type split in
several files, lines shuffled so every patient's ~30 resources are spread across files; some
patients on kratom, SSRIs, opioids or benzodiazepines so rules fire; some MedicationRequests
name a Medication of Medication.ndjson; half the Provenances target a MedicationStatement, so
the deferred placement runs too), then prints:

* the evaluation core's per-patient time (``Engine.evaluate`` on one patient's resources,
  already grouped in memory): the baseline;
* the local runner's patients/s with 1 and 2 workers, its stages, and the ratio of its
  per-patient time to the baseline (what grouping, I/O and merging cost on top);
* peak RSS of the screening process and of its largest worker, at two export sizes: memory
  must not grow with the export;
* the target: >= 1,000,000 patients per hour (278 patients/s) on this 2-core machine.

Each screen runs in a fresh process so peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NOW = "2026-06-01T12:00:00Z"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
TARGET_PER_HOUR = 1_000_000

DRUGS = {  # name: (rxnorm ingredient, share of patients)
    "sertraline": ("36437", 0.15),
    "oxycodone": ("7804", 0.08),
    "tramadol": ("10689", 0.05),
    "alprazolam": ("596", 0.05),
    "lisinopril": ("29046", 0.5),
    "metformin": ("6809", 0.4),
    "atorvastatin": ("83367", 0.4),
}
KRATOM_SHARE = 0.10


def _med_cc(name: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": RXNORM, "code": code, "display": name}], "text": name}


def _patient_resources(i: int, rng: random.Random) -> list[dict[str, Any]]:
    pid = f"pat{i:07d}"
    subj = {"reference": f"Patient/{pid}"}
    out: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": pid, "gender": rng.choice(["female", "male"]), "birthDate": "1970-05-01"}
    ]
    for j in range(6):
        out.append(
            {
                "resourceType": "Encounter",
                "id": f"{pid}-enc{j}",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": subj,
                "period": {"start": f"2025-{j + 1:02d}-10", "end": f"2025-{j + 1:02d}-10"},
            }
        )
    for j in range(9):
        phq = j == 0 and rng.random() < 0.2
        code, value = ("44261-6", rng.randint(3, 22)) if phq else ("8867-4", rng.randint(55, 100))
        out.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-obs{j}",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "subject": subj,
                "effectiveDateTime": f"2026-0{1 + j % 5}-15",
                "valueQuantity": {"value": value, "unit": "{score}" if phq else "/min"},
            }
        )
    conditions = [("38341003", "Hypertension"), ("44054006", "Diabetes"), ("35489007", "Depressive disorder")]
    for j in range(4):
        code, text = conditions[j % 3] if j < 3 else ("55822004", "Hyperlipidemia")
        out.append(
            {
                "resourceType": "Condition",
                "id": f"{pid}-cond{j}",
                "clinicalStatus": {"coding": [{"code": "active"}]},
                "code": {"coding": [{"system": SNOMED, "code": code}], "text": text},
                "subject": subj,
                "onsetDateTime": "2024-03-01",
            }
        )
    drugs = [n for n, (_, share) in DRUGS.items() if rng.random() < share]
    while len(drugs) < 4:
        drugs.append(rng.choice(["lisinopril", "metformin", "atorvastatin"]))
    for j, name in enumerate(drugs[:4]):
        req: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": f"{pid}-rx{j}",
            "status": "active",
            "intent": "order",
            "subject": subj,
            "authoredOn": "2026-04-01",
        }
        if rng.random() < 0.2:
            req["medicationReference"] = {"reference": f"Medication/med-{name}"}
        else:
            req["medicationCodeableConcept"] = _med_cc(name, DRUGS[name][0])
        out.append(req)
    kratom = rng.random() < KRATOM_SHARE
    statements = ["Kratom powder, 3 g daily" if kratom else "ibuprofen 200 mg as needed", "vitamin D 1000 IU"]
    for j, text in enumerate(statements):
        out.append(
            {
                "resourceType": "MedicationStatement",
                "id": f"{pid}-ms{j}",
                "status": "active",
                "medicationCodeableConcept": {"text": text},
                "subject": subj,
                "effectiveDateTime": "2026-05-01",
            }
        )
    for j in range(2):
        out.append(
            {
                "resourceType": "Procedure",
                "id": f"{pid}-proc{j}",
                "status": "completed",
                "code": {"coding": [{"system": SNOMED, "code": "171207006"}]},
                "subject": subj,
                "performedDateTime": "2026-02-01",
            }
        )
    out.append(
        {
            "resourceType": "Immunization",
            "id": f"{pid}-imm",
            "status": "completed",
            "vaccineCode": {"text": "influenza"},
            "patient": subj,
            "occurrenceDateTime": "2025-10-01",
        }
    )
    target = subj if rng.random() < 0.5 else {"reference": f"MedicationStatement/{pid}-ms0"}
    out.append(
        {
            "resourceType": "Provenance",
            "id": f"{pid}-prov",
            "target": [target],
            "recorded": "2026-05-02T10:00:00Z",
            "agent": [{"who": {"reference": "Practitioner/dr1"}}],
        }
    )
    return out


def generate(folder: Path, patients: int, files_per_type: int = 4, seed: int = 7) -> tuple[int, int]:
    """Write the export; returns (resources, bytes). Lines of a type are shuffled across files."""
    rng = random.Random(seed)
    by_type: dict[str, list[bytes]] = {}
    for i in range(patients):
        for r in _patient_resources(i, rng):
            by_type.setdefault(r["resourceType"], []).append(json.dumps(r, separators=(",", ":")).encode())
    by_type["Medication"] = [
        json.dumps({"resourceType": "Medication", "id": f"med-{n}", "code": _med_cc(n, c)}).encode()
        for n, (c, _) in DRUGS.items()
    ]
    by_type["Practitioner"] = [json.dumps({"resourceType": "Practitioner", "id": "dr1"}).encode()]
    folder.mkdir(parents=True, exist_ok=True)
    total = size = 0
    for rt, rows in by_type.items():
        rng.shuffle(rows)
        chunk = -(-len(rows) // files_per_type)
        for k in range(files_per_type):
            part = rows[k * chunk : (k + 1) * chunk]
            if part:
                data = b"\n".join(part) + b"\n"
                (folder / f"{rt}.{k:03d}.ndjson").write_bytes(data)
                size += len(data)
        total += len(rows)
    return total, size


def core_per_patient(sample: int) -> tuple[float, float]:
    """Wall and CPU seconds per patient of Engine.evaluate on grouped resources (the baseline)."""
    from careplan_rules import Engine

    engine = Engine.default()
    rng = random.Random(99)
    meds = [{"resourceType": "Medication", "id": f"med-{n}", "code": _med_cc(n, c)} for n, (c, _) in DRUGS.items()]
    docs = [_patient_resources(i, rng) + meds for i in range(sample)]
    engine.evaluate(docs[0], now=NOW)  # warm caches
    start, cpu = time.perf_counter(), time.process_time()
    for resources in docs:
        engine.evaluate(resources, now=NOW, on_error="collect")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall / sample, cpu / sample


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def run_screen(export: Path, out: Path, workers: int) -> dict[str, Any]:
    """One screen in a fresh process; returns its summary, CPU time and peak memory (MB).

    Memory is sampled from /proc every 50 ms (``ru_maxrss`` would count the pages a child
    shares with this process at fork time, which hold the generated export).
    """
    code = (
        "import json, resource\n"
        "from careplan_rules.screen import ScreenOptions, screen_local\n"
        "from careplan_rules.temporal import parse_now\n"
        f"s = screen_local([{str(export)!r}], {str(out)!r}, None, "
        f"ScreenOptions(now=parse_now({NOW!r}), workers={workers}))\n"
        "d = s.to_json()\n"
        "me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "d['cpu_s'] = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime\n"
        "hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
        "d['hwm_main_mb'] = int(hwm.split()[1]) / 1024\n"
        "print(json.dumps(d))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_worker = peak_total = 0.0
    while proc.poll() is None:
        kids = _children(proc.pid)
        sizes = [_rss_mb(k) for k in kids]
        peak_worker = max([peak_worker, *sizes])
        peak_total = max(peak_total, _rss_mb(proc.pid) + sum(sizes))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"screen failed:\n{stderr}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["rss_main_mb"] = result["hwm_main_mb"]
    result["rss_worker_mb"] = peak_worker
    result["rss_total_mb"] = peak_total
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=20_000, help="patients in the large export")
    parser.add_argument("--small", type=int, default=None, help="patients in the small export (default: a quarter)")
    parser.add_argument("--sample", type=int, default=300, help="patients for the core baseline")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    small = args.small or max(args.patients // 4, 1)
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_screen_"))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work skews timings)")
    core, core_cpu = core_per_patient(args.sample)
    print(
        f"evaluation core (baseline): {core * 1000:.2f} ms/patient wall, {core_cpu * 1000:.2f} ms CPU "
        f"= {1 / core:,.0f} patients/s on one core"
    )
    rows = []
    for n, workers_list in ((small, (1,)), (args.patients, (1, 2))):
        export = root / f"export-{n}"
        t = time.perf_counter()
        resources, size = generate(export, n)
        print(
            f"\nexport: {n:,} patients, {resources:,} resources, {size / 1e6:,.0f} MB "
            f"(generated in {time.perf_counter() - t:.1f} s)"
        )
        for workers in workers_list:
            out = root / f"out-{n}-{workers}"
            # the baseline right before each screen: this machine's speed drifts with other work
            core, core_cpu = core_per_patient(args.sample)
            print(f"  core baseline now: {core * 1000:.2f} ms/patient wall, {core_cpu * 1000:.2f} ms CPU")
            s = run_screen(export, out, workers)
            rate = s["patients"] / s["seconds"]
            per = s["seconds"] / s["patients"] * workers  # worker-seconds per patient
            cpu = s["cpu_s"] / s["patients"]  # CPU-seconds per patient, all processes
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in s["stages"].items())
            print(
                f"  local, {workers} worker(s): {rate:,.0f} patients/s ({rate * 3600:,.0f}/hour; "
                f"target {TARGET_PER_HOUR:,}/hour: {'met' if rate * 3600 >= TARGET_PER_HOUR else 'NOT met'})\n"
                f"    {s['seconds']:.1f} s [{stages}]; {s['findings']:,} findings, {s['errors']} errors\n"
                f"    per patient {per * 1000:.2f} ms x workers = {per / core:.2f}x the core; "
                f"CPU {cpu * 1000:.2f} ms = {cpu / core_cpu:.2f}x the core's CPU "
                f"(idle 2-core projection: {2 * 3600 / cpu:,.0f}/hour); "
                f"grouping share {s['stages']['group'] / s['seconds']:.0%}\n"
                f"    peak RSS: main {s['rss_main_mb']:.0f} MB, largest worker {s['rss_worker_mb']:.0f} MB, "
                f"all processes {s['rss_total_mb']:.0f} MB"
            )
            rows.append((n, workers, rate, s["rss_main_mb"], s["rss_worker_mb"]))
    one = {n: (main_mb, worker_mb) for n, w, _, main_mb, worker_mb in rows if w == 1}
    if len(one) == 2:
        (a, (ma, _)), (b, (mb, _)) = sorted(one.items())
        print(
            f"\nmemory: {a:,} -> {b:,} patients ({b / a:.0f}x data): peak RSS {ma:.0f} -> {mb:.0f} MB ({mb / ma:.2f}x)"
        )
    two = [r for r in rows if r[0] == args.patients]
    if len(two) == 2:
        print(f"speed-up 1 -> 2 workers: {two[1][2] / two[0][2]:.2f}x")
    print(f"\nfiles in {root} (delete when done)")


if __name__ == "__main__":
    main()
