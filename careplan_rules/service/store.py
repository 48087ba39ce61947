"""The feedback store: SQLite in WAL mode, safe for several workers writing at once.

Three tables:

* ``issued_cards``: one row per card the service returned (card UUID, rule, hook, user,
  client), so feedback, which names only the card UUID, can be tied to the rule and the user.
  No patient data is stored: not the patient id, not the card text.
* ``feedback``: one row per distinct feedback item, with the issued card's fields copied in,
  which is what ONC HTI-1's feedback-loop export needs (intervention, action taken, feedback,
  user, date). The primary key is a hash of the item, so a client that re-sends the same
  feedback (allowed by CDS Hooks) does not create duplicates.
* ``seen_jti``: the JWT replay cache, shared by all worker processes.

Concurrency: WAL lets readers run beside one writer; ``busy_timeout`` makes concurrent writers
wait instead of failing. Feedback is written with ``synchronous=FULL`` (durable once answered);
issued cards and jti rows, which can be rebuilt or are short-lived, with ``NORMAL``. This module
uses only the standard library, so ``careplan-rules feedback export`` runs without the
``[service]`` extra.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS issued_cards (
    card_uuid TEXT PRIMARY KEY,
    issued_at TEXT NOT NULL,
    service_id TEXT NOT NULL,
    hook TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    rule_id TEXT,
    rule_version TEXT,
    pack_id TEXT,
    pack_version TEXT,
    indicator TEXT NOT NULL,
    user_id TEXT,
    client_iss TEXT,
    tenant TEXT,
    suggestions TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS issued_cards_at ON issued_cards (issued_at);
CREATE TABLE IF NOT EXISTS feedback (
    feedback_id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    outcome_timestamp TEXT NOT NULL,
    service_id TEXT NOT NULL,
    card_uuid TEXT NOT NULL,
    outcome TEXT NOT NULL,
    accepted_suggestions TEXT NOT NULL,
    override_reason_system TEXT,
    override_reason_code TEXT,
    override_reason_display TEXT,
    override_comment TEXT,
    hook TEXT,
    hook_instance TEXT,
    rule_id TEXT,
    rule_version TEXT,
    pack_id TEXT,
    pack_version TEXT,
    indicator TEXT,
    user_id TEXT,
    client_iss TEXT,
    tenant TEXT
);
CREATE INDEX IF NOT EXISTS feedback_received ON feedback (received_at);
CREATE TABLE IF NOT EXISTS seen_jti (
    iss TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (iss, jti)
);
CREATE INDEX IF NOT EXISTS seen_jti_expiry ON seen_jti (expires_at);
"""
PURGE_EVERY_SECONDS = 60.0
EXPORT_COLUMNS = (
    "received_at",
    "outcome_timestamp",
    "service_id",
    "hook",
    "card_uuid",
    "rule_id",
    "rule_version",
    "pack_id",
    "pack_version",
    "indicator",
    "outcome",
    "accepted_suggestions",
    "override_reason_system",
    "override_reason_code",
    "override_reason_display",
    "override_comment",
    "user_id",
    "client_iss",
    "tenant",
    "hook_instance",
)


