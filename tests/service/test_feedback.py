"""Feedback: the spec's examples, validation, idempotency, concurrent writers, and the export."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from careplan_rules.cli.main import cli
from careplan_rules.service.store import FeedbackStore
from tests.factories import ROOT, external, read_json
from tests.service import feedback_writer
from tests.service.helpers import PV, Client, running, start

Body = Callable[..., dict[str, Any]]
FEEDBACK = f"/cds-services/{PV}/feedback"


@pytest.mark.parametrize(
    "example", ["feedback-accepted.json", "feedback-overridden-no-reason.json", "feedback-overridden-with-reason.json"]
)
def test_spec_feedback_examples_are_stored(client: Client, example: str) -> None:
    body = read_json(external("cds-hooks", "spec-2.0.1", example))
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "stored": 1, "duplicates": 0}
    again = client.post(FEEDBACK, json=body)  # clients may re-send: idempotent
    assert again.json() == {"received": 1, "stored": 0, "duplicates": 1}


@pytest.mark.parametrize(
    ("item", "where"),
    [
        (
            {"outcome": "accepted", "acceptedSuggestions": [{"id": "s"}], "outcomeTimestamp": "2026-01-01T00:00:00Z"},
            "feedback[0].card",
        ),
        ({"card": "c", "outcome": "ignored", "outcomeTimestamp": "2026-01-01T00:00:00Z"}, "feedback[0].outcome"),
        (
            {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"},
            "feedback[0].acceptedSuggestions",
        ),
        (
            {
                "card": "c",
                "outcome": "accepted",
                "acceptedSuggestions": [{}],
                "outcomeTimestamp": "2026-01-01T00:00:00Z",
            },
            "feedback[0].acceptedSuggestions[0].id",
        ),
        ({"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"}, "feedback[0].outcomeTimestamp"),
        (
            {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00"},
            "feedback[0].outcomeTimestamp",
        ),
        (
            {"card": "c", "outcome": "overridden", "overrideReason": {}, "outcomeTimestamp": "2026-01-01T00:00:00Z"},
            "feedback[0].overrideReason",
        ),
        (
            {
                "card": "c",
                "outcome": "overridden",
                "overrideReason": {"reason": {"system": "s"}},
                "outcomeTimestamp": "2026-01-01T00:00:00Z",
            },
            "feedback[0].overrideReason.reason",
        ),
        ("not an object", "feedback[0]"),
        ({"card": "c" * 257, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}, "feedback[0].card"),
        (
            {
                "card": "c",
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": "s" * 257}],
                "outcomeTimestamp": "2026-01-01T00:00:00Z",
            },
            "feedback[0].acceptedSuggestions[0].id",
        ),
    ],
)
def test_invalid_feedback_is_400(client: Client, item: Any, where: str) -> None:
    response = client.post(FEEDBACK, json={"feedback": [item]})
    assert response.status_code == 400
    assert where in {e for i in response.json()["issue"] for e in i.get("expression", [])}


def test_feedback_body_shape(client: Client) -> None:
    for body in ({}, {"feedback": []}, {"feedback": {"card": "c"}}, []):
        assert client.post(FEEDBACK, json=body).status_code == 400


def test_feedback_is_joined_to_the_issued_card(tmp_path: Path, pv_body: Body, pv_url: str) -> None:
    db = tmp_path / "feedback.sqlite3"
    with running(start(tmp_path)) as c:
        cards = c.post(pv_url, json=pv_body()).json()["cards"]
        card = next(x for x in cards if x["extension"]["org.careplan-rules.finding"]["rule"] == "kratom-serotonergic")
        accepted = {
            "card": card["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
            "outcomeTimestamp": "2026-06-01T12:05:00Z",
        }
        overridden = {
            "card": cards[-1]["uuid"],
            "outcome": "overridden",
            "overrideReason": {"reason": card["overrideReasons"][3], "userComment": "discussed with patient"},
            "outcomeTimestamp": "2026-06-01T12:06:00Z",
        }
        assert c.post(FEEDBACK, json={"feedback": [accepted, overridden]}).json()["stored"] == 2
    store = FeedbackStore(db, create=False)
    first, second = store.export()
    store.close()
    assert first["rule_id"] == "kratom-serotonergic" and first["rule_version"] == "1.0.0"
    assert first["user_id"] == "Practitioner/example" and first["hook"] == "patient-view"
    assert first["accepted_suggestions"] == [
        {"id": card["suggestions"][0]["uuid"], "label": card["suggestions"][0]["label"]}
    ]
    assert (
        second["override_reason_code"] == "risk-benefit-ratio"
        and second["override_comment"] == "discussed with patient"
    )
    with sqlite3.connect(db) as conn:
        stored = " ".join(str(v) for row in conn.execute("SELECT * FROM issued_cards") for v in row)
    assert "p1" not in stored.split() and "Kratom" not in stored  # no patient data in the store


def test_unknown_cards_are_still_stored(client: Client, tmp_path: Path) -> None:
    body = {
        "feedback": [{"card": "not-ours", "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00+02:00"}]
    }
    assert client.post(FEEDBACK, json=body).json()["stored"] == 1


def test_concurrent_writers_threads_and_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "fb.sqlite3")
    FeedbackStore(path).close()
    threads = [threading.Thread(target=feedback_writer.write, args=(path, w, 40)) for w in range(4)]
    module = "tests.service.feedback_writer"  # the same writer, as separate processes
    processes = [subprocess.Popen([sys.executable, "-m", module, path, str(10 + w), "40"], cwd=ROOT) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    store = FeedbackStore(path, create=False)
    assert len(store.export()) == 6 * 40
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM issued_cards").fetchone()[0] == 6 * 40
    store.close()


def test_export_csv_and_json(client: Client, tmp_path: Path) -> None:
    body = read_json(external("cds-hooks", "spec-2.0.1", "feedback-overridden-with-reason.json"))
    client.post(FEEDBACK, json=body)
    db = str(tmp_path / "feedback.sqlite3")
    runner = CliRunner()
    out = runner.invoke(cli, ["feedback", "export", "--db", db, "--format", "csv"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert rows[0]["card_uuid"] == "9368d37b-283f-44a0-93ea-547cebab93ed"
    assert rows[0]["override_reason_code"] == "d7ecf885" and rows[0]["outcome"] == "overridden"
    out = runner.invoke(cli, ["feedback", "export", "--db", db, "--format", "json", "--since", "2000-01-01"])
    assert json.loads(out.stdout)["feedback"][0]["override_comment"] == "A comment entered by the clinician."
    out = runner.invoke(cli, ["feedback", "export", "--db", db, "--since", "2999-01-01"])
    assert out.stdout.strip().count("\n") == 0  # the header only


def test_export_takes_the_database_from_the_config(client: Client, tmp_path: Path) -> None:
    config = tmp_path / "service.yaml"
    config.write_text("feedback:\n  database: feedback.sqlite3\n")
    out = CliRunner().invoke(cli, ["feedback", "export", "--config", str(config), "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == {"feedback": []}


def test_export_errors_are_one_line(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["feedback", "export", "--db", str(tmp_path / "none.sqlite3")])
    assert out.exit_code == 2
    assert out.stderr.strip().endswith("no feedback database here (the service creates it when it starts)")
    assert "error CPR-S002" in out.stderr and "Traceback" not in out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("feedback: [1\n")
    out = CliRunner().invoke(cli, ["feedback", "export", "--config", str(bad)])
    assert out.exit_code == 2 and "malformed YAML" in out.stderr
