#!/usr/bin/env bash
# shellcheck disable=SC2015,SC2317 # `A && B || fail` is meant; finish() runs from a trap
# The shipped units under a real, running systemd: boots a Debian container (systemd-nspawn
# --boot, systemd as its PID 1, a network namespace of its own) and, inside it, installs BINARY
# to /usr/local/bin/handoff and handoff.socket and handoff.service to /etc/systemd/system, then
# checks, as an operator would with systemctl, curl and journalctl:
#   1. socket activation and a real /link hand-off under the full hardening, which is in force
#      (dynamic user, seccomp, no new privileges, no capabilities, a network namespace of its own)
#   2. `systemctl restart` while a client polls /health: no refused or failed request
#   3. `systemctl stop` with a parked receiver: 503 + Retry-After: 1, Result=success, status 0
#   4. `systemctl reload`: SIGHUP reaches the relay, which keeps running (same PID)
#   5. HANDOFF_STATE_FILE under StateDirectory=: an /inbox message survives a restart
#   6. the journal has the relay's lines with their priorities (-p warning keeps only warnings)
#   7. a token file passed as a systemd credential (LoadCredential=, as README says) is enforced
#   8. `systemctl stop` with a state file, a stored message and a delivery its receiver never
#      closes: the drain runs to its limit, the last save follows, and the relay exits by itself
#      within TimeoutStopSec (Result=success, no SIGKILL); the next start restores both messages
# With --deb PACKAGE (the amd64 .deb `make deb` makes) it checks the package instead:
#   1. `apt-get install ./PACKAGE`: the socket enabled and listening, the service started by
#      the first connection from /usr/bin/handoff, a /link hand-off, /etc/default/handoff a conffile
#   2. `apt-get remove`: socket and service stopped, the binary gone, the (edited) conffile kept
#   3. `apt-get purge`: nothing left (no files, units, enablement links, state, configuration)
#
# Usage (as root): systemd/test-under-systemd.sh BINARY
#                  systemd/test-under-systemd.sh --deb PACKAGE.deb
# It builds nothing. The container's root file system is made once with debootstrap and cached
# in $HANDOFF_SYSTEMD_CACHE (default /var/cache/handoff-systemd-rootfs); each run boots it with
# a throw-away overlay (--volatile=overlay), so the cache is never changed. Needs debootstrap and
# systemd-container (`make interop-deps`). HANDOFF_UNIT_DIR runs other unit files than the
# ones beside this script (e.g. a deliberately broken copy); HANDOFF_DEBIAN_MIRROR overrides the
# mirror, which is otherwise the one apt uses. Exits non-zero, saying why, on any failure.
set -euo pipefail

SUITE=bookworm
PACKAGES=systemd,systemd-sysv,dbus,curl
# Inside the container: where the inputs and the results are mounted.
IN=/handoff-test
OUT=/handoff-results

# ---------------------------------------------------------------------------------------------
# Inside the container: the checks, run by handoff-check.service once the system is up.
# ---------------------------------------------------------------------------------------------

BASE=http://127.0.0.1:8080

fail() {
    echo "FAIL: $*"
    exit 1
}

ok() {
    echo "ok $*"
}

main_pid() {
    systemctl show -p MainPID --value handoff.service
}

# The top-level "parked" gauge of /health (the first "parked" field; limits come later).
parked() {
    curl -s -m 2 "$BASE/health" | grep -o '"parked":[0-9]*' | head -n 1 | cut -d: -f2
}

# The top-level numeric field $1 of /health.
health_field() {
    curl -s -m 2 "$BASE/health" | grep -o "\"$1\":[0-9]*" | head -n 1 | cut -d: -f2
}

wait_parked() {
    local want=$1 i
    for i in $(seq 100); do
        [ "$(parked)" = "$want" ] && return 0
        sleep 0.1
    done
    fail "/health never showed $want parked request(s) (it shows: $(curl -s -m 2 "$BASE/health"))"
}

