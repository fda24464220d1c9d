"""Validation in the pipeline: every bad row lands in quarantine with its reasons; incidents stop runs."""

from __future__ import annotations

import io

import pandas as pd

from driftloop.core.runs import StepStatus
from driftloop.data.screen import escape
from driftloop.pipeline import records
from driftloop.pipeline.runner import PipelineFailedError
from tests.pipeline.conftest import Env, params


def _quarantine(env: Env, run_id: str) -> pd.DataFrame:
    data = env.store.read_bytes(f"quarantine/{run_id}/rejected.csv")
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)


def test_corrupt_and_missing_rows_are_quarantined_with_reasons(env: Env) -> None:
    env.simulate(days=3, rows=2000, drifts=("corrupt:severity=0.01", "missing:severity=0.01"))
    runner, _ = env.runner()
    view = runner.run(params(until="validate"))
    summary = view.step("validate").summary
    quarantine = _quarantine(env, view.id)
    # Nothing lost: every input row is valid or quarantined (unlabeled rows are counted, not dropped).
    assert summary["valid"] + summary["rejected"] == summary["rows_in"] == 6000
    assert len(quarantine) == summary["rejected"]
    reasons = " ".join(quarantine["_reasons"])
    assert ": missing" in reasons  # sensor dropouts
    assert "not a number" in reasons or "below" in reasons or "above" in reasons  # corrupt values
    assert sum(summary["reasons"].values()) >= summary["rejected"]
    # The quarantined rows keep their original text and where they came from.
    assert quarantine["_source"].str.startswith("raw/plant/date=").all()
    assert 0.01 < summary["bad_share"] < 0.05


def test_above_the_threshold_is_a_data_incident_that_keeps_its_quarantine(env: Env) -> None:
    env.simulate(days=2, rows=1000, drifts=("corrupt:severity=0.2",))
    runner, executor = env.runner()
    try:
        runner.run(params())
    except PipelineFailedError as exc:
        message = exc.headline
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("a 20 % corrupt batch must stop the run")
    assert "data incident" in message
    assert "data.max_bad_share" in message
    run_id = message.rsplit(" ", 1)[-1]
    view = records.get_run(env.db, run_id)
    assert view.step("validate").status == StepStatus.FAILED
    assert view.step("transform").status == StepStatus.PENDING
    assert executor.calls == ["ingest", "validate"]
    assert len(_quarantine(env, run_id)) > 300


RAW_DAY = "raw/plant/date=2026-01-01/part-0000.csv"


def _damage(env: Env) -> tuple[list[bytes], dict[str, int]]:
    """Insert bad lines among the simulated ones; returns the file's lines and where each bad one is."""
    lines = env.store.read_bytes(RAW_DAY).split(b"\n")
    header = lines[0].decode().split(",")
    template = lines[1].split(b",")

    def row(record_id: str, **values: bytes) -> bytes:
        fields = list(template)
        fields[header.index("record_id")] = record_id.encode()
        for name, value in values.items():
            fields[header.index(name)] = value
        return b",".join(fields)

    bad = {
        "latin1": row("x-latin1", machine_id=b"M\xe9"),  # café written as latin-1
        "binary": b"\x00\x00\x00\x07\x1b[2J\xff\xfe",
        "fields": row("x-fields") + b",surplus",
        "nan": row("x-nan", torque_nm=b"NaN"),
        "empty": row("x-empty", torque_nm=b""),
    }
    at = {"latin1": 5, "binary": 40, "fields": 300, "nan": 700, "empty": 701}  # 1-based line numbers
    for name in sorted(at, key=at.__getitem__):
        lines.insert(at[name] - 1, bad[name])
    env.store.write_bytes(RAW_DAY, b"\n".join(lines))
    return lines, at


def test_bad_bytes_cost_only_their_line_and_the_quarantine_keeps_the_original_text(env: Env) -> None:
    env.simulate(days=1, rows=1500)
    lines, at = _damage(env)
    runner, _ = env.runner()
    view = runner.run(params(until="validate"))  # completes: one bad byte is no reason to stop a run

    ingest = view.step("ingest").summary
    assert ingest["rows"] == 1500 + 2  # the simulated rows plus the "NaN" and empty-torque rows
    assert ingest["malformed_lines"] == 3
    malformed = pd.read_csv(
        io.BytesIO(env.store.read_bytes(f"quarantine/{view.id}/malformed.csv")),
        dtype=str,
        keep_default_na=False,
    )
    assert list(malformed.columns) == ["_source", "line", "text", "_reasons"]
    assert (malformed["_source"] == RAW_DAY).all()
    by_line = {
        int(line): (text, reason)
        for line, text, reason in zip(
            malformed["line"], malformed["text"], malformed["_reasons"], strict=True
        )
    }
    assert set(by_line) == {at["latin1"], at["binary"], at["fields"]}
    for line, (text, _) in by_line.items():
        assert text == escape(lines[line - 1])  # the line's own bytes, escaped
        assert text.isprintable()
    assert by_line[at["binary"]] == (
        "\\x00\\x00\\x00\\x07\\x1b[2J\\xff\\xfe",
        "not UTF-8: byte 0xff at column 9",
    )
    assert by_line[at["latin1"]][1].startswith("not UTF-8: byte 0xe9 at column ")
    assert by_line[at["fields"]][1] == "malformed CSV line: expected 9 fields, got 10"

    summary = view.step("validate").summary
    assert summary["rows_in"] == 1500 + 2 + 3
    assert summary["valid"] == 1500  # every simulated row went through
    assert summary["rejected"] == 2 + 3
    assert summary["reasons"]["malformed CSV line"] == 3
    assert summary["reasons"]["torque_nm: not a number"] == 1

    data = env.store.read_bytes(f"quarantine/{view.id}/rejected.csv")
    rejected = _quarantine(env, view.id).set_index("record_id")
    # "NaN" stays the text it was (not an empty cell, not a float), distinct from a truly empty value.
    assert rejected.loc["x-nan", "torque_nm"] == "NaN"
    assert rejected.loc["x-nan", "_reasons"] == "torque_nm: not a number"
    assert rejected.loc["x-empty", "torque_nm"] == ""
    assert rejected.loc["x-empty", "_reasons"] == "torque_nm: missing"
    assert b'"NaN"' in data  # quoted text in the file; a reader needs keep_default_na=False to keep it
