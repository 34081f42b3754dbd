#!/usr/bin/env bash
# `make soak`: a fresh relay under mixed load for SOAK_SECS (default 30 minutes), its RSS,
# descriptors and threads sampled every 10 s (`handoff-bench soak`, which exits 1 unless RSS
# stays within ±5 % after the warm-up, descriptors and threads return to baseline, and every
# response had the status its step expects). BENCHMARKS.md ("Soak") has a run.
#
# Each load thread starts at most SOAK_RATE operations a second (default 250, well below what 2
# cores do): the relay keeps an acknowledged /inbox message until its TTL, so the messages it
# holds, and its RSS, follow the rate; a steady rate makes flat RSS the sign of no leak.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
SOAK_SECS=${SOAK_SECS:-1800}
SOAK_RATE=${SOAK_RATE:-250}
$CARGO build --release --locked --bins
RELAY=${RELAY:-"$TARGET_DIR/release/handoff"}
BENCH="$TARGET_DIR/release/handoff-bench"
# Short waits so the unanswered GETs end in 408 often; a short message life so the stored
# /inbox messages reach their steady number (2 /inbox threads x rate x 20 s: 10,000 at the
# default rate) in 20 s.
# The warm-up is longer: a std HashMap that keeps N entries while they turn over doubles once,
# when deleted slots have used up its spare room (the inboxes map: 16,384 -> 32,768 buckets,
# +672 KiB, at about 75 s), and keeps that size after. Runs under 6 minutes warm up a third.
WAIT=2s
WARMUP=120s
((SOAK_SECS < 360)) && WARMUP=$((SOAK_SECS / 3))s

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn "$RELAY" --listen "127.0.0.1:$port" \
  --rate-per-ip 0 --rate-per-id 0 --max-connections-per-ip 0 --max-parked-per-ip 0 \
  --link-timeout "$WAIT" --inbox-timeout "$WAIT" --inbox-ttl 20s &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
sleep 1 # the baseline: a relay that has settled after its start

echo "soak of $RELAY ($(stat -c %s "$RELAY") bytes), pid $PID, $SOAK_SECS s; $(nproc) cores; $(uname -r)"
echo "relay: --link-timeout $WAIT --inbox-timeout $WAIT --inbox-ttl 20s, per-client limits off"
echo "load before: $(uptime)"
status=0
"$BENCH" soak -c 12 -d "${SOAK_SECS}s" --rate "$SOAK_RATE" --sample 10s --warmup "$WARMUP" \
  --wait "$WAIT" --pid "$PID" --url "http://127.0.0.1:$port" || status=$?
echo "load after: $(uptime)"
exit "$status"
