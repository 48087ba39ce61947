"""``careplan-rules explain``: why one rule fired or did not for one patient."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from careplan_rules.cli.evaluate import build_engine, expand_inputs, read_input, resolve_now
from careplan_rules.cli.main import EXIT_INPUT, CliExit, echo_error, guarded
from careplan_rules.diagnostics import did_you_mean
from careplan_rules.outputs.explain import explain


def _matched_line(m: dict[str, Any]) -> Text:
    parts = []
    for x in m.get("matches", []):
        piece = f"{x['matchedBy']} {x['matched']!r} → {x['concept']} in {x['valueSet']} [{x['field']}]"
        if x.get("unverified"):
            piece += " (unverified code)"
        parts.append(piece)
    if "finding" in m:
        f = m["finding"]
        parts.append(f"finding of {f['rule']} ({f['severity']}/{f['indicator']})")
    extra = ", ".join(f"{k} {m[k]}" for k in ("timing", "date", "value", "mmePerDay", "doseNote") if k in m)
    text = Text("+ ", style="green")
    text.append(m["resource"], style="bold")
    text.append(": " + "; ".join(parts) if parts else "")
    if extra:
        text.append(f" ({extra})", style="dim")
    if "note" in m:
        text.append(f" — {m['note']}", style="yellow")
    return text


def render_tree(data: dict[str, Any], console: Console) -> None:
    head = Text(f"{data['rule']}@{data['version']}  ", style="bold")
    if data["fired"]:
        head.append(f"FIRED  severity {data['severity']}, indicator {data['indicator']}", style="bold red")
    else:
        head.append("did not fire", style="bold green")
    tree = Tree(head)
    tree.add(Text(f"when {data['when']}", style="cyan"))
    for c in data["criteria"]:
        label = Text("✔ " if c["holds"] else "✘ ", style="green" if c["holds"] else "red")
        label.append(f"{c['name']} ", style="bold")
        label.append(f"({c['kind']})", style="dim")
        if c.get("description"):
            label.append(f" {c['description']}", style="dim")
        node = tree.add(label)
        for m in c["matched"]:
            node.add(_matched_line(m))
        for r in c["rejected"]:
            line = Text("- ", style="red")
            line.append(r["resource"])
            line.append(f": {r['reason']}", style="dim")
            node.add(line)
        if not c["matched"] and not c["rejected"]:
            node.add(Text("no candidate records in the input", style="dim"))
    if data.get("escalations"):
        esc = tree.add(Text("escalations", style="bold"))
        for e in data["escalations"]:
            grade = "/".join(x for x in (e.get("severity"), e.get("indicator")) if x)
            esc.add(Text(f"↑ {e['reason']}" + (f" → {grade}" if grade else "")))
    elif data["fired"]:
        tree.add(
            Text(f"no escalation: default {data['default']['severity']}/{data['default']['indicator']}", style="dim")
        )
    if "outputs" in data:
        out = tree.add(Text("outputs", style="bold"))
        out.add(f"summary: {data['outputs']['summary']}")
        out.add("implicated: " + ", ".join(data["outputs"]["implicated"]))
        if data["outputs"]["activities"]:
            out.add("care-plan activities: " + ", ".join(data["outputs"]["activities"]))
        out.add(f"DetectedIssue/{data['outputs']['detectedIssue']}")
    if data.get("otherPatients"):
        others = tree.add(Text("other patients' records (never considered for this patient)", style="bold"))
        for o in data["otherPatients"]:
            others.add(Text(f"{o['resource']} belongs to {o['patient']}", style="dim"))
    console.print(tree)


@click.command("explain")
@click.argument("path")
@click.option("--rule", "rule_id", required=True, help="The rule to explain.")
@click.option("--patient", help="The patient (e.g. Patient/p1) when the input holds several.")
@click.option("--now", help="Evaluation time, ISO-8601 (default: the current time).")
@click.option("--rules", multiple=True, type=click.Path(), help="Rule pack folder (repeatable). Default: bundled.")
@click.option("--param", "params", multiple=True, metavar="RULE.PARAM=VALUE", help="Override a rule parameter.")
@click.option("--fhir-version", type=click.Choice(["auto", "R4", "R4B", "R5"], case_sensitive=False), default="auto")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@guarded
def command(
    path: str,
    rule_id: str,
    patient: str | None,
    now: str | None,
    rules: tuple[str, ...],
    params: tuple[str, ...],
    fhir_version: str,
    fmt: str,
) -> None:
    """Explain, criterion by criterion, why RULE fired or did not for one patient in PATH."""
    moment = resolve_now(now)
    engine = build_engine(rules, params, include_draft=True)
    compiled = engine.ruleset.rule(rule_id)
    if compiled is None:
        guess = did_you_mean(rule_id, engine.rules)
        echo_error(
            f"error CPR-E015: no rule {rule_id!r} in the loaded packs"
            + (f" (did you mean {guess!r}?)" if guess else "")
        )
        raise CliExit(EXIT_INPUT)
    inputs = list(expand_inputs([path]))
    if len(inputs) != 1:
        echo_error(f"{path}: error CPR-F002: explain reads one file; {len(inputs)} found")
        raise CliExit(EXIT_INPUT)
    doc = read_input(*inputs[0])
    version = fhir_version.upper() if fhir_version != "auto" else "auto"
    prepared = engine.prepare_input(doc, fhir_version=version, trace=True)
    for diag in prepared.errors:
        echo_error(diag.render())
    if prepared.errors:
        raise CliExit(EXIT_INPUT)
    refs = [p.patient_ref for p in prepared.patients]
    if patient is None and len(refs) > 1:
        listed = ", ".join(refs)
        echo_error(
            f"{doc.source}: error CPR-F023: the input holds {len(refs)} patients ({listed}); choose one with --patient"
        )
        raise CliExit(EXIT_INPUT)
    chosen = next((p for p in prepared.patients if patient is None or p.patient_ref == patient), None)
    if chosen is None:
        echo_error(f"{doc.source}: error CPR-F023: no patient {patient!r} in the input (patients: {', '.join(refs)})")
        raise CliExit(EXIT_INPUT)
    if chosen.record is None:
        for diag in chosen.errors:
            echo_error(diag.render())
        raise CliExit(EXIT_INPUT)
    result = engine.evaluate_record(chosen.record, moment, trace=True)
    for diag in result.errors:
        echo_error(diag.render())
    if result.errors:
        raise CliExit(EXIT_INPUT)
    outcome = next(o for o in result.outcomes if o.rule_id == rule_id)
    others = [
        (ref, p.patient_ref)
        for p in prepared.patients
        if p is not chosen and p.record is not None
        for ref in sorted(p.record.resource_refs)
    ]
    data = explain(compiled, outcome, result.finding(rule_id), others)
    data["patient"] = chosen.patient_ref
    data["now"] = moment.isoformat()
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        render_tree(data, Console())
