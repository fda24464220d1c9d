"""How a pipeline is declared: steps as plain functions with named inputs and outputs.

A step function receives a :class:`StepContext` and its inputs already loaded (DataFrames for tables,
dicts for JSON) and returns a :class:`StepResult` whose outputs the runner saves. Steps never see where
their inputs came from or where their outputs go — the catalog does that (kedro's node + catalog).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from driftloop.errors import UsageError

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Mapping
    from types import ModuleType

    from driftloop.pipeline.params import RunParams
    from driftloop.settings import Settings
    from driftloop.storage import ObjectStore

__all__ = ["Output", "Pipeline", "StepContext", "StepResult", "StepSpec"]

ArtifactKind = Literal["table", "json", "csv"]


@dataclass(frozen=True)
class Output:
    """A named step output. ``location`` overrides the default key (``{run}`` and ``{step}`` expand)."""

    kind: ArtifactKind
    location: str | None = None
    optional: bool = False  # the step may omit it (e.g. no malformed lines to quarantine)


@dataclass
class StepContext:
    """What a running step may use besides its inputs."""

    run_id: str
    step: str
    params: RunParams
    settings: Settings
    store: ObjectStore
    log: logging.Logger


@dataclass
class StepResult:
    """Outputs by name, a small JSON summary for ``pipeline show``, and an optional failure.

    ``fail`` marks the step failed *after* its outputs are saved — how a data incident keeps its
    quarantine while stopping the run.
    """

    outputs: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    fail: str | None = None


@dataclass(frozen=True)
class StepSpec:
    """One node of the DAG.

    ``inputs`` maps the function's argument name to ``"step.output"``; ``params`` names the run
    parameters the step depends on; ``code`` lists the modules (or module names, imported only to hash
    them) whose source versions the step (their hash is part of the cache key); ``fingerprint``
    summarises external inputs (files the step reads itself) for the cache key.
    """

    name: str
    fn: Callable[..., StepResult]
    inputs: Mapping[str, str]
    outputs: Mapping[str, Output]
    params: tuple[str, ...] = ()
    code: tuple[ModuleType | str, ...] = ()
    fingerprint: Callable[[StepContext], str] | None = None

    def code_version(self) -> str:
        """A hash of the step's source code: the function's module plus the declared modules."""
        digest = hashlib.sha256()
        # Modules may be named rather than imported, so heavy ones (torch) load only to hash them.
        declared = [importlib.import_module(m) if isinstance(m, str) else m for m in self.code]
        for module in [inspect.getmodule(self.fn), *declared]:
            if module is not None:
                digest.update(module.__name__.encode())
                digest.update(inspect.getsource(module).encode())
        return digest.hexdigest()[:16]

    @property
    def upstream(self) -> set[str]:
        return {ref.split(".", 1)[0] for ref in self.inputs.values()}


@dataclass(frozen=True)
class Pipeline:
    """Steps in a valid topological order (checked at construction)."""

    name: str
    steps: tuple[StepSpec, ...]

    def __post_init__(self) -> None:
        seen: dict[str, StepSpec] = {}
        for spec in self.steps:
            if spec.name in seen:
                raise ValueError(f"pipeline {self.name}: duplicate step {spec.name}")
            for arg, ref in spec.inputs.items():
                producer, _, output = ref.partition(".")
                if producer not in seen or output not in seen[producer].outputs:
                    raise ValueError(
                        f"pipeline {self.name}: {spec.name}.{arg} needs {ref}, not produced earlier"
                    )
            seen[spec.name] = spec

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def step(self, name: str) -> StepSpec:
        for spec in self.steps:
            if spec.name == name:
                return spec
        raise UsageError(f"unknown step {name!r} in pipeline {self.name}: steps are {', '.join(self.names)}")

    def until(self, name: str | None) -> tuple[StepSpec, ...]:
        """The steps up to and including ``name`` (all when ``None``)."""
        if name is None:
            return self.steps
        index = self.names.index(self.step(name).name)
        return self.steps[: index + 1]
