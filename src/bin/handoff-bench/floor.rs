//! `floor-relay`: the least any relay can do for `/link` hand-offs one pair at a time, to put a
//! relay's C = 1 latency next to what the machine itself allows.
//!
//! One thread, blocking calls, no routing and no limits: it accepts two connections, reads both
//! requests (the head and a `Content-Length` body), writes the `POST`'s body to the `GET`, waits
//! for that receiver to close (the delivery rule of protocol §2: the sender hears 200 once the
//! receiver took the message), then answers the sender. Nothing a relay does can be faster per
//! hand-off on the same kernel, so `link-latency` or `link-throughput -c 1` against it is the
//! machine's floor (`benches/ab.sh`, the build `floor`). Not a relay: it serves one pair at a
//! time, on the address it is given (`--listen`, printed as handoff prints it), until killed.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use super::Options;

/// Largest request it reads (the generator sends a few hundred bytes).
const MAX_REQUEST: usize = 1 << 20;

/// Serves hand-offs on `--listen` until killed.
pub(super) fn run(options: &Options) -> ExitCode {
    let Some(addr) = options.listen else {
        eprintln!("handoff-bench floor-relay: needs --listen ADDR");
        return ExitCode::from(2);
    };
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("handoff-bench floor-relay: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(bound) => eprintln!("floor-relay listening on {bound}"),
        Err(e) => eprintln!("floor-relay listening, at an address it cannot tell: {e}"),
    }
    // Each pair has one deadline, from its first connection, for all it reads and writes: a
    // client that trickles cannot hold the one thread for longer.
    let per_pair = options.target.timeout.max(Duration::from_millis(1));
    loop {
        match serve_pair(&listener, per_pair) {
            Err(e) if e.kind() == ErrorKind::Other => thread::sleep(Duration::from_millis(10)),
            // A pair that fails (a client that left, a timeout) is dropped; the next starts over.
            _ => {}
        }
    }
}

fn serve_pair(listener: &TcpListener, per_pair: Duration) -> io::Result<()> {
    let first = accept(listener)?;
    let deadline = Instant::now() + per_pair;
    let (mut first, first_post, first_body) = read_request(first, deadline)?;
    let (mut second, _, second_body) = read_request(accept(listener)?, deadline)?;
    let (receiver, sender, body) = if first_post {
        (&mut second, &mut first, first_body)
    } else {
        (&mut first, &mut second, second_body)
    };
    let mut reply =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .into_bytes();
    reply.extend_from_slice(&body);
    receiver.write_all(&reply)?;
    receiver.shutdown(Shutdown::Write)?;
    read_to_close(receiver, deadline)?;
    sender.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    sender.shutdown(Shutdown::Write)?;
    read_to_close(sender, deadline)
}

/// The next connection. Its error comes back as `ErrorKind::Other`, on which the caller pauses,
/// so that a lasting one (out of descriptors) does not spin.
fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    let (stream, _) = listener.accept().map_err(io::Error::other)?;
    Ok(stream)
}

/// A connection's request, by `deadline`: the connection, whether it is a `POST`, its body.
fn read_request(
    mut stream: TcpStream,
    deadline: Instant,
) -> io::Result<(TcpStream, bool, Vec<u8>)> {
    stream.set_nodelay(true)?;
    let left = deadline.saturating_duration_since(Instant::now());
    stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
    let mut raw = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let (head_end, body_len) = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (end + 4, content_length(&raw[..end]));
        }
        read_more(&mut stream, &mut raw, &mut buf, deadline)?;
    };
    if body_len > MAX_REQUEST {
        return Err(ErrorKind::InvalidData.into());
    }
    while raw.len() < head_end + body_len {
        read_more(&mut stream, &mut raw, &mut buf, deadline)?;
    }
    let post = raw.starts_with(b"POST ");
    Ok((stream, post, raw[head_end..head_end + body_len].to_vec()))
}

fn read_more(
    stream: &mut TcpStream,
    raw: &mut Vec<u8>,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<()> {
    match read_by(stream, buf, deadline)? {
        0 => Err(ErrorKind::UnexpectedEof.into()),
        _ if raw.len() > MAX_REQUEST => Err(ErrorKind::InvalidData.into()),
        n => {
            raw.extend_from_slice(&buf[..n]);
            Ok(())
        }
    }
}

/// One read that ends by `deadline`.
fn read_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left))?;
    stream.read(buf)
}

/// The `Content-Length` of a request head (0 without one).
fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

fn read_to_close(stream: &mut TcpStream, deadline: Instant) -> io::Result<()> {
    let mut buf = [0u8; 512];
    while read_by(stream, &mut buf, deadline)? > 0 {}
    Ok(())
}
