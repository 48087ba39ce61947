"""A feedback writer run both in threads and as separate processes by the store's concurrency test."""

from __future__ import annotations

import sys

from careplan_rules.service.store import FeedbackItem, FeedbackStore, IssuedCard


def write(path: str, worker: int, count: int) -> None:
    store = FeedbackStore(path)
    for i in range(count):
        item = FeedbackItem(f"card-{worker}-{i}", "overridden", "2026-01-01T00:00:00Z")
        store.record_feedback("svc", [item, item], client_iss=None, tenant=None)  # a duplicate each time
        store.record_cards([IssuedCard(f"card-{worker}-{i}", "svc", "patient-view", "h", "warning")])
    store.close()


if __name__ == "__main__":
    write(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
