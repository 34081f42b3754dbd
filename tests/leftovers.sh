#!/usr/bin/env bash
# Fails when a process started by a `make interop` run outlives it. The Makefile gives the run
# an id (HANDOFF_INTEROP_RUN) and its own TMPDIR, where every test keeps its files. A process is
# the run's when its environment holds the id (a process keeps the environment it started with
# in /proc/PID/environ), or when its working directory or one of its open files is under that
# TMPDIR: nginx writes its title over its environment, but its master and workers keep their
# logs open there. Those still alive are listed, then killed, and the check fails.
#
#   tests/leftovers.sh RUN DIR    (the run's HANDOFF_INTEROP_RUN and TMPDIR)
set -uo pipefail
run=${1:?usage: tests/leftovers.sh RUN DIR}
dir=${2:?usage: tests/leftovers.sh RUN DIR}
marker="HANDOFF_INTEROP_RUN=$run"
# Neither this script nor the processes it forks may carry the id: started again without it.
[ -n "${HANDOFF_INTEROP_RUN:-}" ] && exec env -u HANDOFF_INTEROP_RUN "$0" "$@"

# The run's processes: one grep over every environment, one find over every open file and
# working directory.
survivors() {
    {
        grep -lzxF "$marker" /proc/[0-9]*/environ 2>/dev/null
        find /proc/[0-9]*/cwd /proc/[0-9]*/fd -maxdepth 1 -lname "$dir/*" 2>/dev/null
    } | cut -d/ -f3 | sort -un | while read -r pid; do
        # The shell make runs this from may carry the id; a process that ended meanwhile is gone.
        [ "$pid" = "$PPID" ] || [ ! -e "/proc/$pid" ] || echo "$pid"
    done
}

# A process the suite stopped a moment ago may still be exiting: give it two seconds.
for _ in $(seq 20); do
    left=$(survivors)
    [ -z "$left" ] && { echo "leftovers: none of the run's processes remain"; exit 0; }
    sleep 0.1
done
echo "leftovers: processes started by the run are still running:" >&2
for pid in $left; do
    echo "  $pid $({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" >&2
done
kill -KILL $left 2>/dev/null
exit 1
