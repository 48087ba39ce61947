"""``careplan-rules screen``: options, summary, exit codes, one-line errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from careplan_rules.cli.main import cli
from tests.factories import NOW
from tests.screen.conftest import ExportFactory, population, read_rows, spec


def run(*args: str) -> Any:
    rules = ["--rules", spec().rules[0]]
    return CliRunner().invoke(cli, ["screen", *args, "--now", NOW, "--workers", "1", *rules])


def test_screen_writes_results_and_prints_the_summary(export: ExportFactory, tmp_path: Path) -> None:
    out = run(str(export(population())), "--out", str(tmp_path / "res"))
    assert out.exit_code == 0, out.output
    assert "patients" in out.stdout and "kratom-serotonergic" in out.stdout
    assert read_rows(tmp_path / "res" / "findings.ndjson")
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert summary["patients"] == 4 and summary["errors"] == 0 and summary["runner"] == "local"


def test_errors_give_exit_2_and_point_to_the_error_file(export: ExportFactory, tmp_path: Path) -> None:
    files = population()
    files["Patient.ndjson"].append("{not json")
    out = run(str(export(files)), "--out", str(tmp_path / "res"))
    assert out.exit_code == 2
    assert out.stderr.strip().endswith(f"see {tmp_path / 'res' / 'errors.ndjson'}")
    assert "1 errors (0 patients not evaluated)" in out.stderr
    assert read_rows(tmp_path / "res" / "findings.ndjson")  # the rest was screened


def test_one_line_errors(export: ExportFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(export(population()))
    missing = run(str(tmp_path / "nope"), "--out", str(tmp_path / "res"))
    assert missing.exit_code == 2 and "no such file or directory" in missing.stderr
    assert "Traceback" not in missing.output
    master = run(root, "--out", str(tmp_path / "res"), "--master", "local[2]")
    assert master.exit_code == 2 and "--master needs --engine spark" in master.output
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("pyarrow", "pyspark") else real(name, *a)
    )
    parquet = run(root, "--out", str(tmp_path / "res"), "--format", "parquet")
    assert parquet.exit_code == 2 and len(parquet.stderr.strip().splitlines()) == 1
    assert "--format parquet needs pyarrow" in parquet.stderr
    spark = run(root, "--out", str(tmp_path / "res"), "--engine", "spark")
    assert spark.exit_code == 2 and "--engine spark needs pyspark" in spark.stderr


def test_a_finished_screen_needs_overwrite(export: ExportFactory, tmp_path: Path) -> None:
    root = str(export(population()))
    assert run(root, "--out", str(tmp_path / "res")).exit_code == 0
    again = run(root, "--out", str(tmp_path / "res"))
    assert again.exit_code == 2 and "holds a finished screen" in again.stderr
    assert run(root, "--out", str(tmp_path / "res"), "--overwrite", "--format", "csv").exit_code == 0
    assert (tmp_path / "res" / "findings.csv").exists() and not (tmp_path / "res" / "findings.ndjson").exists()


def test_the_progress_bar_can_be_forced(export: ExportFactory, tmp_path: Path) -> None:
    out = run(str(export(population())), "--out", str(tmp_path / "res"), "--progress")
    assert out.exit_code == 0, out.output
    assert "screening" in out.stderr and "patients" in out.stderr
