"""``--json`` on the read commands: one JSON document on stdout and nothing else there.

Scripts read stdout; notes for people (an interrupted change finished, a hint) go to stderr whichever
format is chosen, so ``driftloop models list --json | jq`` never sees them. Keys are sorted and times are
ISO 8601, so the same state prints the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any

import typer

__all__ = ["json_option", "plain", "print_json"]


def json_option() -> Any:
    """The ``--json`` flag every read command takes (a fresh option object per command)."""
    return typer.Option(False, "--json", help="Print JSON on stdout (and nothing else there).")


def print_json(data: Any) -> None:
    """Write ``data`` as one JSON document (domain dataclasses, times, enums and paths made plain)."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=plain, ensure_ascii=False))


def plain(value: Any) -> Any:
    """The JSON-ready form of a value ``json`` cannot encode itself (its ``default`` hook).

    A dataclass becomes its public fields (``_private`` ones are implementation); pydantic models their
    JSON dump. Raises :class:`TypeError` for anything else, as ``json`` expects.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: getattr(value, f.name) for f in dataclasses.fields(value) if not f.name.startswith("_")
        }
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
