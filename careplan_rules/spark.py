"""Population screening on Spark (extra ``careplan-rules[spark]``): the local screen, scaled out.

    >>> from careplan_rules.spark import screen_spark
    >>> summary = screen_spark(["hdfs:///exports/2026-06-01/"], "hdfs:///screens/2026-06-01", master="yarn")

The job does what the local runner does, with Spark doing the regrouping
(research/fhir-perf-scale.md §5.3):

1. read every NDJSON line with its file and line number (``textFile``, lines counted per partition);
2. classify each line with the local runner's own function (screen/classify.py), so both
   runners agree on which patient a resource belongs to, what is shared and what is an error;
3. broadcast the shared resources (Medication, Substance…) to every executor;
4. place Provenances known only through their targets with a join on the targets' owners;
5. ``groupBy`` patient (a JVM-side, disk-spilling shuffle), then evaluate each partition with
   one engine per Python worker process (built once, cached in this module);
6. write the findings as a DataFrame (Parquet by default, or JSON lines / CSV part files) and
   the errors as JSON lines, and return the same summary as the local runner.

Differences from the local runner: no resume (Spark retries failed tasks; a failed job is
rerun whole), results are folders of part files, and Spark's reader replaces bytes that are
not UTF-8 instead of reporting the line. The shared resources must fit in an executor's
memory (a formulary of 100,000 Medications is about 100 MB).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from careplan_rules.api import Engine
from careplan_rules.screen.classify import DEFERRED, ERROR, RESOURCE, SHARED, classify_line
from careplan_rules.screen.errors import ScreenError
from careplan_rules.screen.evaluate import SourceLine, screen_patient
from careplan_rules.screen.inputs import expand_inputs
from careplan_rules.screen.rows import ERROR_COLUMNS, FINDING_COLUMNS, KIND_NO_PATIENT, LIST_COLUMNS
from careplan_rules.screen.shared import DictShared
from careplan_rules.screen.spec import EngineSpec
from careplan_rules.screen.summary import ScreenSummary, Tally
from careplan_rules.screen.writers import FORMATS
from careplan_rules.temporal import iso, parse_now

CLASSIFIED = T.StructType(
    [
        T.StructField("kind", T.StringType()),
        T.StructField("key", T.StringType()),
        T.StructField("ref", T.StringType()),
        T.StructField("targets", T.ArrayType(T.StringType())),
        T.StructField("file", T.IntegerType()),
        T.StructField("name", T.StringType()),
        T.StructField("line", T.LongType()),
        T.StructField("raw", T.StringType()),
        T.StructField("ekind", T.StringType()),
        T.StructField("code", T.StringType()),
        T.StructField("message", T.StringType()),
    ]
)
FINDINGS = T.StructType(
    [T.StructField(c, T.ArrayType(T.StringType()) if c in LIST_COLUMNS else T.StringType()) for c in FINDING_COLUMNS]
)
ERRORS = T.StructType([T.StructField(c, T.LongType() if c == "line" else T.StringType()) for c in ERROR_COLUMNS])
NO_OWNER = (
    "cannot tell which patient this Provenance belongs to (none of its targets is a Patient "
    "or a resource of a patient in the export)"
)

_ENGINES: dict[EngineSpec, Engine] = {}  # one engine per Python worker process, per spec


def _engine(spec: EngineSpec) -> Engine:
    if spec not in _ENGINES:
        _ENGINES[spec] = spec.build()
    return _ENGINES[spec]


def _classify(
    wanted: frozenset[str], names: list[str], rows: Iterator[tuple[int, int, str]]
) -> Iterator[tuple[Any, ...]]:
    for fi, line, text in rows:
        c = classify_line(text.encode("utf-8"), wanted, names[fi], line)
        keep = c.kind in (RESOURCE, SHARED, DEFERRED)  # the other kinds are only counted
        e = c.error
        yield (
            c.kind,
            c.key or None,
            c.ref or None,
            list(c.targets) if c.kind == DEFERRED else None,
            fi,
            names[fi],
            line,
            text.strip() if keep else None,
            e.kind if e else None,
            e.code if e else None,
            e.message if e else None,
        )


def _evaluate(
    spec: EngineSpec, now_text: str, fhir_version: str, shared: Broadcast[dict[str, Any]], rows: Iterator[Any]
) -> Iterator[tuple[str, str]]:
    engine = _engine(spec)
    lookup = DictShared(shared.value)
    now = parse_now(now_text)
    tally = Tally()
    for row in rows:
        # collect_list order is not defined after a shuffle: put the lines back in input order
        lines = [SourceLine(n, ln, raw.encode("utf-8")) for _f, ln, n, raw in sorted(row["lines"])]
        outcome = screen_patient(engine, row["key"], lines, lookup, now, now_text, fhir_version)
        tally.add_patient(len(lines), outcome.findings, outcome.errors)
        yield from (("f", json.dumps(f.to_dict())) for f in outcome.findings)
        yield from (("e", json.dumps(e.to_dict())) for e in outcome.errors)
    yield ("t", json.dumps(tally.to_json()))


def _as_tuple(columns: Sequence[str], text: str) -> tuple[Any, ...]:
    data = json.loads(text)
    return tuple(data[c] for c in columns)


def _session(master: str | None) -> tuple[SparkSession, bool]:
    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active, False
    # executors on this machine run this interpreter (and so this installation)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("careplan-rules screen").config("spark.ui.showConsoleProgress", "false")
    session = builder.master(master or "local[*]").getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session, True


def _inputs(spark: SparkSession, inputs: Sequence[str | Path]) -> list[tuple[str, str]]:
    """``(display name, path Spark reads)`` of every NDJSON file, local or on a cluster filesystem."""
    local = [p for p in inputs if "://" not in str(p) or str(p).startswith("file://")]
    found = [(f.name, f.path) for f in expand_inputs([str(p).removeprefix("file://") for p in local])] if local else []
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for p in inputs:
        if p in local:
            continue
        path = jvm.org.apache.hadoop.fs.Path(str(p))
        listing = path.getFileSystem(conf).listFiles(path, True)
        names = []
        while listing.hasNext():
            name = str(listing.next().getPath().toString())
            if name.lower().endswith((".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")):
                names.append(name)
        if not names:
            raise ScreenError(f"{p}: no NDJSON files there")
        found.extend((n, n) for n in sorted(names))
    return found


def _place_deferred(classified: DataFrame, resources: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Deferred Provenances → (placed resource rows, error rows), as in screen/provenance.py."""
    deferred = classified.where(F.col("kind") == DEFERRED)
    exploded = deferred.select("file", "name", "line", "ref", "raw", F.posexplode("targets").alias("pos", "target"))
    owners = resources.select(F.col("ref").alias("target"), F.col("key").alias("owner"))
    candidate = F.coalesce(F.col("owner"), F.when(F.col("target").startswith("Patient/"), F.col("target")))
    picked = (
        exploded.join(owners, "target", "left")
        .withColumn("candidate", candidate)
        .where(F.col("candidate").isNotNull())
        .groupBy("file", "name", "line", "ref", "raw")
        .agg(F.min_by("candidate", "pos").alias("key"))
    )
    placed = picked.select("key", "ref", "file", "name", "line", "raw")
    unplaced = deferred.join(picked.select("file", "line"), ["file", "line"], "left_anti").select(
        F.lit(KIND_NO_PATIENT).alias("kind"),
        F.lit("CPR-F020").alias("code"),
        F.lit(NO_OWNER).alias("message"),
        F.col("name").alias("file"),
        "line",
        F.lit(None).cast("string").alias("patient"),
        F.col("ref").alias("resource"),
    )
    return placed, unplaced


