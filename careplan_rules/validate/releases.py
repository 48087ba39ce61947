"""Which FHIR release an input is, and one sentence when it is not the one asked for.

With ``--fhir-version auto`` each resource is read with the release its own shape shows
(:func:`careplan_rules.fhir.version.signals`), else with the release the input has shown so
far (R4 until something says otherwise). A resource that only another release accepts counts
as evidence for that release. An input with evidence for both R4 and R5 is reported once
(CPR-V005), as the evaluate command would refuse it.

With a forced release, resources that only another release accepts are not listed problem by
problem: the first one is reported with the count of the others (CPR-V003 for R4↔R5,
CPR-V004 for STU3/DSTU2, which careplan-rules does not read at all).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.fhir.reader import Entry
from careplan_rules.fhir.version import signals
from careplan_rules.validate.codes import diag
from careplan_rules.validate.structure import ReleaseHint, label


@dataclass(slots=True)
class _Seen:
    path: str
    location: SourceLocation
    reason: str
    count: int = 1


class ReleaseTracker:
    """Release decisions and release problems of one unit (a document or an NDJSON export)."""

    def __init__(self, fhir_version: str) -> None:
        """Args: fhir_version: ``auto``, ``R4``, ``R4B`` or ``R5``."""
        self.forced = None if fhir_version == "auto" else fhir_version
        self.evidence: dict[str, tuple[str, str, SourceLocation]] = {}  # release -> (why, where, location)
        self.hints: dict[str, _Seen] = {}

    @property
    def current(self) -> str:
        """The release to read a resource with when it shows none itself."""
        if self.forced:
            return self.forced
        if "R4" in self.evidence or "R5" not in self.evidence:
            return "R4"
        return "R5"

    def prime(self, entries: Iterable[Entry], location: SourceLocation) -> None:
        """Look at a whole document first, so resources without a signal get its release."""
        if self.forced:
            return
        for entry in entries:
            for sig in signals(entry):
                self.evidence.setdefault(sig.version, (sig.why, sig.where, location))
            if len(self.evidence) == 2:
                return

    def release_for(self, entry: Entry, location: SourceLocation) -> str:
        """The release whose models to validate ``entry`` with."""
        if self.forced:
            return self.forced
        own: str | None = None
        for sig in signals(entry):
            self.evidence.setdefault(sig.version, (sig.why, sig.where, location))
            own = own or sig.version
        return own or self.current

    def on_hint(self, hint: ReleaseHint, path: str, location: SourceLocation) -> None:
        """Record a resource that only another release accepts."""
        if hint.release in ("R4", "R5") and not self.forced:
            self.evidence.setdefault(hint.release, (hint.reason, path, location))
            return
        seen = self.hints.get(hint.release)
        if seen is None:
            self.hints[hint.release] = _Seen(path, location, hint.reason)
        else:
            seen.count += 1

    def finish(self) -> list[Diagnostic]:
        """The release problems of the unit, one diagnostic each."""
        out: list[Diagnostic] = []
        if not self.forced and "R4" in self.evidence and "R5" in self.evidence:
            r4_why, r4_where, _ = self.evidence["R4"]
            r5_why, r5_where, r5_location = self.evidence["R5"]
            out.append(
                diag(
                    "CPR-V005",
                    f"input mixes FHIR releases: R4 shape ({r4_why} at {r4_where}) and R5 shape "
                    f"({r5_why} at {r5_where}); fix the data or force one with --fhir-version",
                    r5_location,
                )
            )
        for release, seen in self.hints.items():
            more = f"; {seen.count - 1} more resource(s) of this input look the same" if seen.count > 1 else ""
            if release in ("R4", "R5"):
                asked = label(self.forced or "R4")
                text = (
                    f"{seen.path}: looks like FHIR {release} data, not {asked}: {seen.reason}; "
                    f"rerun with --fhir-version {release}{more}"
                )
                out.append(diag("CPR-V003", text, seen.location, seen.path))
            else:
                text = (
                    f"{seen.path}: looks like FHIR {release} data: {seen.reason}; careplan-rules reads R4 and R5, "
                    f"so convert the data first{more}"
                )
                out.append(diag("CPR-V004", text, seen.location, seen.path))
        return out
