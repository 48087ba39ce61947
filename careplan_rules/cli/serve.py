"""``careplan-rules serve``: run the CDS Hooks 2.0.1 service with uvicorn.

The web stack is imported inside the command, so a base installation (without the
``[service]`` extra) still runs every other command and gets a one-line hint here.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import click

from careplan_rules.cli.main import EXIT_INPUT, CliExit, echo_error, guarded

NEEDED = ("fastapi", "uvicorn", "httpx", "jwt")
HINT = "careplan-rules serve needs the service extra: pip install 'careplan-rules[service]'"


@click.command("serve")
@click.option("--host", help="Interface to listen on (default 127.0.0.1, or the config's host).")
@click.option("--port", type=int, help="Port to listen on (default 8080, or the config's port).")
@click.option(
    "--rules", "rules", multiple=True, type=click.Path(), help="Rule pack folder (repeatable). Default: bundled pack."
)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML configuration file.")
@click.option("--workers", type=int, help="uvicorn worker processes (default 1, or the config's workers).")
@click.option(
    "--evaluation-processes",
    type=int,
    help="Processes evaluating calls from one queue, per worker (default 0: the worker evaluates them itself). "
    "On N cores: --workers 1 --evaluation-processes N.",
)
@click.option(
    "--backend",
    type=click.Choice(["python", "durable"]),
    help="Evaluation backend (default python, or the config's backend); durable runs crash-isolated.",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Accept calls without a client JWT. Local development only; logs a warning.",
)
@guarded
def command(
    host: str | None,
    port: int | None,
    rules: tuple[str, ...],
    config_file: str | None,
    workers: int | None,
    evaluation_processes: int | None,
    backend: str | None,
    insecure_no_auth: bool,
) -> None:
    """Serve the rules as a CDS Hooks service (patient-view, order-select, order-sign).

    Discovery is at http://HOST:PORT/cds-services. Every call must carry a JWT signed by a
    trusted issuer (auth.issuers in --config) unless --insecure-no-auth is given.
    See docs/cds-hooks.md for deployment behind a TLS proxy and registration with an EHR.
    """
    from careplan_rules.service.config import ENV_CONFIG_JSON, load_config, to_json

    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        echo_error(f"{HINT} (missing: {', '.join(missing)})")
        raise CliExit(EXIT_INPUT)
    config = load_config(
        config_file,
        host=host,
        port=port,
        workers=workers,
        evaluation_processes=evaluation_processes,
        backend=backend,
        rules=[str(Path(r)) for r in rules] or None,
        insecure_no_auth=insecure_no_auth or None,
    )
    config.check_startable()

    import uvicorn

    from careplan_rules.service.app import create_app
    from careplan_rules.service.logs import configure_logging
    from careplan_rules.service.protocol import NoDelayHTTPProtocol
    from careplan_rules.service.store import StoreError

    configure_logging(config.log_level)
    try:
        # loads rules, keys and the database now: errors are one line, before listening
        app = create_app(config, freeze_heap=True)
    except StoreError as exc:
        echo_error(f"{exc.path}: error CPR-S002: {exc.reason}")
        raise CliExit(EXIT_INPUT) from None
    options: dict[str, object] = {
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "proxy_headers": True,
        "forwarded_allow_ips": config.forwarded_allow_ips,
        "server_header": False,
        "http": NoDelayHTTPProtocol,  # a class: older uvicorn releases take only built-in names as strings
    }
    if config.tls_certfile is not None and config.tls_keyfile is not None:
        options["ssl_certfile"] = str(config.tls_certfile)
        options["ssl_keyfile"] = str(config.tls_keyfile)
    if config.workers > 1:
        # worker processes rebuild the app from the resolved configuration
        os.environ[ENV_CONFIG_JSON] = to_json(config)
        uvicorn.run("careplan_rules.service.app:app_from_env", factory=True, workers=config.workers, **options)  # type: ignore[arg-type]
    else:
        uvicorn.run(app, **options)  # type: ignore[arg-type]