def screen_spark(
    inputs: Sequence[str | Path],
    out: str | Path,
    spec: EngineSpec | None = None,
    *,
    now: datetime | None = None,
    fmt: str = "parquet",
    master: str | None = None,
    spark: SparkSession | None = None,
    fhir_version: str = "auto",
    overwrite: bool = False,
) -> ScreenSummary:
    """Screen a Bulk Data export on Spark.

    Args:
        inputs: NDJSON files or folders (local paths, or URIs Spark reads: ``hdfs://``, ``s3a://``…).
        out: the results folder: ``findings.<fmt>/`` and ``errors.ndjson/`` (part files) and
            ``summary.json``.
        spec: the rule packs and engine options (default: the bundled pack).
        now: the evaluation time (default: now).
        fmt: ``parquet`` (default), ``ndjson`` or ``csv``.
        master: the Spark master (``local[2]``, ``spark://host:7077``, ``yarn``); default: the
            active session, else ``local[*]``.
        spark: a session to use (its master wins).
        fhir_version: ``auto``, ``R4``, ``R4B`` or ``R5``.
        overwrite: replace the results of an earlier screen in ``out``.

    Returns:
        The summary (also written to ``out/summary.json``).

    Raises:
        ScreenError: ``out`` already holds results (without ``overwrite``), unknown format, no input.
        RuleLoadError: a rule pack does not load.
    """
    started = time.monotonic()
    if fmt not in FORMATS:
        raise ScreenError(f"unknown result format {fmt!r}; use one of {', '.join(FORMATS)}")
    spec = spec or EngineSpec()
    engine = spec.build()  # on the driver too: a pack that does not load fails before any Spark work
    moment = now or datetime.now(UTC).replace(microsecond=0)
    out_text = str(out)
    local_out = "://" not in out_text
    if local_out and Path(out_text).exists() and any(Path(out_text).iterdir()) and not overwrite:
        raise ScreenError(f"{out_text}: folder is not empty; give a new folder or pass --overwrite")
    session, owned = (spark, False) if spark is not None else _session(master)
    sc = session.sparkContext
    try:
        files = _inputs(session, inputs)
        names = [n for n, _ in files]
        numbered = _numbered_lines(sc, [path for _, path in files])
        wanted = frozenset(engine.ruleset.read_types)
        classified = session.createDataFrame(
            numbered.mapPartitions(functools.partial(_classify, wanted, names)), CLASSIFIED
        ).persist(StorageLevel.MEMORY_AND_DISK)
        # one pass over the classified lines: the counts, and the shared resources to broadcast
        shared_row = F.struct("ref", "file", "name", "line", "raw")
        counts = (
            classified.groupBy("kind", "ekind", "code")
            .agg(F.count("*").alias("count"), F.collect_list(F.when(F.col("kind") == SHARED, shared_row)).alias("s"))
            .collect()
        )
        kinds: Counter[str] = Counter()
        for r in counts:
            kinds[r["kind"]] += r["count"]
        broadcast = sc.broadcast(_shared([s for r in counts for s in r["s"]]))
        resources = classified.where(F.col("kind") == RESOURCE).select("key", "ref", "file", "name", "line", "raw")
        grouping_errors = classified.where(F.col("kind") == ERROR).select(
            F.col("ekind").alias("kind"),
            "code",
            "message",
            F.col("name").alias("file"),
            "line",
            F.lit(None).cast("string").alias("patient"),
            F.col("ref").alias("resource"),
        )
        unplaced = None
        if kinds.get(DEFERRED):
            placed, unplaced = _place_deferred(classified, resources)
            resources = resources.unionByName(placed)
            grouping_errors = grouping_errors.unionByName(unplaced)
        grouped = resources.groupBy("key").agg(F.collect_list(F.struct("file", "line", "name", "raw")).alias("lines"))
        evaluate = functools.partial(_evaluate, spec, iso(moment), fhir_version, broadcast)
        results = grouped.rdd.mapPartitions(evaluate).persist(StorageLevel.MEMORY_AND_DISK)
        findings = session.createDataFrame(
            results.filter(lambda kv: kv[0] == "f").map(lambda kv: _as_tuple(FINDING_COLUMNS, kv[1])), FINDINGS
        )
        evaluation_errors = session.createDataFrame(
            results.filter(lambda kv: kv[0] == "e").map(lambda kv: _as_tuple(ERROR_COLUMNS, kv[1])), ERRORS
        )
        errors = grouping_errors.unionByName(evaluation_errors)
        outputs = _write(findings, errors, out_text, fmt, "overwrite" if overwrite else "errorifexists")
        tally = Tally()
        for _, text in results.filter(lambda kv: kv[0] == "t").collect():
            tally.merge(Tally.from_json(json.loads(text)))
        tally.lines.update(kinds)
        for r in counts:
            if r["kind"] == ERROR:
                tally.errors_by_kind[r["ekind"]] += r["count"]
                tally.errors_by_code[r["code"]] += r["count"]
        if unplaced is not None:
            n = unplaced.count()
            tally.errors_by_kind.update({KIND_NO_PATIENT: n} if n else {})
            tally.errors_by_code.update({"CPR-F020": n} if n else {})
        summary = ScreenSummary("spark", iso(moment), engine.pack_versions, tally, outputs, time.monotonic() - started)
        _write_summary(session, out_text, local_out, summary)
        results.unpersist()
        classified.unpersist()
        return summary
    finally:
        if owned:
            session.stop()


