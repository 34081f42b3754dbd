//! A fixed corpus of hostile requests to the real binary (protocol §4: no input may crash, hang
//! or wedge the relay). Each input goes on its own connection, all in parallel; each must get its
//! error status (or, when the client hangs up mid-request, a plain close) within a bounded time,
//! and afterwards `/health` and a `/link` hand-off must still work.
//!
//! Expected statuses follow `src/http/parse.rs` (head errors), `src/http/chunked.rs` (body
//! errors), `src/routes.rs` (target and id) and the connection code in `src/http/` (timeouts,
//! 413, 417). The fuzz targets in `fuzz/` cover the parser alone; this list covers the socket
//! code around it.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::{connect, read_response_since, Relay};
use Want::{Close, ContinueThen, Status};

/// Longest any case may take, from connecting to the end of the response: the deadlines below
/// are 1 s (head, body) and 2 s (`/link`), so this leaves room for a loaded machine.
const BOUND: Duration = Duration::from_secs(5);

/// What the relay must do with one input.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Answer with this status, then close.
    Status(u16),
    /// Answer `100 Continue` (the request asked for it), then this status.
    ContinueThen(u16),
    /// Close without answering: the client sends the input, then shuts down its side, so there
    /// is nobody to answer.
    Close,
}

struct Case {
    name: String,
    input: Vec<u8>,
    want: Want,
}

fn case(name: impl Into<String>, input: impl Into<Vec<u8>>, want: Want) -> Case {
    Case { name: name.into(), input: input.into(), want }
}

/// A complete head for a path that exists for no method, so a head that gets through is 404.
const NOPE: &[u8] = b"GET /nope HTTP/1.1\r\nHost: relay.test\r\n\r\n";

/// `GET {target} HTTP/1.1` with a Host header.
fn get(target: &[u8]) -> Vec<u8> {
    [b"GET ", target, b" HTTP/1.1\r\nHost: relay.test\r\n\r\n"].concat()
}

/// `{request_line}` with a Host header and nothing else.
fn line(request_line: &[u8]) -> Vec<u8> {
    [request_line, b"\r\nHost: relay.test\r\n\r\n"].concat()
}

/// `GET /nope` with `headers` (each ending in CRLF) after Host.
fn nope_with(headers: &[u8]) -> Vec<u8> {
    [b"GET /nope HTTP/1.1\r\nHost: relay.test\r\n", headers, b"\r\n"].concat()
}

/// A `/link` send with `headers` (each ending in CRLF) after Host, then `body`. A send that got
/// through would park, so every use of it must fail before that.
fn post(headers: &[u8], body: &[u8]) -> Vec<u8> {
    [b"POST /link/nasty HTTP/1.1\r\nHost: relay.test\r\n", headers, b"\r\n", body].concat()
}

/// A chunked `/link` send with `body`.
fn chunked(body: &[u8]) -> Vec<u8> {
    post(b"Transfer-Encoding: chunked\r\n", body)
}

/// `len` fixed pseudo-random bytes (xorshift64), with every byte in `skip` replaced by `!`.
fn garbage(len: usize, skip: &[u8]) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = (state >> 24) as u8;
            if skip.contains(&b) {
                b'!'
            } else {
                b
            }
        })
        .collect()
}

/// Rows of `name, input => want;` as a list of cases: one line per input, kept as written.
macro_rules! table {
    ($($name:expr, $input:expr => $want:expr;)*) => {
        vec![$(case($name, $input, $want)),*]
    };
}

