"""Evidently's ``DataDriftPreset`` on the benchmark's Parquet files, for ``benchmarks/drift.py``.

Runs in Evidently's own venv (``benchmarks/.evidently-venv``: Evidently needs pandas < 3, driftloop's
venv has pandas 3), so it imports nothing from driftloop. Prints one JSON object: the seconds spent
importing, reading, preparing the datasets and computing the report (``report``, the anchor), each
column's method, threshold, score and Evidently's own verdict (its test status), and the dataset verdict.

    benchmarks/.evidently-venv/bin/python benchmarks/_drift_evidently.py REFERENCE.parquet CURRENT.parquet
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402  (imports are timed)
import json  # noqa: E402
from typing import Any  # noqa: E402

import evidently  # noqa: E402
import pandas as pd  # noqa: E402
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

from _drift_data import CATEGORICAL, NUMERIC  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference")
    parser.add_argument("current")
    args = parser.parse_args()
    timings = {"import": time.perf_counter() - START}

    start = time.perf_counter()
    reference, current = pd.read_parquet(args.reference), pd.read_parquet(args.current)
    timings["read"] = time.perf_counter() - start

    start = time.perf_counter()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    current_set = Dataset.from_pandas(current, data_definition=definition)
    reference_set = Dataset.from_pandas(reference, data_definition=definition)
    timings["prepare"] = time.perf_counter() - start

    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(current_set, reference_set)
    timings["report"] = time.perf_counter() - start

    data: dict[str, Any] = snapshot.dict()
    columns: dict[str, dict[str, Any]] = {}
    dataset: dict[str, Any] = {}
    for metric in data["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            columns[config["column"]] = {
                "method": config["method"],
                "threshold": config["threshold"],
                "score": float(metric["value"]),
            }
        elif config["type"].endswith(":DriftedColumnsCount"):
            dataset = {"share": metric["value"]["share"], "threshold": config["drift_share"]}
    for test in data["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith(":ValueDrift"):
            columns[params["column"]]["drifted"] = test["status"] == "FAIL"
        elif params["type"].endswith(":DriftedColumnsCount"):
            dataset["drifted"] = test["status"] == "FAIL"
    timings["total"] = time.perf_counter() - START
    print(
        json.dumps(
            {"version": evidently.__version__, "seconds": timings, "columns": columns, "dataset": dataset}
        )
    )


if __name__ == "__main__":
    main()
