#!/usr/bin/env bash
# `make demo`: everything driftloop does so far, end to end, on simulated data under ./.driftloop/.
# Each issue that lands extends this script until `driftloop demo` runs the whole closed loop.
set -euo pipefail
cd "$(dirname "$0")/.."
dl() { .venv/bin/driftloop "$@"; }

echo "== driftloop $(dl --version | cut -d' ' -f2): simulated predictive-maintenance plant =="
dl simulate --start 2026-01-01 --days 14 --rows-per-day 5000 --machines 20 --seed 7 \
  --drift sensor-offset:start=2026-01-08,severity=3,sensor=air_temperature_k \
  --drift corrupt:start=2026-01-10,severity=0.01
echo
echo "== pipeline: ingest → validate → transform → features → train → evaluate → register =="
echo "   (each step in its own process; the model is tracked in MLflow and registered, stage None)"
dl pipeline run --from 2026-01-01 --to 2026-01-14 --as-of 2026-01-16
echo
dl features list
echo
dl models list
echo
dl models show plant-failure
echo
echo "== promotion: None → Staging (compliance checks) → Production (approval + comparison) =="
# The demo runs from any checkout: a dirty or missing git commit is shown, not fatal, here.
export DRIFTLOOP_POLICY__ADVISORY_CHECKS='["reproducibility"]'
dl promote plant-failure 1 --to staging --by demo
dl approve plant-failure 1 --by reviewer --comment "demo: compliance checks passed"
dl promote plant-failure 1 --to production --by demo
echo
dl models history plant-failure
echo
dl lineage plant-failure/1
echo
echo "raw partitions: $(find .driftloop/raw -name '*.csv' | wc -l), label partitions: $(find .driftloop/labels -name '*.csv' | wc -l)"
echo "quarantined rows (first 3 of $(($(find .driftloop/quarantine -name rejected.csv | head -1 | xargs cat | wc -l) - 1))):"
find .driftloop/quarantine -name rejected.csv | head -1 | xargs head -n 4 | cut -c1-160
echo
echo "== serving: driftloop serve follows plant-failure@production; real HTTP traffic, every call captured =="
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/driftloop serve --port "$port" > .driftloop/serve.log 2>&1 &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true' EXIT
.venv/bin/python scripts/traffic.py --url "http://127.0.0.1:$port" --server-pid "$serve_pid" --requests 1000 \
  --raw .driftloop/raw/plant/date=2026-01-13/part-0000.csv --labels .driftloop/labels/plant/date=2026-01-14/part-0000.csv \
  || { echo "the service's log (.driftloop/serve.log) ends with:"; tail -n 20 .driftloop/serve.log; exit 1; }
kill -TERM "$serve_pid" && wait "$serve_pid" || true  # graceful: the capture WAL is shipped before exit
trap - EXIT
.venv/bin/python - <<'PY'
from driftloop.capture import read_captures
from driftloop.settings import load_settings
from driftloop.storage import store_for

store = store_for(load_settings())
predictions, feedback = read_captures(store), read_captures(store, kind="feedback")
joined = set(predictions.column("prediction_id").to_pylist()) & set(feedback.column("prediction_id").to_pylist())
print(f"capture store {store.root}/captures: {predictions.num_rows} predictions, {feedback.num_rows} labels, "
      f"{len(joined)} joined by prediction id")
PY
echo
echo "== monitoring: the last 24 h of captured traffic against v1's reference profile =="
dl monitor --window 24h
echo
dl monitor history | tail -n 5
echo
echo "MLflow UI for everything above: .venv/bin/mlflow ui --backend-store-uri sqlite:///.driftloop/mlflow.db"
