"""Drift benchmark: driftloop's streaming drift statistics against Evidently's DataDriftPreset.

1M rows × 20 numeric columns (5 shifted) + 2 categorical (1 shifted), generated deterministically into
Parquet (a reference file and a current window). Evidently runs in its own venv
(``benchmarks/.evidently-venv``, created on first use: it is not a project dependency and cannot import
with pandas 3) on the same files, in a subprocess. driftloop builds the reference profile (timed apart:
that happens at training time), then streams the window from Parquet in chunks through its accumulators
(timed, reading included). Printed: both verdict lists side by side, which must agree, and the time
ratio against Evidently's report computation in the same run (target ≥ 20×). Then a 10M-row window is
streamed in a fresh process whose peak RSS must stay ≤ 0.5 GB. Exit status 0 on MISS; non-zero only
when something crashes.

    .venv/bin/python benchmarks/drift.py [--rows 1000000] [--stream-rows 10000000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from _drift_data import CATEGORICAL, NUMERIC, SHIFTED, write
from _drift_stream import monitor
from driftloop.core.profile import build_profile
from driftloop.settings import MonitoringSettings

HERE = Path(__file__).resolve().parent
EVIDENTLY_VENV = HERE / ".evidently-venv"
# pip ≥ 26 resolves quickly; Evidently 0.7 imports only with pandas < 3.
EVIDENTLY_REQUIREMENTS = ["pip>=26", "evidently==0.7.23", "pandas>=2.2,<3", "pyarrow>=15"]
SPEEDUP_TARGET = 20.0
RSS_TARGET_MB = 500.0


def evidently_python() -> Path:
    """The Evidently venv's interpreter, creating the venv when it is missing or its pins changed."""
    python = EVIDENTLY_VENV / "bin" / "python"
    marker = EVIDENTLY_VENV / "driftloop-requirements.txt"
    wanted = "\n".join(EVIDENTLY_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"creating {EVIDENTLY_VENV} ({', '.join(EVIDENTLY_REQUIREMENTS)}) …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(EVIDENTLY_VENV)], check=True)
    for step in (["pip>=26"], EVIDENTLY_REQUIREMENTS[1:]):
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--upgrade", *step],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"pip install {' '.join(step)} failed in {EVIDENTLY_VENV}")
    marker.write_text(wanted)
    return python


def run_evidently(reference: Path, current: Path) -> dict[str, Any]:
    python = evidently_python()
    start = time.perf_counter()
    done = subprocess.run(
        [str(python), str(HERE / "_drift_evidently.py"), str(reference), str(current)],
        capture_output=True,
        text=True,
        check=False,
        cwd=HERE,
    )
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"Evidently failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds"]["wall"] = time.perf_counter() - start
    return result


def reference_profile(path: Path) -> dict[str, Any]:
    table = pq.read_table(path)
    columns = {name: table.column(name).to_numpy() for name in NUMERIC}
    columns |= {name: table.column(name).to_numpy(zero_copy_only=False) for name in CATEGORICAL}
    return build_profile(columns, numeric=NUMERIC, categorical=CATEGORICAL)


# Evidently's display names, shortened to fit the table.
SHORT = {
    "Wasserstein distance (normed)": "wasserstein (normed)",
    "Jensen-Shannon distance": "jensen-shannon (ln)",
    "K-S p_value": "ks p-value",
    "chi-square p_value": "chi-square p-value",
}


def side_by_side(evidently: dict[str, Any], ours: dict[str, dict[str, Any]]) -> int:
    """Print the verdict table; return how many columns both tools judge the same."""
    print(f"{'column':<20} {'expected':>8} | {'Evidently':<34} | {'driftloop':<26} | agree")
    agree = 0
    for name in [*NUMERIC, *CATEGORICAL]:
        ev, dl = evidently["columns"][name], ours[name]
        same = ev["drifted"] == dl["drifted"]
        agree += same
        method = SHORT.get(ev["method"], ev["method"])[:22]
        print(
            f"{name:<20} {'drift' if name in SHIFTED else '-':>8} | "
            f"{method:<22} {ev['score']:7.4f} {'DRIFT' if ev['drifted'] else '  -  '} | "
            f"{dl['method']:<13} {dl['score']:7.4f} {'DRIFT' if dl['drifted'] else '  -  '} | "
            f"{'yes' if same else 'NO'}"
        )
    return agree


