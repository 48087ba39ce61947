"""Log lines of the service's own logger, in the service process and its evaluation processes."""

from __future__ import annotations

import logging

LOGGER = "careplan_rules.service"


def configure_logging(level: str) -> None:
    """Log lines for the service's own logger (uvicorn configures its loggers itself)."""
    logger = logging.getLogger(LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())
