"""Population screening of FHIR Bulk Data exports (NDJSON): every patient, once, at scale.

    >>> from careplan_rules.screen import EngineSpec, ScreenOptions, screen_local
    >>> summary = screen_local(["export/"], "results/", EngineSpec(), ScreenOptions(workers=2))
    >>> summary.tally.patients, summary.tally.findings_by_rule

The local runner groups the export by patient on disk (a hash partition: grouping.py says
why), evaluates each patient once with one engine per worker process, and writes
``findings.<ndjson|csv|parquet>``, ``errors.ndjson`` and ``summary.json``; it resumes an
interrupted screen (checkpoint.py). ``careplan_rules.spark`` runs the same screen on Spark.
docs/screening.md is the guide.
"""

from __future__ import annotations

from careplan_rules.screen.errors import ScreenError
from careplan_rules.screen.rows import ERROR_COLUMNS, FINDING_COLUMNS, ErrorRow, FindingRow
from careplan_rules.screen.runner import ScreenOptions, screen_local
from careplan_rules.screen.spec import EngineSpec
from careplan_rules.screen.summary import ScreenSummary, Tally

__all__ = [
    "ERROR_COLUMNS",
    "FINDING_COLUMNS",
    "EngineSpec",
    "ErrorRow",
    "FindingRow",
    "ScreenError",
    "ScreenOptions",
    "ScreenSummary",
    "Tally",
    "screen_local",
]
