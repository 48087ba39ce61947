"""JSON Schemas (draft-07) of the authoring format, generated from the pydantic models.

Editors validate YAML as it is typed through yaml-language-server, which supports JSON Schema
draft-07 and earlier; pydantic emits 2020-12 style ``$defs``, so references are rewritten to
``definitions``. The generated files are committed under ``schema/`` and a test fails when
they drift from the models (regenerate with ``careplan-rules schema --write schema``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from careplan_rules.model.pack import PackModel
from careplan_rules.model.rule import RuleModel
from careplan_rules.model.ruletest import FixtureFile, RuleTestModel
from careplan_rules.model.valueset import ValueSetModel

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
BASE_ID = "https://careplan-rules.org/schema/"

KINDS: Mapping[str, tuple[type[BaseModel], str]] = {
    "pack": (PackModel, "careplan-rules pack manifest (pack.yaml)"),
    "rule": (RuleModel, "careplan-rules rule (*.rule.yaml)"),
    "valueset": (ValueSetModel, "careplan-rules value set (valuesets/*.yaml)"),
    "ruletest": (RuleTestModel, "careplan-rules rule test (*.test.yaml)"),
    "fixtures": (FixtureFile, "careplan-rules test fixtures"),
}


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$defs":
                out["definitions"] = _rewrite(value)
            elif key == "$ref" and isinstance(value, str):
                out[key] = value.replace("#/$defs/", "#/definitions/")
            else:
                out[key] = _rewrite(value)
        return out
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def schema_for(kind: str) -> dict[str, Any]:
    """The draft-07 schema of one file kind (pack, rule, valueset, ruletest, fixtures)."""
    model, title = KINDS[kind]
    raw = model.model_json_schema(by_alias=True, mode="validation")
    body = _rewrite(raw)
    body.pop("title", None)
    return {"$schema": DRAFT_07, "$id": f"{BASE_ID}{kind}.v1.schema.json", "title": title, **body}


def schema_text(kind: str) -> str:
    return json.dumps(schema_for(kind), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def file_name(kind: str) -> str:
    return f"{kind}.v1.schema.json"
