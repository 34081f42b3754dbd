#!/usr/bin/env bash
# Two or more builds of a relay compared in one run, alternated round by round on fresh relays
# (per-client limits off, RUST_LOG=warn), so a machine that slows down or speeds up during the
# run hits every build alike. Prints each run, then the median and the range per build.
#
#   benches/ab.sh ROUNDS before=/path/to/handoff after=target/release/handoff
#   SCENARIO=latency benches/ab.sh 6 before=… after=…
#
# SCENARIO=throughput (default): handoff-bench link-throughput -c $C (64) -d $DUR (5s) --pid,
# giving hand-offs per second and the relay's CPU time per hand-off. SCENARIO=latency:
# handoff-bench link-latency -n $N (2000), giving the sender's p50 and p99. A build is any
# executable that takes handoff's flags (a wrapper script can set its environment), or `floor`:
# handoff-bench floor-relay, the least a relay can do, one pair at a time (for SCENARIO=latency).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:?usage: benches/ab.sh ROUNDS label=BINARY ...}
shift
(($# >= 1)) || { echo "usage: benches/ab.sh ROUNDS label=BINARY ..." >&2; exit 2; }
SCENARIO=${SCENARIO:-throughput}
if [[ -z ${BENCH:-} ]]; then
    BENCH="${CARGO_TARGET_DIR:-target}/release/handoff-bench"
    cargo build --release --locked --bin handoff-bench
fi
for spec in "$@"; do
    if [[ ${spec#*=} == floor && $SCENARIO != latency ]]; then
        echo "benches/ab.sh: floor serves one pair at a time: SCENARIO=latency only" >&2
        exit 2
    fi
done
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One run of $SCENARIO against a fresh relay from binary $1; prints two numbers.
run_once() {
    local port pid out
    port=$(free_port)
    if [[ $1 == floor ]]; then
        "$BENCH" floor-relay --listen "127.0.0.1:$port" &
    else
        RUST_LOG=warn "$1" --listen "127.0.0.1:$port" --rate-per-ip 0 --rate-per-id 0 \
            --max-connections-per-ip 0 --max-parked-per-ip 0 --max-parked 0 \
            --max-connections 0 --max-memory 0 &
    fi
    pid=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    if [[ $SCENARIO == latency ]]; then
        out=$("$BENCH" link-latency -n "${N:-2000}" --url "http://127.0.0.1:$port" --json |
            python3 -c 'import sys, json
s = [x for x in json.load(sys.stdin)["series"] if x["name"].startswith("sender")][0]
print(round(s["p50_ms"] * 1000), round(s["p99_ms"] * 1000))')
    else
        out=$("$BENCH" link-throughput -c "${C:-64}" -d "${DUR:-5s}" --pid "$pid" \
            --url "http://127.0.0.1:$port" --json |
            python3 -c 'import sys, json
d = json.load(sys.stdin)
print(round(d["hand_offs_per_sec"]), round(d.get("relay_cpu_us_per_op", 0), 1))')
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$out"
}

for round in $(seq "$ROUNDS"); do
    for spec in "$@"; do
        label=${spec%%=*}
        echo "round $round $label $(run_once "${spec#*=}")" | tee -a "$RESULTS"
    done
done

python3 - "$SCENARIO" "$RESULTS" <<'PY'
import collections, statistics, sys
scenario, path = sys.argv[1], sys.argv[2]
first, second = collections.defaultdict(list), collections.defaultdict(list)
for line in open(path):
    _, _, label, a, b = line.split()
    first[label].append(float(a)); second[label].append(float(b))
names = ("sender p50 µs", "sender p99 µs") if scenario == "latency" else ("hand-offs/s", "relay CPU µs per hand-off")
for label in first:
    a, b = first[label], second[label]
    print(f"{label:12} {names[0]} median {statistics.median(a):8.0f} ({min(a):.0f}–{max(a):.0f})"
          f"   {names[1]} median {statistics.median(b):7.0f} ({min(b):.0f}–{max(b):.0f})")
PY
