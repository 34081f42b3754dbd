//! `handoff-bench` against a real relay, every scenario at a tiny size, so the load generator
//! cannot rot. Checks only that each run completes and reports sane counts (its `--json`), not
//! speed.

mod common;

use std::process::Command;

use common::{json_number, Relay, NO_CLIENT_LIMITS};

/// The relay with every per-client limit off, as a benchmark from one address needs.
fn relay() -> Relay {
    Relay::start(&NO_CLIENT_LIMITS)
}

/// Runs `handoff-bench <args> --url <relay> --json --timeout 10s` and returns its JSON line.
fn bench(relay: &Relay, args: &[&str]) -> String {
    let url = format!("http://{}", relay.addr());
    let output = Command::new(env!("CARGO_BIN_EXE_handoff-bench"))
        .args(args)
        .args(["--url", &url, "--json", "--timeout", "10s"])
        .output()
        .expect("cannot run handoff-bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "handoff-bench {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with('{') && stdout.trim_end().ends_with('}'), "not JSON: {stdout}");
    stdout
}

/// The `index`-th series object of the report, as text.
fn series(json: &str, index: usize) -> &str {
    json.split("{\"name\":").nth(index + 1).unwrap_or_else(|| panic!("no series {index}: {json}"))
}

/// A latency field in ms (a decimal), as a float.
fn json_ms(series: &str, field: &str) -> f64 {
    let key = format!("\"{field}\":");
    let at = series.find(&key).unwrap_or_else(|| panic!("no {field}: {series}")) + key.len();
    let text: String =
        series[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    text.parse().unwrap_or_else(|_| panic!("bad {field}: {series}"))
}

/// `ok` equals `want` (or is positive when `want` is `None`), no errors, latencies positive.
fn assert_series(json: &str, index: usize, want: Option<u64>) {
    let s = series(json, index);
    let ok = json_number(s, "ok").unwrap_or_else(|| panic!("no ok count: {json}"));
    match want {
        Some(want) => assert_eq!(ok, want, "{json}"),
        None => assert!(ok > 0, "{json}"),
    }
    assert_eq!(json_number(s, "errors"), Some(0), "{json}");
    let (p50, p99, max) = (json_ms(s, "p50_ms"), json_ms(s, "p99_ms"), json_ms(s, "max_ms"));
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{json}");
}

#[test]
fn link_latency_counts_every_hand_off() {
    let relay = relay();
    let json = bench(&relay, &["link-latency", "-n", "20"]);
    assert_eq!(json_number(&json, "hand_offs"), Some(20), "{json}");
    assert_series(&json, 0, Some(20));
    assert_series(&json, 1, Some(20));
}

#[test]
fn link_latency_with_parked_background() {
    let relay = relay();
    let json = bench(&relay, &["link-latency", "-n", "10", "--parked-background", "20"]);
    assert_eq!(json_number(&json, "parked_background"), Some(20), "{json}");
    assert_series(&json, 0, Some(10));
    assert_series(&json, 1, Some(10));
}

#[test]
fn floor_relay_serves_hand_offs_one_pair_at_a_time() {
    let floor = Relay::start_command(&[env!("CARGO_BIN_EXE_handoff-bench"), "floor-relay"], &[]);
    let json = bench(&floor, &["link-latency", "-n", "20"]);
    assert_series(&json, 0, Some(20));
    assert_series(&json, 1, Some(20));
}

#[test]
fn link_throughput_runs_for_its_duration() {
    let relay = relay();
    let json = bench(&relay, &["link-throughput", "-c", "4", "-d", "300ms"]);
    assert!(json_number(&json, "hand_offs").unwrap_or(0) > 0, "{json}");
    assert_series(&json, 0, None);
}

#[test]
fn inbox_flow_runs_for_its_duration() {
    let relay = relay();
    let json = bench(&relay, &["inbox-flow", "-c", "4", "-d", "300ms"]);
    assert!(json_number(&json, "flows").unwrap_or(0) > 0, "{json}");
    assert_series(&json, 0, None);
}

#[test]
fn park_reads_the_relay_and_serves_everyone() {
    let relay = relay();
    let pid = relay.pid().to_string();
    let json = bench(&relay, &["park", "-n", "50", "-c", "4", "--pid", &pid]);
    assert_eq!(json_number(&json, "parked"), Some(50), "{json}");
    assert_eq!(json_number(&json, "relay_reports_parked"), Some(50), "{json}");
    assert_eq!(json_number(&json, "served"), Some(50), "{json}");
    assert!(json_number(&json, "rss_kib_parked").unwrap_or(0) > 0, "{json}");
    assert!(json_number(&json, "threads_parked").unwrap_or(0) > 0, "{json}");
    assert!(json_number(&json, "fds_parked").unwrap_or(0) >= 50, "{json}");
    assert_series(&json, 0, Some(50));
}

#[test]
fn park_on_inbox_serves_everyone() {
    let relay = relay();
    let pid = relay.pid().to_string();
    let json = bench(&relay, &["park", "--inbox", "-n", "30", "-c", "4", "--pid", &pid]);
    assert!(json.contains("\"scenario\":\"park-inbox\""), "{json}");
    assert_eq!(json_number(&json, "relay_reports_parked"), Some(30), "{json}");
    assert_eq!(json_number(&json, "served"), Some(30), "{json}");
    assert_series(&json, 0, Some(30));
}

#[test]
fn relay_cpu_per_hand_off_is_read_with_pid() {
    let relay = relay();
    let pid = relay.pid().to_string();
    let json = bench(&relay, &["link-throughput", "-c", "2", "-d", "500ms", "--pid", &pid]);
    // Whole milliseconds of /proc's 10 ms ticks: present, and not absurd for a relay that just
    // made hundreds of hand-offs on 2 connections each.
    let cpu_ms = json_number(&json, "relay_cpu_ms").unwrap_or_else(|| panic!("no CPU: {json}"));
    assert!(cpu_ms < 5_000, "{json}");
    assert!(json.contains("\"relay_cpu_us_per_op\":"), "{json}");
    let without = bench(&relay, &["link-throughput", "-c", "1", "-d", "100ms"]);
    assert!(!without.contains("relay_cpu"), "no --pid, no CPU figure: {without}");
}

/// Runs `handoff-bench soak` for 1.5 s against a relay whose waits last 300 ms, with `extra`
/// options. RSS may move 1000 % here: a relay 1.5 s old is still growing to its working size.
fn soak(relay: &Relay, extra: &[&str]) -> (bool, String) {
    let url = format!("http://{}", relay.addr());
    let pid = relay.pid().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_handoff-bench"))
        .args(["soak", "-c", "6", "-d", "1500ms", "--sample", "500ms", "--warmup", "0s"])
        .args(["--rss-tolerance", "1000", "--wait", "300ms", "--pid", &pid, "--url", &url])
        .args(extra)
        .output()
        .expect("cannot run handoff-bench");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

const SHORT_WAITS: [&str; 4] = ["--link-timeout", "300ms", "--inbox-timeout", "300ms"];

#[test]
fn soak_passes_against_a_healthy_relay() {
    let relay = Relay::start(&[&NO_CLIENT_LIMITS[..], &SHORT_WAITS].concat());
    let (ok, out) = soak(&relay, &[]);
    assert!(ok, "{out}");
    assert!(out.contains(" 0 unexpected: pass") && out.contains("soak: pass"), "{out}");
    let samples = out.lines().filter(|l| l.trim_start().starts_with(['0', '1'])).count();
    assert_eq!(samples, 3, "a row every 500 ms: {out}");
}

#[test]
fn soak_rate_paces_each_thread() {
    let relay = Relay::start(&[&NO_CLIENT_LIMITS[..], &SHORT_WAITS].concat());
    // Two threads (a /link hand-off and an /inbox flow, a few milliseconds each when unpaced)
    // at 20 a second for 1.5 s: 30 each, one more for the start and one for the end at most.
    let (ok, out) = soak(&relay, &["-c", "2", "--rate", "20"]);
    assert!(ok && out.contains("at most 20 operations/s each"), "{out}");
    let end = out.lines().find(|l| l.trim_start().starts_with("end")).expect("an end row");
    let ops: u64 = end.split_whitespace().nth(4).and_then(|n| n.parse().ok()).expect("ops");
    assert!((20..=64).contains(&ops), "{ops} operations in 1.5 s at 20/s on 2 threads: {out}");
}

#[test]
fn soak_fails_on_an_unexpected_status() {
    // Bodies over 1 KiB get 413, so every slow reader's 60,000-byte POST is refused: the soak
    // must count that as unexpected and fail.
    let relay =
        Relay::start(&[&NO_CLIENT_LIMITS[..], &SHORT_WAITS, &["--max-body", "1K"]].concat());
    let (ok, out) = soak(&relay, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("soak: FAIL") && out.contains("expected 200"), "{out}");
    assert!(out.contains("status 413"), "{out}");
}

#[test]
fn bench_refuses_a_bad_url() {
    let output = Command::new(env!("CARGO_BIN_EXE_handoff-bench"))
        .args(["link-latency", "--url", "https://example.invalid"])
        .output()
        .expect("cannot run handoff-bench");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("only http://"));
}