def _shared(rows: list[Any]) -> dict[str, tuple[str, int, bytes]]:
    """The shared resources by ``Type/id``; of duplicates the first in input order wins, as locally."""
    shared: dict[str, tuple[str, int, bytes]] = {}
    for r in sorted(rows, key=lambda r: (r["file"], r["line"])):
        shared.setdefault(r["ref"], (r["name"], r["line"], r["raw"].encode("utf-8")))
    return shared


def _numbered_lines(sc: Any, paths: list[str]) -> Any:
    """Every line as ``(file index, line number, text)``, with one counting job for all files.

    ``zipWithIndex`` per file would run a job per file; instead the lines of each partition
    are counted once, and a partition's first line number follows from the counts of the
    partitions of its file before it (a union keeps each file's partitions together, in order).
    """
    rdds = [sc.textFile(p) for p in paths]
    sizes = [r.getNumPartitions() for r in rdds]
    union = sc.union(rdds)
    counts = union.mapPartitions(_count).collect()
    file_of = [i for i, n in enumerate(sizes) for _ in range(n)]
    first: list[int] = []
    for i in range(len(counts)):
        first.append(1 if i == 0 or file_of[i - 1] != file_of[i] else first[-1] + counts[i - 1])
    return union.mapPartitionsWithIndex(functools.partial(_number, file_of, first))


