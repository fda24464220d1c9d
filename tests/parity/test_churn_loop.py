"""A churn CSV, not the plant, through the whole loop with no configuration beyond a tracking server:
train → promote under the default policy → serve → feedback → monitor, as a user runs the CLI."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from driftloop.settings import load_settings
from driftloop.storage import store_for
from tests.conftest import free_port
from tests.parity.datasets import DATASETS, client_rows
from tests.serving.test_server import Server
from tests.workspace import Workspace, make_workspace

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import MlflowServer

pytestmark = pytest.mark.slow

CHURN = next(d for d in DATASETS if d.name == "churn")


def test_a_churn_csv_goes_train_promote_serve_monitor(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, mlflow_server, "[serving]\npoll_interval_s = 0.5\n", git=True)
    name = f"churn-{uuid.uuid4().hex[:8]}"
    CHURN.write(tmp_path)  # untracked: the checkout stays clean, the CSV's hash is in the lineage

    train = ("train", "--data", "churn.csv", "--target", "churned", "--register", "--name", name)
    trained = ws.run(*train)
    assert trained.returncode == 0, trained.stderr
    assert "not an input: customer_id — looks like a row id" in trained.stderr
    assert "not an input: signup_date — a date or time" in trained.stderr
    skipped = int((CHURN.frame["churned"].isna()).sum())
    assert f"{skipped} rows have no target value: skipped" in trained.stderr
    assert f"registered {name}/1" in trained.stdout

    # The default policy: compliance checks (reproducibility included), approval, then production.
    staged = ws.run("promote", name, "1", "--to", "staging")
    assert staged.returncode == 0, staged.stderr + staged.stdout
    assert "reproducibility" in staged.stdout
    assert ws.run("approve", name, "1", "--by", "reviewer", "--comment", "checked").returncode == 0
    live = ws.run("promote", name, "1", "--to", "production")
    assert live.returncode == 0, live.stderr

    labelled = _serve_and_label(ws, name)

    monitored = ws.run("monitor", "--model", name, "--window", "1h")
    assert monitored.returncode == 0, monitored.stderr
    report = _report(tmp_path, name)
    assert report["rows"] == 300
    assert {f["name"] for f in report["features"]} == {
        "plan",
        "region",
        "channel",
        "is_member",
        "tenure_months",
        "monthly_charges",
        "clv",
    }
    assert report["quality"]["features"]["plan"]["unknown"] == 1
    assert report["quality"]["invalid_values"] == 0  # booleans and nulls are valid inputs
    performance = report["performance"]
    assert performance["labelled"] == labelled
    assert performance["judged"], performance["why"]
    assert performance["metric"] == "roc_auc"
    assert performance["current"] > 0.75
    assert report["decision"] in ("OK", "WARN", "DRIFT", "DECAY")

    # A second version of a file-trained model is compared with production on the hold-out of its own
    # feature version (the same CSV is the same version: content-addressed), not on the plant's data.
    assert ws.run(*train).returncode == 0
    assert ws.run("promote", name, "2", "--to", "staging").returncode == 0
    assert ws.run("approve", name, "2", "--by", "reviewer", "--comment", "same data").returncode == 0
    # 1,500 rows leave a hold-out of ~290: below the default minimum of 500 labelled rows to compare on.
    second = ws.run(
        "promote", name, "2", "--to", "production", extra_env={"DRIFTLOOP_POLICY__COMPARISON_MIN_ROWS": "250"}
    )
    assert second.returncode == 0, second.stderr
    assert "(the hold-out of feature version" in second.stdout


def _serve_and_label(ws: Workspace, name: str) -> int:
    """Score the last 300 rows through a real `driftloop serve --model`, send their labels back; return
    how many were labelled."""
    server = Server(ws, free_port(), "--model", name)
    server.start()
    try:
        rows = client_rows(CHURN, CHURN.frame.tail(300))
        rows[0]["plan"] = "enterprise"  # a level training never saw: scored, counted as unknown
        answer = httpx.post(f"{server.url}/v1/predict", json={"instances": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        truth = CHURN.frame["churned"].tail(300).to_numpy()
        labels = [
            {"prediction_id": p["id"], "label": int(y == "Yes")}
            for p, y in zip(answer.json()["predictions"], truth, strict=True)
            if isinstance(y, str)
        ]
        assert httpx.post(f"{server.url}/v1/feedback", json={"labels": labels}, timeout=30).status_code == 200
    finally:
        server.stop()  # a clean stop ships what was captured
    return len(labels)


def _report(directory: Path, name: str) -> dict[str, Any]:
    store = store_for(load_settings(cwd=directory))
    [key] = [i.key for i in store.list(f"monitoring/{name}/") if i.key.endswith("report.json")]
    report: dict[str, Any] = json.loads(store.read_bytes(key))
    return report