# How many of the relay's journal lines contain the text $1 (at priority $2 or more urgent).
journal_count() {
    journalctl -q -u handoff.service -p "${2:-debug}" -o cat --no-pager | grep -cF -- "$1" || true
}

# Waits until at least $2 of the relay's journal lines contain $1 (journald writes them a
# moment after the relay does).
wait_journal() {
    local i
    for i in $(seq 100); do
        [ "$(journal_count "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    fail "the journal never had $2 line(s) with \"$1\": $(journalctl -u handoff.service -n 20 --no-pager)"
}

# `systemctl restart handoff.service`. These checks restart it more often than systemd's default
# start limit allows (5 starts in 10 s, after which the socket gives up too), so the count is
# reset first: that limit is not under test.
restart() {
    systemctl reset-failed handoff.service
    systemctl restart handoff.service || fail "systemctl restart handoff.service failed"
}

is_active() {
    systemctl is-active "$1" || true
}

# Exit trap inside: the verdict for the host, and on failure what systemd says about the units.
finish() {
    local status=$1
    if [ "$status" != 0 ]; then
        echo "--- systemctl status"
        systemctl status --no-pager --lines=0 handoff.socket handoff.service || true
        echo "--- journalctl -u handoff.socket -u handoff.service (last 40 lines but /health's)"
        journalctl -u handoff.socket -u handoff.service --no-pager | grep -v 'GET health - 200' |
            tail -n 40 || true
    fi
    journalctl -b --no-pager > "$OUT/journal.txt" 2>&1 || true
    echo "$status" > "$OUT/status"
}

# A real /link hand-off: the receiver waits, the sender delivers.
link_handoff() {
    local receiver code
    curl -s -m 20 "$BASE/link/x" > /tmp/receiver.body &
    receiver=$!
    wait_parked 1
    code=$(curl -s -m 10 -o /tmp/sender.body -w '%{http_code}' -X POST --data hello "$BASE/link/x") ||
        fail "POST /link/x: curl failed (exit $?)"
    [ "$code" = 200 ] || fail "POST /link/x answered $code: $(cat /tmp/sender.body)"
    wait "$receiver" || fail "the receiver's curl failed (exit $?)"
    [ "$(cat /tmp/receiver.body)" = hello ] || fail "the receiver got \"$(cat /tmp/receiver.body)\", not hello"
}

check_socket_activation_and_link() {
    install -D -m 755 "$IN/handoff" /usr/local/bin/handoff
    install -D -m 644 "$IN/units/handoff.socket" /etc/systemd/system/handoff.socket
    install -D -m 644 "$IN/units/handoff.service" /etc/systemd/system/handoff.service
    systemctl daemon-reload
    systemctl start handoff.socket || fail "systemctl start handoff.socket failed"
    [ "$(is_active handoff.socket)" = active ] || fail "handoff.socket is $(is_active handoff.socket)"
    [ "$(is_active handoff.service)" = inactive ] ||
        fail "handoff.service is $(is_active handoff.service) before any connection (not socket-activated?)"

    local code
    code=$(curl -s -m 10 -D /tmp/health.head -o /tmp/health.body -w '%{http_code}' "$BASE/health") ||
        fail "GET /health: curl failed (exit $?)"
    [ "$code" = 200 ] || fail "GET /health answered $code: $(cat /tmp/health.body)"
    grep -qi '^content-type: application/json' /tmp/health.head ||
        fail "GET /health is not JSON: $(cat /tmp/health.head)"
    grep -q '^{"status":"ok",' /tmp/health.body || fail "GET /health body: $(cat /tmp/health.body)"
    [ "$(is_active handoff.service)" = active ] ||
        fail "handoff.service is $(is_active handoff.service) after a connection to the socket"

    # The hardening is really in force on the process that answered.
    local pid status
    pid=$(main_pid)
    status=$(cat "/proc/$pid/status")
    grep -q '^Uid:[[:space:]]*0[[:space:]]' <<<"$status" && fail "the relay runs as root (DynamicUser=)"
    grep -q '^Seccomp:[[:space:]]*2$' <<<"$status" || fail "no seccomp filter on the relay"
    grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$status" || fail "NoNewPrivs is not set on the relay"
    grep -q '^CapEff:[[:space:]]*0*$' <<<"$status" || fail "the relay has capabilities"
    [ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/1/ns/net)" ] ||
        fail "the relay shares PID 1's network namespace (PrivateNetwork=)"

    link_handoff
    ok "1 - socket activation, /health 200 JSON, /link hand-off (hello) under the full hardening"
}

check_restart_refuses_nothing() {
    local log=/tmp/hammer.log stop=/tmp/hammer.stop
    rm -f "$stop"
    : > "$log"
    (
        # A failed request is logged, not fatal here.
        trap - ERR
        set +e
        while [ ! -e "$stop" ]; do
            code=$(curl -s -o /dev/null -m 10 -w '%{http_code} %header{retry-after}' "$BASE/health")
            echo "$code $?" >> "$log"
        done
    ) &
    local hammer=$! i n before after
    for i in 1 2 3; do
        # Requests go on between restarts too: wait for five more answers each time.
        n=$(($(wc -l < "$log") + 5))
        for _ in $(seq 100); do
            [ "$(wc -l < "$log")" -ge "$n" ] && break
            sleep 0.1
        done
        before=$(main_pid)
        restart
        after=$(main_pid)
        [ "$after" != 0 ] && [ "$after" != "$before" ] ||
            fail "restart $i: main PID $before, then $after"
    done
    sleep 0.5
    touch "$stop"
    wait "$hammer" || true
    # Lines: HTTP status, Retry-After, curl's exit code. A request the old process had accepted
    # but not read yet when SIGTERM came is answered 503 + Retry-After: 1 (the drain, README):
    # allowed. A refused or reset connection, a timeout, any other answer: not.
    local total bad drained
    total=$(wc -l < "$log")
    bad=$(grep -vcE '^(200  0|503 1 0)$' "$log" || true)
    [ "$bad" = 0 ] || fail "during restarts, $bad of $total GET /health failed (HTTP status, Retry-After, curl exit):
$(grep -vE '^(200  0|503 1 0)$' "$log" | sort | uniq -c)"
    [ "$total" -ge 20 ] || fail "only $total requests during the restarts"
    drained=$(grep -c '^503 1 0$' "$log" || true)
    ok "2 - 3 restarts while polling /health: $total requests, none refused or failed ($drained answered 503 + Retry-After: 1 by a draining process, the rest 200)"
}

check_stop_drains() {
    curl -s -i -m 20 "$BASE/link/parked" > /tmp/parked.response &
    local receiver=$!
    wait_parked 1
    local start took
    start=$(date +%s%N)
    systemctl stop handoff.service || fail "systemctl stop handoff.service failed"
    took=$((($(date +%s%N) - start) / 1000000))
    wait "$receiver" || fail "the parked receiver's curl failed (exit $?)"
    head -n 1 /tmp/parked.response | grep -q '^HTTP/1.1 503' ||
        fail "the parked receiver got: $(cat /tmp/parked.response)"
    grep -qi '^retry-after: 1' /tmp/parked.response ||
        fail "no Retry-After: 1 in: $(cat /tmp/parked.response)"
    local result status code
    result=$(systemctl show -p Result --value handoff.service)
    status=$(systemctl show -p ExecMainStatus --value handoff.service)
    code=$(systemctl show -p ExecMainCode --value handoff.service)
    [ "$result" = success ] || fail "after stop, Result=$result"
    # ExecMainCode 1 is CLD_EXITED: it exited by itself, no signal killed it.
    [ "$code" = 1 ] && [ "$status" = 0 ] || fail "after stop, ExecMainCode=$code ExecMainStatus=$status"
    [ "$(is_active handoff.service)" = inactive ] || fail "after stop, handoff.service is $(is_active handoff.service)"
    [ "$(is_active handoff.socket)" = active ] || fail "after stop, handoff.socket is $(is_active handoff.socket)"
    ok "3 - stop: parked receiver got 503 with Retry-After: 1, Result=success, exit status 0 ($took ms)"
}

check_reload() {
    # The socket starts the service again.
    curl -s -m 10 -o /dev/null "$BASE/health" || fail "GET /health after the stop failed"
    local pid n
    pid=$(main_pid)
    n=$(journal_count "SIGHUP: nothing to reload")
    systemctl reload handoff.service || fail "systemctl reload handoff.service failed"
    wait_journal "SIGHUP: nothing to reload" $((n + 1))
    [ "$(is_active handoff.service)" = active ] || fail "after reload, handoff.service is $(is_active handoff.service)"
    [ "$(main_pid)" = "$pid" ] || fail "reload replaced the process ($pid, then $(main_pid))"
    ok "4 - reload: SIGHUP handled, still active, same PID"
}

# POSTs $2 to the path $1, which must answer 200.
post_ok() {
    local code
    code=$(curl -s -m 10 -o /tmp/post.body -w '%{http_code}' -X POST --data "$2" "$BASE$1") ||
        fail "POST $1: curl failed (exit $?)"
    [ "$code" = 200 ] || fail "POST $1 answered $code: $(cat /tmp/post.body)"
}

# GETs the path $1, which must answer 200 with the body $2 ($3: when, for the message).
get_is() {
    local code
    code=$(curl -s -m 10 -o /tmp/get.body -w '%{http_code}' "$BASE$1") ||
        fail "GET $1: curl failed (exit $?)"
    [ "$code" = 200 ] && [ "$(cat /tmp/get.body)" = "$2" ] ||
        fail "$3, GET $1 answered $code: $(cat /tmp/get.body)"
}

check_state_directory() {
    echo "HANDOFF_STATE_FILE=/var/lib/handoff/state" > /etc/default/handoff
    restart
    post_ok /inbox/y kept
    restart
    get_is /inbox/y kept "after a restart"
    wait_journal "restored 1 /inbox" 1
    local owner
    owner=$(stat -c '%u %a' /var/lib/private/handoff/state) || fail "no /var/lib/private/handoff/state"
    [ "${owner%% *}" != 0 ] && [ "${owner#* }" = 600 ] ||
        fail "the state file's owner and mode are $owner (want the dynamic user's, 600)"
    ok "5 - an /inbox message survives a restart in StateDirectory= (owner uid ${owner%% *}, mode 600)"
    rm /etc/default/handoff
}

# The longest stop the checks can make: a /link delivery whose receiver never reads nor closes
# holds the drain to its limit (DRAIN_LIMIT, 1.8 s), then the last save of the state file
# follows (README "Operating the service": at most 5.8 s in all). systemd must see the relay
# exit by itself inside TimeoutStopSec, and the file must hold what was stored.
check_stop_with_state_file() {
    # A file of its own: check 5's message is still stored in /var/lib/handoff/state.
    echo "HANDOFF_STATE_FILE=/var/lib/handoff/stop-state" > /etc/default/handoff
    restart
    post_ok /inbox/kept stored
    # The receiver: a request written, then nothing read and the connection kept open.
    exec 7<>/dev/tcp/127.0.0.1/8080
    printf 'GET /link/held HTTP/1.1\r\nHost: relay.test\r\n\r\n' >&7
    wait_parked 1
    curl -s -m 30 -o /dev/null -X POST --data in-flight "$BASE/link/held" &
    local sender=$! i
    # Held: the /inbox message and the /link message now being delivered.
    for i in $(seq 100); do
        [ "$(health_field messages)" = 2 ] && break
        sleep 0.1
    done
    [ "$(health_field messages)" = 2 ] || fail "the /link message never reached the relay: $(curl -s -m 2 "$BASE/health")"
    local pid start took killed exited saved
    pid=$(main_pid)
    killed=$(journal_count SIGKILL)
    exited=$(journal_count "exiting with")
    saved=$(journal_count "saved the stored messages to /var/lib/handoff/stop-state")
    start=$(date +%s%N)
    systemctl stop handoff.service || fail "systemctl stop handoff.service failed"
    took=$((($(date +%s%N) - start) / 1000000))
    exec 7>&-
    wait "$sender" || true
    local result status exit_code limit
    result=$(systemctl show -p Result --value handoff.service)
    status=$(systemctl show -p ExecMainStatus --value handoff.service)
    exit_code=$(systemctl show -p ExecMainCode --value handoff.service)
    limit=$(systemctl show -p TimeoutStopUSec --value handoff.service)
    [ "$result" = success ] || fail "stop with a state file: Result=$result after $took ms (TimeoutStopSec $limit)"
    [ "$exit_code" = 1 ] && [ "$status" = 0 ] ||
        fail "stop with a state file: ExecMainCode=$exit_code ExecMainStatus=$status after $took ms"
    [ "$(journal_count SIGKILL)" = "$killed" ] && [ "$(journal_count "stop-sigterm' timed out")" = 0 ] ||
        fail "systemd killed the relay (TimeoutStopSec $limit, the stop took $took ms)"
    wait_journal "exiting with" $((exited + 1))
    wait_journal "saved the stored messages to /var/lib/handoff/stop-state" $((saved + 1))
    [ "$took" -ge 1800 ] || fail "the stop took $took ms: the held delivery did not keep the drain to its limit"
    # The file is whole: the next start restores both messages, and each is served.
    get_is /inbox/kept stored "after the stop"
    wait_journal "restored 1 /inbox and 1 /link messages" 1
    [ "$(main_pid)" != "$pid" ] || fail "the relay was not restarted"
    get_is /link/held in-flight "after the stop"
    ok "8 - stop with a state file and a delivery never closed: exited by itself in $took ms (TimeoutStopSec $limit), Result=success, both messages restored"
    rm /etc/default/handoff
}

# Sets up the token file as a systemd credential, as README says, containing $1.
tokens_as_credential() {
    install -d -m 700 /etc/handoff
    printf '%s' "$1" > /etc/handoff/tokens
    chmod 600 /etc/handoff/tokens
    mkdir -p /etc/systemd/system/handoff.service.d
    printf '[Service]\nLoadCredential=tokens:/etc/handoff/tokens\nEnvironment=HANDOFF_TOKEN_FILE=%%d/tokens\n' \
        > /etc/systemd/system/handoff.service.d/tokens.conf
    systemctl daemon-reload
    restart
}

check_journal_priorities() {
    # Info lines are there, and -p warning leaves them out.
    wait_journal "listening on 127.0.0.1:8080 (socket from systemd" 1
    wait_journal "GET health - 200" 1
    local warnings
    warnings=$(journalctl -q -u handoff.service -p warning -o cat --no-pager)
    ! grep -qE 'listening on|GET health|SIGHUP' <<<"$warnings" ||
        fail "info lines shown by journalctl -p warning: $warnings"
    journalctl -q -u handoff.service -o cat --no-pager | grep -q '^<[0-9]>' &&
        fail "lines with an unparsed <N> priority prefix in the journal"
    # A warning (an empty token file) is shown by -p warning, with priority 4.
    tokens_as_credential ""
    wait_journal "loaded 0 tokens from" 1
    [ "$(journal_count "loaded 0 tokens from" warning..warning)" -ge 1 ] ||
        fail "the relay's warning is not in journalctl -p warning..warning (priority 4)"
    ok "6 - journal: info lines, not shown by -p warning; a warning shown by it (PRIORITY=4)"
}

check_token_credential() {
    local token=handoff-test-token-0123456789abcdef
    tokens_as_credential "$token send,receive,stats"
    wait_journal "loaded 1 tokens from" 1
    local code
    code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST --data t "$BASE/inbox/t")
    [ "$code" = 401 ] || fail "POST without a token answered $code, not 401"
    code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
        -X POST --data t "$BASE/inbox/t")
    [ "$code" = 200 ] || fail "POST with the credential's token answered $code, not 200"
    rm -r /etc/systemd/system/handoff.service.d /etc/handoff
    systemctl daemon-reload
    ok "7 - token file as a systemd credential (LoadCredential=): 401 without, 200 with the token"
}