fn cases() -> Vec<Case> {
    let cut = |n: usize| &NOPE[..n];
    let many = |n: usize| nope_with(&b"X: y\r\n".repeat(n));
    let big_value = nope_with(&[b"X-Big: ".as_slice(), &[b'a'; 9000], b"\r\n"].concat());
    let tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8f\x1e\x00\x00";
    let te =
        |value: &[u8], body: &[u8]| post(&[b"Transfer-Encoding:", value, b"\r\n"].concat(), body);
    let cl = |value: &[u8], body: &[u8]| post(&[b"Content-Length:", value, b"\r\n"].concat(), body);
    // A body that is a bad chunk: a 400 for it proves chunked framing was applied (ignoring
    // Transfer-Encoding would make an empty /link send, which parks instead).
    let bad = b"zz\r\n\r\n".as_slice();
    let long_ext = [b"1;".as_slice(), &[b'a'; 2000], b"\r\nx\r\n0\r\n\r\n"].concat();
    let trailers = [b"0\r\n".as_slice(), &b"X-Trailer: yyyy\r\n".repeat(600), b"\r\n"].concat();
    let high_path: Vec<u8> = [b'/'].into_iter().chain(0x80..=0xFF).collect();
    let id_of = |n: usize| [b"/link/".as_slice(), &b"%41".repeat(n)].concat();
    let long_method = [&[b'A'; 4096][..], b" /nope HTTP/1.1"].concat();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".as_slice();
    let h2_settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64";
    let health = b"GET /health HTTP/1.1\r\nHost: relay.test\r\n\r\n".as_slice();
    let junk = b"\x00\xff\x16\x03 GARBAGE\r\n\r\nPOST /link/nasty HTTP/1.1\r\n\r\n".as_slice();
    let empty_post = b"POST /nope HTTP/1.1\r\nHost: relay.test\r\nContent-Length: 0\r\n\r\n";

    table! {
        // Heads cut short: the head timeout answers 408; a client that hangs up gets a close.
        "nothing sent", cut(0) => Status(408);
        "head cut at 1", cut(1) => Status(408);
        "head cut after method", cut(4) => Status(408);
        "head cut in target", cut(7) => Status(408);
        "head cut before version", cut(10) => Status(408);
        "head cut before CR", cut(18) => Status(408);
        "head cut before LF", cut(19) => Status(408);
        "head cut after request line", cut(20) => Status(408);
        "head cut in header name", cut(22) => Status(408);
        "head cut after colon", cut(25) => Status(408);
        "head cut before final CRLF", cut(NOPE.len() - 2) => Status(408);
        "head cut before final LF", cut(NOPE.len() - 1) => Status(408);
        "only empty lines", b"\r\n\r\n\r\n" => Status(408);
        "CR-only line ends", b"GET /nope HTTP/1.1\rHost: a\r\r" => Status(408);
        "head cut in target, then EOF", cut(7) => Close;
        "head cut before final LF, then EOF", cut(NOPE.len() - 1) => Close;
        // Bodies cut short: the body timeout answers 408.
        "body cut short", cl(b" 5", b"hel") => Status(408);
        "chunk data cut short", chunked(b"5\r\nhel") => Status(408);
        "no last chunk", chunked(b"5\r\nhello\r\n") => Status(408);
        "no final CRLF", chunked(b"5\r\nhello\r\n0\r\n") => Status(408);
        "trailer not ended", chunked(b"0\r\nX: y\r\n") => Status(408);
        "chunk data cut short, then EOF", chunked(b"5\r\nhel") => Close;

        // Sizes (defaults: 8 KiB head, 100 header lines, 64 KiB body).
        "head over 8 KiB", big_value => Status(431);
        "10 KiB of leading CRLFs", b"\r\n".repeat(5000) => Status(431);
        "Host and 99 headers", many(99) => Status(404);
        "Host and 100 headers", many(100) => Status(400);
        "Host and 10000 headers", many(10_000) => Status(400);
        "4 KiB of garbage", garbage(4096, b"") => Status(400);
        "4 KiB of garbage, no LF", garbage(4096, b"\n") => Status(408);
        "9 KiB of garbage, no LF", garbage(9216, b"\n") => Status(431);
        "TLS ClientHello", tls_hello => Status(408);

        // Request smuggling shapes.
        "CL+TE", cl(b" 6\r\nTransfer-Encoding: chunked", b"0\r\n\r\nG") => Status(400);
        "TE+CL", te(b" chunked\r\nContent-Length: 6", b"0\r\n\r\nG") => Status(400);
        "CL+TE in HTTP/1.0",
            b"POST /link/nasty HTTP/1.0\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
            => Status(400);
        "TE in HTTP/1.0",
            b"POST /link/nasty HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            => Status(400);
        "TE: chunked, identity", te(b" chunked, identity", bad) => Status(400);
        "TE: identity, chunked", te(b" identity, chunked", bad) => Status(501);
        "TE: identity", te(b" identity", b"0\r\n\r\n") => Status(400);
        "TE: chunked after a tab", te(b"\tchunked", bad) => Status(400);
        "TE: chunked in odd OWS", te(b" \t chunked \t ", bad) => Status(400);
        "TE: CHUNKED, huge chunk", te(b" CHUNKED", b"fffffffffffffff\r\n") => Status(413);
        "TE: chunked VT", te(b" chunked\x0b", bad) => Status(400);
        "TE: FF chunked", te(b"\x0cchunked", bad) => Status(400);
        "TE: chunked CR", te(b" chunked\r", bad) => Status(400);
        "TE: \"chunked\"", te(b" \"chunked\"", bad) => Status(400);
        "TE: chunked;q=1", te(b" chunked;q=1", bad) => Status(400);
        "TE: xchunked", te(b" xchunked", bad) => Status(400);
        "TE: (empty)", te(b"", bad) => Status(400);
        "TE with space before colon", post(b"Transfer-Encoding : chunked\r\n", bad) => Status(400);
        "TE folded into a header", post(b"X: y\r\n Transfer-Encoding: chunked\r\n", bad)
            => Status(400);
        "two TE: chunked", te(b" chunked\r\nTransfer-Encoding: chunked", bad) => Status(501);
        "TE: chunked, then TE: identity", te(b" chunked\r\ntransfer-encoding: identity", bad)
            => Status(400);

        // Content-Length.
        "CL 10^14", cl(b" 100000000000000", b"hello") => Status(413);
        "CL u64::MAX", cl(b" 18446744073709551615", b"") => Status(413);
        "CL u64::MAX + 1", cl(b" 18446744073709551616", b"") => Status(400);
        "CL 23 digits", cl(b" 99999999999999999999999", b"") => Status(400);
        "CL -1", cl(b" -1", b"hello") => Status(400);
        "CL +5", cl(b" +5", b"hello") => Status(400);
        "CL 0x10", cl(b" 0x10", b"hello") => Status(400);
        "CL 5, 5", cl(b" 5, 5", b"hello") => Status(400);
        "CL 1 2", cl(b" 1 2", b"hello") => Status(400);
        "CL empty", cl(b"", b"hello") => Status(400);
        "CL fullwidth digit", cl(" ５".as_bytes(), b"hello") => Status(400);
        // OWS around the number is allowed: 70000 is read, and is over the 64 KiB limit.
        "CL with spaces and tabs", cl(b" \t 70000 \t ", b"hello") => Status(413);
        "CL twice, equal", cl(b" 5\r\ncontent-length: 5", b"hello") => Status(400);
        "CL twice, different", cl(b" 5\r\nContent-Length: 6", b"hello!") => Status(400);

        // Chunk sizes and chunk framing.
        "chunk size zz", chunked(b"zz\r\n") => Status(400);
        // Bounded by value, not digit count (issue 12): over --max-body, or past u64, is 413.
        "chunk size of 16 hex digits", chunked(b"1111111111111111\r\n") => Status(413);
        "chunk size of 17 hex digits", chunked(b"11111111111111111\r\n") => Status(413);
        "chunk size -5", chunked(b"-5\r\nhello\r\n") => Status(400);
        "chunk size 0x5", chunked(b"0x5\r\nhello\r\n") => Status(400);
        "chunk size missing", chunked(b";ext\r\nhello\r\n") => Status(400);
        "chunk size without CRLF", chunked(b"5hello\r\n0\r\n\r\n") => Status(400);
        "chunk data without CRLF", chunked(b"5\r\nhello0\r\n\r\n") => Status(400);
        "chunk data longer than declared", chunked(b"3\r\nhello\r\n0\r\n\r\n") => Status(400);
        "chunk lines end in bare LF", chunked(b"5\nhello\n0\n\n") => Status(400);
        "chunk over max body", chunked(b"10001\r\n") => Status(413);
        "chunk extension over 1 KiB", chunked(&long_ext) => Status(400);
        "trailers over 8 KiB", chunked(&trailers) => Status(400);

        // Line folding, bare LF.
        "obs-fold", nope_with(b"X: a\r\n b\r\n") => Status(400);
        "obs-fold with a tab", nope_with(b"X: a\r\n\tb\r\n") => Status(400);
        "fold as first header", b"GET /nope HTTP/1.1\r\n Host: relay.test\r\n\r\n" => Status(400);
        "bare LF everywhere", b"GET /nope HTTP/1.1\nHost: a\n\n" => Status(400);
        "bare LF in a header", nope_with(b"X: a\nY: b\r\n") => Status(400);
        "bare LF first", b"\nGET /nope HTTP/1.1\r\n\r\n" => Status(400);

        // NUL and non-ASCII bytes.
        "NUL in method", line(b"G\0T /nope HTTP/1.1") => Status(400);
        "NUL in path", get(b"/no\0pe") => Status(400);
        "NUL in header name", nope_with(b"X-N\0ul: a\r\n") => Status(400);
        "NUL in header value", nope_with(b"X: a\0b\r\n") => Status(400);
        "100 NULs", [&[0u8; 100][..], b"\r\n\r\n"].concat() => Status(400);
        "non-ASCII method", line("GËT /nope HTTP/1.1".as_bytes()) => Status(400);
        "path bytes 0x80-0xFF", get(&high_path) => Status(400);
        "UTF-8 in a /link id", get("/link/é".as_bytes()) => Status(400);
        "high byte in header name", nope_with(b"X-\xff: a\r\n") => Status(400);
        // obs-text is allowed in a value (RFC 9110 §5.5), so this one reaches routing.
        "high bytes in header value", nope_with(b"X: \x80\xff\r\n") => Status(404);

        // Percent-encoding in ids.
        "/link/%", get(b"/link/%") => Status(400);
        "/link/%G0", get(b"/link/%G0") => Status(400);
        "/link/%%%", get(b"/link/%%%") => Status(400);
        "/link/%4", get(b"/link/%4") => Status(400);
        "/link/a%", get(b"/link/a%") => Status(400);
        "/link/%zz%41", get(b"/link/%zz%41") => Status(400);
        "/inbox/%zz/ack", get(b"/inbox/%zz/ack") => Status(400);
        "3 KiB id of %41", get(&id_of(1000)) => Status(400);
        "10 KiB id of %41", get(&id_of(3414)) => Status(431);
        // NUL is a valid id byte: the receiver waits out the 2 s link timeout.
        "/link/%00", get(b"/link/%00") => Status(408);

        // Request lines.
        "two spaces after method", line(b"GET  /nope HTTP/1.1") => Status(400);
        "two spaces before version", line(b"GET /nope  HTTP/1.1") => Status(400);
        "trailing space", line(b"GET /nope HTTP/1.1 ") => Status(400);
        "leading space", line(b" GET /nope HTTP/1.1") => Status(400);
        "three spaces", line(b"GET /a b HTTP/1.1") => Status(400);
        "tabs for spaces", line(b"GET\t/nope\tHTTP/1.1") => Status(400);
        "lowercase method", line(b"get /health HTTP/1.1") => Status(405);
        "4 KiB method", line(&long_method) => Status(404);
        "method with @", line(b"G@T /nope HTTP/1.1") => Status(400);
        "absolute-form, weird authority", get(b"http://[::1]:99999@evil:-1/nope") => Status(404);
        "absolute-form, bad id", get(b"http://a:b@c:d:e/link/%G0") => Status(400);
        "absolute-form, ftp", get(b"ftp://relay.test/health") => Status(400);
        "scheme without //", get(b"http:/health") => Status(400);
        "no leading slash", get(b"health") => Status(400);
        "double slash", get(b"//health") => Status(404);
        "OPTIONS *", line(b"OPTIONS * HTTP/1.1") => Status(400);
        "GET *", line(b"GET * HTTP/1.1") => Status(400);
        "CONNECT host:443", b"CONNECT relay.test:443 HTTP/1.1\r\nHost: relay.test:443\r\n\r\n"
            => Status(400);
        "HTTP/0.9 GET /", b"GET /\r\n" => Status(400);
        "HTTP/0.9 GET /nope, blank line", b"GET /nope\r\n\r\n" => Status(400);
        "HTTP/2.0", line(b"GET /nope HTTP/2.0") => Status(505);
        "HTTP/1.2", line(b"GET /nope HTTP/1.2") => Status(505);
        "HTTP/0.9 as version", line(b"GET /nope HTTP/0.9") => Status(505);
        "HTTP/1.10", line(b"GET /nope HTTP/1.10") => Status(400);
        "HTTP/11", line(b"GET /nope HTTP/11") => Status(400);
        "http/1.1", line(b"GET /nope http/1.1") => Status(400);
        "h2 preface", preface => Status(505);
        "h2 preface and SETTINGS", [preface, h2_settings].concat() => Status(505);

        // Host and other header shapes.
        "HTTP/1.1 without Host", b"GET /nope HTTP/1.1\r\n\r\n" => Status(400);
        "two Hosts", nope_with(b"Host: other\r\n") => Status(400);
        "header without colon", nope_with(b"X-No-Colon\r\n") => Status(400);
        "empty header name", nope_with(b": x\r\n") => Status(400);
        "space in header name", nope_with(b"X Y: z\r\n") => Status(400);

        // Expect.
        "100-continue, huge CL", cl(b" 100000000000000\r\nExpect: 100-continue", b"")
            => Status(413);
        "100-continue, bad chunk", te(b" chunked\r\nExpect: 100-continue", b"zz\r\n")
            => ContinueThen(400);
        "Expect: bogus", cl(b" 5\r\nExpect: bogus", b"hello") => Status(417);

        // Pipelined junk after a request: one answer, to the first request, then a close.
        "junk after GET /health", [health, junk].concat() => Status(200);
        "junk after GET /nope", [NOPE, junk].concat() => Status(404);
        "a request after CL: 0", [empty_post.as_slice(), health].concat() => Status(404);
    }
}