def one_million(root: Path, rows: int, cfg: MonitoringSettings) -> Path:
    reference, current = root / "reference.parquet", root / "current.parquet"
    start = time.perf_counter()
    write(reference, rows, seed=1, drifted=False)
    write(current, rows, seed=2, drifted=True)
    print(
        f"data: {rows:,} rows × {len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical columns, "
        f"reference + current written to Parquet in {time.perf_counter() - start:.1f} s"
    )

    print("Evidently: running DataDriftPreset in its own venv …", flush=True)
    evidently = run_evidently(reference, current)

    start = time.perf_counter()
    profile = reference_profile(reference)
    profile_s = time.perf_counter() - start
    start = time.perf_counter()
    results, verdict, seen = monitor(profile, current, cfg)
    ours_s = time.perf_counter() - start
    assert seen == rows
    ours = {r.name: {"method": r.method, "score": r.score, "drifted": r.drifted} for r in results}

    print()
    agree = side_by_side(evidently, ours)
    total = len(NUMERIC) + len(CATEGORICAL)
    expected = sum(ours[name]["drifted"] == (name in SHIFTED) for name in ours)
    ev_dataset = evidently["dataset"]
    print(
        f"\nverdicts agree on {agree}/{total} columns ({'PASS' if agree == total else 'MISS'}); "
        f"driftloop matches the planted shifts on {expected}/{total}"
    )
    print(
        f"dataset drift: Evidently share {ev_dataset['share']:.3f} -> "
        f"{'DRIFT' if ev_dataset.get('drifted') else 'no drift'}; driftloop share {verdict.share:.3f} -> "
        f"{'DRIFT' if verdict.drifted else 'no drift'}"
    )

    ev = evidently["seconds"]
    ratio = ev["report"] / ours_s
    print(
        f"\nEvidently {evidently['version']}: report {ev['report']:.2f} s (anchor), datasets "
        f"{ev['prepare']:.2f} s, read {ev['read']:.2f} s, import {ev['import']:.2f} s, "
        f"process wall {ev['wall']:.2f} s"
    )
    print(
        f"driftloop: stream + test {ours_s:.2f} s (Parquet read in {cfg.chunk_rows:,}-row chunks included); "
        f"reference profile at training time {profile_s:.2f} s"
    )
    print(
        f"speed-up vs Evidently's report: {ratio:.1f}× (target ≥ {SPEEDUP_TARGET:.0f}× with the same "
        f"verdicts: {'PASS' if ratio >= SPEEDUP_TARGET and agree == total else 'MISS'}); "
        f"vs its whole process: {ev['wall'] / ours_s:.1f}×"
    )
    profile_path = root / "profile.json"
    profile_path.write_text(json.dumps(profile))
    return profile_path


def ten_million(root: Path, profile: Path, rows: int, cfg: MonitoringSettings) -> None:
    current = root / "current-stream.parquet"
    start = time.perf_counter()
    write(current, rows, seed=3, drifted=True)
    size, took = current.stat().st_size / 1e9, time.perf_counter() - start
    print(
        f"\nstreaming: {rows:,}-row window written ({size:.2f} GB Parquet) in {took:.1f} s; "
        f"monitoring it in a fresh process …",
        flush=True,
    )
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "_drift_stream.py"),
            str(profile),
            str(current),
            "--chunk-rows",
            str(cfg.chunk_rows),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the streaming run failed (exit {done.returncode})")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    peak = out["peak_rss_mb"]
    rate = out["rows"] / out["seconds"] / 1e6
    print(
        f"streamed {out['rows']:,} rows in {out['seconds']:.1f} s ({rate:.2f} M rows/s); "
        f"drifted: {', '.join(out['drifted'])}"
    )
    before, early = out["rss_before_mb"], out["peak_rss_first_million_mb"]
    print(
        f"peak RSS {peak:.0f} MB (VmHWM of the monitoring process; {before:.0f} MB before the first chunk: "
        f"interpreter, numpy/scipy/pandas/pyarrow, profile; {early:.0f} MB after the first 1M rows); "
        f"target ≤ {RSS_TARGET_MB:.0f} MB: {'PASS' if peak <= RSS_TARGET_MB else 'MISS'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="rows in the reference and the window")
    parser.add_argument("--stream-rows", type=int, default=10_000_000, help="rows of the streamed window")
    parser.add_argument("--quick", action="store_true", help="100k rows; skip the 10M-row streaming run")
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    cfg = MonitoringSettings()
    with tempfile.TemporaryDirectory(prefix="driftloop-drift-bench-") as tmp:
        profile = one_million(Path(tmp), rows, cfg)
        if not args.quick:
            ten_million(Path(tmp), profile, args.stream_rows, cfg)


if __name__ == "__main__":
    main()
