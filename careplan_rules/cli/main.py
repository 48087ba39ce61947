"""The ``careplan-rules`` command line: one click group, one module per command.

Exit codes (docs/cli.md, contracts.md): 0 success; 1 the command ran and found what it checks
for (findings at or above ``--fail-on``, lint errors, failed rule tests, invalid bundles);
2 usage or input error; 3 internal error (a bug: please report it). Errors are one line on
stderr, ``path[:line[:col]]: error CODE: message``; no traceback unless ``--debug``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click

from careplan_rules._version import __version__
from careplan_rules.errors import CarePlanRulesError

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_INPUT = 2
EXIT_INTERNAL = 3

F = TypeVar("F", bound=Callable[..., Any])


class CliExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def echo_error(line: str) -> None:
    click.echo(line, err=True)


def guarded(func: F) -> F:
    """Turn library errors into one-line messages and documented exit codes."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            return func(*args, **kwargs)
        except CliExit as exc:
            ctx.exit(exc.code)
        except CarePlanRulesError as exc:
            for diag in exc.diagnostics:
                echo_error(diag.render())
            ctx.exit(EXIT_INPUT)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            echo_error("careplan-rules: interrupted")
            ctx.exit(130)
        except BrokenPipeError:
            ctx.exit(EXIT_OK)
        except Exception as exc:  # never a bare traceback for users
            if debug:
                traceback.print_exc()
            echo_error(
                f"careplan-rules: internal error: {type(exc).__name__}: {exc} "
                "(this is a bug; rerun with --debug and report it)"
            )
            ctx.exit(EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


# command name -> module defining ``command``; modules load only when their command runs, so
# ``careplan-rules evaluate`` never imports the web stack and a missing extra only affects
# the command that needs it
COMMANDS: dict[str, str] = {
    "evaluate": "careplan_rules.cli.evaluate",
    "validate": "careplan_rules.cli.validate",
    "lint": "careplan_rules.cli.lint",
    "test": "careplan_rules.cli.ruletest",
    "explain": "careplan_rules.cli.explain",
    "schema": "careplan_rules.cli.schema",
    "serve": "careplan_rules.cli.serve",
    "feedback": "careplan_rules.cli.feedback",
    "screen": "careplan_rules.cli.screen",
    "terminology": "careplan_rules.cli.terminology",
    "docs": "careplan_rules.cli.docs",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, module in COMMANDS.items() if importlib.util.find_spec(module) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None or importlib.util.find_spec(module_name) is None:
            return None
        module = importlib.import_module(module_name)
        found: click.Command = module.command
        return found


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="careplan-rules")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
def cli(debug: bool) -> None:
    """Clinical decision support rules over FHIR data: evaluate, validate, lint, test, explain, serve."""


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="careplan-rules", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_INPUT)
        sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
