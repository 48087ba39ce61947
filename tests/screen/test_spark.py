"""The Spark job gives the local runner's findings and errors (opt-in: ``pytest -m spark``).

They need pyspark (``pip install -e '.[spark]'``) and Java 17, and take minutes (a Spark
session on ``local[2]``), so a plain ``pytest`` skips them; run them with ``pytest -m spark``
(or set ``CAREPLAN_SPARK_TESTS=1``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from careplan_rules.temporal import parse_now
from tests.factories import NOW, kratom, med_request, patient
from tests.screen.conftest import ExportFactory, population, read_rows, screen, spec

pytestmark = pytest.mark.spark

if importlib.util.find_spec("pyspark") is None:
    pytest.skip("pyspark is not installed (pip install -e '.[spark]')", allow_module_level=True)
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Java is not installed (Spark needs Java 17)", allow_module_level=True)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="module")
def spark(request: pytest.FixtureRequest) -> Iterator[SparkSession]:
    selected = "spark" in (request.config.getoption("markexpr") or "").replace("not spark", "")
    if not selected and os.environ.get("CAREPLAN_SPARK_TESTS") != "1":
        pytest.skip("Spark tests are opt-in: pytest -m spark (or CAREPLAN_SPARK_TESTS=1)")
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("careplan-rules tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def messy() -> dict[str, list[Any]]:
    """population() plus every kind of problem the screen reports."""
    files = population()
    files["Patient.ndjson"] += [patient("p5"), "{broken", ""]
    orphan = kratom("k-orphan")
    del orphan["subject"]
    dangling = med_request("mr5", "x", subject="Patient/p5", medicationReference={"reference": "Medication/gone"})
    del dangling["medicationCodeableConcept"]
    files["MedicationStatement.001.ndjson"] += [orphan, kratom("k5", subject="Patient/p5")]
    files["MedicationRequest.ndjson"].append(dangling)
    files["Provenance.ndjson"].append(
        {
            "resourceType": "Provenance",
            "id": "lost",
            "target": [{"reference": "Condition/none"}],
            "recorded": "2026-05-01",
        }
    )
    return files


def as_set(rows: list[dict[str, Any]]) -> set[str]:
    return {json.dumps(r, sort_keys=True) for r in rows}


def spark_rows(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for part in sorted(folder.glob("part-*")) for line in part.read_text().splitlines()]


def test_spark_and_local_runners_agree(spark: SparkSession, export: ExportFactory, tmp_path: Path) -> None:
    root = export(messy())
    local = screen(root, tmp_path / "local")
    from careplan_rules.spark import screen_spark

    distributed = screen_spark([root], tmp_path / "spark", spec(), now=parse_now(NOW), fmt="ndjson", spark=spark)
    assert as_set(spark_rows(tmp_path / "spark" / "findings.ndjson")) == as_set(
        read_rows(tmp_path / "local" / "findings.ndjson")
    )
    # Spark's JSON writer leaves out null fields
    local_errors = [
        {k: v for k, v in e.items() if v is not None} for e in read_rows(tmp_path / "local" / "errors.ndjson")
    ]
    assert as_set(spark_rows(tmp_path / "spark" / "errors.ndjson")) == as_set(local_errors)
    assert {e["code"] for e in local_errors} == {"CPR-F005", "CPR-F020", "CPR-F030"}
    assert distributed.tally.to_json() == local.tally.to_json()
    assert json.loads((tmp_path / "spark" / "summary.json").read_text())["runner"] == "spark"


def test_spark_writes_parquet(spark: SparkSession, export: ExportFactory, tmp_path: Path) -> None:
    root = export(population())
    from careplan_rules.spark import screen_spark

    screen(root, tmp_path / "local")
    screen_spark([root], tmp_path / "spark", spec(), now=parse_now(NOW), spark=spark)
    rows = [r.asDict() for r in spark.read.parquet(str(tmp_path / "spark" / "findings.parquet")).collect()]
    assert as_set(rows) == as_set(read_rows(tmp_path / "local" / "findings.ndjson"))


def test_the_cli_runs_the_spark_job(spark: SparkSession, export: ExportFactory, tmp_path: Path) -> None:
    args = ["screen", str(export(population())), "--out", str(tmp_path / "res"), "--now", NOW]
    out = CliRunner().invoke(cli_group(), [*args, "--engine", "spark", "--format", "csv", "--rules", spec().rules[0]])
    assert out.exit_code == 0, out.output
    assert "screen (spark)" in out.stdout
    header = next((tmp_path / "res" / "findings.csv").glob("part-*.csv")).read_text().splitlines()[0]
    assert header.startswith("patient,rule,rule_version")


def cli_group() -> Any:
    from careplan_rules.cli.main import cli

    return cli
