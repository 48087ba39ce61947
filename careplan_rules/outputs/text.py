"""A readable terminal report of evaluation results (``--format text``)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from careplan_rules.findings import PatientResult

_INDICATOR_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def render_text(results: Iterable[PatientResult], console: Console, now: str) -> None:
    results = list(results)
    console.print(Text(f"careplan-rules evaluation as of {now}", style="bold"))
    total = 0
    for result in results:
        title = f"{result.source}  {result.patient or '(no patient)'}"
        if result.fhir_version:
            title += f"  [{result.fhir_version}]"
        console.print()
        console.print(Text(title, style="bold underline"))
        for err in result.errors:
            console.print(Text(f"  error {err.code}: {err.message}", style="bold red"))
        if result.errors:
            console.print(Text("  The rules could not be evaluated for this patient.", style="red"))
            continue
        if not result.findings:
            console.print("  No findings.")
            continue
        table = Table(show_header=True, header_style="bold", expand=False, pad_edge=False)
        table.add_column("indicator")
        table.add_column("severity")
        table.add_column("rule", no_wrap=True, min_width=max(len(f.rule) for f in result.findings))
        table.add_column("summary", overflow="fold")
        table.add_column("implicated", overflow="fold")
        for f in result.findings:
            total += 1
            table.add_row(
                Text(f.indicator, style=_INDICATOR_STYLE.get(f.indicator, "")),
                f.severity,
                f.rule,
                f.summary + ("".join(f"\n  ↑ {e.reason}" for e in f.escalations)),
                "\n".join(f.implicated),
            )
        console.print(table)
        if result.care_plan is not None:
            activities = result.care_plan.get("activity") or []
            console.print(
                f"  Proposed care plan (draft): {len(activities)} activit{'y' if len(activities) == 1 else 'ies'}"
            )
    console.print()
    console.print(f"{len(results)} result(s), {total} finding(s).")
