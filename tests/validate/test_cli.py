"""``careplan-rules validate`` from the command line: inputs, formats, exit codes, progress, docs."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from careplan_rules.cli.main import cli
from careplan_rules.cli.validate import want_progress
from careplan_rules.validate.codes import CODES
from tests.factories import ROOT, bundle, kratom, patient, sertraline

NOW = "2026-06-01T12:00:00Z"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def ndjson(path: Path, *resources: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")
    return path


def validate(runner: CliRunner, *args: str, stdin: str | None = None) -> Any:
    return runner.invoke(cli, ["validate", *args, "--now", NOW], input=stdin)


def test_valid_bundle_exits_0_with_a_summary(runner: CliRunner, tmp_path: Path) -> None:
    f = write(tmp_path / "ok.json", bundle(patient(), kratom(), sertraline()))
    out = validate(runner, str(f))
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("\nvalid: 1 file(s), 3 resource(s)")
    assert out.stderr == ""


def test_invalid_bundle_exits_1_and_json_names_code_and_path(runner: CliRunner, tmp_path: Path) -> None:
    f = write(tmp_path / "bad.json", bundle(patient(), sertraline(status="bogus")))
    assert validate(runner, str(f)).exit_code == 1
    out = validate(runner, str(f), "--format", "json")
    assert out.exit_code == 1
    doc = json.loads(out.stdout)
    assert set(doc) == {"tool", "now", "fhirVersion", "checks", "diagnostics", "summary"}
    (d,) = doc["diagnostics"]
    assert d["code"] == "CPR-V101" and d["severity"] == "error"
    assert d["path"] == "Bundle.entry[1].resource.status" and d["location"] == {"file": str(f)}
    summary = doc["summary"]
    assert summary["valid"] is False and summary["errors"] == 1 and summary["resources"] == 2
    assert summary["byCode"] == {"CPR-V101": {"severity": "error", "count": 1}}
    assert summary["inputs"][0] | {"bytes": 0} == {
        "source": str(f),
        "kind": "bundle",
        "fhirVersion": "R4",
        "resources": 2,
        "bytes": 0,
        "errors": 1,
        "warnings": 0,
        "information": 0,
    }


def test_warnings_fail_only_with_fail_on_warning(runner: CliRunner, tmp_path: Path) -> None:
    f = write(tmp_path / "w.json", bundle(patient(), sertraline(requester={"reference": "Practitioner/dr1"})))
    out = validate(runner, str(f))
    assert out.exit_code == 0 and "warning CPR-V201" in out.stdout
    assert validate(runner, str(f), "--fail-on", "warning").exit_code == 1
    ignored = validate(runner, str(f), "--fail-on", "warning", "--ignore", "V201")
    assert ignored.exit_code == 0 and "CPR-V201" not in ignored.stdout and "1 ignored" in ignored.stdout


def test_unknown_ignore_code_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    f = write(tmp_path / "ok.json", bundle(patient()))
    out = validate(runner, str(f), "--ignore", "CPR-V999")
    assert out.exit_code == 2 and "unknown code 'CPR-V999'" in out.output


def test_malformed_json_exits_2_with_line_and_column_and_others_are_still_checked(
    runner: CliRunner, tmp_path: Path
) -> None:
    bad = tmp_path / "a-bad.json"
    bad.write_text('{"resourceType": "Bundle",\n "entry": [}\n', encoding="utf-8")
    other = write(tmp_path / "b-other.json", bundle(patient(), sertraline(status="bogus")))
    out = validate(runner, str(tmp_path))
    assert out.exit_code == 2
    assert f"{bad}:2:12: error CPR-F005: malformed JSON" in out.stderr
    assert f"{other}: error CPR-V101" in out.stdout
    assert "Traceback" not in out.output


def test_missing_path_is_reported_and_the_rest_checked(runner: CliRunner, tmp_path: Path) -> None:
    f = write(tmp_path / "ok.json", bundle(patient()))
    out = validate(runner, "no-such.json", str(f))
    assert out.exit_code == 2
    assert "no-such.json: error CPR-F002: no such file or directory" in out.stderr
    assert "1 file(s), 1 resource(s)" in out.stdout


def test_ndjson_file_with_a_bad_line(runner: CliRunner, tmp_path: Path) -> None:
    f = ndjson(tmp_path / "MedicationRequest.ndjson", patient(), sertraline(status="bogus"))
    with f.open("a", encoding="utf-8") as handle:
        handle.write('{"resourceType": "Patient", "id": }\n')
    out = validate(runner, str(f), "--format", "json")
    assert out.exit_code == 2
    assert f"{f}:3:35: error CPR-F005: malformed JSON" in out.stderr
    doc = json.loads(out.stdout)
    found = {(d["code"], d["location"].get("line")) for d in doc["diagnostics"]}
    assert found == {("CPR-V101", 2), ("CPR-F005", 3)}
    assert doc["summary"]["inputs"][0]["kind"] == "ndjson" and doc["summary"]["resources"] == 2


def test_directories_recurse_over_json_and_ndjson_only(runner: CliRunner, tmp_path: Path) -> None:
    write(tmp_path / "a" / "one.json", bundle(patient()))
    ndjson(tmp_path / "a" / "b" / "two.ndjson", patient("p2"))
    (tmp_path / "a" / "notes.txt").write_text("not FHIR")
    out = validate(runner, str(tmp_path / "a"), "--format", "json")
    assert out.exit_code == 0
    sources = [i["source"] for i in json.loads(out.stdout)["summary"]["inputs"]]
    assert sources == [str(tmp_path / "a" / "b" / "two.ndjson"), str(tmp_path / "a" / "one.json")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert validate(runner, str(empty)).exit_code == 2


def test_gzipped_export_files_are_read(runner: CliRunner, tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    lines = "".join(json.dumps(r) + "\n" for r in (patient(), sertraline(status="bogus")))
    (export / "Mixed.ndjson.gz").write_bytes(gzip.compress(lines.encode()))
    (export / "Bundle.json.gz").write_bytes(gzip.compress(json.dumps(bundle(patient("p2"))).encode()))
    (export / "broken.ndjson.gz").write_bytes(b"not gzip")
    out = validate(runner, str(export), "--format", "json")
    doc = json.loads(out.stdout)
    assert out.exit_code == 2 and "broken.ndjson.gz: error CPR-F002: cannot read file" in out.stderr
    assert [d["code"] for d in doc["diagnostics"] if d["code"] != "CPR-F002"] == ["CPR-V101"]
    assert doc["summary"]["resources"] == 3


def test_quoted_globs_expand_and_a_file_named_twice_is_read_once(runner: CliRunner, tmp_path: Path) -> None:
    write(tmp_path / "x1.json", bundle(patient()))
    write(tmp_path / "x2.json", bundle(patient("p2")))
    out = validate(runner, str(tmp_path / "x*.json"), str(tmp_path / "x1.json"), str(tmp_path))
    assert out.exit_code == 0 and "2 file(s)" in out.stdout
    none = validate(runner, str(tmp_path / "y*.json"))
    assert none.exit_code == 2 and "no file matches this pattern" in none.stderr


def test_stdin_pretty_json_one_line_bundle_and_ndjson(runner: CliRunner) -> None:
    pretty = json.dumps(bundle(patient(), sertraline(status="bogus")), indent=2)
    out = validate(runner, "-", "--format", "json", stdin=pretty)
    doc = json.loads(out.stdout)
    assert out.exit_code == 1 and doc["summary"]["inputs"][0]["source"] == "<stdin>"
    assert doc["summary"]["inputs"][0]["kind"] == "bundle"
    one_line = json.dumps(bundle(patient("p1"), patient("p2")))
    doc = json.loads(validate(runner, "-", "--format", "json", stdin=one_line).stdout)
    assert doc["summary"]["inputs"][0]["kind"] == "bundle"  # a document, so V308 applies
    assert [d["code"] for d in doc["diagnostics"]] == ["CPR-V308"]
    lines = "\n".join(json.dumps(r) for r in (patient(), kratom(), sertraline())) + "\n"
    doc = json.loads(validate(runner, "-", "--format", "json", stdin=lines).stdout)
    assert doc["summary"]["inputs"][0]["kind"] == "ndjson" and doc["summary"]["resources"] == 3
    assert doc["diagnostics"] == []


def test_release_options_and_a_one_line_release_problem(runner: CliRunner, tmp_path: Path) -> None:
    r5 = [kratom(f"k{i}", r5=True, status="recorded") for i in range(3)]
    f = write(tmp_path / "r5.json", bundle(patient(), *r5))
    assert validate(runner, str(f)).exit_code == 0
    out = validate(runner, str(f), "--fhir-version", "R4")
    assert out.exit_code == 1
    lines = [ln for ln in out.stdout.splitlines() if "CPR-V" in ln and ": error" in ln]
    assert len(lines) == 1 and "rerun with --fhir-version R5" in lines[0]
    assert validate(runner, str(f), "--fhir-version", "R5").exit_code == 0


def test_now_decides_what_is_in_the_future(runner: CliRunner, tmp_path: Path) -> None:
    f = write(tmp_path / "f.json", bundle(patient(), kratom(effective="2026-09-01")))
    assert "CPR-V306" in validate(runner, str(f)).stdout
    out = runner.invoke(cli, ["validate", str(f), "--now", "2027-01-01"])
    assert "CPR-V306" not in out.stdout
    bad = runner.invoke(cli, ["validate", str(f), "--now", "someday"])
    assert bad.exit_code == 2 and "--now" in bad.output


def test_output_file(runner: CliRunner, tmp_path: Path) -> None:
    f = write(tmp_path / "ok.json", bundle(patient()))
    report = tmp_path / "report.json"
    out = validate(runner, str(f), "--format", "json", "-o", str(report))
    assert out.exit_code == 0 and out.stdout == ""
    assert json.loads(report.read_text())["summary"]["valid"] is True


def test_no_progress_bar_when_stderr_is_not_a_terminal(runner: CliRunner, tmp_path: Path) -> None:
    for i in range(25):  # more than enough files to want a bar on a terminal
        write(tmp_path / f"b{i:02}.json", bundle(patient(f"p{i}")))
    out = validate(runner, str(tmp_path))
    assert out.exit_code == 0 and out.stderr == ""
    assert "25 file(s)" in out.stdout


def test_when_a_progress_bar_is_drawn() -> None:
    assert want_progress(25, 0, False, False, True)
    assert want_progress(1, 50_000_000, False, False, True)
    assert want_progress(1, 0, True, False, True)  # stdin: size unknown
    assert not want_progress(1, 1000, False, False, True)  # quick run
    assert not want_progress(25, 0, False, True, True)  # --no-progress
    assert not want_progress(25, 0, False, False, False)  # not a terminal


def test_internal_errors_are_one_line_with_exit_3(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from careplan_rules.validate.runner import Validator

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(Validator, "file", boom)
    f = write(tmp_path / "ok.json", bundle(patient()))
    out = validate(runner, str(f))
    assert out.exit_code == 3 and "internal error: RuntimeError: kaboom" in out.stderr
    assert "Traceback" not in out.output


def test_every_code_is_documented_with_its_severity() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text[text.index("## `validate`") :]
    documented = dict(re.findall(r"^\| (CPR-V\d{3}) \| (\w+) \|", section, flags=re.M))
    assert documented == {code: c.severity.label for code, c in CODES.items()}
