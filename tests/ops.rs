//! Operations, over the real binary (SPEC §7): the `SIGTERM`/`SIGINT` drain and socket
//! activation (`systemd-socket-activate`, also inside a network namespace of its own), and the
//! systemd units' hardening (`systemd-analyze`).

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{get_request, post_request, Relay};

/// systemd's tool that listens, then runs a program with the socket as descriptor 3.
const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// Sends `signal` (`TERM`, `INT`) to process `pid`.
fn kill_pid(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Sends `signal` to the relay's process.
fn kill(relay: &Relay, signal: &str) {
    kill_pid(relay.pid(), signal);
}

/// Parks three receivers, signals the relay, and checks each gets 503 with `Retry-After`, the
/// process exits 0 within 2 s, and the port refuses connections after. Returns the time taken.
fn drains_on(signal: &str) -> Duration {
    let mut relay = Relay::start(&[]);
    let addr = relay.addr();
    let waiters = [
        relay.spawn_get("/link/drain-a"),
        relay.spawn_get("/link/drain-b"),
        relay.spawn_get("/inbox/drain-c"),
    ];
    relay.wait_parked(3);
    let sent = Instant::now();
    kill(&relay, signal);
    for waiter in waiters {
        let response = waiter.join().unwrap();
        assert_eq!(response.status, 503, "{response}");
        assert_eq!(response.header("retry-after"), Some("1"), "{response}");
        assert!(response.text().contains("shutting down"), "{response}");
    }
    let status = relay.wait_exit(Duration::from_secs(2));
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running 2 s after SIGTERM"));
    assert!(status.success(), "exit status {status}; logs:\n{}", relay.logs().join("\n"));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "still accepting");
    println!("SIG{signal} to exit: {} ms", took.as_millis());
    took
}

#[test]
fn sigterm_answers_parked_requests_503_and_exits_0() {
    drains_on("TERM");
}

#[test]
fn sigint_drains_like_sigterm() {
    drains_on("INT");
}

/// Two distinct free loopback ports: bound together, read, and released.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// Waits until `addr` takes connections (systemd-socket-activate is listening), up to 10 s.
fn wait_listening(addr: SocketAddr) {
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "{addr} never listened");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn socket_activation_serves_a_link_hand_off_on_the_passed_socket() {
    // --listen names another port, which must stay unused: the socket from systemd wins.
    let (port, decoy) = free_ports();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(SOCKET_ACTIVATE)
        .args(["-l", &addr.to_string(), env!("CARGO_BIN_EXE_handoff")])
        .args(["--listen", &format!("127.0.0.1:{decoy}")])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run systemd-socket-activate");
    let stderr = child.stderr.take().unwrap();
    let logs = thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>()
    });
    wait_listening(addr);
    let receiver = thread::spawn(move || common::exchange(addr, &get_request("/link/activated")));
    let sender = common::exchange(addr, &post_request("/link/activated", b"sealed", &[]));
    let received = receiver.join().unwrap();
    assert_eq!(sender.status, 200, "{sender}");
    assert_eq!(received.status, 200, "{received}");
    assert_eq!(received.text(), "sealed");
    assert!(TcpStream::connect(("127.0.0.1", decoy)).is_err(), "--listen was bound too");
    kill_pid(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let logs = logs.join().unwrap().join("\n");
    assert!(logs.contains("(socket from systemd; --listen ignored)"), "{logs}");
}

/// The relay needs no network of its own: in a new network namespace with only `lo` up, a
/// socket-activated relay serves a `/link` hand-off to a client in the same namespace (bash's
/// `/dev/tcp`). Skipped, with the reason printed, where `unshare --net` is not permitted.
#[test]
fn socket_activation_works_in_a_network_namespace_of_its_own() {
    let probe = Command::new("unshare").args(["--net", "true"]).output();
    match probe {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            let reason = String::from_utf8_lossy(&output.stderr);
            println!("skipped: unshare --net is not permitted here: {}", reason.trim());
            return;
        }
        Err(e) => {
            println!("skipped: cannot run unshare: {e}");
            return;
        }
    }
    let script = r#"
        set -e
        ip link set lo up
        "$ACTIVATE" -l 127.0.0.1:8080 "$RELAY" 2>/dev/null &
        for i in $(seq 100); do (exec 5<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break; sleep 0.05; done
        exec 3<>/dev/tcp/127.0.0.1/8080
        printf 'GET /link/netns HTTP/1.1\r\nHost: relay.test\r\n\r\n' >&3
        exec 4<>/dev/tcp/127.0.0.1/8080
        printf 'POST /link/netns HTTP/1.1\r\nHost: relay.test\r\nContent-Length: 6\r\n\r\nsealed' >&4
        head -n1 <&4
        cat <&3
        kill -TERM %1
        wait %1
        echo "exit $?"
    "#;
    let output = Command::new("unshare")
        .args(["--net", "bash", "-c", script])
        .env("ACTIVATE", SOCKET_ACTIVATE)
        .env("RELAY", env!("CARGO_BIN_EXE_handoff"))
        .output()
        .expect("cannot run unshare");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}\n{}", String::from_utf8_lossy(&output.stderr));
    let mut lines = out.lines();
    assert_eq!(lines.next().map(str::trim_end), Some("HTTP/1.1 200 OK"), "sender: {out}");
    assert!(out.contains("HTTP/1.1 200 OK\r\n") && out.contains("\r\n\r\nsealed"), "{out}");
    assert!(out.trim_end().ends_with("exit 0"), "{out}");
}

/// The unit files, in the repository's `systemd/` directory.
fn unit(name: &str) -> String {
    format!("{}/systemd/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `systemd-analyze security` rates the service's hardening: the overall exposure must stay at
/// 0.5 or below ("SAFE" starts below 1.0 on its scale of 0 to 10).
#[test]
fn service_unit_exposure_is_at_most_half_a_point() {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", &unit("handoff.service")])
        .output()
        .expect("systemd-analyze is missing: install the systemd package (.ci/run does)");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure figure in:\n{text}"));
    let figure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the figure in {line:?}"));
    println!("{}", line.trim());
    assert!(figure <= 0.5, "{line}\n{text}");
}

/// `systemd-analyze verify` accepts both units (offline), with `ExecStart` pointed at the binary
/// just built since the installed path may not exist here.
#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = std::env::temp_dir().join(format!("handoff-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let service = std::fs::read_to_string(unit("handoff.service")).unwrap();
    assert!(
        service.contains("ExecStart=/usr/local/bin/handoff\n"),
        "ExecStart must match make install"
    );
    let service = service.replace("/usr/local/bin/handoff", env!("CARGO_BIN_EXE_handoff"));
    std::fs::write(dir.join("handoff.service"), service).unwrap();
    std::fs::copy(unit("handoff.socket"), dir.join("handoff.socket")).unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("handoff.socket"))
        .arg(dir.join("handoff.service"))
        .output()
        .expect("systemd-analyze is missing: install the systemd package (.ci/run does)");
    let _ = std::fs::remove_dir_all(&dir);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && errors.trim().is_empty(), "{errors}");
}
