"""``driftloop completion show | install [SHELL]``: tab completion of verbs, options and choices.

The scripts are Typer's (bash, zsh, fish): a shell function that calls ``driftloop`` back with
``_DRIFTLOOP_COMPLETE=complete_<shell>`` set, which :func:`driftloop.cli.main.main` answers from the
command tree. A subcommand rather than Typer's ``--install-completion`` root options, so the root
``--help`` stays about driftloop and completion has its own ``--help`` (decision 0062).
"""

from __future__ import annotations

import typer

from driftloop.cli._state import state
from driftloop.errors import UsageError

__all__ = ["COMPLETE_VAR", "PROG", "SHELLS", "app", "enable_completion", "script"]

PROG = "driftloop"
COMPLETE_VAR = "_DRIFTLOOP_COMPLETE"
SHELLS = ("bash", "zsh", "fish")

app = typer.Typer(
    help="Shell completion: print or install the script (bash, zsh, fish).", no_args_is_help=True
)

_SHELL_HELP = "bash, zsh or fish (default: the shell this runs in)."


def enable_completion() -> None:
    """Register Typer's completion classes, which answer the completion script's calls."""
    from typer._completion_classes import completion_init

    completion_init()


def script(shell: str) -> str:
    """The completion script for ``shell``; :class:`UsageError` for a shell without one."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=_known(shell))


def _known(shell: str) -> str:
    if shell not in SHELLS:
        raise UsageError(f"no completion for shell {shell!r}: choose {', '.join(SHELLS)}")
    return shell


def _shell(given: str | None) -> str:
    if given is not None:
        return _known(given.lower())
    from typer._completion_shared import _get_shell_name

    detected = _get_shell_name()
    if detected is None:
        raise UsageError(f"cannot tell which shell this is: name it ({', '.join(SHELLS)})")
    return _known(detected)


@app.command("show")
def show(shell: str | None = typer.Argument(None, metavar="[SHELL]", help=_SHELL_HELP)) -> None:
    """Print the completion script, e.g. ``eval "$(driftloop completion show bash)"``."""
    typer.echo(script(_shell(shell)))


@app.command("install")
def install(
    ctx: typer.Context, shell: str | None = typer.Argument(None, metavar="[SHELL]", help=_SHELL_HELP)
) -> None:
    """Install the completion script for your shell (bash: ~/.bash_completions + ~/.bashrc; zsh:
    ~/.zfunc + ~/.zshrc; fish: ~/.config/fish/completions); it works in shells started afterwards."""
    from typer._completion_shared import install as typer_install

    name, path = typer_install(shell=_shell(shell), prog_name=PROG, complete_var=COMPLETE_VAR)
    state(ctx).out.print(f"{name} completion installed in {path}; open a new shell to use it", markup=False)
