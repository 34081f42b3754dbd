#!/usr/bin/env bash
# `make bench-peers`: handoff side by side with Pubky's relay (http-relay 0.7.0 from crates.io),
# in one run, with one load generator (handoff-bench) and the same flags for each: the glibc
# release build, the static x86_64 build (`make static`, built by the Makefile first) and Pubky's.
# Each scenario runs on a fresh relay of each kind in turn, so a change in the machine's load
# hits all three alike. The floor relay (`handoff-bench floor-relay`: one pair at a time, the
# least any relay can do) runs the C = 1 scenarios too. Prints each run, then the table that
# leads: the relay's own CPU time per hand-off (user + system from /proc over the run, divided
# by its hand-offs), the median of ROUNDS alternated rounds (3), with its range and the
# hand-offs/s beside it, each relay a row, its ratio to Pubky's; then every other figure.
# BENCHMARKS.md ("Side by side with Pubky's relay") has the method and a run.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
PEERS_DIR=${PEERS_DIR:-$TARGET_DIR/peers}
PUBKY_VERSION=0.7.0
PUBKY="$PEERS_DIR/bin/http-relay"
GLIBC="$TARGET_DIR/release/handoff"
STATIC="$TARGET_DIR/x86_64-unknown-linux-musl/release/handoff"
COUNTED="$TARGET_DIR/counted/release/handoff"
BENCH="$TARGET_DIR/release/handoff-bench"
# Length of each throughput run, and how many rounds of the lead table's scenarios;
# `DURATION=2s ROUNDS=1 PARK=1000 make bench-peers` for a quick look.
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}

if ! "$PUBKY" --version 2>/dev/null | grep -q "$PUBKY_VERSION"; then
  $CARGO install --locked --root "$PEERS_DIR" http-relay --version "$PUBKY_VERSION"
fi
$CARGO build --release --locked --bins
$CARGO build --release --locked --features count-allocs --target-dir "$TARGET_DIR/counted" --bin handoff
[[ -x $STATIC ]] || { echo "no $STATIC: make static first (make bench-peers does)" >&2; exit 1; }

ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FDS=$(ulimit -n)
PORTS=$(awk '{ print $2 - $1 }' /proc/sys/net/ipv4/ip_local_port_range)
# Parked receivers: as many as the descriptor limit and one address's ports allow (at most
# 100,000), keeping 2,000 spare; PARK=N to choose.
if [[ -z ${PARK:-} ]]; then
  PARK=$((FDS - 2000))
  ((PARK > PORTS - 2000)) && PARK=$((PORTS - 2000))
  ((PARK > 100000)) && PARK=100000
fi

# The same waits, message life and body limit for every relay, in each one's units: /link 10
# minutes and a TTL of 5 minutes (both relays' defaults), /inbox also 10 minutes (not the 25 s
# default: parking 18,000 receivers can take longer than that on a busy machine, and the first
# would time out before they are counted), 64 KiB bodies (handoff's default). Every
# handoff limit that would refuse load from one address is off; Pubky has none of those, but
# evicts the oldest waiter beyond --max-entries (10,000 by default), so that is raised.
HANDOFF_FLAGS=(--rate-per-ip 0 --rate-per-id 0 --max-connections-per-ip 0 --max-parked-per-ip 0
  --max-parked 0 --max-connections 0 --max-memory 0 --link-timeout 10m --inbox-timeout 10m
  --inbox-ttl 5m --max-body 64K)
PUBKY_FLAGS=(--link-timeout 600 --inbox-timeout 600 --inbox-cache-ttl 300 --max-body-size 65536
  --max-entries 1000000)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_relay KIND: a fresh relay of KIND (pubky, glibc, static, counted, floor) on a free port; sets
# URL and PID. Its stderr goes to $LOG.
start_relay() {
  local port
  port=$(free_port)
  URL="http://127.0.0.1:$port"
  LOG=$(mktemp)
  case $1 in
    pubky) RUST_LOG=warn "$PUBKY" --bind 127.0.0.1 --port "$port" "${PUBKY_FLAGS[@]}" 2>"$LOG" & ;;
    glibc) RUST_LOG=warn "$GLIBC" --listen "127.0.0.1:$port" "${HANDOFF_FLAGS[@]}" 2>"$LOG" & ;;
    static) RUST_LOG=warn "$STATIC" --listen "127.0.0.1:$port" "${HANDOFF_FLAGS[@]}" 2>"$LOG" & ;;
    counted) RUST_LOG=warn "$COUNTED" --listen "127.0.0.1:$port" "${HANDOFF_FLAGS[@]}" 2>"$LOG" & ;;
    floor) "$BENCH" floor-relay --listen "127.0.0.1:$port" 2>"$LOG" & ;;
  esac
  PID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
    sleep 0.05
  done
  echo "$1 did not start on $URL:" >&2
  cat "$LOG" >&2
  exit 1
}
stop_relay() {
  [[ -n ${PID:-} ]] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  PID=
  rm -f "${LOG:-}"
}
trap stop_relay EXIT