/// Replays one case on a new connection; `Err` describes how the relay got it wrong.
fn replay(addr: SocketAddr, case: &Case) -> Result<(), String> {
    let started = Instant::now();
    let mut stream = connect(addr);
    // The relay may answer and close before reading everything (413, 431).
    let _ = stream.write_all(&case.input);
    let status = match case.want {
        Close => {
            let _ = stream.shutdown(Shutdown::Write);
            let mut raw = Vec::new();
            let result = stream.read_to_end(&mut raw);
            let reset = matches!(&result, Err(e) if e.kind() == ErrorKind::ConnectionReset);
            if (result.is_err() && !reset) || !raw.is_empty() {
                return Err(format!(
                    "wanted a close, got {result:?}: {:?}",
                    String::from_utf8_lossy(&raw)
                ));
            }
            None
        }
        ContinueThen(status) => {
            let mut interim = [0u8; 25];
            stream.read_exact(&mut interim).map_err(|e| e.to_string())?;
            if &interim != b"HTTP/1.1 100 Continue\r\n\r\n" {
                return Err(format!(
                    "wanted 100 Continue, got {:?}",
                    String::from_utf8_lossy(&interim)
                ));
            }
            Some(status)
        }
        Status(status) => Some(status),
    };
    if let Some(status) = status {
        let response = read_response_since(&mut stream, started);
        if response.status != status {
            return Err(format!("wanted {status}: {response}"));
        }
        // Also checks that nothing follows the body (no answer to pipelined bytes).
        if status >= 400 {
            response.assert_error(status);
        } else {
            response.assert_framing(false);
        }
    }
    let elapsed = started.elapsed();
    if elapsed > BOUND {
        return Err(format!("took {elapsed:?}, more than {BOUND:?}"));
    }
    Ok(())
}

