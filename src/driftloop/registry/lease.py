"""The registry lease and the promotion intent: stage changes that survive ``kill -9`` at any step.

MLflow (aliases, tags) and driftloop's audit are two stores with no transaction across them, so a stage
change of a model runs in three committed steps:

1. **take the lease**: the model's ``registry_locks`` row names this process as holder until
   ``expires_at`` (a compare-and-set ``UPDATE``, so two processes never both win). Another live holder
   is waited for; a dead one (on this host: its pid is gone; anywhere: its lease expired) is taken over.
2. **commit the intent**: the whole change — every MLflow operation and every audit entry — is written
   to the lease row *before* MLflow is touched.
3. **apply, then complete**: the operations (each idempotent: set an alias, delete one, set a tag), then
   the audit entries are committed and the intent cleared in one transaction.

Whoever takes a lease that still carries an intent finishes it first (roll forward: the change was
decided under the lease, with its checks and approvals, and every operation may be applied twice), so a
crash anywhere leaves either no trace or a change that the next registry command completes.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from driftloop.errors import ConflictError
from driftloop.runtime.holders import holder_gone, new_holder
from driftloop.storage.metadata import ModelTransitionRow, RegistryLockRow

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from driftloop.core.models import Stage
    from driftloop.core.promotion import Action, CheckResult, Outcome
    from driftloop.storage.metadata import Database

__all__ = ["Lease", "Leases", "Plan", "audit_entry", "entry_row"]


@dataclass(frozen=True)
class Plan:
    """A decided stage change: MLflow operations, then the audit entries that record it.

    An operation is ``{"op": "alias", "alias": A, "version": V}`` (``V`` None: delete the alias) or
    ``{"op": "stage", "version": V, "stage": S}`` (the version's ``driftloop.stage`` tag). An entry is
    the keyword arguments of an audit row (see :func:`entry_row`).
    """

    ops: tuple[dict[str, Any], ...]
    entries: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {"ops": list(self.ops), "entries": list(self.entries)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(tuple(data.get("ops") or ()), tuple(data.get("entries") or ()))


class Lease:
    """A held lease on one model's stage changes (see the module docstring)."""

    def __init__(self, db: Database, model: str, holder: str, leftover: Plan | None, was: str) -> None:
        self._db = db
        self.model = model
        self.holder = holder
        self.leftover = leftover  # the intent a dead holder left, to finish before anything else
        self.interrupted = was  # that holder

    def commit_intent(self, plan: Plan) -> None:
        """Write ``plan`` to the lease row (committed) before any of its operations runs."""
        with self._db.session() as session:
            self._mine(session, intent=plan.to_json())

    def complete(self, entries: tuple[dict[str, Any], ...]) -> None:
        """Commit ``entries`` and clear the intent, in one transaction."""
        with self._db.session() as session:
            for entry in entries:
                session.add(entry_row(self.model, entry))
            self._mine(session, intent=None)
        self.leftover = None

    def _mine(self, session: Any, **values: Any) -> None:
        result = session.execute(
            sa.update(RegistryLockRow)
            .where(RegistryLockRow.model == self.model, RegistryLockRow.holder == self.holder)
            .values(**values)
        )
        if _rows(result) != 1:
            raise ConflictError(
                f"lost the registry lease on {self.model} (taken over after it expired): nothing was "
                "changed by this command beyond what its intent records; run it again"
            )


class Leases:
    """Taking and releasing the per-model leases of one metadata database."""

    def __init__(self, db: Database, *, ttl_s: float = 120.0, wait_s: float = 30.0) -> None:
        self._db = db
        self._ttl = timedelta(seconds=ttl_s)
        self._wait_s = wait_s

    @contextlib.contextmanager
    def held(self, model: str) -> Iterator[Lease]:
        """Hold ``model``'s lease for the block (waiting up to ``wait_s`` for a live holder); released
        on exit. An intent still set on release (the block failed half-way) is left for the next holder
        to finish."""
        lease = self._acquire(model)
        try:
            yield lease
        finally:
            with contextlib.suppress(Exception), self._db.session() as session:
                session.execute(
                    sa.update(RegistryLockRow)
                    .where(RegistryLockRow.model == model, RegistryLockRow.holder == lease.holder)
                    .values(holder="", expires_at=None)
                )

    def interrupted(self) -> list[str]:
        """Models whose lease a dead holder left behind (with or without an unfinished intent)."""
        with self._db.session() as session:
            rows = session.scalars(sa.select(RegistryLockRow)).all()  # one row per model: small
            now = datetime.now(UTC)
            return [r.model for r in rows if _abandoned(r, now)]

    def _acquire(self, model: str) -> Lease:
        me = new_holder()
        deadline = time.monotonic() + self._wait_s
        pause = 0.01
        while True:
            with self._db.session() as session:
                row = session.get(RegistryLockRow, model)
                if row is None:
                    with contextlib.suppress(sa.exc.IntegrityError), session.begin_nested():
                        session.add(RegistryLockRow(model=model, holder="", acquired_at=None))
                    row = session.get(RegistryLockRow, model)
                    assert row is not None
                now = datetime.now(UTC)
                seen, intent = row.holder, row.intent
                if not seen or holder_gone(seen, row.expires_at, now):
                    # Compare-and-set on the holder seen: of two processes that saw it free, one wins.
                    won = session.execute(
                        sa.update(RegistryLockRow)
                        .where(RegistryLockRow.model == model, RegistryLockRow.holder == seen)
                        .values(holder=me, acquired_at=now, expires_at=now + self._ttl)
                    )
                    if _rows(won) == 1:
                        leftover = Plan.from_json(intent) if intent else None
                        return Lease(self._db, model, me, leftover, seen)
            if time.monotonic() >= deadline:
                raise ConflictError(
                    f"{model} is being changed by {seen} (lease held beyond {self._wait_s:g} s); try again"
                )
            time.sleep(pause)  # a live holder finishes in well under a second; poll, backing off
            pause = min(pause * 2, 0.2)


def _abandoned(row: RegistryLockRow, now: datetime) -> bool:
    """A lease a dead holder still names, or an intent a failed command left with the lease free."""
    if row.holder:
        return holder_gone(row.holder, row.expires_at, now)
    return bool(row.intent)


def _rows(result: Any) -> int:
    """Rows an UPDATE matched (``CursorResult.rowcount``; typed as a plain ``Result`` by SQLAlchemy)."""
    return int(result.rowcount)


def audit_entry(
    version: int,
    action: Action,
    move: tuple[Stage, Stage],
    outcome: Outcome,
    *,
    actor: str,
    reasons: Sequence[str],
    comment: str = "",
    checks: Sequence[CheckResult] = (),
    replaced: int | None = None,
) -> dict[str, Any]:
    """One audit entry ``move[0] → move[1]``, as the JSON an intent carries (see :func:`entry_row`)."""
    return {
        "version": version,
        "action": action,
        "from_stage": move[0].value,
        "to_stage": move[1].value,
        "outcome": outcome,
        "actor": actor,
        "comment": comment,
        "reasons": list(reasons),
        "checks": [c.to_json() for c in checks],
        "replaced_version": replaced,
    }


def entry_row(model: str, entry: dict[str, Any]) -> ModelTransitionRow:
    """The audit row of one plan entry."""
    return ModelTransitionRow(
        model=model,
        version=int(entry["version"]),
        action=entry["action"],
        from_stage=entry["from_stage"],
        to_stage=entry["to_stage"],
        outcome=entry["outcome"],
        actor=entry["actor"],
        comment=entry.get("comment", ""),
        reasons=list(entry.get("reasons", ())),
        checks=list(entry.get("checks", ())),
        replaced_version=entry.get("replaced_version"),
        created_at=datetime.now(UTC),
    )