# RESULT[kind.name] = value, for the table.
declare -A RESULT
json_field() { grep -o "\"$2\":[0-9.]*" <<<"$1" | head -1 | cut -d: -f2; }

# bench KIND NAME ARGS...: runs handoff-bench ARGS against a fresh relay of KIND and keeps its
# JSON line as RESULT[KIND.NAME] (or n/a when it failed).
bench() {
  local kind=$1 name=$2 out
  shift 2
  start_relay "$kind"
  if out=$("$BENCH" "$@" --url "$URL" --pid "$PID" --json 2>&1); then
    RESULT[$kind.$name]=$out
  else
    RESULT[$kind.$name]=n/a
  fi
  echo "$kind: handoff-bench $* -> $out"
  stop_relay
}

echo "bench-peers: $(date -u '+%F %H:%M UTC'); $(nproc) cores; $(uname -r); ulimit -n $FDS"
echo "load before: $(uptime)"
echo "pubky: $PUBKY ${PUBKY_FLAGS[*]}"
echo "handoff: ${HANDOFF_FLAGS[*]}"
KINDS=(pubky glibc static)

for kind in "${KINDS[@]}"; do
  case $kind in pubky) bin=$PUBKY ;; glibc) bin=$GLIBC ;; static) bin=$STATIC ;; esac
  RESULT[$kind.size]=$(strip -o /tmp/peers-stripped.$$ "$bin" && stat -c %s /tmp/peers-stripped.$$)
  rm -f /tmp/peers-stripped.$$
  start_relay "$kind"
  sleep 1
  RESULT[$kind.rss]=$(awk '/^VmRSS/ { print $2 }' "/proc/$PID/status")
  RESULT[$kind.threads]=$(awk '/^Threads/ { print $2 }' "/proc/$PID/status")
  RESULT[$kind.health]=$(curl -s -o /dev/null -w '%{http_code}' "$URL/health" || echo none)
  echo "$kind: stripped ${RESULT[$kind.size]} B, idle ${RESULT[$kind.rss]} KiB, ${RESULT[$kind.threads]} threads, /health ${RESULT[$kind.health]}"
  stop_relay
done

# The scenarios of the lead table run ROUNDS times, the relays in turn within each round; a
# relay's figures in a scenario are those of its round with the median relay CPU, whose range
# over the rounds is shown beside it. The floor relay serves one pair at a time: only the C = 1
# scenarios mean anything for it.
declare -A SPREAD
for round in $(seq "$ROUNDS"); do
  for kind in "${KINDS[@]}" floor; do bench "$kind" "latency.$round" link-latency -n 2000; done
  for kind in "${KINDS[@]}" floor; do
    bench "$kind" "c1.$round" link-throughput -c 1 -d "$DURATION"
  done
  for kind in "${KINDS[@]}"; do bench "$kind" "c64.$round" link-throughput -c 64 -d "$DURATION"; done
  for kind in "${KINDS[@]}"; do bench "$kind" "inbox.$round" inbox-flow -c 32 -d "$DURATION"; done
