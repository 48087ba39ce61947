"""The local runner: group on disk, evaluate buckets in worker processes, merge; resumable.

Stages (each resumable, see checkpoint.py):

1. **group**: every byte range of the export is read once and its lines are written by
   patient bucket (grouping.py); shared resources go to a side index (shared.py) and
   Provenances known only through their targets are placed afterwards (provenance.py);
2. **evaluate**: each bucket is grouped in memory and its patients evaluated, one engine per
   worker process (workers.py); its rows are committed in one file;
3. **merge**: the buckets' rows are streamed, in bucket order, into ``findings.<format>``
   and ``errors.ndjson``, then ``summary.json`` is written: its presence marks the screen
   finished, and the work folder is deleted.

Rerunning the same command after an interruption skips what was committed. ``now`` is fixed
when the screen starts and reused on resume, so every finding of one screen has the same
evaluation time.
"""

from __future__ import annotations

import math
import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from careplan_rules.api import Engine
from careplan_rules.screen import workers
from careplan_rules.screen.checkpoint import MANIFEST, digest, read_json, remove_partial, write_json
from careplan_rules.screen.errors import ScreenError
from careplan_rules.screen.grouping import (
    MAP,
    PROVENANCE,
    Layout,
    TaskStats,
    bucket_counts,
    line_bases,
    read_shared,
    task_done,
)
from careplan_rules.screen.inputs import InputFile, Task, expand_inputs, plan_tasks
from careplan_rules.screen.merge import merge_results
from careplan_rules.screen.progress import Counters, ProgressBar
from careplan_rules.screen.provenance import place_deferred
from careplan_rules.screen.shared import build_sqlite_index
from careplan_rules.screen.spec import EngineSpec
from careplan_rules.screen.summary import ScreenSummary
from careplan_rules.screen.writers import check_format
from careplan_rules.temporal import iso, parse_now

WORK = ".screen"
LAYOUT_VERSION = 1
MiB = 1 << 20
MIN_BUCKETS = 64  # enough to keep a few dozen workers busy on a small export
GZIP_RATIO = 6  # bytes of NDJSON per gzipped byte, to size the buckets

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ScreenOptions:
    """How to run a screen (what decides the findings is the export, the rules and ``now``)."""

    now: datetime | None = None  # None: the current time, or the interrupted screen's when resuming
    fmt: str = "ndjson"
    workers: int = 1
    fhir_version: str = "auto"
    bucket_bytes: int = 64 * MiB  # input bytes per bucket: bounds a worker's memory
    task_bytes: int = 64 * MiB  # input bytes per grouping task: bounds its memory
    overwrite: bool = False
    progress: bool = False
    keep_work: bool = False


