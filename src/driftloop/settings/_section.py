"""The base every configuration section shares: unknown keys refused, values frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A ``[section]`` of ``driftloop.toml``: an unknown key is an error, and a built value never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