done
# median_round KIND NAME: RESULT[KIND.NAME] becomes the round with the median relay CPU, and
# SPREAD[KIND.NAME] the lowest and highest relay CPU of the rounds.
median_round() {
  local kind=$1 name=$2 round cpu runs=() sorted middle
  for round in $(seq "$ROUNDS"); do
    cpu=$(json_field "${RESULT[$kind.$name.$round]:-n/a}" relay_cpu_us_per_op || true)
    [[ -n $cpu ]] && runs+=("$cpu $round")
  done
  ((${#runs[@]})) || return 0
  sorted=$(printf '%s\n' "${runs[@]}" | sort -n)
  middle=$(sed -n "$(((${#runs[@]} + 1) / 2))p" <<<"$sorted" | cut -d' ' -f2)
  RESULT[$kind.$name]=${RESULT[$kind.$name.$middle]}
  SPREAD[$kind.$name]=$(awk 'NR == 1 { low = $1 } { high = $1 } END { printf "%.0f–%.0f", low, high }' <<<"$sorted")
}
for kind in "${KINDS[@]}" floor; do
  for name in latency c1 c64 inbox; do median_round "$kind" "$name"; done
done
for kind in "${KINDS[@]}"; do bench "$kind" park park -n "$PARK" -c 32; done
for kind in "${KINDS[@]}"; do bench "$kind" parkinbox park --inbox -n "$PARK" -c 32; done
# /mcast fan-out (one POST, FANOUT readers waiting on one channel): Pubky's relay has no /mcast,
# so only handoff's builds run it, and the ratio column stays n/a.
FANOUT=${FANOUT:-1000}
for kind in glibc static; do bench "$kind" fanout mcast-fanout -n "$FANOUT" -c 32 -d "$DURATION"; done

# Allocations per hand-off: handoff's counting build (--features count-allocs) prints its
# totals to stderr; the difference over a run, divided by the hand-offs (or flows) it made.
allocs_now() { sleep 0.4; grep '^allocations:' "$LOG" | tail -1 | awk '{ print $2, $4 }'; }
alloc_run() {
  local name=$1 field=$2 before after out ops
  shift 2
  start_relay counted
  "$BENCH" link-latency -n 20 --url "$URL" >/dev/null # warm: first-use allocations
  before=$(allocs_now)
  out=$("$BENCH" "$@" --url "$URL" --json)
  after=$(allocs_now)
  ops=$(json_field "$out" "$field")
  RESULT[counted.$name]=$(awk -v b="$before" -v a="$after" -v n="$ops" 'BEGIN {
    split(b, x, " "); split(a, y, " "); printf "%.1f / %.0f", (y[1] - x[1]) / n, (y[2] - x[2]) / n }')
  echo "counted: handoff-bench $* -> $ops ops; allocations before ($before) after ($after): ${RESULT[counted.$name]} calls / bytes each"
  stop_relay
}
alloc_run link hand_offs link-latency -n 2000
alloc_run inbox flows inbox-flow -c 1 -d 3s
# Allocations for both relays by one method: valgrind's dhat counts every heap block a process
# allocates and prints the total when it exits (SIGINT stops both relays cleanly). Two runs of
# each after the same 20 warm-up hand-offs: one stops there, one makes a run more; the
# difference, divided by that run's hand-offs (or flows). The static build cannot be counted so
# (valgrind cannot replace a static binary's malloc); it runs the glibc build's code.
# dhat_total KIND FIELD [ARGS...]: prints "blocks bytes ops".
dhat_total() {
  local kind=$1 field=$2 port log vpid out ops=0 cmd
  shift 2
  port=$(free_port)
  log=$(mktemp)
  case $kind in
    pubky) cmd=("$PUBKY" --bind 127.0.0.1 --port "$port" "${PUBKY_FLAGS[@]}") ;;
    glibc) cmd=("$GLIBC" --listen "127.0.0.1:$port" "${HANDOFF_FLAGS[@]}") ;;
  esac
  RUST_LOG=warn valgrind --tool=dhat --dhat-out-file=/dev/null "${cmd[@]}" 2>"$log" &
  vpid=$!
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  "$BENCH" link-latency -n 20 --url "http://127.0.0.1:$port" >/dev/null
  if (($#)); then
    out=$("$BENCH" "$@" --url "http://127.0.0.1:$port" --json)
    ops=$(json_field "$out" "$field")
  fi
  kill -INT "$vpid"
  wait "$vpid" || true
  awk '/Total:/ { gsub(",", ""); print $6, $3 }' "$log" | tr '\n' ' '
  echo "$ops"
  rm -f "$log"
}
dhat_per_op() { # dhat_per_op KIND NAME FIELD ARGS...
  local kind=$1 name=$2 field=$3 base run
  shift 3
  base=$(dhat_total "$kind" "$field")
  run=$(dhat_total "$kind" "$field" "$@")
  RESULT[$kind.dhat_$name]=$(awk -v b="$base" -v r="$run" 'BEGIN {
    split(b, x, " "); split(r, y, " ");
    if (y[3] + 0 == 0 || x[1] == "" || y[1] == "") { print "n/a"; exit }
    printf "%.1f / %.0f", (y[1] - x[1]) / y[3], (y[2] - x[2]) / y[3] }')
  echo "$kind under dhat: handoff-bench $* -> blocks bytes ops: base ($base) run ($run): ${RESULT[$kind.dhat_$name]} per op"
}
if command -v valgrind >/dev/null; then
  for kind in pubky glibc; do
    dhat_per_op "$kind" link hand_offs link-latency -n 500
    dhat_per_op "$kind" inbox flows inbox-flow -c 1 -d 3s
  done
else
  echo "no valgrind (apt-get install valgrind): allocations under dhat are n/a"
fi
echo "load after: $(uptime)"

# The table. value KIND NAME FIELD [SERIES-FIELD]: a fact, or the first series' field.
value() {
  local json=${RESULT[$1.$2]:-n/a}
  [[ $json == n/a ]] && { echo n/a; return; }
  if [[ $3 == p50_ms || $3 == p99_ms ]]; then
    grep -o '"series":\[{[^}]*}' <<<"$json" | grep -o "\"$3\":[0-9.]*" | cut -d: -f2
  else
    json_field "$json" "$3"
  fi
}
# ratio A B MODE: the static build (A) against Pubky (B), as "N× more" or "N× less" (N >= 1);
# MODE says which direction is better, "more" or "less", and a "(worse)" marks the other one.
ratio() {
  awk -v a="$1" -v b="$2" -v m="$3" 'BEGIN {
    if (a ~ /n\/a|\(/ || b ~ /n\/a|\(/ || a + 0 == 0 || b + 0 == 0) { print "n/a"; exit }
    r = a / b; word = r >= 1 ? "more" : "less"; if (r < 1) r = 1 / r
    printf "%.2f× %s%s\n", r, word, (word == m || r < 1.005) ? "" : " (worse)" }'
}
# check KIND NAME: why a run's figures are not to be trusted, if they are not: failed requests,
# or (park) receivers that were no longer all parked when the relay's memory was read.
check() {
  local json=${RESULT[$1.$2]:-n/a} errors parked n
  [[ $json == n/a ]] && return
  errors=$(grep -o '"errors":[0-9]*' <<<"$json" | awk -F: '{ n += $2 } END { print n + 0 }')
  ((errors > 0)) && printf " (%s failed)" "$errors"
  n=$(json_field "$json" parked)
  if [[ -n $n ]]; then
    parked=$(($(json_field "$json" fds_parked) - $(json_field "$json" fds_before)))
    ((parked * 100 < n * 99)) && printf " (only %s of %s parked)" "$parked" "$n"
  fi
  return 0
}
# rounded VALUE FIELD: milliseconds to 3 decimals, everything else to whole numbers.
rounded() {
  awk -v v="$1" -v f="$2" 'BEGIN {
    if (v == "n/a" || v == "") print "n/a"; else if (f ~ /_ms$/) printf "%.3f\n", v; else printf "%.0f\n", v }'
}
row() { # row LABEL NAME FIELD MODE FORMAT
  local label=$1 name=$2 field=$3 mode=$4 cells=() v
  for kind in "${KINDS[@]}"; do
    v=$(rounded "$(value "$kind" "$name" "$field")" "$field")
    cells+=("$v$(check "$kind" "$name")")
  done
  printf '| %s | %s | %s | %s | %s |\n' "$label" "${cells[0]}" "${cells[1]}" "${cells[2]}" \
    "$(ratio "${cells[2]}" "${cells[0]}" "$mode")"
}
plain() { # plain LABEL NAME MODE: a value kept as it is in RESULT
  local cells=() kind
  for kind in "${KINDS[@]}"; do cells+=("${RESULT[$kind.$2]:-n/a}"); done
  printf '| %s | %s | %s | %s | %s |\n' "$1" "${cells[0]}" "${cells[1]}" "${cells[2]}" \
    "$(ratio "${cells[2]}" "${cells[0]}" "$3")"
}

# The lead table: per relay (a row) and scenario (a column), the relay's CPU µs per hand-off
# with its hand-offs/s, and the CPU's ratio to Pubky's. cpu_cell KIND NAME RATE-FIELD.
cpu_cell() {
  local cpu rate base
  cpu=$(rounded "$(value "$1" "$2" relay_cpu_us_per_op)" relay_cpu_us_per_op)
  rate=$(rounded "$(value "$1" "$2" "$3")" "$3")
  [[ $cpu == n/a ]] && { echo "n/a"; return; }
  base=$(value pubky "$2" relay_cpu_us_per_op)
  local beside=""
  ((ROUNDS > 1)) && [[ -n ${SPREAD[$1.$2]:-} ]] && beside="${SPREAD[$1.$2]}"
  [[ $rate != n/a ]] && beside="${beside:+$beside; }$rate/s"
  [[ $1 != pubky ]] && beside="${beside:+$beside, }$(awk -v a="$cpu" -v b="$base" 'BEGIN {
    if (b + 0 == 0) print "n/a"; else printf "%.2f× Pubky", a / b }')"
  echo "**$cpu**${beside:+ ($beside)}$(check "$1" "$2")"
}
echo
echo "Relay CPU µs per hand-off (lower is better), the median of $ROUNDS rounds: its range, the"
echo "hand-offs/s of that round and its CPU relative to Pubky's beside:"
echo
echo "| relay | link-latency C = 1 | link-throughput C = 1 | link-throughput C = 64 | inbox-flow C = 32 (per flow) |"
echo "|---|---|---|---|---|"
for kind in "${KINDS[@]}" floor; do
  case $kind in
    pubky) label="Pubky http-relay $PUBKY_VERSION" ;; glibc) label="handoff glibc" ;;
    static) label="handoff static" ;; floor) label="floor relay (one pair at a time)" ;;
  esac
  printf '| %s | %s | %s | %s | %s |\n' "$label" "$(cpu_cell "$kind" latency hand_offs_per_sec)" \
    "$(cpu_cell "$kind" c1 hand_offs_per_sec)" "$(cpu_cell "$kind" c64 hand_offs_per_sec)" \
    "$(cpu_cell "$kind" inbox flows_per_sec)"
