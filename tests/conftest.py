"""Shared fixtures; factories live in tests/factories.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from careplan_rules import Engine
from tests.factories import NOW, Resource, bundle

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine.default()


@pytest.fixture
def evaluate(engine: Engine) -> Callable[..., Any]:
    """Evaluate inline resources with the bundled pack; returns the single patient's result."""

    def run(*resources: Resource, now: str = NOW, **kwargs: Any) -> Any:
        data = resources[0] if len(resources) == 1 and resources[0]["resourceType"] == "Bundle" else bundle(*resources)
        results = engine.evaluate(data, now=now, **kwargs)
        assert len(results) == 1, [r.patient for r in results]
        return results[0]

    return run


@pytest.fixture
def tmp_pack(tmp_path: Path) -> Callable[..., Path]:
    """Write a small rule pack from {relative path: text} and return its folder."""

    def make(files: dict[str, str], name: str = "pack") -> Path:
        root = tmp_path / name
        for rel, text in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return root

    return make


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False, help="rewrite golden files from current output"
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