class StoreError(Exception):
    """The feedback database cannot be opened or used; the message names the file, not data."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IssuedCard:
    card_uuid: str
    service_id: str
    hook: str
    hook_instance: str
    indicator: str
    rule_id: str | None = None
    rule_version: str | None = None
    pack_id: str | None = None
    pack_version: str | None = None
    user_id: str | None = None
    client_iss: str | None = None
    tenant: str | None = None
    suggestions: tuple[tuple[str, str], ...] = ()  # (uuid, label)


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    card_uuid: str
    outcome: str  # accepted | overridden
    outcome_timestamp: str
    accepted_suggestions: tuple[str, ...] = ()
    override_reason_system: str | None = None
    override_reason_code: str | None = None
    override_reason_display: str | None = None
    override_comment: str | None = None

    def key(self, service_id: str) -> str:
        """Idempotency key: the same feedback about the same card gives the same key."""
        canonical = json.dumps([service_id, asdict(self)], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class FeedbackStore:
    """Thread-safe access to one SQLite file (one connection per thread and durability mode)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._last_purge = 0.0
        if not create and not self.path.is_file():
            raise StoreError(self.path, "no feedback database here (the service creates it when it starts)")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connection(durable=True) as conn:
                if create:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.executescript(_SCHEMA)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                else:
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version != SCHEMA_VERSION:
                        raise StoreError(
                            self.path, f"not a careplan-rules feedback database (schema version {version})"
                        )
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"cannot open the feedback database ({exc})") from None

    @contextmanager
    def _connection(self, *, durable: bool) -> Iterator[sqlite3.Connection]:
        attr = "durable" if durable else "fast"
        conn: sqlite3.Connection | None = getattr(self._local, attr, None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            setattr(self._local, attr, conn)
            with self._lock:
                self._all.append(conn)
        yield conn

    def record_cards(self, cards: Sequence[IssuedCard], *, retention_days: int = 90) -> None:
        """Remember issued cards (a retried call re-sends the same UUIDs: ignored)."""
        if not cards:
            return
        now = _now()
        rows = [
            (
                c.card_uuid,
                now,
                c.service_id,
                c.hook,
                c.hook_instance,
                c.rule_id,
                c.rule_version,
                c.pack_id,
                c.pack_version,
                c.indicator,
                c.user_id,
                c.client_iss,
                c.tenant,
                json.dumps([{"uuid": u, "label": label} for u, label in c.suggestions]),
            )
            for c in cards
        ]
        cutoff = (datetime.now(UTC) - timedelta(days=retention_days)).isoformat(timespec="milliseconds")
        with self._connection(durable=False) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR IGNORE INTO issued_cards VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                conn.execute("DELETE FROM issued_cards WHERE issued_at < ?", (cutoff,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def record_feedback(
        self, service_id: str, items: Sequence[FeedbackItem], *, client_iss: str | None, tenant: str | None
    ) -> tuple[int, int]:
        """Store feedback durably; returns (new rows, duplicates ignored)."""
        now = _now()
        new = 0
        with self._connection(durable=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for item in items:
                    card = conn.execute(
                        "SELECT hook, hook_instance, rule_id, rule_version, pack_id, pack_version, indicator, "
                        "user_id, client_iss, tenant, suggestions FROM issued_cards WHERE card_uuid = ?",
                        (item.card_uuid,),
                    ).fetchone()
                    issued = card or (None,) * 10 + ("[]",)
                    labels = {s["uuid"]: s["label"] for s in json.loads(issued[10])}
                    accepted = [{"id": s, "label": labels.get(s)} for s in item.accepted_suggestions]
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO feedback VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            item.key(service_id),
                            now,
                            item.outcome_timestamp,
                            service_id,
                            item.card_uuid,
                            item.outcome,
                            json.dumps(accepted),
                            item.override_reason_system,
                            item.override_reason_code,
                            item.override_reason_display,
                            item.override_comment,
                            *issued[:7],
                            issued[7],
                            issued[8] or client_iss,
                            issued[9] or tenant,
                        ),
                    )
                    new += cursor.rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return new, len(items) - new

    def seen_jti(self, iss: str, jti: str, expires_at: float, now: float) -> bool:
        """Record a JWT id; True when it was already seen (a replay)."""
        purge = now - self._last_purge > PURGE_EVERY_SECONDS
        if purge:
            self._last_purge = now
        with self._connection(durable=False) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if purge:
                    conn.execute("DELETE FROM seen_jti WHERE expires_at < ?", (now,))
                    # an expired row of the same jti must not count as a replay
                conn.execute("DELETE FROM seen_jti WHERE iss = ? AND jti = ? AND expires_at < ?", (iss, jti, now))
                cursor = conn.execute("INSERT OR IGNORE INTO seen_jti VALUES (?,?,?)", (iss, jti, expires_at))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return cursor.rowcount == 0

    def export(self, since: str | None = None) -> list[dict[str, Any]]:
        """Feedback rows, oldest first (``accepted_suggestions`` decoded)."""
        sql = f"SELECT {', '.join(EXPORT_COLUMNS)} FROM feedback"
        args: tuple[str, ...] = ()
        if since:
            sql += " WHERE received_at >= ?"
            args = (since,)
        sql += " ORDER BY received_at, feedback_id"
        with self._connection(durable=True) as conn:
            rows = conn.execute(sql, args).fetchall()
        out = []
        for row in rows:
            record = dict(zip(EXPORT_COLUMNS, row, strict=True))
            record["accepted_suggestions"] = json.loads(record["accepted_suggestions"])
            out.append(record)
        return out

    def close(self) -> None:
        """Close every connection this store opened, in any thread."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