done

echo
echo "| figure | Pubky http-relay $PUBKY_VERSION | handoff glibc | handoff static | static vs Pubky |"
echo "|---|---|---|---|---|"
plain "stripped binary, bytes" size less
plain "idle RSS, KiB" rss less
plain "idle threads" threads less
echo "| GET /health | ${RESULT[pubky.health]} | ${RESULT[glibc.health]} | ${RESULT[static.health]} | |"
row "link-latency C = 1: sender p50 ms" latency p50_ms less
row "link-latency C = 1: sender p99 ms" latency p99_ms less
row "link-latency: relay CPU µs per hand-off" latency relay_cpu_us_per_op less
row "link-throughput C = 1: hand-offs/s" c1 hand_offs_per_sec more
row "link-throughput C = 1: p50 ms" c1 p50_ms less
row "link-throughput C = 1: p99 ms" c1 p99_ms less
row "link-throughput C = 1: relay CPU µs per hand-off" c1 relay_cpu_us_per_op less
row "link-throughput C = 64: hand-offs/s" c64 hand_offs_per_sec more
row "link-throughput C = 64: p99 ms" c64 p99_ms less
row "link-throughput C = 64: relay CPU µs per hand-off" c64 relay_cpu_us_per_op less
row "inbox-flow C = 32: flows/s" inbox flows_per_sec more
row "inbox-flow C = 32: p99 ms" inbox p99_ms less
row "inbox-flow C = 32: relay CPU µs per flow" inbox relay_cpu_us_per_op less
row "park $PARK on /link: bytes per parked (RSS)" park rss_bytes_per_parked less
row "park $PARK on /link: served/s" park served_per_sec more
row "park $PARK on /inbox: bytes per parked (RSS)" parkinbox rss_bytes_per_parked less
row "park $PARK on /inbox: served/s" parkinbox served_per_sec more
row "mcast-fanout $FANOUT readers: answered/s" fanout answered_per_sec more
row "mcast-fanout $FANOUT readers: reader p99 ms after the POST" fanout p99_ms less
row "mcast-fanout: relay CPU µs per reader (its wait and its answer)" fanout relay_cpu_us_per_op less
echo "| allocations per /link hand-off, dhat (blocks / bytes) | ${RESULT[pubky.dhat_link]:-n/a} | ${RESULT[glibc.dhat_link]:-n/a} | n/a (same code) | |"
echo "| allocations per /inbox flow, dhat (blocks / bytes) | ${RESULT[pubky.dhat_inbox]:-n/a} | ${RESULT[glibc.dhat_inbox]:-n/a} | n/a (same code) | |"
echo "| allocations per /link hand-off, counting allocator (calls / bytes) | n/a | ${RESULT[counted.link]} | n/a (same code) | |"
echo "| allocations per /inbox flow, counting allocator (calls / bytes) | n/a | ${RESULT[counted.inbox]} | n/a (same code) | |"
