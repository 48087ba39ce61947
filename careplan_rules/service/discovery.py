"""Discovery (``GET /cds-services``): one service per hook, described from the loaded rules.

Each service advertises prefetch templates derived from the resource types the rules read
(:func:`~careplan_rules.service.prefetch.templates_for`), the 3.0-compatible ``version`` and
``hookVersion`` (harmless to 2.0 clients, which ignore unknown fields), and an ``extension``
with the loaded packs and every rule's ONC HTI-1 source attributes (45 CFR
170.315(b)(11)(iv)(A)), so an EHR can show users where each intervention comes from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from careplan_rules.engine.compiler import CompiledRule, RuleSet
from careplan_rules.outputs.cards import EXTENSION_KEY
from careplan_rules.service.config import ServiceConfig
from careplan_rules.service.prefetch import PrefetchTemplate, templates_for

SPEC_VERSION = "2.0.1"
HOOK_VERSION = "1.0"  # CDS Hooks Library 1.0.1 definitions of the three hooks
HOOK_TEXT = {
    "patient-view": (
        "Medication safety review on chart open",
        "Reviews the patient's record when the chart is opened",
    ),
    "order-select": (
        "Medication safety check on order selection",
        "Checks the selected draft orders together with the patient's record",
    ),
    "order-sign": (
        "Medication safety check before signing",
        "Checks every order about to be signed (draft or revised) together with the patient's record",
    ),
}


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    templates: tuple[PrefetchTemplate, ...]

    def to_json(self, extension: dict[str, Any]) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": {t.key: t.query for t in self.templates},
            "usageRequirements": (
                "Send the prefetch keys, or a fhirServer with fhirAuthorization so the service can fetch "
                "what is missing; without either the service answers 412. Calls must carry a signed JWT."
            ),
            "version": SPEC_VERSION,
            "hookVersion": HOOK_VERSION,
            "extension": extension,
        }


def build_services(ruleset: RuleSet, config: ServiceConfig) -> tuple[ServiceDefinition, ...]:
    """The services to offer, one per configured hook."""
    packs = "; ".join(f"{p.manifest.title} {p.version}" for p in ruleset.packs)
    templates = templates_for(ruleset.read_types)
    out = []
    for hook in config.hooks:
        title, what = HOOK_TEXT[hook]
        out.append(
            ServiceDefinition(
                id=config.service_id(hook),
                hook=hook,
                title=title,
                description=(
                    f"{what} with the careplan-rules engine ({packs}); returns warnings as cards with a "
                    "DetectedIssue and a proposed CarePlan to accept."
                ),
                templates=templates,
            )
        )
    return tuple(out)


def _dsi(rule: CompiledRule) -> dict[str, Any]:
    model = rule.source.model
    out: dict[str, Any] = {"rule": model.id, "version": model.version, "title": model.title}
    if model.dsi is None:
        out["declared"] = False
        return out
    dsi = model.dsi
    uses = dsi.uses
    out.update(
        {
            "declared": True,
            "type": dsi.type,
            "citation": dsi.citation,
            "developer": dsi.developer,
            "fundingSource": dsi.funding_source,
            "releaseDate": dsi.release_date,
            "uses": {
                "race": uses.race,
                "ethnicity": uses.ethnicity,
                "language": uses.language,
                "sexualOrientation": uses.sexual_orientation,
                "genderIdentity": uses.gender_identity,
                "sex": uses.sex,
                "dateOfBirth": uses.date_of_birth,
                "socialDeterminantsOfHealth": uses.sdoh,
                "healthStatusAssessments": uses.health_status_assessments,
            },
        }
    )
    if dsi.revision_date:
        out["revisionDate"] = dsi.revision_date
    citations = [c.url for c in model.metadata.citations if c.url]
    if citations:
        out["evidence"] = citations
    return out


def discovery_extension(ruleset: RuleSet, engine_version: str) -> dict[str, Any]:
    """The ``extension`` object every service carries (reverse-DNS keys, per the spec)."""
    packs = []
    for p in ruleset.packs:
        pack: dict[str, Any] = {"id": p.id, "version": p.version, "title": p.manifest.title}
        if p.manifest.url:
            pack["url"] = p.manifest.url
        packs.append(pack)
    return {
        f"{EXTENSION_KEY}.engine": {"name": "careplan-rules", "version": engine_version},
        f"{EXTENSION_KEY}.packs": packs,
        f"{EXTENSION_KEY}.dsi-source-attributes": {
            "regulation": "45 CFR 170.315(b)(11)(iv)(A)",
            "note": "evidence-based decision support interventions; none of these rules is a Predictive DSI",
            "rules": [_dsi(r) for r in ruleset.rules],
        },
    }


def discovery_document(services: Sequence[ServiceDefinition], ruleset: RuleSet, engine_version: str) -> dict[str, Any]:
    """The body of ``GET /cds-services``."""
    extension = discovery_extension(ruleset, engine_version)
    return {"services": [s.to_json(extension) for s in services]}
