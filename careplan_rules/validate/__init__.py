"""FHIR validation beyond the models: the engine behind ``careplan-rules validate``.

Four check families, one module each, over one walk of every resource
(:mod:`~careplan_rules.validate.walker`):

1. :mod:`~careplan_rules.validate.structure` — fhir.resources' validation, per problem, with
   one sentence for data of another FHIR release;
2. :mod:`~careplan_rules.validate.bindings` — required bindings, reference target types and
   mistyped primitives, generically from the models' metadata;
3. :mod:`~careplan_rules.validate.integrity` — references resolve, unique identities, used
   contained resources, well-formed ``urn:uuid:`` values;
4. :mod:`~careplan_rules.validate.readiness` — what the rules need (codes, statuses, dates).

:mod:`~careplan_rules.validate.unit` runs them over a document or a streamed NDJSON export,
:mod:`~careplan_rules.validate.runner` over files and streams, :mod:`~careplan_rules.validate.report`
renders the result. Codes and severities are in :mod:`~careplan_rules.validate.codes`.

    from datetime import UTC, datetime
    from careplan_rules.validate import Options, validate

    for problem in validate(bundle_dict, Options(now=datetime.now(UTC))):
        print(problem.render())
"""

from __future__ import annotations

from careplan_rules.validate.codes import CODES
from careplan_rules.validate.runner import Validator, validate
from careplan_rules.validate.unit import CHECKS, Options

__all__ = ["CHECKS", "CODES", "Options", "Validator", "validate"]
