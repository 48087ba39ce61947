"""Resuming an interrupted screen: nothing finished is redone, no finding is lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from careplan_rules.screen import ScreenError, ScreenOptions, screen_local, workers
from careplan_rules.screen import provenance as provenance_stage
from careplan_rules.temporal import parse_now
from tests.factories import NOW, kratom, patient, sertraline
from tests.screen.conftest import ExportFactory, population, read_rows, screen, spec, write_export

OUTPUTS = ("findings.ndjson", "errors.ndjson")


def _failing_after(n: int, real: Callable[..., Any]) -> Callable[..., Any]:
    calls = {"n": 0}

    def fake(*args: Any) -> Any:
        if calls["n"] >= n:
            raise RuntimeError("simulated crash")
        calls["n"] += 1
        return real(*args)

    return fake


def _counting(real: Callable[..., Any], seen: list[Any]) -> Callable[..., Any]:
    def fake(*args: Any) -> Any:
        seen.append(args)
        return real(*args)

    return fake


def _same_results(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_a_crash_while_evaluating_resumes_where_it_stopped(
    export: ExportFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = export(population())
    clean = screen(root, tmp_path / "clean")
    real = workers.evaluate_bucket
    monkeypatch.setattr(workers, "evaluate_bucket", _failing_after(5, real))
    with pytest.raises(RuntimeError, match="simulated crash"):
        screen(root, tmp_path / "out")
    assert not (tmp_path / "out" / "summary.json").exists()
    assert len(list((tmp_path / "out" / ".screen" / "results").glob("r*.ndjson"))) == 5
    seen: list[Any] = []
    monkeypatch.setattr(workers, "evaluate_bucket", _counting(real, seen))
    resumed = screen(root, tmp_path / "out")
    assert resumed.resumed
    assert len(seen) == 64 - 5  # the five committed buckets were not evaluated again
    _same_results(tmp_path / "clean", tmp_path / "out")
    assert resumed.tally.to_json() == clean.tally.to_json()
    assert not (tmp_path / "out" / ".screen").exists()


def test_a_crash_while_grouping_resumes(export: ExportFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = export(population())
    screen(root, tmp_path / "clean")
    real = workers.run_map_task
    monkeypatch.setattr(workers, "run_map_task", _failing_after(3, real))
    with pytest.raises(RuntimeError):
        screen(root, tmp_path / "out")
    seen: list[Any] = []
    monkeypatch.setattr(workers, "run_map_task", _counting(real, seen))
    screen(root, tmp_path / "out")
    assert len(seen) == 8 - 3  # eight files, one task each; three were committed
    _same_results(tmp_path / "clean", tmp_path / "out")


def test_a_crash_while_placing_provenances_redoes_that_stage(
    export: ExportFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = export(population())
    screen(root, tmp_path / "clean")
    real = provenance_stage._place

    def broken(*args: Any) -> None:
        real(*args)
        raise RuntimeError("simulated crash after writing")

    monkeypatch.setattr(provenance_stage, "_place", broken)
    with pytest.raises(RuntimeError):
        screen(root, tmp_path / "out")
    monkeypatch.setattr(provenance_stage, "_place", real)
    screen(root, tmp_path / "out")
    _same_results(tmp_path / "clean", tmp_path / "out")


def test_half_written_files_are_discarded(
    export: ExportFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = export(population())
    screen(root, tmp_path / "clean")
    monkeypatch.setattr(workers, "evaluate_bucket", _failing_after(0, workers.evaluate_bucket))
    with pytest.raises(RuntimeError):
        screen(root, tmp_path / "out")
    monkeypatch.undo()
    partial = workers.result_path(tmp_path / "out" / ".screen", 7).with_suffix(".ndjson.tmp")
    partial.write_text('{"f": {"patient": "Patient/ghost"}}\n')
    screen(root, tmp_path / "out")
    _same_results(tmp_path / "clean", tmp_path / "out")


def test_resuming_keeps_the_first_runs_now(
    export: ExportFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = export(population())
    monkeypatch.setattr(workers, "evaluate_bucket", _failing_after(2, workers.evaluate_bucket))
    with pytest.raises(RuntimeError):
        screen_local([root], tmp_path / "out", spec(), ScreenOptions(now=parse_now(NOW)))
    monkeypatch.undo()
    resumed = screen_local([root], tmp_path / "out", spec(), ScreenOptions())  # no --now: the first run's
    assert resumed.resumed and resumed.now == "2026-06-01T12:00:00+00:00"
    assert {r["now"] for r in read_rows(tmp_path / "out" / "findings.ndjson")} == {resumed.now}


def test_another_now_is_another_screen(export: ExportFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = export(population())
    monkeypatch.setattr(workers, "evaluate_bucket", _failing_after(2, workers.evaluate_bucket))
    with pytest.raises(RuntimeError):
        screen_local([root], tmp_path / "out", spec(), ScreenOptions(now=parse_now(NOW)))
    monkeypatch.undo()
    with pytest.raises(ScreenError, match="unfinished screen of other inputs, rules or --now"):
        screen_local([root], tmp_path / "out", spec(), ScreenOptions(now=parse_now("2027-01-01")))


def test_changed_inputs_are_not_resumed(export: ExportFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = export(population())
    monkeypatch.setattr(workers, "evaluate_bucket", _failing_after(2, workers.evaluate_bucket))
    with pytest.raises(RuntimeError):
        screen(root, tmp_path / "out")
    monkeypatch.undo()
    with open(root / "Patient.ndjson", "a") as handle:
        handle.write('{"resourceType": "Patient", "id": "p9"}\n')
    with pytest.raises(ScreenError, match="unfinished screen of other inputs"):
        screen(root, tmp_path / "out")
    fresh = screen(root, tmp_path / "out", overwrite=True)
    assert fresh.tally.patients == 5 and not fresh.resumed


@pytest.mark.slow
def test_a_killed_run_resumes_with_identical_results(tmp_path: Path) -> None:
    """SIGKILL the whole process group (main and workers) mid-run, then rerun the command."""
    people = []
    for i in range(240):
        people += [patient(f"p{i}"), kratom(f"k{i}", subject=f"Patient/p{i}")]
        if i % 2:
            people.append(sertraline(f"s{i}", subject=f"Patient/p{i}"))
    root = write_export(tmp_path / "export", {"all.ndjson": people})
    cmd = [
        sys.executable,
        "-m",
        "careplan_rules.cli.main",
        "screen",
        str(root),
        "--out",
        str(tmp_path / "out"),
        "--now",
        NOW,
        "--workers",
        "2",
        "--no-progress",
        "--rules",
        str(spec().rules[0]),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = tmp_path / "out" / ".screen" / "results"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(results.glob("r*.ndjson"))) < 3 and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(results.glob("r*.ndjson")))
    assert 0 < done_at_kill < 64, "the run was not interrupted midway"
    assert not (tmp_path / "out" / "summary.json").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    screen(root, tmp_path / "clean")
    _same_results(tmp_path / "clean", tmp_path / "out")
    rows = read_rows(tmp_path / "out" / "findings.ndjson")
    assert len(rows) == len({(r["patient"], r["rule"]) for r in rows})  # nothing twice
    assert {r["patient"] for r in rows if r["rule"] == "kratom-use"} == {f"Patient/p{i}" for i in range(240)}
