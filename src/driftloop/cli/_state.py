"""What every command shares: the global options and the way to build settings and consoles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from driftloop.settings import Settings, load_settings

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CliState", "state"]


@dataclass
class CliState:
    """Global options, parsed once by the root callback and read by every command."""

    config: Path | None = None
    debug: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """The effective configuration, loaded on first use (so ``--help`` never reads files)."""
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings

    @property
    def out(self) -> Console:
        # Soft wrap: long paths and URIs stay on one line (copyable, grep-able); tables still fit the width.
        return Console(highlight=False, soft_wrap=True)

    @property
    def err(self) -> Console:
        return Console(stderr=True, highlight=False, soft_wrap=True)


def state(ctx: typer.Context) -> CliState:
    """The :class:`CliState` set up by the root callback."""
    found = ctx.find_object(CliState)
    if found is None:  # a command invoked without the root app (only in tests)
        found = ctx.ensure_object(CliState)
    return found