def screen_local(
    inputs: Sequence[str | Path], out: str | Path, spec: EngineSpec | None = None, options: ScreenOptions | None = None
) -> ScreenSummary:
    """Screen a Bulk Data export with the local runner.

    Args:
        inputs: NDJSON files or folders of them (``.ndjson``, ``.jsonl``, optionally ``.gz``).
        out: the results folder: new, empty, or the folder of an interrupted screen to resume.
        spec: the rule packs and engine options (default: the bundled pack).
        options: workers, format, ``now``…

    Returns:
        The summary (also written to ``out/summary.json``).

    Raises:
        FhirInputError: an input path does not exist or holds no NDJSON.
        RuleLoadError: a rule pack does not load.
        ScreenError: the results folder holds something else, Parquet without pyarrow, or a
            worker process died (rerun the same command to resume).
    """
    started = time.monotonic()
    spec = spec or EngineSpec()
    options = options or ScreenOptions()
    check_format(options.fmt)
    files = expand_inputs(inputs)
    engine = spec.build()
    out = Path(out)
    work = out / WORK
    fingerprint = digest([f.fingerprint() for f in files], spec.fingerprint(), options.fhir_version, LAYOUT_VERSION)
    manifest, resumed = _open(out, work, fingerprint, files, options)
    tasks = tuple(Task(i, f, s, e) for i, (f, s, e) in enumerate(manifest["tasks"]))
    layout = Layout(work, tuple(files), tasks, manifest["buckets"], engine.ruleset.read_types)
    now = parse_now(manifest["now"])
    bar = ProgressBar(options.progress)
    clock = _Clock()
    try:
        with _Pool(options.workers, spec, engine, bar) as pool:
            stats = _group(pool, layout, bar)
            if manifest["stage"] == "group":
                manifest = _finish_grouping(layout, stats, manifest)
            bases = line_bases(layout, stats)
            units = list(manifest["provenance_units"])
            clock.lap("group")
            _evaluate(pool, layout, bases, units, now, options.fhir_version, bar)
            clock.lap("evaluate")
    finally:
        bar.close()
    tally, outputs = merge_results(layout, stats, bases, units, out, options.fmt)
    clock.lap("merge")
    seconds = time.monotonic() - started
    summary = ScreenSummary("local", iso(now), engine.pack_versions, tally, outputs, seconds, resumed, clock.laps)
    write_json(out / "summary.json", summary.to_json())
    if not options.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return summary


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = now - self._last
        self._last = now


def _open(
    out: Path, work: Path, fingerprint: str, files: list[InputFile], options: ScreenOptions
) -> tuple[dict[str, Any], bool]:
    """Start a new screen in ``out``, or pick up the interrupted one that is there."""
    if (out / "summary.json").exists():
        if not options.overwrite:
            raise ScreenError(f"{out}: holds a finished screen (summary.json); give another --out or pass --overwrite")
        _clear(out)
    if (work / MANIFEST).exists():
        manifest: dict[str, Any] = read_json(work / MANIFEST)
        same_now = options.now is None or iso(options.now) == manifest["now"]
        if manifest.get("fingerprint") == fingerprint and same_now:
            remove_partial(work)
            return manifest, True
        if not options.overwrite:
            raise ScreenError(
                f"{out}: holds an unfinished screen of other inputs, rules or --now (started with now "
                f"{manifest['now']}); rerun that command to resume it, or pass --overwrite to start again"
            )
        _clear(out)
    elif out.exists() and any(out.iterdir()):
        raise ScreenError(f"{out}: folder is not empty and holds no screen; give a new or empty folder")
    for sub in (work / MAP, work / workers.RESULTS):
        sub.mkdir(parents=True, exist_ok=True)
    now = options.now or datetime.now(UTC).replace(microsecond=0)
    tasks = plan_tasks(files, options.task_bytes)
    volume = sum(f.size * (GZIP_RATIO if f.gzipped else 1) for f in files)
    # the bucket count must not depend on --workers: it decides the order of the rows, and
    # the same screen gives the same files however many processes ran it
    buckets = max(MIN_BUCKETS, math.ceil(volume / max(options.bucket_bytes, 1)))
    manifest = {
        "layout": LAYOUT_VERSION,
        "fingerprint": fingerprint,
        "now": iso(now),
        "files": [f.name for f in files],
        "tasks": [[t.file, t.start, t.end] for t in tasks],
        "buckets": min(buckets, 1 << 16),
        "stage": "group",
        "provenance_units": [],
    }
    write_json(work / MANIFEST, manifest)
    return manifest, False


def _clear(out: Path) -> None:
    """Remove a previous screen's files (and only those) from ``out``."""
    for name in ("findings.ndjson", "findings.csv", "findings.parquet", "errors.ndjson", "summary.json"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / WORK, ignore_errors=True)


