"""The :class:`Engine` facade: the one door every face (library, CLI, service, screening) uses.

    >>> from careplan_rules import Engine
    >>> engine = Engine.default()                       # the bundled clinical pack
    >>> results = engine.evaluate("bundle.json", now="2026-06-01T12:00:00Z")
    >>> for patient in results:
    ...     for finding in patient.findings:
    ...         print(finding.indicator, finding.rule, finding.summary)

An engine is immutable once built: share one across threads and requests.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from careplan_rules._version import __version__
from careplan_rules.diagnostics import Diagnostic, SourceLocation, sort_diagnostics
from careplan_rules.engine.backend import Backend
from careplan_rules.engine.backends.python import PythonBackend
from careplan_rules.engine.compiler import RuleSet, compile_packs
from careplan_rules.errors import CarePlanRulesError, EvaluationError, FhirInputError, RuleLoadError
from careplan_rules.facts import PatientRecord
from careplan_rules.fhir.pipeline import PreparedInput, prepare
from careplan_rules.fhir.reader import FhirDocument, read_any
from careplan_rules.fhir.version import normalise_version
from careplan_rules.findings import Finding, PatientResult, SeverityLevel
from careplan_rules.loader.pack import Pack
from careplan_rules.loader.pack_loader import find_pack_roots, load_pack
from careplan_rules.model.rule import ParamValue
from careplan_rules.outputs.results import build_patient_result
from careplan_rules.temporal import iso, parse_now
from careplan_rules.terminology.mentions import TermIndex


def bundled_rules_dir() -> Path:
    """Where the bundled rule packs are: inside the installed package, or the source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_bundled_rules", here.parent / "rules"):
        if candidate.is_dir() and any(candidate.rglob("pack.yaml")):
            return candidate
    raise RuleLoadError(
        "the bundled rule packs are missing from this installation (expected "
        f"{here / '_bundled_rules'}); reinstall careplan-rules"
    )


def load_packs(paths: Sequence[str | Path]) -> list[Pack]:
    """Load every pack found under the given paths.

    Raises:
        RuleLoadError: when a path holds no pack or a pack has errors.
    """
    roots, problems = find_pack_roots(paths)
    if problems:
        raise RuleLoadError(problems[0].render(), problems)
    packs: list[Pack] = []
    errors: list[Diagnostic] = []
    for root in roots:
        try:
            packs.append(load_pack(root))
        except RuleLoadError as exc:
            errors.extend(exc.diagnostics)
    if errors:
        errs = sort_diagnostics(errors)
        count = sum(1 for d in errs if d.is_error)
        raise RuleLoadError(f"{errs[0].render()}" + (f" (and {count - 1} more)" if count > 1 else ""), errs)
    return packs


def _backend(backend: str | Backend) -> Backend:
    if not isinstance(backend, str):
        return backend
    if backend == "python":
        return PythonBackend()
    if backend == "durable":
        import importlib

        try:  # optional extra: careplan-rules[durable]
            module = importlib.import_module("careplan_rules.engine.backends.durable")
        except ModuleNotFoundError as exc:
            raise RuleLoadError(f"the durable backend is not available in this installation ({exc})") from None
        found: Backend = module.DurableBackend()
        return found
    raise ValueError(f"unknown backend {backend!r}; use 'python' or 'durable'")


@dataclass(frozen=True, slots=True)
class EvaluationResults:
    """The per-patient results of one :meth:`Engine.evaluate` call."""

    now: datetime
    packs: tuple[tuple[str, str], ...]
    patients: tuple[PatientResult, ...] = ()
    engine_version: str = __version__
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[PatientResult]:
        return iter(self.patients)

    def __len__(self) -> int:
        return len(self.patients)

    def __getitem__(self, index: int) -> PatientResult:
        return self.patients[index]

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for p in self.patients for f in p.findings)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(e for p in self.patients for e in p.errors)

    def patient(self, ref: str) -> PatientResult | None:
        return next((p for p in self.patients if p.patient == ref), None)

    def to_dict(self) -> dict[str, Any]:
        """The ``evaluate --format json`` document (contracts.md)."""
        return {
            "engine": {"name": "careplan-rules", "version": self.engine_version},
            "now": iso(self.now),
            "packs": [{"id": pid, "version": ver} for pid, ver in self.packs],
            "results": [p.to_dict() for p in self.patients],
        }

    def to_json(self, indent: int | None = 2) -> str:
        import json

        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


