"""Counts of a screen, and the summary table printed at the end (also ``summary.json``).

Every count is derived from committed outputs (the grouping tasks' stats and the buckets'
result files), never from in-memory counters of a process that may have died, so a resumed
run reports the same numbers as an uninterrupted one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from careplan_rules.screen.rows import ErrorRow, FindingRow


@dataclass(slots=True)
class Tally:
    """Counts that add up across buckets, tasks and runners."""

    patients: int = 0
    patients_with_errors: int = 0
    patients_with_findings: int = 0
    resources: int = 0
    findings_by_rule: Counter[str] = field(default_factory=Counter)
    errors_by_code: Counter[str] = field(default_factory=Counter)
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    lines: Counter[str] = field(default_factory=Counter)  # input lines by kind (resource, skipped…)

    def add_patient(self, resources: int, findings: Iterable[FindingRow], errors: Iterable[ErrorRow]) -> None:
        self.patients += 1
        self.resources += resources
        rules = [f.rule for f in findings]
        self.findings_by_rule.update(rules)
        self.patients_with_findings += bool(rules)
        errs = list(errors)
        self.patients_with_errors += bool(errs)
        self.add_errors(errs)

    def add_errors(self, errors: Iterable[ErrorRow]) -> None:
        for e in errors:
            self.errors_by_code[e.code] += 1
            self.errors_by_kind[e.kind] += 1

    def merge(self, other: Tally) -> None:
        self.patients += other.patients
        self.patients_with_errors += other.patients_with_errors
        self.patients_with_findings += other.patients_with_findings
        self.resources += other.resources
        self.findings_by_rule.update(other.findings_by_rule)
        self.errors_by_code.update(other.errors_by_code)
        self.errors_by_kind.update(other.errors_by_kind)
        self.lines.update(other.lines)

    @property
    def findings(self) -> int:
        return sum(self.findings_by_rule.values())

    @property
    def errors(self) -> int:
        return sum(self.errors_by_code.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "patients": self.patients,
            "patients_with_errors": self.patients_with_errors,
            "patients_with_findings": self.patients_with_findings,
            "resources": self.resources,
            "findings": self.findings,
            "findings_by_rule": dict(sorted(self.findings_by_rule.items())),
            "errors": self.errors,
            "errors_by_code": dict(sorted(self.errors_by_code.items())),
            "errors_by_kind": dict(sorted(self.errors_by_kind.items())),
            "lines": dict(sorted(self.lines.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tally:
        return cls(
            data["patients"],
            data["patients_with_errors"],
            data["patients_with_findings"],
            data["resources"],
            Counter(data["findings_by_rule"]),
            Counter(data["errors_by_code"]),
            Counter(data["errors_by_kind"]),
            Counter(data.get("lines", {})),
        )


@dataclass(frozen=True, slots=True)
class ScreenSummary:
    """What a finished screen reports (``summary.json``)."""

    runner: str  # local | spark
    now: str
    packs: tuple[tuple[str, str], ...]
    tally: Tally
    outputs: Mapping[str, str]
    seconds: float
    resumed: bool = False
    stages: Mapping[str, float] = field(default_factory=dict)  # seconds per stage (this run)

    @property
    def patients_per_second(self) -> float:
        return self.tally.patients / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "now": self.now,
            "packs": [{"id": p, "version": v} for p, v in self.packs],
            **self.tally.to_json(),
            "outputs": dict(self.outputs),
            "seconds": round(self.seconds, 3),
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
            "resumed": self.resumed,
        }

    def render(self, console: Console) -> None:
        """Print the summary table (patients, findings by rule, errors)."""
        t = self.tally
        table = Table(show_header=True, header_style="bold")
        table.add_column(f"screen ({self.runner})")
        table.add_column("count", justify="right")
        table.add_row("now", self.now, end_section=True)
        table.add_row("patients", f"{t.patients:,}")
        table.add_row("  with findings", f"{t.patients_with_findings:,}")
        table.add_row("  not evaluated (errors)", f"{t.patients_with_errors:,}")
        table.add_row("resources read", f"{t.resources:,}")
        table.add_row("lines of types no rule reads", f"{t.lines.get('skipped', 0):,}")
        table.add_row("findings", f"{t.findings:,}", end_section=not t.findings_by_rule)
        for rule, n in sorted(t.findings_by_rule.items()):
            table.add_row(f"  {rule}", f"{n:,}")
        table.add_row("errors", f"{t.errors:,}", style="red" if t.errors else None)
        for code, n in sorted(t.errors_by_code.items()):
            table.add_row(f"  {code}", f"{n:,}", style="red")
        console.print(table)
        rate = f"{self.patients_per_second:,.0f} patients/s" if self.seconds else ""
        console.print(f"{self.seconds:,.1f} s{', ' + rate if rate else ''}{' (resumed run)' if self.resumed else ''}")
        for name, path in self.outputs.items():
            console.print(f"{name}: {path}")