def _count(lines: Iterator[str]) -> Iterator[int]:
    yield sum(1 for _ in lines)


def _number(
    file_of: list[int], first: list[int], partition: int, lines: Iterator[str]
) -> Iterator[tuple[int, int, str]]:
    for n, text in enumerate(lines, start=first[partition]):
        yield file_of[partition], n, text


def _write(findings: DataFrame, errors: DataFrame, out: str, fmt: str, mode: str) -> dict[str, str]:
    target = f"{out.rstrip('/')}/findings.{fmt}"
    writer = findings.write.mode(mode)
    if fmt == "parquet":
        writer.parquet(target)
    elif fmt == "csv":
        flat = findings.select(
            [F.array_join(c, " ").alias(c) if c in LIST_COLUMNS else F.col(c) for c in FINDING_COLUMNS]
        )
        flat.write.mode(mode).option("header", True).csv(target)
    else:
        writer.json(target)
    error_target = f"{out.rstrip('/')}/errors.ndjson"
    errors.write.mode(mode).json(error_target)
    return {"findings": target, "errors": error_target, "summary": f"{out.rstrip('/')}/summary.json"}


def _write_summary(session: SparkSession, out: str, local: bool, summary: ScreenSummary) -> None:
    text = json.dumps(summary.to_json(), indent=1, sort_keys=True)
    if local:
        (Path(out) / "summary.json").write_text(text + "\n", encoding="utf-8")
    else:
        session.sparkContext.parallelize([text], 1).saveAsTextFile(f"{out.rstrip('/')}/summary.json")
