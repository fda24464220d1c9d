"""kill -9 at every step of a stage change, and aliases moved behind driftloop's back (issue 20).

Each case gives a model of its own (versions registered from the plant's first run, so nothing is
trained here), its own metadata database (SQLite and PostgreSQL) and a policy without checks, approval
or comparison evidence: these tests are about the lease, the intent and the audit, not the policy.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mlflow.tracking import MlflowClient

from driftloop.core.models import Stage
from driftloop.core.promotion import CheckResult
from driftloop.errors import ApprovalRequiredError, PolicyError
from driftloop.registry import Registry
from driftloop.registry.changes import Changes
from driftloop.registry.gates import StageGate
from driftloop.registry.promotion import Promoter
from driftloop.settings import load_settings
from driftloop.storage.metadata import open_metadata
from driftloop.tracking import Tracker
from tests.conftest import mlflow_state_kept, wait_for
from tests.workspace import Workspace

if TYPE_CHECKING:
    from collections.abc import Iterator

    from driftloop.storage.metadata import Database
    from tests.conftest import MlflowServer
    from tests.registry.conftest import Plant

REPO = Path(__file__).resolve().parents[2]  # where ``tests`` is importable from

# No checks, no approval, no evidence: every promotion the policy would allow goes straight through.
POLICY = {
    "DRIFTLOOP_POLICY__CHECKS": "[]",
    "DRIFTLOOP_POLICY__REQUIRE_APPROVAL_FOR": "[]",
    "DRIFTLOOP_POLICY__PRODUCTION_EVIDENCE": "[]",
}


class Model:
    """A fresh registered model with three versions, its workspace and its metadata database."""

    def __init__(self, plant: Plant, server: MlflowServer, db_url: str, tmp_path: Path) -> None:
        self.client = MlflowClient(server.url)
        self.name = f"crash-{uuid.uuid4().hex[:8]}"
        source = self.client.get_model_version(plant.name, "1")
        self.client.create_registered_model(self.name)
        for _ in range(3):
            model_id = source.source.removeprefix("models:/")  # an MLflow 3 logged model, named by id
            mv = self.client.create_model_version(
                self.name, source.source, run_id=source.run_id, model_id=model_id
            )
            self.client.set_model_version_tag(self.name, mv.version, "driftloop.stage", "None")
        (tmp_path / "driftloop.toml").write_text(
            f'[tracking]\nuri = "{server.url}"\n[registry]\nmodel_name = "{self.name}"\n'
        )
        self.env = {**POLICY, "DRIFTLOOP_DATABASE__URL": db_url}
        self.ws = Workspace(tmp_path, self.name, {**plant.env, **self.env})
        self._tmp = tmp_path
        self.opened: list[Database] = []  # disposed by the fixture, before its schema is dropped

    def killed_at(self, point: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``driftloop ARGS…`` in the workspace, ``kill -9``-ed at ``point`` (tests.registry.armed)."""
        path = os.pathsep.join([str(REPO), *filter(None, [self.ws.env.get("PYTHONPATH")])])
        return subprocess.run(
            [sys.executable, "-m", "tests.registry.armed", "crash", point, *args],
            cwd=self.ws.directory,
            env={**self.ws.env, "PYTHONPATH": path},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def promoter(self, monkeypatch: pytest.MonkeyPatch, **policy: str) -> Promoter:
        for key, value in {**self.env, **policy}.items():
            monkeypatch.setenv(key, value)
        settings = load_settings(self._tmp / "driftloop.toml")
        db = open_metadata(settings.database_url)
        self.opened.append(db)
        return Promoter(settings, db, tracker=Tracker(settings))

    def state(self) -> tuple[str | None, str | None, dict[str, str]]:
        """(production alias, staging alias, each version's stage tag) as MLflow has them."""
        model = self.client.get_registered_model(self.name)
        aliases = dict(model.aliases or {})
        tags = {
            mv.version: mv.tags.get("driftloop.stage", "")
            for mv in self.client.search_model_versions(f"name='{self.name}'")
        }
        return aliases.get("production"), aliases.get("staging"), tags


@pytest.fixture
def model(
    plant: Plant, mlflow_server: MlflowServer, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Model]:
    """v1 in Production and v2 in Staging, put there by driftloop; v3 registered, never promoted."""
    with mlflow_state_kept():
        m = Model(plant, mlflow_server, db_url, tmp_path)
        promoter = m.promoter(monkeypatch)
        for version, to in ((1, Stage.STAGING), (1, Stage.PRODUCTION), (2, Stage.STAGING)):
            promoter.promote(m.name, version, to, actor="setup")
        yield m
        for db in m.opened:
            db.dispose()


# Every point a promotion of v2 to Production passes: its intent committed; production alias on v2;
# staging alias gone; v2 tagged; v1 tagged Archived; the audit committed (lease not yet released).
POINTS = ["intent", "op-1", "op-2", "op-3", "op-4", "complete"]


@pytest.mark.parametrize("point", POINTS)
def test_a_promotion_killed_at_any_step_is_finished_by_the_next_command(model: Model, point: str) -> None:
    killed = model.killed_at(point, "promote", model.name, "2", "--to", "production", "--by", "carol")
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    listed = model.ws.run("models", "list", model.name)  # any registry command finishes it first
    assert listed.returncode == 0, listed.stderr
    if point != "complete":  # at "complete" only the lease was left: nothing to finish
        assert f"finished an interrupted stage change of {model.name}" in listed.stderr
    assert "!" not in listed.stderr, listed.stderr  # MLflow agrees with the audit again

    production, staging, tags = model.state()
    assert (production, staging) == ("2", None)
    assert tags == {"1": "Archived", "2": "Production", "3": "None"}
    # The descriptions MLflow's UI shows were rewritten with the change, or by whoever finished it.
    described = model.client.get_registered_model(model.name).description
    assert "| `production` | 2 | Production |" in described
    assert "`staging`" not in described
    assert "**driftloop.stage: Archived**" in model.client.get_model_version(model.name, "1").description
    rows = [line for line in listed.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert sum("Production" in line for line in rows) == 1, listed.stdout

    history = model.ws.run("models", "history", model.name)
    assert history.returncode == 0, history.stderr
    done = [line for line in history.stdout.splitlines() if " v2 " in line and "Staging → Production" in line]
    assert len(done) == 1, history.stdout  # exactly once, by the user who asked
    assert "by carol" in done[0]
    assert ("interrupted" in done[0]) == (point != "complete")
    archived = [line for line in history.stdout.splitlines() if "v1" in line and "→ Archived" in line]
    assert len(archived) == 1, history.stdout

    # And the next promotion works: the lease is free.
    model.ws.run("promote", model.name, "3", "--to", "staging")
    assert model.state()[1] == "3"


def test_a_rollback_killed_half_way_is_finished_too(model: Model) -> None:
    assert model.ws.run("promote", model.name, "2", "--to", "production").returncode == 0
    killed = model.killed_at("op-1", "rollback", model.name, "--by", "dave")
    assert killed.returncode == -signal.SIGKILL
    assert model.state()[0] == "1"  # the alias moved, the tags and the audit did not
    again = model.ws.run("rollback", model.name, "--by", "dave")
    # The interrupted rollback is finished first; the new one then finds v1 is the first production
    # version and is refused — and recorded.
    assert "finished an interrupted stage change" in again.stderr
    assert again.returncode == 1
    assert "first production version" in again.stderr
    production, _staging, tags = model.state()
    assert (production, tags["1"], tags["2"]) == ("1", "Production", "Archived")
    history = model.ws.run("models", "history", model.name).stdout
    rollbacks = [line for line in history.splitlines() if re.search(r" v\d+ +rollback ", line)]
    assert [("done" in line, "refused" in line) for line in rollbacks] == [(True, False), (False, True)]


def test_every_attempt_is_recorded_refusals_and_repeats_included(
    model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    promoter = model.promoter(monkeypatch)
    for _ in range(3):  # "already in Production", three times: three entries
        assert not promoter.promote(model.name, 1, Stage.PRODUCTION, actor="erin").changed
    with pytest.raises(PolicyError, match="not Staging"):
        promoter.promote(model.name, 3, Stage.PRODUCTION, actor="erin")
    # A refusal decided under the lease (the comparison's champion is not production any more) too.
    stale = CheckResult("offline_comparison", True, "v2 beats v3", {"champion_version": 3})
    with pytest.raises(PolicyError, match="production changed during the comparison"):
        promoter.promote(model.name, 2, Stage.PRODUCTION, actor="erin", evidence=[stale])
    history = promoter.history(model.name)
    assert [t.outcome for t in history if t.actor == "erin"] == ["unchanged"] * 3 + ["refused"] * 2
    assert model.state()[:2] == ("1", "2")  # nothing moved


def test_a_missing_approval_alone_is_approval_required_and_anything_more_a_refusal(
    model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    promoter = model.promoter(monkeypatch, DRIFTLOOP_POLICY__REQUIRE_APPROVAL_FOR='["production"]')
    with pytest.raises(PolicyError, match="not Staging") as refused:  # unapproved, and not in Staging
        promoter.promote(model.name, 3, Stage.PRODUCTION, actor="erin")
    assert not isinstance(refused.value, ApprovalRequiredError)
    assert not promoter.approved(model.name, 2, Stage.PRODUCTION)
    with pytest.raises(ApprovalRequiredError, match=f"driftloop approve {model.name} 2 --to production"):
        promoter.promote(model.name, 2, Stage.PRODUCTION, actor="erin")
    promoter.approve(model.name, 2, Stage.PRODUCTION, actor="lead", comment="reviewed")
    assert promoter.approved(model.name, 2, Stage.PRODUCTION)
    assert promoter.promote(model.name, 2, Stage.PRODUCTION, actor="erin").changed
    assert model.state()[:2] == ("2", None)
    asked = [(t.version, t.outcome) for t in promoter.history(model.name) if t.to_stage == Stage.PRODUCTION]
    assert asked[-3:] == [(3, "refused"), (2, "refused"), (2, "done")]


def test_a_production_alias_moved_by_hand_is_detected_recorded_alerted_and_reverted(
    model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    promoter = model.promoter(monkeypatch)
    alerts: list[str] = []
    gate = StageGate(promoter.changes, model.name, Stage.PRODUCTION, alert=alerts.append)
    assert gate.resolve() == 1
    # What the issue did through MLflow's REST API: production moved to a version never approved.
    model.client.set_registered_model_alias(model.name, "production", "3")
    model.client.set_model_version_tag(model.name, "3", "driftloop.stage", "Production")
    assert gate.resolve() == 1  # never served
    assert model.state()[0] == "1"  # put back
    assert model.state()[2]["3"] == "None"
    assert len(alerts) == 1
    assert "outside driftloop" in alerts[0]
    history = promoter.history(model.name)
    assert [(t.action, t.outcome, t.version) for t in history[-2:]] == [
        ("out_of_band", "detected", 3),
        ("revert", "done", 3),
    ]
    assert gate.resolve() == 1
    assert len(promoter.history(model.name)) == len(history)
    # Deleting the alias is an out-of-band change too.
    model.client.delete_registered_model_alias(model.name, "production")
    assert gate.resolve() == 1
    assert model.state()[0] == "1"
    assert len(alerts) == 2


def test_without_revert_the_move_is_recorded_once_and_the_audited_version_is_still_served(
    model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    promoter = model.promoter(monkeypatch)
    gate = StageGate(promoter.changes, model.name, Stage.PRODUCTION, revert=False)
    model.client.set_registered_model_alias(model.name, "production", "3")
    before = len(promoter.history(model.name))
    assert [gate.resolve() for _ in range(3)] == [1, 1, 1]
    assert len(promoter.history(model.name)) == before + 1  # one detection, not one per poll
    assert model.state()[0] == "3"
    listed = model.ws.run("models", "list", model.name)
    rows = [line for line in listed.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert sum("Production" in line for line in rows) == 1, listed.stdout  # never two Production
    assert "v3: MLflow's stage tag or aliases differ from the audit" in listed.stderr


def test_a_new_metadata_database_adopts_the_registry_once_then_the_audit_decides(
    model: Model, tmp_path: Path
) -> None:
    # Another database (an upgrade, a move to PostgreSQL): the model's aliases are adopted, recorded.
    fresh = open_metadata(f"sqlite:///{tmp_path / 'fresh.db'}")
    model.opened.append(fresh)
    changes = Changes(fresh, Registry(load_settings(tmp_path / "driftloop.toml")))
    assert changes.holder(model.name, Stage.PRODUCTION) == 1
    assert changes.holder(model.name, Stage.STAGING) == 2
    assert [t.action for t in changes.audit.history(model.name)] == ["adopt", "adopt"]
    # From now on a hand-moved alias is out-of-band, not adopted again.
    model.client.set_registered_model_alias(model.name, "production", "3")
    assert StageGate(changes, model.name, Stage.PRODUCTION).resolve() == 1


def test_the_service_never_swaps_to_a_hand_moved_alias_and_puts_it_back(
    model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's reproduction: production moved through MLflow's API, then a registry webhook."""
    from fastapi.testclient import TestClient

    from driftloop.serving.server import build_app

    service = {
        "DRIFTLOOP_CAPTURE__ENABLED": "false",
        "DRIFTLOOP_SERVING__SHADOW": "false",
        "DRIFTLOOP_SERVING__POLL_INTERVAL_S": "3600",  # only the webhook wakes it
    }
    for key, value in {**model.env, **service}.items():
        monkeypatch.setenv(key, value)
    app = build_app(load_settings(model.ws.directory / "driftloop.toml"))
    with TestClient(app) as client:
        assert client.get("/v1/model").json()["current"]["version"] == 1
        model.client.set_registered_model_alias(model.name, "production", "3")
        event = {"entity": "model_version_alias", "action": "created", "data": {"alias": "production"}}
        assert client.post("/v1/registry-events", json=event).status_code == 202
        # The gate runs on the follower's thread: wait for its revert.
        wait_for(lambda: model.state()[0] == "1", 60, "the out-of-band alias to be put back")
        assert client.get("/v1/model").json()["current"]["version"] == 1
    history = model.ws.run("models", "history", model.name).stdout
    assert "out_of_band" in history
    assert "by driftloop-gate" in history
