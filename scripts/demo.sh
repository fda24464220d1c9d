#!/usr/bin/env bash
# `make demo`: the closed loop on simulated time, end to end, without a human in it (`driftloop demo`),
# then the audit trail it left. Everything lives under ./.driftloop/demo/, the demo's own home (reset on
# every demo run), so the README's quick tour in ./.driftloop/ and the demo never get in each other's way.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_HOME=.driftloop/demo
dl() { .venv/bin/driftloop "$@"; }
seen() { DRIFTLOOP_HOME="$DEMO_HOME" .venv/bin/driftloop "$@"; }

echo "== driftloop $(dl --version | cut -d' ' -f2): the closed loop on a simulated predictive-maintenance plant =="
dl demo --home "$DEMO_HOME"
echo
echo "== what the loop did: each trigger, the retraining it started, how it ended; the rollback guards =="
COLUMNS=160 seen loop history
echo
echo "== the audit history of every stage change (who, when, why) =="
seen models history plant-failure
echo
echo "== the monitoring decisions that drove it =="
seen monitor history | tail -n 12
echo
echo "The MLflow UI, the prediction service, the dashboard (http://127.0.0.1:8090) and the scheduler over this state: DRIFTLOOP_HOME=$DEMO_HOME .venv/bin/driftloop up"
