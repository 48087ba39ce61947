"""Check 2, what fhir.resources describes but lets through.

* codes outside a required binding (``MedicationRequest.status = "bogus"``): the model lists the
  codes in ``enum_values`` but accepts any code (fhir.resources #23);
* references to a type the element does not allow (``MedicationRequest.subject`` →
  ``Medication/m1``): listed in ``enum_reference_types``, not enforced;
* booleans and numbers written as strings (``"active": "true"``): pydantic's lax mode converts
  them, FHIR JSON forbids them and other parsers reject them.

All three are generic over every resource type: the tables come from the models
(:mod:`careplan_rules.validate.metadata`), not from per-resource code.
"""

from __future__ import annotations

from careplan_rules.diagnostics import Diagnostic, SourceLocation
from careplan_rules.validate.codes import diag
from careplan_rules.validate.walker import Digest, RefSite

_LISTED = 8  # allowed codes quoted in a message; long value sets are abbreviated


def _allowed(codes: frozenset[str]) -> str:
    ordered = sorted(codes)
    shown = ", ".join(ordered[:_LISTED])
    return shown + (f", … ({len(ordered)} codes)" if len(ordered) > _LISTED else "")


def check_bindings(digest: Digest, location: SourceLocation) -> list[Diagnostic]:
    """Codes outside required bindings (CPR-V101) and mistyped primitives (CPR-V103)."""
    out = [
        diag(
            "CPR-V101",
            f"{site.path}: {site.value!r} is not in the required value set ({_allowed(site.allowed)})",
            location,
            site.path,
        )
        for site in digest.bad_codes
    ]
    for t in digest.bad_types:
        article = "an" if t.json_type == "integer" else "a"
        out.append(
            diag(
                "CPR-V103",
                f"{t.path}: FHIR JSON needs {article} {t.json_type} here, not {type(t.value).__name__} {t.value!r}",
                location,
                t.path,
            )
        )
    return out


def check_target_type(site: RefSite, target_type: str | None, location: SourceLocation) -> Diagnostic | None:
    """CPR-V102 when a reference points to a type its element does not allow.

    Args:
        site: the reference and the types its element allows.
        target_type: the type it points to (from the data, the reference text or
            ``Reference.type``); None when that cannot be told, which is not reported.
        location: file (and line) for the diagnostic.
    """
    if site.targets is None or target_type is None or target_type in site.targets:
        return None
    ref = site.reference.get("reference")
    shown = f" ({ref})" if isinstance(ref, str) else ""
    return diag(
        "CPR-V102",
        f"{site.path}: may reference {' or '.join(sorted(site.targets))}, not {target_type}{shown}",
        location,
        site.path,
    )
