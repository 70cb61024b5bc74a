#!/usr/bin/env bash
# The main local job behind `make run`: create topics, start a worker, feed it simulated
# shop traffic, and print segment changes as they happen. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
LOGS=.local/logs
mkdir -p "$LOGS"
USERS="${SEGSTREAM_SIM_USERS:-2000}"
EVENTS="${SEGSTREAM_SIM_EVENTS:-200000}"
RATE="${SEGSTREAM_SIM_RATE:-2000}"
export SEGSTREAM_METRICS_PORT="${SEGSTREAM_METRICS_PORT:-9464}"
# The simulator compresses 90 days of history into about 100 seconds, so a third of a
# second of producer/fetch skew between the input topics is hours of event time. Allow
# one day of lateness for this demo (the production default is one hour of real time).
export SEGSTREAM_ALLOWED_LATENESS_S="${SEGSTREAM_ALLOWED_LATENESS_S:-86400}"
# The online models (churn risk, value, behavioural clusters) are part of the demo.
export SEGSTREAM_MODELS_ENABLED="${SEGSTREAM_MODELS_ENABLED:-true}"

"$BIN/segstream" topics create

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping simulator and worker..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  echo "worker log: $LOGS/worker.log   simulator log: $LOGS/simulator.log"
}
trap cleanup INT TERM EXIT

"$BIN/segstream" worker >"$LOGS/worker.log" 2>&1 &
pids+=($!)
echo "worker started (pid $!), metrics on http://127.0.0.1:$SEGSTREAM_METRICS_PORT/metrics"
SEGSTREAM_METRICS_PORT=0 "$BIN/segstream" simulate --users "$USERS" --events "$EVENTS" \
  --rate "$RATE" --truth .local/truth.json >"$LOGS/simulator.log" 2>&1 &
pids+=($!)
echo "simulator producing $EVENTS events for $USERS users at $RATE events/s (pid $!)"
echo "segment changes (Ctrl-C to stop):"
SEGSTREAM_METRICS_PORT=0 "$BIN/segstream" watch
