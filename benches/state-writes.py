#!/usr/bin/env python3
"""What `--state-file` writes to disk (BENCHMARKS.md, "The state file's writes").

Usage: benches/state-writes.py RELAY [RELAY...]

For each relay binary, two runs on a fresh state file in a temporary directory, each reading the
relay's `write_bytes` from /proc/PID/io (bytes it caused to be sent to the storage layer: whole
pages, counted when a page is first dirtied) before and after each phase:

1. `store`: 10,000 /inbox messages of 400 B on distinct ids, as fast as they go; then `trickle`:
   30 more, one a second.
2. `mix`, 60 s on a relay that already holds 10,000 /link messages of 400 B (senders that left:
   the messages stay for --link-timeout, 600 s) and has --inbox-ttl 10s: every second 20 /inbox
   messages of 400 B stored (on 300 ids in turn, so each expires 10 s after its store, before
   its id comes round again), and 10 of them acknowledged at once. Then the same mix on a relay
   that holds nothing else, where the live state is small and compactions come every few
   seconds: the amortised figure.

Bytes changed are the bodies stored (400 B each): what any format must write at least. Requests
go over loopback, one connection each, every per-client limit off (the default --max-memory,
64 MiB, stays). Needs root or the relay's
user (for /proc/PID/io). The state files live in a temporary directory under $STATE_DIR
(default /var/tmp), which must be on a disk file system: tmpfs pages are not counted.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

BODY = b"m" * 400
LIMITS_OFF = ["--rate-per-ip", "0", "--rate-per-id", "0", "--max-connections-per-ip", "0",
              "--max-parked-per-ip", "0", "--max-memory-per-ip", "0"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=b"", read=True):
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode() + body)
        if not read:
            return 0
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data[9:12])


def write_bytes(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/PID/io")


def start(relay, state, extra):
    port = free_port()
    proc = subprocess.Popen([relay, "--listen", f"127.0.0.1:{port}", "--state-file", state]
                            + LIMITS_OFF + extra, env=dict(os.environ, RUST_LOG="warn"))
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    time.sleep(1.5)  # the start's own write is not counted
    return proc, port


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def row(label, written, changed):
    ratio = written / changed if changed else float("nan")
    print(f"| {label} | {changed:,} B | {written:,} B ({written / 2**20:.2f} MiB) | {ratio:,.1f} |")


def store_and_trickle(relay, state):
    proc, port = start(relay, state, [])
    try:
        store_and_trickle_on(proc, port, state)
    finally:
        stop(proc)


def store_and_trickle_on(proc, port, state):
    before = write_bytes(proc.pid)
    for n in range(10_000):
        assert request(port, "POST", f"/inbox/store-{n}", BODY) == 200
    time.sleep(2)  # the last save or sync
    after_store = write_bytes(proc.pid)
    row("10,000 /inbox messages of 400 B stored", after_store - before, 10_000 * len(BODY))
    for n in range(30):
        started = time.monotonic()
        assert request(port, "POST", f"/inbox/trickle-{n}", BODY) == 200
        time.sleep(max(0.0, 1 - (time.monotonic() - started)))
    time.sleep(2)
    after = write_bytes(proc.pid)
    row("then 30 more of 400 B, one a second", after - after_store, 30 * len(BODY))
    print(f"(state file at the end: {os.path.getsize(state):,} B)")


def mix(relay, state, held):
    proc, port = start(relay, state, ["--inbox-ttl", "10s"])
    try:
        mix_on(proc, port, state, held)
    finally:
        stop(proc)


def mix_on(proc, port, state, held):
    for n in range(held):
        request(port, "POST", f"/link/held-{n}", BODY, read=False)
    time.sleep(2)
    before = write_bytes(proc.pid)
    stored = acked = 0
    seq = 0
    started = time.monotonic()
    for second in range(60):
        for k in range(20):
            seq += 1
            assert request(port, "POST", f"/inbox/mix-{seq % 300}", BODY) == 200
            stored += 1
            if k % 2 == 0:
                status = request(port, "DELETE", f"/inbox/mix-{seq % 300}")
                acked += status == 200
        time.sleep(max(0.0, started + second + 1 - time.monotonic()))
    time.sleep(2)
    after = write_bytes(proc.pid)
    row(f"60 s mix: {stored:,} stored, {acked:,} acknowledged, expiries, on {held:,} /link "
        "messages held", after - before, stored * len(BODY))
    print(f"(state file at the end: {os.path.getsize(state):,} B)")


def main():
    for relay in sys.argv[1:]:
        print(f"\n{relay}")
        print("| what happened | data that changed | written to disk | written per byte changed |")
        print("|---|---|---|---|")
        with tempfile.TemporaryDirectory(dir=os.environ.get("STATE_DIR", "/var/tmp")) as tmp:
            store_and_trickle(relay, os.path.join(tmp, "state"))
        for held in [10_000, 0]:
            with tempfile.TemporaryDirectory(dir=os.environ.get("STATE_DIR", "/var/tmp")) as tmp:
                mix(relay, os.path.join(tmp, "state"), held)


if __name__ == "__main__":
    main()