inside() {
    trap 'finish $?' EXIT
    # A command that fails outside the checks' own tests still says where.
    set -E
    trap 'echo "FAIL: line $LINENO: \"$BASH_COMMAND\" exited $?"' ERR
    echo "systemd $(systemctl --version | head -n 1 | cut -d' ' -f2) is PID 1: $(systemctl is-system-running || true)"
    check_socket_activation_and_link
    check_restart_refuses_nothing
    check_stop_drains
    check_reload
    check_state_directory
    check_journal_priorities
    check_token_credential
    check_stop_with_state_file
    echo "8 passed, 0 failed"
}


# ---------------------------------------------------------------------------------------------
# --deb: the package, as a Debian or Raspberry Pi OS admin installs and removes it.
# ---------------------------------------------------------------------------------------------

# What of the package is on the system: its files, units, links, state and configuration.
leftovers() {
    local path
    for path in /usr/bin/handoff /lib/systemd/system/handoff.socket /lib/systemd/system/handoff.service \
        /etc/default/handoff /var/lib/handoff /var/lib/private/handoff /usr/share/doc/handoff \
        /usr/share/man/man8/handoff.8.gz; do
        [ -e "$path" ] || [ -L "$path" ] && echo "$path"
    done
    find /etc/systemd /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
        -name 'handoff.*' 2>/dev/null || true
}