def _group(pool: _Pool, layout: Layout, bar: ProgressBar) -> list[TaskStats]:
    found = [task_done(layout, t.index) for t in layout.tasks]
    sizes = [t.size if t.end >= 0 else layout.files[t.file].size for t in layout.tasks]
    done_bytes = sum(s for s, st in zip(sizes, found, strict=True) if st is not None)
    bar.stage("grouping", sum(sizes), "B")
    bar.update(done_bytes)

    def finished(data: dict[str, Any]) -> None:
        nonlocal done_bytes
        st = TaskStats.from_json(data)
        found[st.task] = st
        done_bytes += sizes[st.task]
        bar.update(done_bytes)

    pending = [t.index for t, st in zip(layout.tasks, found, strict=True) if st is None]
    pool.run(workers.run_map_task, [(layout, i) for i in pending], finished)
    return [st for st in found if st is not None]


def _finish_grouping(layout: Layout, stats: list[TaskStats], manifest: dict[str, Any]) -> dict[str, Any]:
    """Build the shared index and place deferred Provenances (redone whole if interrupted)."""
    bases = line_bases(layout, stats)
    build_sqlite_index(layout.work / workers.SHARED_DB, read_shared(layout, bases))
    units = place_deferred(layout, stats)
    manifest = {**manifest, "stage": "evaluate", "provenance_units": units}
    write_json(layout.work / MANIFEST, manifest)
    return manifest


def _evaluate(
    pool: _Pool,
    layout: Layout,
    bases: list[int],
    units: list[int],
    now: datetime,
    fhir_version: str,
    bar: ProgressBar,
) -> None:
    pending = [k for k in range(layout.buckets) if not workers.result_path(layout.work, k).exists()]
    totals = [0] * layout.buckets
    for kind, indexes in ((MAP, [t.index for t in layout.tasks]), (PROVENANCE, units)):
        for i in indexes:
            for k, n in enumerate(bucket_counts(layout, kind, i)):
                totals[k] += n
    bar.stage("screening", sum(totals[k] for k in pending), "")
    pool.counters.patients.value = pool.counters.resources.value = 0
    jobs = [(workers.BucketJob(layout, k, tuple(bases), tuple(units), now, fhir_version),) for k in pending]
    pool.run(workers.evaluate_bucket, jobs, lambda _: None, pool.tick)


class _Pool:
    """Worker processes (spawned, one engine each), or this process when ``workers == 1``."""

    def __init__(self, n: int, spec: EngineSpec, engine: Engine, bar: ProgressBar) -> None:
        self.bar = bar
        self.executor: ProcessPoolExecutor | None = None
        if n > 1:
            # spawn, not fork: the parent may run threads (the progress bar), and a forked
            # copy of a threaded process can deadlock
            ctx = multiprocessing.get_context("spawn")
            self.counters = Counters(ctx)
            self.executor = ProcessPoolExecutor(
                n, mp_context=ctx, initializer=workers.init_worker, initargs=(spec, self.counters)
            )
        else:
            self.counters = Counters(on_add=self.tick)
            workers.set_state(workers.WorkerState(engine, self.counters))

    def tick(self) -> None:
        self.bar.update(self.counters.resources.value, self.counters.patients.value)

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
        else:
            workers.set_state(None)

    def run(
        self,
        fn: Callable[..., R],
        calls: Iterable[tuple[Any, ...]],
        done: Callable[[R], None],
        tick: Callable[[], None] | None = None,
    ) -> None:
        """Call ``fn`` once per argument tuple (in the pool, or here in order); results go to ``done``.

        ``tick`` redraws the progress bar while the pool works (a few times a second).
        """
        if self.executor is None:
            for args in calls:
                done(fn(*args))
            return
        futures = {self.executor.submit(fn, *args) for args in calls}
        try:
            while futures:
                finished, futures = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in finished:
                    done(fut.result())
                if tick is not None:
                    tick()
        except BrokenProcessPool:
            raise ScreenError(
                "a worker process died (killed, or out of memory: try fewer --workers or smaller buckets); "
                "what was finished is kept: rerun the same command to resume"
            ) from None
        finally:
            for fut in futures:
                fut.cancel()
