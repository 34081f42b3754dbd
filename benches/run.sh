#!/usr/bin/env bash
# `make bench`: builds release, starts a fresh relay on 127.0.0.1 (a free port, per-client limits
# off, RUST_LOG=warn) and runs every handoff-bench scenario at sizes that fit 2 cores and a few
# minutes. See BENCHMARKS.md for the method and the results.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
$CARGO build --release --locked --bins
# RELAY=path benchmarks another build of handoff, e.g. the static one (make static).
RELAY=${RELAY:-"$TARGET_DIR/release/handoff"}
BENCH="$TARGET_DIR/release/handoff-bench"

# Each parked receiver costs a descriptor here and one in the relay: as high as allowed.
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FDS=$(ulimit -n)
# Keep 2,000 descriptors spare; stay below the ephemeral ports for one destination.
PORTS=$(awk '{ print $2 - $1 }' /proc/sys/net/ipv4/ip_local_port_range)
fit() { local n=$1; ((n > FDS - 2000)) && n=$((FDS - 2000)); ((n > PORTS - 2000)) && n=$((PORTS - 2000)); echo "$n"; }
if ((FDS >= 102000)); then PARK=$(fit 100000); else PARK=$(fit 50000); fi
BACKGROUND=$(fit 50000)
# With most of the ephemeral ports of one source address held by parked receivers, the client's
# own connect() spends its time searching for a free port (__inet_hash_connect in perf), which
# measures the kernel, not the relay; so also a run at a third of the port range.
BACKGROUND_LOW=$((PORTS / 3))
((BACKGROUND_LOW > BACKGROUND)) && BACKGROUND_LOW=$BACKGROUND

# A fresh relay on a free port with the per-client limits (and the global caps) off; sets URL, PID.
start_relay() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 10000)))
  URL="http://127.0.0.1:$port"
  RUST_LOG=warn "$RELAY" --listen "127.0.0.1:$port" \
    --rate-per-ip 0 --rate-per-id 0 --max-connections-per-ip 0 --max-parked-per-ip 0 \
    --max-parked 0 --max-connections 0 --max-memory 0 &
  PID=$!
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
    sleep 0.1
  done
  echo "the relay did not start on $URL" >&2
  exit 1
}
stop_relay() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
trap stop_relay EXIT

start_relay
echo "handoff-bench against $URL (relay pid $PID); ulimit -n $FDS; $(nproc) cores; $(uname -r)"
echo "release binary: $(stat -c %s "$RELAY") bytes"
sleep 1
echo "idle relay: $(grep -E '^(VmRSS|Threads)' "/proc/$PID/status" | tr -s ' \t' ' ' | paste -sd ';')"
CPU0=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
sleep 5
CPU1=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
echo "idle CPU over 5 s: $((CPU1 - CPU0)) ticks of $(getconf CLK_TCK)/s"
echo

run() { echo "\$ handoff-bench $*"; "$BENCH" "$@" --url "$URL"; echo; }
run link-latency -n 2000
run link-latency -n 2000 --parked-background "$BACKGROUND_LOW"
sleep 1 # the relay notices the background receivers' closes (0.3 s for 15,000)
run link-latency -n 2000 --parked-background "$BACKGROUND"
sleep 1 # the relay notices the background receivers' closes (0.3 s for 15,000)
run link-throughput -c 64 -d 10s
run inbox-flow -c 32 -d 10s
echo "relay after these runs: $(grep -E '^(VmRSS|Threads)' "/proc/$PID/status" | tr -s ' \t' ' ' | paste -sd ';')"
stop_relay
echo
# A fresh relay for park, so its RSS is not the high-water mark the runs above left.
start_relay
echo "fresh relay for park: $URL (pid $PID)"
run park -n "$PARK" -c 32 --pid "$PID"
echo "relay after park: $(grep -E '^(VmRSS|Threads)' "/proc/$PID/status" | tr -s ' \t' ' ' | paste -sd ';')"
