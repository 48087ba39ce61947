"""The CDS Hooks 2.0.1 service (installed with the ``careplan-rules[service]`` extra).

``create_app(config)`` builds the ASGI app; ``careplan-rules serve`` runs it with uvicorn.
Importing this package does not import the web stack (FastAPI, httpx), so the parts that need
only the standard library, such as the feedback store behind ``careplan-rules feedback
export``, work in a base installation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from careplan_rules.service.app import create_app
    from careplan_rules.service.config import ServiceConfig, load_config

__all__ = ["ServiceConfig", "create_app", "load_config"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from careplan_rules.service.app import create_app

        return create_app
    if name in ("ServiceConfig", "load_config"):
        from careplan_rules.service import config

        return getattr(config, name)
    raise AttributeError(name)
