//! A client connection: the socket calls the reader, the parked loop and the outbox share.
//!
//! Every connection is non-blocking from accept to close, so no thread ever waits on a client:
//! a call that would wait reports "nothing now" instead, and the caller waits for readiness in
//! an epoll set. Every response closes its connection.

use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use crate::limits::PeerSlot;
use crate::metrics::Gauges;
use crate::registry::ConnId;

/// Most bytes a parked client may send (stray bytes, pipelined requests) before it is taken
/// for gone: they are read and dropped so that a close behind them is seen.
pub const PARKED_INPUT_LIMIT: usize = 64 * 1024;

/// An accepted client connection, counted in the open-connection gauge while it lives.
///
/// It lives as long as its request waits, so it holds only what a parked request needs: the
/// peer's address and whether its worker watches it are the [`Reading`](super::worker::Reading)'s.
pub struct Connection {
    stream: TcpStream,
    /// Bytes a parked client sent and the relay dropped (see [`PARKED_INPUT_LIMIT`]).
    dropped: u32,
    id: ConnId,
    /// Its place in `--max-connections-per-ip`, given back when the connection closes.
    pub(super) peer_slot: Option<PeerSlot>,
    gauges: Arc<Gauges>,
}

impl Connection {
    /// Wraps a stream accepted non-blocking ([`crate::sys::accept`]); the caller has counted
    /// it in `gauges`, and dropping the connection uncounts it.
    pub fn new(stream: TcpStream, id: ConnId, gauges: Arc<Gauges>) -> Connection {
        Connection { stream, dropped: 0, id, peer_slot: None, gauges }
    }

    /// The connection's id, unique for the life of the process.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Reads what the socket has now, without waiting: `Ok(0)` means nothing yet, and the end
    /// of the stream is an error (`UnexpectedEof`), as is any failure.
    pub fn read_now(&mut self, into: &mut [u8]) -> io::Result<usize> {
        loop {
            return match self.stream.read(into) {
                Ok(0) if into.is_empty() => Ok(0),
                Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Writes what the socket takes now, without waiting: `Ok(0)` means no room yet.
    pub fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.send(bytes, false)
    }

    /// Like [`write_now`](Self::write_now), for a reply's bytes, which its end of stream
    /// ([`shutdown_write`](Self::shutdown_write)) follows at once: the last of them wait for
    /// it in the socket, and the two leave in one segment (see [`crate::sys::send`]).
    pub fn write_before_end(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.send(bytes, true)
    }

    fn send(&mut self, bytes: &[u8], end_follows: bool) -> io::Result<usize> {
        loop {
            return match crate::sys::send(&self.stream, bytes, end_follows) {
                Ok(0) if !bytes.is_empty() => Err(ErrorKind::WriteZero.into()),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Whether a parked client is still there: reads and drops whatever it sent (a stray byte, a
    /// pipelined request), so that an end of stream behind those bytes is seen too — a `peek`
    /// alone would be fooled by one byte. `false` once the client closed, the connection
    /// failed, or it sent more than [`PARKED_INPUT_LIMIT`].
    pub fn still_there(&mut self, scratch: &mut [u8]) -> bool {
        loop {
            match self.read_now(scratch) {
                Ok(0) => return true,
                Ok(n) => {
                    self.dropped =
                        self.dropped.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
                    if self.dropped as usize > PARKED_INPUT_LIMIT {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Ends the sending side: the client sees the end of the response.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.gauges.connection_closed();
    }
}
