"""`driftloop pipeline` end to end through the CLI: each step in its own subprocess, local and S3."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from driftloop.core.transform import Transform
from driftloop.features import feature_store_for
from driftloop.settings import load_settings

if TYPE_CHECKING:
    from driftloop.settings import S3Settings


@pytest.fixture(params=["local", "s3"])
def configured(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A driftloop.toml in the working directory pointing at a local root or a moto S3 bucket."""
    if request.param == "local":
        (tmp_path / "driftloop.toml").write_text("")
        return str(tmp_path / ".driftloop")
    s3: S3Settings = request.getfixturevalue("s3_settings")
    bucket = request.getfixturevalue("s3_bucket")
    root = f"s3://{bucket}/loop"
    (tmp_path / "driftloop.toml").write_text(
        f'[storage]\nroot = "{root}"\n[storage.s3]\nendpoint_url = "{s3.endpoint_url}"\n'
        'access_key_id = "testing"\nsecret_access_key = "testing"\n'
    )
    return root


def test_simulate_then_pipeline_produces_a_feature_version(cli, configured: str, tmp_path: Path) -> None:
    sim = cli(
        "simulate",
        "--start",
        "2026-01-01",
        "--days",
        "3",
        "--rows-per-day",
        "1500",
        "--machines",
        "8",
        "--seed",
        "3",
        "--drift",
        "corrupt:severity=0.01",
    )
    assert sim.code == 0, sim.err
    result = cli("pipeline", "run", "--until", "features", "--as-of", "2026-01-10")
    assert result.code == 0, result.err
    for step in ("ingest", "validate", "transform", "features"):
        assert step in result.out
    assert "feature version" in result.out
    assert "    ingest: files 3/3  " in result.out  # progress inside the step: plain lines off a terminal

    listing = cli("features", "list")
    assert listing.code == 0
    settings = load_settings(cwd=tmp_path)
    store = feature_store_for(settings)
    [version] = store.list()
    assert version.short in listing.out
    assert version.lineage["validation"]["rejected"] > 0  # the corrupt rows were quarantined, not trained on
    assert len(version.lineage["raw_partitions"]) == 3

    run_id = version.lineage["pipeline_run"]
    shown = cli("pipeline", "show", run_id)
    assert shown.code == 0
    assert "quarantine/" in shown.out
    assert run_id in cli("pipeline", "list").out
    # The same records for scripts: one JSON document each.
    run = json.loads(cli("pipeline", "show", run_id, "--json").out)
    assert run["id"] == run_id
    assert [s["step"] for s in run["steps"]] == ["ingest", "validate", "transform", "features"]
    assert [r["id"] for r in json.loads(cli("pipeline", "list", "--json").out)] == [run_id]
    assert json.loads(cli("features", "show", version.short, "--json").out)["id"] == version.id
    assert [v["id"] for v in json.loads(cli("features", "list", "--json").out)] == [version.id]

    # features pull gives back exactly the versioned bytes, through DVC.
    pulled = cli("features", "pull", version.short, "--out", str(tmp_path / "pulled.csv"))
    assert pulled.code == 0, pulled.err
    data = (tmp_path / "pulled.csv").read_bytes()
    assert pd.read_csv(io.BytesIO(data)).shape[0] == version.rows

    # Train/serve parity: the service's transform of the raw fields equals the stored features.
    frame = pd.read_csv(io.BytesIO(data))
    transform = Transform.from_json(store.transform_json(version.id))
    records = frame[transform.input_names].to_dict(orient="records")  # what JSON requests carry
    served = np.vstack([transform.encode_records([record]) for record in records[:200]])
    stored = frame[transform.feature_names].to_numpy(dtype=np.float32)[:200]
    assert np.array_equal(served, stored)

    again = cli("pipeline", "run", "--until", "features", "--as-of", "2026-01-10")
    assert again.code == 0
    assert again.out.count("cached") == 4


# slow: a whole pipeline run, then a resumed one (70 s under load)
@pytest.mark.slow
def test_failed_step_points_at_its_log_and_resume_finishes(cli, tmp_path: Path) -> None:
    # Plain `python -m driftloop pipeline step …` processes here (the pre-warmed fork server elsewhere).
    runner = '[pipeline.runner]\ntype = "local"\nprewarm = false\n'
    (tmp_path / "driftloop.toml").write_text(runner + '[data]\nderived_features = ["warp_factor"]\n')
    assert cli("simulate", "--start", "2026-01-01", "--days", "2", "--rows-per-day", "500").code == 0
    failed = cli("pipeline", "run", "--until", "features", "--as-of", "2026-01-10")
    assert failed.code == 1
    [line] = failed.err.strip().splitlines()
    assert "step transform failed" in line
    assert "unknown derived feature 'warp_factor'" in line
    assert "transform/step.log" in line
    run_id = line.rsplit(" ", 1)[-1]
    log_path = line.split("(log: ", 1)[1].split(")", 1)[0]
    assert "unknown derived feature" in Path(log_path).read_text()

    (tmp_path / "driftloop.toml").write_text(runner)  # the fix
    resumed = cli("pipeline", "run", "--resume", run_id)
    assert resumed.code == 0, resumed.err
    assert f"run {run_id} succeeded" in resumed.out
    assert "ingest" not in resumed.out.split("resuming", 1)[1].split("transform", 1)[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pipeline", "run", "--from", "2026-02-30"], "invalid --from"),
        (["pipeline", "run", "--from", "2026-02-03", "--to", "2026-02-01"], "is after --to"),
        (["pipeline", "run", "--until", "bake"], "unknown step 'bake'"),
        (["pipeline", "run", "--resume", "r1", "--until", "ingest"], "--resume continues"),
        (["pipeline", "show", "nope"], "no pipeline run 'nope'"),
        (["features", "show", "abcdef"], "no feature version"),
    ],
)
def test_bad_requests_are_one_line_errors(cli, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.code != 0
    [line] = result.err.strip().splitlines()
    assert message in line


def test_a_label_file_without_a_needed_column_is_one_printable_line(cli, tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text("")
    assert cli("simulate", "--start", "2026-01-01", "--days", "1", "--rows-per-day", "200").code == 0
    [label_file] = (tmp_path / ".driftloop" / "labels" / "plant").rglob("*.csv")
    # No available_at, and a column name with terminal control sequences in it (clear screen, NUL).
    label_file.write_bytes(b"record_id,\x1b[2Jmachine_failure\x00\n20260101-0001,1\n")
    result = cli("pipeline", "run", "--until", "ingest", "--as-of", "2026-01-10")
    assert result.code == 1
    [line] = result.err.strip().splitlines()
    assert "step ingest failed: label file" in line
    assert str(label_file) in line
    assert "has no columns 'machine_failure', 'available_at'" in line
    assert "'\\x1b[2Jmachine_failure\\x00'" in line  # shown escaped, never sent to the terminal
    assert line.isprintable()
