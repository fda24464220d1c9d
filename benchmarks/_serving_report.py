"""The serving benchmark's report (``benchmarks/serving.py``): the table of every contender and
scenario, then the targets against the anchor (``mlflow models serve``) measured in the same run.

Targets: single-row req/s at 64 connections ≥ 50× MLflow with capture on (issue 22's budget; it was 20×),
p99 at 64 connections ≤ 20 ms, capture cost ≤ 10 % of throughput, 64-row rows/s ≥ 10× MLflow.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

BATCH, BATCH_CONNS = 64, 8  # rows per request and connections of the batch scenario
# contender key → "scenario@conns" → load generator output
Results = dict[str, dict[str, dict[str, Any]]]


def report(results: Results, labels: dict[str, str], diffs: dict[str, float], costs: dict[str, Any]) -> None:
    print(
        f"{'contender':<36}{'scenario':<22}{'conns':>6}{'req/s':>9}{'rows/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'non-2xx':>9}"
    )
    loud = []
    for key, per in results.items():
        for r in per.values():
            s = r["scenario"]
            print(
                f"{labels[key]:<36}{s.label:<22}{s.conns:>6}{r['rps']:>9.0f}{r['rps'] * s.rows:>10.0f}"
                f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['non_2xx']:>9}"
            )
            if r["non_2xx"] or r["errors"]:
                loud.append(f"{labels[key]} {s.label}@{s.conns}: {r['statuses']}, {r['errors']} conn. errors")
    print(
        "max |score − in-process model score| over 64 rows: "
        + ", ".join(f"{labels[k]} {d:.1e}" for k, d in diffs.items())
    )
    for line in loud:
        print(f"!!! NON-2xx / CONNECTION ERRORS: {line}")

    def at(key: str, scenario: str, stat: str = "rps") -> float:
        return float(results.get(key, {}).get(scenario, {}).get(stat, math.nan))

    def div(a: float, b: float) -> float:
        return a / b if b else math.nan

    one, many = "1 row   /v1/predict@64", f"{BATCH} rows  /v1/predict@{BATCH_CONNS}"
    ml_one, ml_many = "1 row   /invocations@64", f"{BATCH} rows  /invocations@{BATCH_CONNS}"
    on, on_rps, batch_rows = "driftloop (capture on)", at("on", one), f"{BATCH}-row rows/s @{BATCH_CONNS}"
    off_rps, plain = at("off", one), at("plain", "1 row   /predict@64")
    ratios = results.get("on", {}).get(one, {}).get("pair_ratios", [])
    pair = statistics.median(ratios) if ratios else math.nan
    # The capture-cost target: both servers at once on one CPU where the machine allows (`pinned`), since
    # alternating runs drift with the VM; else the alternating runs, which are otherwise for information.
    paired_cost = ("capture cost @64: 1 − on/off req/s, alternating runs (median pair)", 100 - 100 * pair)
    if costs:
        capture_cost = (
            "capture cost @64: 1 − on/off req/s, both at once, one CPU (median round)",
            100 * costs["cost"],
        )
        paired_info = [(f"(info) {paired_cost[0]}", paired_cost[1], None, " %", True)]
    else:
        capture_cost, paired_info = paired_cost, []
    lines = [  # label, value, target (None: for information), unit, whether the target is a ceiling
        (f"single-row req/s @64: {on} / mlflow", div(on_rps, at("mlflow", ml_one)), 50, "×", False),
        (f"p99 @64: {on}", at("on", one, "p99_ms"), 20, " ms", True),
        (*capture_cost, 10, " %", True),
        (f"{batch_rows}: {on} / mlflow", div(at("on", many), at("mlflow", ml_many)), 10, "×", False),
        (f"(info) single-row req/s @64: {on} / plain FastAPI", div(on_rps, plain), None, "×", False),
        (
            f"(info) 1-row /invocations req/s @64: {on} / mlflow",
            div(at("on", ml_one), at("mlflow", ml_one)),
            None,
            "×",
            False,
        ),
        *paired_info,
        (
            "(info) capture cost @64: 1 − median on / median off req/s",
            100 - 100 * div(on_rps, off_rps),
            None,
            " %",
            True,
        ),
        (
            "(info) capture cost @64 with durability=fsync",
            100 - 100 * div(at("fsync", one), off_rps),
            None,
            " %",
            True,
        ),
        (
            f"(info) {batch_rows}: --workers 2 / mlflow",
            div(at("w2", many), at("mlflow", ml_many)),
            None,
            "×",
            False,
        ),
    ]
    if costs:  # see `pinned`
        c = costs
        lines += [
            (
                f"(info)   CPU 0 split between the two servers: capture off {100 * c['share_off']:.0f} %, on",
                100 * c["share_on"],
                None,
                " %",
                True,
            ),
            (
                "(info) capture on the event loop, pinned: on/off CPU/request − 1",
                100 * c["main_ratio"] - 100,
                None,
                " %",
                True,
            ),
            (
                "(info) capture under load, pinned: on/off all the service's CPU/request − 1",
                100 * c["load_ratio"] - 100,
                None,
                " %",
                True,
            ),
            (
                f"(info)   event loop CPU/request: off {c['main_off_us']:.1f} µs, on",
                c["main_on_us"],
                None,
                " µs",
                True,
            ),
            (
                "(info)   capture's helper (landing; compaction once idle): CPU/request",
                c["helper_us"],
                None,
                " µs",
                True,
            ),
            (
                "(info)   the service's other threads (WAL sync, shipping): CPU/request",
                c["threads_us"],
                None,
                " µs",
                True,
            ),
        ]
        print(
            "capture cost @64 in each round of both at once on one CPU: "
            + ", ".join(f"{100 * cost:.1f} %" for cost in c["costs"])
        )
    if ratios:
        print(
            "capture cost @64 in each pair of alternating runs: "
            + ", ".join(f"{100 - 100 * r:.1f} %" for r in ratios)
        )
    print("\nanchor: mlflow models serve --env-manager local, measured above in this run")
    for label, value, target, unit, ceiling in lines:
        verdict = ""
        if target is not None:
            ok = value <= target if ceiling else value >= target
            verdict = f"target {'≤' if ceiling else '≥'} {target}{unit}  {'PASS' if ok else 'MISS'}"
        print(f"  {label:<72}{value:>8.2f}{unit:<4} {verdict}".rstrip())
