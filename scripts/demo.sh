#!/usr/bin/env bash
# `make demo`: the closed loop on simulated time, end to end, without a human in it (`driftloop demo`),
# then the audit trail it left. Everything lives under ./.driftloop/ (reset on every demo run).
set -euo pipefail
cd "$(dirname "$0")/.."
dl() { .venv/bin/driftloop "$@"; }

echo "== driftloop $(dl --version | cut -d' ' -f2): the closed loop on a simulated predictive-maintenance plant =="
dl demo
echo
echo "== what the loop did: each trigger, the retraining it started, how it ended; the rollback guards =="
COLUMNS=160 dl loop history
echo
echo "== the audit history of every stage change (who, when, why) =="
dl models history plant-failure
echo
echo "== the monitoring decisions that drove it =="
dl monitor history | tail -n 12
echo
echo "The MLflow UI, the prediction service, the dashboard (http://127.0.0.1:8090) and the scheduler over this state: .venv/bin/driftloop up"
