//! Socket options std has no API for, for tests that play hostile or slow clients: a tiny
//! receive buffer (a slow reader on a real network) and an abortive close (a reset). The only
//! `unsafe` in the tests: two `setsockopt` calls with valid pointers to plain integers.

#![allow(unsafe_code)]

use std::net::TcpStream;
use std::os::fd::AsRawFd;

extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const i32, len: u32) -> i32;
}

const SOL_SOCKET: i32 = 1;
const SO_RCVBUF: i32 = 8;
const SO_LINGER: i32 = 13;

/// Shrinks the receive buffer (the kernel rounds it up to its minimum, about 2 KiB), so that
/// the peer can send only a little before it must wait for this side to read.
pub fn tiny_receive_buffer(stream: &TcpStream) {
    let size: i32 = 1;
    // SAFETY: `size` is a valid int for the duration of the call; the kernel only reads it.
    let done = unsafe { setsockopt(stream.as_raw_fd(), SOL_SOCKET, SO_RCVBUF, &size, 4) };
    assert_eq!(done, 0, "setsockopt(SO_RCVBUF)");
}

/// Makes the next close of `stream` a reset (SO_LINGER with a zero timeout).
pub fn reset_on_close(stream: &TcpStream) {
    let linger: [i32; 2] = [1, 0];
    // SAFETY: `linger` is a valid `struct linger` (two ints) for the duration of the call.
    let done = unsafe { setsockopt(stream.as_raw_fd(), SOL_SOCKET, SO_LINGER, linger.as_ptr(), 8) };
    assert_eq!(done, 0, "setsockopt(SO_LINGER)");
}
