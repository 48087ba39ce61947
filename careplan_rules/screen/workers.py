"""The worker side of the local runner: one engine per process, one bucket per call.

Each worker process builds its engine once (:func:`init_worker`, the pool's initializer) and
opens the shared-resource index once; :func:`evaluate_bucket` then groups one bucket in
memory, evaluates its patients in a stable order, and commits the bucket's rows in one
atomic file (checkpoint.py). With ``--workers 1`` the same code runs in the calling process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from careplan_rules.api import Engine
from careplan_rules.screen.checkpoint import atomic_file
from careplan_rules.screen.evaluate import screen_patient
from careplan_rules.screen.grouping import Layout, map_task, read_bucket
from careplan_rules.screen.progress import REPORT_EVERY, Counters
from careplan_rules.screen.shared import SqliteShared
from careplan_rules.screen.spec import EngineSpec
from careplan_rules.screen.summary import Tally
from careplan_rules.temporal import iso

SHARED_DB = "shared.sqlite"
RESULTS = "results"


@dataclass(frozen=True, slots=True)
class BucketJob:
    """Everything a worker needs to evaluate one bucket (small and picklable)."""

    layout: Layout
    bucket: int
    bases: tuple[int, ...]
    provenance_units: tuple[int, ...]
    now: datetime
    fhir_version: str


class WorkerState:
    """What a worker process keeps between calls: its engine (built on first use), its index."""

    def __init__(self, engine: Engine | EngineSpec, counters: Counters) -> None:
        self._engine = engine
        self.counters = counters
        self._shared: dict[Path, SqliteShared] = {}

    @property
    def engine(self) -> Engine:
        # built on first use, not when the process starts: grouping tasks need no engine and
        # can start at once
        if isinstance(self._engine, EngineSpec):
            self._engine = self._engine.build()
        return self._engine

    def shared(self, work: Path) -> SqliteShared:
        if work not in self._shared:
            self._shared[work] = SqliteShared(work / SHARED_DB)
        return self._shared[work]

    def close(self) -> None:
        for index in self._shared.values():
            index.close()
        self._shared.clear()


_STATE: WorkerState | None = None


def init_worker(spec: EngineSpec, counters: Counters) -> None:
    """Pool initializer: this process's state (its engine is built once, on first use)."""
    set_state(WorkerState(spec, counters))


def set_state(state: WorkerState | None) -> None:
    global _STATE
    if _STATE is not None:
        _STATE.close()
    _STATE = state


def _state() -> WorkerState:
    if _STATE is None:
        raise RuntimeError("screen worker used before init_worker")
    return _STATE


def run_map_task(layout: Layout, index: int) -> dict[str, Any]:
    return map_task(layout, index).to_json()


def result_path(work: Path, bucket: int) -> Path:
    return work / RESULTS / f"r{bucket:06d}.ndjson"


def evaluate_bucket(job: BucketJob) -> dict[str, Any]:
    """Evaluate every patient of one bucket and commit the bucket's rows.

    Returns:
        The bucket's :class:`Tally` as JSON (also the last line of its result file).
    """
    state = _state()
    groups = read_bucket(job.layout, job.bucket, list(job.bases), list(job.provenance_units))
    shared = state.shared(job.layout.work)
    now_text = iso(job.now)
    tally = Tally()
    pending_patients = pending_resources = 0
    with atomic_file(result_path(job.layout.work, job.bucket), "w") as out:
        for key in sorted(groups):
            lines = groups[key]
            outcome = screen_patient(state.engine, key, lines, shared, job.now, now_text, job.fhir_version)
            tally.add_patient(len(lines), outcome.findings, outcome.errors)
            out.writelines(json.dumps({"f": f.to_dict()}, ensure_ascii=False) + "\n" for f in outcome.findings)
            out.writelines(json.dumps({"e": e.to_dict()}, ensure_ascii=False) + "\n" for e in outcome.errors)
            pending_patients += 1
            pending_resources += len(lines)
            if pending_patients >= REPORT_EVERY:
                state.counters.add(pending_patients, pending_resources)
                pending_patients = pending_resources = 0
        out.write(json.dumps({"tally": tally.to_json()}) + "\n")
    state.counters.add(pending_patients, pending_resources)
    return tally.to_json()