#[test]
fn nasty_inputs_are_refused_and_the_relay_keeps_working() {
    // All inputs come at once from one address: the per-client limits are not the subject here.
    let relay = Relay::start(&[
        "--head-timeout",
        "1s",
        "--body-timeout",
        "1s",
        "--link-timeout",
        "2s",
        "--max-connections-per-ip",
        "0",
        "--rate-per-ip",
        "0",
    ]);
    let addr = relay.addr();
    let started = Instant::now();
    let cases = cases();
    let failures: Vec<String> = thread::scope(|s| {
        let runs: Vec<_> = cases.iter().map(|case| s.spawn(move || replay(addr, case))).collect();
        runs.into_iter()
            .zip(&cases)
            .filter_map(|(run, case)| {
                // A panic in `replay` is a harness assertion (framing, a response never ending).
                let outcome = run.join().unwrap_or_else(|panic| Err(panic_text(panic)));
                let why = outcome.err()?;
                let (name, want, len) = (&case.name, case.want, case.input.len());
                Some(format!("{name} ({want:?}, {len} bytes): {why}"))
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} nasty inputs got the wrong answer:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(started.elapsed() < 2 * BOUND, "the corpus took {:?}", started.elapsed());

    // Still serving, with nothing left parked or open (but the /health request itself), and a
    // hand-off still goes through.
    let (health, text) = relay.health();
    assert_eq!(health.status, 200, "{health}");
    relay.wait_parked(0);
    relay.wait_gauge("connections", 1);
    let sender = relay.spawn_post("/link/after-nasty", b"still here", &[]);
    relay.wait_parked(1);
    let receiver = relay.get("/link/after-nasty");
    assert_eq!(receiver.status, 200, "{receiver}; health before: {text}");
    assert_eq!(receiver.body, b"still here", "{receiver}");
    let sender = sender.join().unwrap();
    assert_eq!(sender.status, 200, "{sender}");
    let panics: Vec<String> = relay.logs().into_iter().filter(|l| l.contains("panicked")).collect();
    assert!(panics.is_empty(), "the relay panicked:\n{}", panics.join("\n"));
}

/// The message of a panic caught from a case thread.
fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}
