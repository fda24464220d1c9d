"""`driftloop simulate` through the CLI: summary, the metadata record, S3 via the configured endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop.settings import load_settings
from driftloop.simulate.records import list_simulations
from driftloop.storage import open_store
from driftloop.storage.metadata import open_metadata

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.settings import S3Settings

ARGS = (
    "simulate",
    "--start",
    "2026-03-01",
    "--days",
    "2",
    "--rows-per-day",
    "300",
    "--machines",
    "4",
    "--seed",
    "5",
)


def test_summary_table_and_metadata_record(cli, tmp_path: Path) -> None:
    result = cli(*ARGS, "--drift", "concept:start=2026-03-02,severity=0.8")
    assert result.code == 0, result.err
    for fragment in (
        "machine failure (any)",
        "tool wear (TWF)",
        "2026-03-01 … 2026-03-02 (2)",
        "concept",
        "600",
    ):
        assert fragment in result.out
    settings = load_settings(cwd=tmp_path)
    db = open_metadata(settings.database_url)
    try:
        [record] = list_simulations(db)
    finally:
        db.dispose()
    assert record.rows == 600
    assert record.drifts[0]["name"] == "concept"
    assert record.output_uri == str(tmp_path / ".driftloop")


def test_out_s3_uses_the_endpoint_named_in_the_configuration(
    cli, tmp_path: Path, s3_settings: S3Settings, s3_bucket: str
) -> None:
    (tmp_path / "driftloop.toml").write_text(
        f'[storage.s3]\nendpoint_url = "{s3_settings.endpoint_url}"\n'
        'access_key_id = "testing"\nsecret_access_key = "testing"\n'
    )
    result = cli(*ARGS, "--out", f"s3://{s3_bucket}/plant")
    assert result.code == 0, result.err
    s3 = open_store(f"s3://{s3_bucket}/plant", s3_settings)
    keys = [info.key for info in s3.list()]
    assert "raw/plant/date=2026-03-01/part-0000.csv" in keys
    assert any(k.startswith("labels/plant/") for k in keys)
    # Same arguments locally: the same bytes.
    assert cli(*ARGS).code == 0
    local = open_store(str(tmp_path / ".driftloop"))
    key = "raw/plant/date=2026-03-02/part-0000.csv"
    assert s3.read_bytes(key) == local.read_bytes(key)


def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path: Path) -> None:
    for args, fragment in (
        (("--drift", "volcano"), "unknown drift scenario"),
        (("--rows-per-day", "-5"), "rows"),
        (("--label-delay", "soon"), "invalid duration"),
    ):
        result = cli(*ARGS, *args)
        assert result.code in (1, 2)
        [line] = result.err.strip().splitlines()
        assert fragment in line, line
    assert not (tmp_path / ".driftloop" / "raw").exists()


def test_unwritable_destination_is_one_line(cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli(*ARGS, "--out", str(blocker))
    assert result.code == 1
    [line] = result.err.strip().splitlines()
    assert line.startswith("error: cannot write")