class Engine:
    """Rules compiled once; evaluation is a pure function of (data, now)."""

    def __init__(
        self,
        packs: Sequence[Pack],
        *,
        params: Mapping[str, Mapping[str, ParamValue]] | None = None,
        include_draft: bool = False,
        only: Sequence[str] | None = None,
        backend: str | Backend = "python",
    ) -> None:
        if not packs:
            raise RuleLoadError("no rule packs to load")
        self.packs: tuple[Pack, ...] = tuple(packs)
        self.ruleset: RuleSet = compile_packs(self.packs, params=params, include_draft=include_draft, only=only)
        self.backend: Backend = _backend(backend)
        prepare = getattr(self.backend, "prepare", None)
        if callable(prepare):  # a backend that compiles ahead (durable) rejects rules it cannot run here
            prepare(self.ruleset)
        self._read_types = self.ruleset.read_types
        self.terms = TermIndex(vs for registry in self.ruleset.registries.values() for vs in registry)

    @classmethod
    def default(cls, **kwargs: Any) -> Engine:
        """The engine with the bundled clinical pack(s)."""
        if not kwargs:
            return _default_engine()
        return cls.from_paths(bundled_rules_dir(), **kwargs)

    @classmethod
    def from_paths(cls, *paths: str | Path, **kwargs: Any) -> Engine:
        """Load packs from folders (a pack folder, or a folder of packs)."""
        return cls(load_packs(list(paths)), **kwargs)

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.ruleset.rules)

    @property
    def pack_versions(self) -> tuple[tuple[str, str], ...]:
        return tuple((p.id, p.version) for p in self.packs)

    def evaluate(
        self,
        data: Any,
        now: datetime | str | None = None,
        *,
        source: str | None = None,
        fhir_version: str = "auto",
        on_error: str = "raise",
        trace: bool = False,
    ) -> EvaluationResults:
        """Evaluate the rules for every patient in ``data``.

        Args:
            data: a Bundle/resource dict, a list of resources, JSON or NDJSON text or bytes, or
                a path to a file.
            now: the evaluation time (datetime or ISO-8601 text); default: the current time.
            source: a name for the input in results and messages.
            fhir_version: ``auto`` (detect), ``R4``, ``R4B`` or ``R5``.
            on_error: ``raise`` (default) raises when any patient cannot be evaluated;
                ``collect`` returns those patients with ``errors`` filled in instead.
            trace: keep every criterion's matches and rejections (for explanations).

        Returns:
            One :class:`PatientResult` per patient, sorted by patient reference.

        Raises:
            FhirInputError: the input cannot be read, or a resource the rules read is invalid.
            EvaluationError: a rule could not be evaluated.
        """
        moment = parse_now(now) if now is not None else datetime.now(UTC).replace(microsecond=0)
        version = normalise_version(fhir_version)
        label = source or (str(data) if isinstance(data, str | Path) and _looks_like_path(data) else "<input>")
        try:
            doc = read_any(data, label)
        except FhirInputError as exc:
            if on_error == "raise":
                raise
            return EvaluationResults(
                moment, self.pack_versions, (PatientResult(label, "", "", errors=exc.diagnostics),)
            )
        patients = self._evaluate_document(doc, moment, version, trace)
        results = EvaluationResults(moment, self.pack_versions, tuple(patients))
        if on_error == "raise" and results.errors:
            errs = results.errors
            first = errs[0].render()
            more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
            cls = FhirInputError if all(e.code.startswith("CPR-F") for e in errs) else EvaluationError
            raise cls(first + more, errs, results.patients)
        return results

    def evaluate_document(
        self, doc: FhirDocument, now: datetime, *, fhir_version: str = "auto", trace: bool = False
    ) -> list[PatientResult]:
        """Evaluate an already-read document; errors are returned in the results."""
        return self._evaluate_document(doc, now, normalise_version(fhir_version), trace)

    def prepare_input(self, doc: FhirDocument, *, fhir_version: str = "auto", trace: bool = False) -> PreparedInput:
        """Split ``doc`` per patient and build each patient's facts, validating what the rules read.

        Every resource of the types the rules read is validated and normalised, except
        medications, Observations and Conditions that mention none of the loaded value sets'
        codes or terms: they cannot change an outcome (see
        :data:`careplan_rules.fhir.pipeline.SCREENED_TYPES`), so they are not validated, and
        give facts only with ``trace`` (explanations list them as considered and rejected).
        """
        return prepare(
            doc,
            fhir_version=normalise_version(fhir_version),
            read_types=self._read_types,
            terms=self.terms,
            facts_for_all=trace,
        )

    def _evaluate_document(self, doc: FhirDocument, now: datetime, version: str, trace: bool) -> list[PatientResult]:
        prepared = self.prepare_input(doc, fhir_version=version, trace=trace)
        out: list[PatientResult] = []
        if prepared.errors:
            out.append(PatientResult(doc.source, "", prepared.version, errors=tuple(prepared.errors)))
        for patient in prepared.patients:
            if patient.record is None:
                out.append(
                    PatientResult(
                        doc.source,
                        patient.patient_ref,
                        prepared.version,
                        errors=tuple(patient.errors),
                        notes=tuple(patient.notes),
                    )
                )
                continue
            out.append(self.evaluate_record(patient.record, now, trace=trace, notes=patient.notes))
        if not out:
            out.append(
                PatientResult(
                    doc.source,
                    "",
                    prepared.version,
                    notes=(
                        Diagnostic(
                            "CPR-F022",
                            "no patient data the rules read was found in the input",
                            location=SourceLocation(doc.source),
                        ),
                    ),
                )
            )
        return out

    def evaluate_record(
        self, record: PatientRecord, now: datetime, *, trace: bool = False, notes: Sequence[Diagnostic] = ()
    ) -> PatientResult:
        """Evaluate one patient's facts (errors are returned in the result, not raised)."""
        try:
            outcomes = self.backend.evaluate(self.ruleset, record, now, trace=trace)
            return build_patient_result(self.ruleset, record, outcomes, now, __version__, notes, keep_outcomes=trace)
        except CarePlanRulesError as exc:
            return PatientResult(
                record.source, record.patient_ref, record.fhir_version, errors=exc.diagnostics, notes=tuple(notes)
            )

    def findings_at_or_above(self, results: EvaluationResults, level: str) -> list[Finding]:
        threshold = SeverityLevel.of(level)
        return [f for f in results.findings if SeverityLevel.of(f.severity) >= threshold]


def _looks_like_path(data: str | Path) -> bool:
    if isinstance(data, Path):
        return True
    return "\n" not in data and len(data) < 4096 and not data.lstrip().startswith(("{", "["))


@functools.lru_cache(maxsize=1)
def _default_engine() -> Engine:
    return Engine.from_paths(bundled_rules_dir())
