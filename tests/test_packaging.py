"""The wheel carries the bundled rule packs, so a plain ``pip install .`` finds them.

Builds the wheel once (about ten seconds); skipped with the reason when the build backend
cannot be fetched (an offline machine without hatchling).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.factories import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        if "No matching distribution found for hatchling" in proc.stderr or "Could not find a version" in proc.stderr:
            pytest.skip("hatchling (the build backend) cannot be fetched on this machine")
        pytest.fail(f"pip wheel failed:\n{proc.stderr[-2000:]}")
    (built,) = out.glob("careplan_rules-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_contains_every_bundled_pack_file(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    rules = ROOT / "rules"
    expected = {
        "careplan_rules/_bundled_rules/" + p.relative_to(rules).as_posix()
        for p in rules.rglob("*")
        if p.is_file() and p.suffix in (".yaml", ".tsv")
    }
    assert expected, "no pack files found in rules/"
    assert not expected - names, sorted(expected - names)[:5]
    assert "careplan_rules/py.typed" in names


def test_wheel_declares_the_command_and_the_pytest_plugin(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "careplan-rules = careplan_rules.cli.main:main" in text
    assert "[pytest11]" in text


def test_installed_layout_prefers_the_packaged_rules(tmp_path: Path, wheel: zipfile.ZipFile) -> None:
    # unpack the wheel somewhere without a source tree next to it and ask it for its packs
    wheel.extractall(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from careplan_rules.api import bundled_rules_dir; print(bundled_rules_dir())",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == tmp_path / "careplan_rules" / "_bundled_rules"
