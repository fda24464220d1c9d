"""Entry point: the root ``driftloop`` app, global options and the error boundary.

Expected errors (:class:`~driftloop.errors.DriftloopError`) print one line and exit with their code;
usage errors exit 2; anything else is a bug and prints its traceback. ``--debug`` adds the traceback to
expected errors too.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import typer

# Typer ≥ 0.20 ships its own copy of click; its exceptions are the ones the parser raises.
from typer._click.core import Command, Context
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperOption

import driftloop
from driftloop.cli import auth as auth_cli
from driftloop.cli import capture as capture_cli
from driftloop.cli import completion as completion_cli
from driftloop.cli import config as config_cli
from driftloop.cli import db as db_cli
from driftloop.cli import demo as demo_cli
from driftloop.cli import features as features_cli
from driftloop.cli import loop as loop_cli
from driftloop.cli import models as models_cli
from driftloop.cli import monitor as monitor_cli
from driftloop.cli import pipeline as pipeline_cli
from driftloop.cli import promote as promote_cli
from driftloop.cli import scheduler as scheduler_cli
from driftloop.cli import serve as serve_cli
from driftloop.cli import simulate as simulate_cli
from driftloop.cli import train as train_cli
from driftloop.cli import ui as ui_cli
from driftloop.cli import up as up_cli
from driftloop.cli._state import CliState
from driftloop.errors import DriftloopError, one_line
from driftloop.logs import configure_logging

__all__ = ["app", "build_command", "main"]

_HELP_NAMES = ["-h", "--help"]

app = typer.Typer(
    name="driftloop",
    help="driftloop: a closed-loop MLOps platform for PyTorch models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": _HELP_NAMES},
)
app.add_typer(auth_cli.app, name="auth")
app.add_typer(capture_cli.app, name="capture")
app.add_typer(completion_cli.app, name="completion")
app.add_typer(config_cli.app, name="config")
app.add_typer(db_cli.app, name="db")
app.add_typer(features_cli.app, name="features")
app.add_typer(models_cli.app, name="models")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(pipeline_cli.app, name="pipeline")
app.command("simulate")(simulate_cli.simulate)
app.command("train")(train_cli.train)
app.command("reproduce")(train_cli.reproduce)
app.command("experiment")(train_cli.experiment)
app.command("promote")(promote_cli.promote)
app.command("approve")(promote_cli.approve)
app.command("rollback")(promote_cli.rollback)
app.command("lineage")(promote_cli.lineage)
app.command("serve")(serve_cli.serve)
app.command("up")(up_cli.up)
app.command("ui")(ui_cli.ui)
app.command("scheduler")(scheduler_cli.scheduler)
app.add_typer(scheduler_cli.schedule_app, name="schedule")
app.command("demo")(demo_cli.demo)
app.add_typer(loop_cli.app, name="loop")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"driftloop {driftloop.__version__}")
        raise typer.Exit


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Configuration file (default: ./driftloop.toml when present).",
        dir_okay=False,
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for expected errors too."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """driftloop: a closed-loop MLOps platform for PyTorch models."""
    # Warnings and errors for every command, before anything imports MLflow (driftloop.logs says why);
    # the services (serve, scheduler) set their own level.
    configure_logging("warning")
    ctx.obj = CliState(config=config, debug=debug)


def build_command() -> Command:
    """The click command tree :func:`main` runs (tests and completion walk the same tree)."""
    command = typer.main.get_command(app)
    _flags_take_no_value(command)
    return command


def _flags_take_no_value(command: Command) -> None:
    """Typer 0.29's help shows a flag's Python type (``--json <bool>``, even ``--help <bool>``) as if it
    took a value; an empty metavar leaves a flag's type column blank. The help option is made (and
    cached) by the command on first use, so it is made here, with the names every context gets."""
    ctx = Context(command, help_option_names=_HELP_NAMES)
    flags = [*command.params, command.get_help_option(ctx)]
    for param in flags:
        if isinstance(param, TyperOption) and (param.is_flag or param.count):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _flags_take_no_value(sub)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with its status. ``argv`` defaults to ``sys.argv[1:]``."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if os.environ.get(completion_cli.COMPLETE_VAR):  # the completion script asking for candidates
        completion_cli.enable_completion()
    command = build_command()
    try:
        result = command.main(
            args=args, prog_name="driftloop", complete_var=completion_cli.COMPLETE_VAR, standalone_mode=False
        )
    except typer.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except NoArgsIsHelpError as exc:
        # `driftloop` or `driftloop pipeline` alone: the help is the useful answer, not an error line.
        typer.echo(exc.format_message())
        sys.exit(2)
    except ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        # Click quotes what the user typed (a path, a value), which may hold control characters.
        _fail(one_line(f"{exc.format_message()}{hint}"), exc.exit_code)
    except DriftloopError as exc:
        if debug:
            traceback.print_exc()
        _fail(exc.headline, exc.exit_code)
    except Exception:
        traceback.print_exc()
        _fail("internal error (a bug in driftloop; the traceback above says where)", 1)
    sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)
