"""Stage changes carried out crash-safely: a lease, an intent, idempotent MLflow operations, the audit.

:class:`Changes` is what the promoter and the gates share: it holds a model's lease (finishing what an
interrupted holder left first), commits a :class:`~driftloop.registry.lease.Plan` as the intent, applies
its operations to MLflow and completes it in the audit. ``kill -9`` after any of these steps leaves a
state the next holder completes (tests/registry/test_crash.py kills a process at each one).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from driftloop.core.models import STAGE_TAG, Stage
from driftloop.registry.audit import AuditLog, holder_of
from driftloop.registry.lease import Leases, Plan, audit_entry

if TYPE_CHECKING:
    from collections.abc import Iterator

    from driftloop.registry.client import Registry
    from driftloop.registry.lease import Lease
    from driftloop.storage.metadata import Database

__all__ = ["ALIASES", "Changes", "alias_op", "stage_op"]

log = logging.getLogger(__name__)

ALIASES = {Stage.STAGING: "staging", Stage.PRODUCTION: "production"}


def alias_op(stage: Stage, version: int | None) -> dict[str, Any]:
    """Point ``stage``'s alias at ``version`` (None: remove it)."""
    return {"op": "alias", "alias": ALIASES[stage], "version": version}


def stage_op(version: int, stage: Stage) -> dict[str, Any]:
    """Set ``version``'s ``driftloop.stage`` tag."""
    return {"op": "stage", "version": version, "stage": stage.value}


class Changes:
    """Crash-safe stage changes of registered models (see the module docstring)."""

    def __init__(self, db: Database, registry: Registry) -> None:
        self.registry = registry
        self.audit = AuditLog(db)
        self._leases = Leases(db)

    def stages(self, name: str) -> dict[int, Stage]:
        """Each version's stage by the audit (the authority; MLflow's tag is a copy anyone may edit),
        adopting MLflow's aliases once for a model the audit has never seen. Takes the lease to adopt:
        under a held lease, read ``self.audit.stages`` (taking the lease adopted already)."""
        stages = self.audit.stages(name)
        if not stages and self.audit.last(name) is None:
            with self.held(name):  # adopts
                pass
            stages = self.audit.stages(name)
        return stages

    def stage(self, name: str, version: int) -> Stage:
        """``version``'s stage by the audit."""
        return self.stages(name).get(version, Stage.NONE)

    @contextlib.contextmanager
    def held(self, name: str) -> Iterator[Lease]:
        """``name``'s lease, with whatever an interrupted holder left already finished."""
        with self._leases.held(name) as lease:
            if lease.leftover is not None:
                self._finish(lease)
            self._adopt(lease)
            yield lease

    def holder(self, name: str, stage: Stage) -> int | None:
        """The version that holds ``stage`` by the audit."""
        return holder_of(self.stages(name), stage)

    def carry_out(self, lease: Lease, plan: Plan) -> None:
        """Intent committed, operations applied, audit completed: a process killed after any step
        leaves what the next holder of the lease finishes."""
        lease.commit_intent(plan)
        for op in plan.ops:
            self._apply(lease.model, op)
        self.registry.describe_stages(lease.model)  # before completing: a crash repeats it with the ops
        lease.complete(plan.entries)

    def recover(self) -> list[str]:
        """Finish every change a dead process left half-done (and free its lease); the models it touched."""
        models = self._leases.interrupted()
        for name in models:
            with self.held(name):
                pass
        return models

    def _finish(self, lease: Lease) -> None:
        plan = lease.leftover
        assert plan is not None
        for op in plan.ops:
            self._apply(lease.model, op)
        self.registry.describe_stages(lease.model)
        why = f"completed after {lease.interrupted or 'a failed command'} was interrupted"
        entries = tuple({**e, "reasons": [*e.get("reasons", ()), why]} for e in plan.entries)
        lease.complete(entries)
        done = "; ".join(f"v{e['version']} {e['action']} → {e['to_stage']}" for e in entries)
        log.warning("%s: finished an interrupted stage change (%s)", lease.model, done)

    def _adopt(self, lease: Lease) -> None:
        """A model the audit has never seen (registered elsewhere, or a new metadata database): its
        aliases are taken as they are, once, and recorded as adopted. From then on the audit decides."""
        name = lease.model
        if self.audit.last(name) is not None:
            return
        entries = []
        for stage, alias in ALIASES.items():
            found = self.registry.by_alias(name, alias)
            if found is not None:
                why = f"adopted from MLflow's {alias} alias: the audit had no record of {name}"
                move = (Stage.NONE, stage)
                entries.append(
                    audit_entry(found.version, "adopt", move, "done", actor="driftloop", reasons=[why])
                )
        if entries:
            lease.complete(tuple(entries))
            adopted = ", ".join(f"v{e['version']} as {e['to_stage']}" for e in entries)
            log.warning("%s: the audit had no record of this model; adopted %s", name, adopted)

    def _apply(self, name: str, op: dict[str, Any]) -> None:
        if op["op"] == "alias":
            if op["version"] is None:
                self.registry.delete_alias(name, op["alias"])
            else:
                self.registry.set_alias(name, op["alias"], int(op["version"]))
        elif op["op"] == "stage":
            self.registry.set_tags(name, int(op["version"]), {STAGE_TAG: op["stage"]})
        else:  # an intent written by a newer driftloop: refuse rather than half-apply it
            raise ValueError(f"unknown registry operation {op!r} in an intent for {name}")
