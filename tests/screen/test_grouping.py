"""Cutting files into tasks, and the on-disk hash partition."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from careplan_rules.errors import FhirInputError
from careplan_rules.screen.grouping import bucket_of
from careplan_rules.screen.inputs import expand_inputs, plan_tasks, read_lines
from careplan_rules.screen.shared import DictShared, referenced_shared, shared_refs


def test_tasks_cut_on_line_boundaries_and_cover_every_line(tmp_path: Path) -> None:
    lines = [f'{{"n": {i}, "pad": "{"x" * (i % 7)}"}}\n'.encode() for i in range(50)]
    (tmp_path / "a.ndjson").write_bytes(b"".join(lines))
    files = expand_inputs([tmp_path])
    tasks = plan_tasks(files, 64)
    assert len(tasks) > 5
    assert tasks[0].start == 0 and tasks[-1].end == files[0].size
    assert all(a.end == b.start for a, b in itertools.pairwise(tasks))
    assert [ln for t in tasks for ln in read_lines(files[0], t)] == lines


def test_a_file_without_final_newline_keeps_its_last_line(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_bytes(b'{"a": 1}\n{"b": 2}')
    files = expand_inputs([tmp_path / "a.ndjson"])
    assert list(read_lines(files[0], plan_tasks(files, 1 << 20)[0])) == [b'{"a": 1}\n', b'{"b": 2}']


def test_inputs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(FhirInputError, match="no such file"):
        expand_inputs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FhirInputError, match=r"no \.ndjson"):
        expand_inputs([tmp_path / "empty"])
    (tmp_path / "a.ndjson").write_text("{}\n")
    with pytest.raises(FhirInputError, match="given twice"):
        expand_inputs([tmp_path / "a.ndjson", tmp_path])


def test_buckets_are_stable_across_processes() -> None:
    # crc32, not hash(): a resumed run (a new process, a new hash seed) must find the same buckets
    assert bucket_of("Patient/p1", 64) == 26
    assert len({bucket_of(f"Patient/p{i}", 64) for i in range(1000)}) == 64


def test_shared_references_are_found_in_the_raw_line_and_followed() -> None:
    raw = b'{"medicationReference": {"reference": "Medication/m1"}, "performer": {"reference" : "Practitioner/d"}}'
    assert list(shared_refs(raw)) == ["Medication/m1", "Practitioner/d"]
    index = DictShared(
        {
            "Medication/m1": (
                "Medication.ndjson",
                3,
                b'{"ingredient": [{"itemReference": {"reference": "Substance/s"}}]}',
            ),
            "Substance/s": ("Substance.ndjson", 1, b'{"resourceType": "Substance", "id": "s"}'),
        }
    )
    found = referenced_shared([raw], index)
    assert [(s.ref, s.file, s.line) for s, _ in found] == [
        ("Medication/m1", "Medication.ndjson", 3),
        ("Substance/s", "Substance.ndjson", 1),
    ]
