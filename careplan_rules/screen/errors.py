"""The error a screen raises when it cannot go on (the run itself, not one line or patient)."""

from __future__ import annotations

from careplan_rules.errors import CarePlanRulesError


class ScreenError(CarePlanRulesError):
    """A screen cannot start or continue: results folder in use, missing extra, worker died.

    Problems with single lines or patients are never raised: they are error rows.
    """

    default_code = "CPR-P020"