check_deb_install() {
    local deb
    deb=$(echo "$IN"/*.deb)
    [ -f "$deb" ] || fail "no package in $IN"
    apt-get install -y "$deb" > /tmp/apt.log 2>&1 || fail "apt-get install $deb failed: $(tail -n 20 /tmp/apt.log)"
    [ "$(systemctl is-enabled handoff.socket || true)" = enabled ] ||
        fail "after install, handoff.socket is $(systemctl is-enabled handoff.socket || true), not enabled"
    [ "$(is_active handoff.socket)" = active ] || fail "after install, handoff.socket is $(is_active handoff.socket)"
    [ "$(is_active handoff.service)" = inactive ] ||
        fail "after install, handoff.service is $(is_active handoff.service) before any connection"
    local code
    code=$(curl -s -m 10 -o /tmp/health.body -w '%{http_code}' "$BASE/health") || fail "GET /health: curl failed (exit $?)"
    [ "$code" = 200 ] || fail "GET /health answered $code: $(cat /tmp/health.body)"
    [ "$(is_active handoff.service)" = active ] || fail "handoff.service is $(is_active handoff.service) after a connection"
    [ "$(readlink "/proc/$(main_pid)/exe")" = /usr/bin/handoff ] ||
        fail "the service runs $(readlink "/proc/$(main_pid)/exe"), not /usr/bin/handoff"
    link_handoff
    dpkg-query -W -f='${Conffiles}\n' handoff | grep -q '^ /etc/default/handoff ' ||
        fail "/etc/default/handoff is not a conffile: $(dpkg-query -W -f='${Conffiles}' handoff)"
    ok "1 - apt-get install: socket enabled and active, service socket-activated from /usr/bin/handoff, /link hand-off (hello), /etc/default/handoff a conffile"
}

check_deb_remove() {
    # An admin's setting and a stored message: remove keeps the one, purge deletes both.
    echo "HANDOFF_STATE_FILE=/var/lib/handoff/state" >> /etc/default/handoff
    restart
    local code
    code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST --data kept "$BASE/inbox/y")
    [ "$code" = 200 ] || fail "POST /inbox/y answered $code"
    apt-get remove -y handoff > /tmp/apt.log 2>&1 || fail "apt-get remove handoff failed: $(tail -n 20 /tmp/apt.log)"
    [ "$(is_active handoff.socket)" = inactive ] || fail "after remove, handoff.socket is $(is_active handoff.socket)"
    [ "$(is_active handoff.service)" = inactive ] || fail "after remove, handoff.service is $(is_active handoff.service)"
    [ ! -e /usr/bin/handoff ] || fail "after remove, /usr/bin/handoff is still there"
    grep -qx 'HANDOFF_STATE_FILE=/var/lib/handoff/state' /etc/default/handoff ||
        fail "remove did not keep the edited /etc/default/handoff"
    [ -f /var/lib/private/handoff/state ] || fail "remove deleted the state file (only purge should)"
    [ "$(dpkg-query -W -f='${db:Status-Status}' handoff)" = config-files ] ||
        fail "after remove, dpkg has handoff as $(dpkg-query -W -f='${db:Status-Status}' handoff), not config-files"
    curl -s -m 2 -o /dev/null "$BASE/health" && fail "after remove, something still answers on $BASE"
    ok "2 - apt-get remove: socket and service stopped, binary gone, edited /etc/default/handoff and state kept"
}

check_deb_purge() {
    apt-get purge -y handoff > /tmp/apt.log 2>&1 || fail "apt-get purge handoff failed: $(tail -n 20 /tmp/apt.log)"
    local left
    left=$(leftovers)
    [ -z "$left" ] || fail "after purge, left behind: $left"
    dpkg -L handoff > /tmp/dpkg-L.log 2>&1 && fail "after purge, dpkg -L handoff lists: $(cat /tmp/dpkg-L.log)"
    local status
    status=$(dpkg-query -W -f='${db:Status-Status}' handoff 2>/dev/null || true)
    [ -z "$status" ] || [ "$status" = not-installed ] || fail "after purge, dpkg has handoff as $status"
    [ -z "$(systemctl list-unit-files --no-legend handoff.socket handoff.service)" ] ||
        fail "after purge, systemd still knows: $(systemctl list-unit-files --no-legend handoff.socket handoff.service)"
    ok "3 - apt-get purge: dpkg -L empty, no files, units, links, state or /etc/default/handoff left"
}

inside_deb() {
    trap 'finish $?' EXIT
    set -E
    trap 'echo "FAIL: line $LINENO: \"$BASH_COMMAND\" exited $?"' ERR
    echo "systemd $(systemctl --version | head -n 1 | cut -d' ' -f2) is PID 1: $(systemctl is-system-running || true)"
    [ -z "$(leftovers)" ] || fail "before install, already there: $(leftovers)"
    check_deb_install
    check_deb_remove
    check_deb_purge
    echo "3 passed, 0 failed"
}

if [ "${1:-}" = --inside ]; then
    inside
    exit 0
fi
if [ "${1:-}" = --inside-deb ]; then
    inside_deb
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# On the host: the cached root file system, the container, the verdict.
# ---------------------------------------------------------------------------------------------

die() {
    echo "test-under-systemd: $*" >&2
    exit 1
}

USAGE="usage: $0 BINARY (the relay to install, e.g. target/release/handoff), or $0 --deb PACKAGE.deb"
CHECKS=--inside
if [ "${1:-}" = --deb ]; then
    [ $# = 2 ] || die "$USAGE"
    DEB=$2
    [ -f "$DEB" ] || die "$DEB is not a file: make deb makes it"
    CHECKS=--inside-deb
else
    [ $# = 1 ] || die "$USAGE"
    BINARY=$1
    [ -x "$BINARY" ] || die "$BINARY is not an executable file"
fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, systemd-nspawn)"
for program in debootstrap systemd-nspawn; do
    command -v "$program" >/dev/null || die "no $program: make interop-deps (apt-get install debootstrap systemd-container)"
done
HERE=$(cd "$(dirname "$0")" && pwd)
UNIT_DIR=${HANDOFF_UNIT_DIR:-$HERE}
CACHE=${HANDOFF_SYSTEMD_CACHE:-/var/cache/handoff-systemd-rootfs}
ROOTFS=$CACHE/$SUITE

# The Debian mirror apt uses here (not the security one), else Debian's own.
debian_mirror() {
    if [ -n "${HANDOFF_DEBIAN_MIRROR:-}" ]; then
        echo "$HANDOFF_DEBIAN_MIRROR"
        return
    fi
    local uri
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]*/debian/?( |$)' |
        head -n 1 | tr -d ' ' || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# Makes the root file system once (about 40 s), under a lock so parallel runs share it.
make_rootfs() {
    local recipe
    recipe="debootstrap --variant=minbase --include=$PACKAGES $SUITE"
    mkdir -p "$CACHE"
    exec 9> "$CACHE/.lock"
    flock 9
    if [ "$(cat "$ROOTFS.recipe" 2>/dev/null)" = "$recipe" ] && [ -x "$ROOTFS/lib/systemd/systemd" ]; then
        return
    fi
    local mirror started
    mirror=$(debian_mirror)
    started=$(date +%s)
    echo "making the container's root file system in $ROOTFS ($recipe from $mirror)"
    rm -rf "$ROOTFS" "$ROOTFS.tmp" "$ROOTFS.recipe"
    # shellcheck disable=SC2086 # the recipe is words
    if ! $recipe "$ROOTFS.tmp" "$mirror" > "$CACHE/debootstrap.log" 2>&1; then
        tail -n 20 "$CACHE/debootstrap.log" >&2
        die "debootstrap failed (log: $CACHE/debootstrap.log)"
    fi
    mv "$ROOTFS.tmp" "$ROOTFS"
    echo "$recipe" > "$ROOTFS.recipe"
    echo "root file system made in $(($(date +%s) - started)) s"
}

make_rootfs
exec 9>&-

WORK=$(mktemp -d /tmp/handoff-systemd-test.XXXXXX)
mkdir -p "$WORK/in/units" "$WORK/out"
if [ "$CHECKS" = --inside-deb ]; then
    cp "$DEB" "$WORK/in/"
else
    cp "$BINARY" "$WORK/in/handoff"
    cp "$UNIT_DIR/handoff.socket" "$UNIT_DIR/handoff.service" "$WORK/in/units/"
fi
cp "$0" "$WORK/in/test-under-systemd.sh"
cat > "$WORK/in/handoff-check.service" <<EOF
[Unit]
Description=handoff checks under systemd (test-under-systemd.sh)
After=multi-user.target
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/bin/bash $IN/test-under-systemd.sh $CHECKS
StandardOutput=append:$OUT/checks.log
StandardError=append:$OUT/checks.log
TimeoutStartSec=240
EOF

started=$(date +%s)
nspawn=0
# No systemd on the host: --register=no (no machined) and --keep-unit (no scope to ask for).
# --private-network: the container's 127.0.0.1:8080 is its own, and it keeps CAP_NET_ADMIN, so
# its systemd can bring up the loopback of the service's PrivateNetwork= namespace.
timeout -k 20 300 systemd-nspawn --quiet --directory="$ROOTFS" --volatile=overlay \
    --register=no --keep-unit --private-network --machine="handoff-test-$$" \
    --bind-ro="$WORK/in:$IN" --bind="$WORK/out:$OUT" \
    --bind-ro="$WORK/in/handoff-check.service:/etc/systemd/system/handoff-check.service" \
    --console=pipe --boot systemd.unit=multi-user.target systemd.wants=handoff-check.service \
    < /dev/null > "$WORK/out/console.log" 2>&1 || nspawn=$?
took=$(($(date +%s) - started))

cat "$WORK/out/checks.log" 2>/dev/null || true
status=$(cat "$WORK/out/status" 2>/dev/null || echo none)
if [ "$status" = 0 ]; then
    echo "passed: $([ "$CHECKS" = --inside-deb ] && echo "the package" || echo "the units") under systemd in $took s (container: boot, checks, power-off)"
    rm -rf "$WORK"
    exit 0
fi
if [ "$status" = none ]; then
    echo "test-under-systemd: the checks did not finish (systemd-nspawn exit $nspawn after $took s)." >&2
    echo "--- container console (last 40 lines)" >&2
    tail -n 40 "$WORK/out/console.log" >&2
fi
die "FAILED under systemd; the container's journal and console are in $WORK/out"
