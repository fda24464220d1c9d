"""With auth on, ``promote``, ``approve`` and ``rollback`` act as the token's identity, which every audit row
records (SQLite and PostgreSQL); no free-text ``--by`` that differs. With auth off, ``--by`` as before."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from mlflow.tracking import MlflowClient

from driftloop.storage.metadata import ModelApprovalRow, ModelTransitionRow

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import MlflowServer, Result


@pytest.fixture
def model(mlflow_server: MlflowServer, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two registered versions of a fresh model, each with a run; policy without checks or evidence (the
    gates are tested elsewhere: here only who acts matters); the metadata database at ``db_url``."""
    name = f"auth-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(mlflow_server.url)
    experiment = client.create_experiment(f"exp-{name}")
    client.create_registered_model(name)
    for _ in range(2):
        run = client.create_run(experiment)
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    monkeypatch.setenv("DRIFTLOOP_TRACKING__URI", mlflow_server.url)
    monkeypatch.setenv("DRIFTLOOP_DATABASE__URL", db_url)
    monkeypatch.setenv("DRIFTLOOP_POLICY__CHECKS", "[]")
    monkeypatch.setenv("DRIFTLOOP_POLICY__PRODUCTION_EVIDENCE", "[]")
    return name


def _token(cli: Callable[..., Result], *args: str) -> str:
    result = cli("auth", "create", *args)
    assert result.code == 0, result.err
    return result.out.strip()


def _one_line(result: Result, code: int) -> str:
    assert result.code == code, result.out + result.err
    [line] = result.err.splitlines()
    return line


def test_promote_approve_and_rollback_record_the_tokens_identity(
    cli: Callable[..., Result], model: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _token(cli, "ops", "--role", "admin")
    monkeypatch.setenv("DRIFTLOOP_TOKEN", root)
    releaser = _token(cli, "release-bot", "--role", "promote")
    lead = _token(cli, "lead", "--role", "approve")
    monkeypatch.setenv("DRIFTLOOP_AUTH__ENABLED", "true")

    monkeypatch.delenv("DRIFTLOOP_TOKEN")
    assert _one_line(cli("promote", model, "1", "--to", "staging"), 1) == (
        "error: with auth on, this command (role promote) needs a token: set DRIFTLOOP_TOKEN (or auth.token) "
        "to a token with that role (driftloop auth create NAME --role …)"
    )
    monkeypatch.setenv("DRIFTLOOP_TOKEN", lead)
    assert _one_line(cli("promote", model, "1", "--to", "staging"), 1) == (
        "error: the token of 'lead' lacks the promote role (it has: approve)"
    )
    monkeypatch.setenv("DRIFTLOOP_TOKEN", releaser)
    assert _one_line(cli("promote", model, "1", "--to", "staging", "--by", "alice"), 2) == (
        "error: --by 'alice' differs from the token's identity 'release-bot': with auth on the actor is the "
        "token's identity (drop --by)"
    )
    assert (
        cli("promote", model, "1", "--to", "staging", "--by", "release-bot").code == 0
    )  # repeating it is fine
    assert _one_line(cli("approve", model, "1", "--comment", "mine"), 1) == (
        "error: the token of 'release-bot' lacks the approve role (it has: promote)"
    )
    monkeypatch.setenv("DRIFTLOOP_TOKEN", lead)
    approved = cli("approve", model, "1", "--comment", "reviewed")
    assert approved.code == 0, approved.err
    assert approved.out.strip() == f"approved {model}/1 for Production by lead: reviewed"

    monkeypatch.setenv("DRIFTLOOP_TOKEN", releaser)
    assert cli("promote", model, "1", "--to", "production").code == 0
    assert cli("promote", model, "2", "--to", "staging").code == 0
    monkeypatch.setenv("DRIFTLOOP_TOKEN", lead)
    assert cli("approve", model, "2", "--comment", "again", "--by", "lead").code == 0
    monkeypatch.setenv("DRIFTLOOP_TOKEN", releaser)
    assert cli("promote", model, "2", "--to", "production").code == 0
    rolled = cli("rollback", model, "--comment", "alarms")
    assert rolled.code == 0, rolled.err

    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        transitions = conn.execute(
            sa.select(ModelTransitionRow.action, ModelTransitionRow.version, ModelTransitionRow.actor)
            .where(ModelTransitionRow.model == model)
            .order_by(ModelTransitionRow.id)
        ).all()
        approvals = conn.execute(
            sa.select(ModelApprovalRow.version, ModelApprovalRow.actor).where(ModelApprovalRow.model == model)
        ).all()
    engine.dispose()
    expected = [("promote", 1), ("promote", 1), ("promote", 2), ("promote", 2), ("demote", 1)]
    assert [(a, v) for a, v, _ in transitions] == [*expected, ("rollback", 1), ("demote", 2)]
    assert {actor for _, _, actor in transitions} == {"release-bot"}  # every row, nothing refused by auth
    assert sorted(approvals) == [(1, "lead"), (2, "lead")]

    history = cli("models", "history", model).out
    assert re.search(r"v1\s+approve\s+for Production\s+given\s+by lead: reviewed", history)
    assert re.search(r"v2\s+approve\s+for Production\s+given\s+by lead: again", history)
    assert "by release-bot" in history


def test_with_auth_off_by_or_the_os_user_is_recorded_as_before(
    cli: Callable[..., Result], model: str, db_url: str
) -> None:
    assert cli("promote", model, "1", "--to", "staging", "--by", "ana").code == 0
    assert _one_line(cli("approve", model, "1", "--comment", "ok"), 2) == (
        "error: approve needs --by WHO: the approver is recorded (with auth on: the token's identity)"
    )
    assert cli("approve", model, "1", "--by", "lead", "--comment", "ok").code == 0
    assert cli("promote", model, "1", "--to", "production").code == 0  # no --by: the OS user
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        actors = conn.execute(
            sa.select(ModelTransitionRow.actor)
            .where(ModelTransitionRow.model == model)
            .order_by(ModelTransitionRow.id)
        ).scalars()
        recorded = list(actors)
    engine.dispose()
    assert recorded[0] == "ana"
    assert recorded[1] not in ("ana", "lead", "")
