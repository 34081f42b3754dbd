//! Socket calls std has no API for, for tests that play hostile, slow or many clients: a tiny
//! receive buffer (a slow reader on a real network), an abortive close (a reset), a connection
//! from a chosen loopback source address (each `127.x.y.z` is a client of its own to the
//! relay's per-IP limits), the process's descriptor limit (thousands of such clients), and the
//! segments a connection received (what went over the wire, not only the bytes). The
//! only `unsafe` in the tests: these C calls, each with valid pointers to plain values.

#![allow(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

/// `struct sockaddr_in`: family, port and address in network byte order, padding.
#[repr(C)]
struct SockaddrIn {
    family: u16,
    port: [u8; 2],
    addr: [u8; 4],
    zero: [u8; 8],
}

impl SockaddrIn {
    fn of(ip: Ipv4Addr, port: u16) -> SockaddrIn {
        SockaddrIn { family: AF_INET, port: port.to_be_bytes(), addr: ip.octets(), zero: [0; 8] }
    }
}

/// `struct rlimit` on 64-bit Linux.
#[repr(C)]
struct Rlimit {
    current: u64,
    max: u64,
}

extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const i32, len: u32) -> i32;
    fn getsockopt(fd: i32, level: i32, name: i32, value: *mut u8, len: *mut u32) -> i32;
    fn socket(domain: i32, kind: i32, protocol: i32) -> i32;
    fn bind(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
    fn connect(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
    fn getrlimit(resource: i32, limit: *mut Rlimit) -> i32;
    fn setrlimit(resource: i32, limit: *const Rlimit) -> i32;
}

const AF_INET: u16 = 2;
const SOCK_STREAM: i32 = 1;
const SOCK_CLOEXEC: i32 = 0o2_000_000;
const IPPROTO_IP: i32 = 0;
const IP_BIND_ADDRESS_NO_PORT: i32 = 24;
const SOL_SOCKET: i32 = 1;
const SO_RCVBUF: i32 = 8;
const SO_LINGER: i32 = 13;
const RLIMIT_NOFILE: i32 = 7;
const IPPROTO_TCP: i32 = 6;
const TCP_INFO: i32 = 11;
/// Offsets in `struct tcp_info` of `tcpi_segs_in` and `tcpi_data_segs_in` (Linux 4.6 on).
const SEGS_IN: usize = 140;
const DATA_SEGS_IN: usize = 152;

/// Shrinks the receive buffer (the kernel rounds it up to its minimum, about 2 KiB), so that
/// the peer can send only a little before it must wait for this side to read.
pub fn tiny_receive_buffer(stream: &TcpStream) {
    let size: i32 = 1;
    // SAFETY: `size` is a valid int for the duration of the call; the kernel only reads it.
    let done = unsafe { setsockopt(stream.as_raw_fd(), SOL_SOCKET, SO_RCVBUF, &size, 4) };
    assert_eq!(done, 0, "setsockopt(SO_RCVBUF)");
}

/// Segments `stream` has received so far, and how many of them carried data (`TCP_INFO`).
pub fn segments_received(stream: &TcpStream) -> (u32, u32) {
    let mut info = [0u8; 256];
    let mut len = info.len() as u32;
    // SAFETY: `info` has room for `len` bytes, which the kernel fills in and updates `len`.
    let done = unsafe {
        getsockopt(stream.as_raw_fd(), IPPROTO_TCP, TCP_INFO, info.as_mut_ptr(), &mut len)
    };
    assert_eq!(done, 0, "getsockopt(TCP_INFO): {}", std::io::Error::last_os_error());
    assert!(len as usize >= DATA_SEGS_IN + 4, "a kernel older than 4.6: tcp_info of {len} bytes");
    let field =
        |at: usize| u32::from_ne_bytes([info[at], info[at + 1], info[at + 2], info[at + 3]]);
    (field(SEGS_IN), field(DATA_SEGS_IN))
}

/// Makes the next close of `stream` a reset (SO_LINGER with a zero timeout).
pub fn reset_on_close(stream: &TcpStream) {
    let linger: [i32; 2] = [1, 0];
    // SAFETY: `linger` is a valid `struct linger` (two ints) for the duration of the call.
    let done = unsafe { setsockopt(stream.as_raw_fd(), SOL_SOCKET, SO_LINGER, linger.as_ptr(), 8) };
    assert_eq!(done, 0, "setsockopt(SO_LINGER)");
}

/// A blocking connection to `to` (IPv4) from `source`, any loopback address `127.x.y.z`: to
/// the relay, a client of its own. The port is chosen at `connect`, by the whole address pair
/// (`IP_BIND_ADDRESS_NO_PORT`), so thousands of sources never run out of ports.
pub fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let SocketAddr::V4(to) = to else { panic!("connect_from speaks IPv4: {to}") };
    // SAFETY: plain integer arguments; the result is a new descriptor or -1.
    let fd = unsafe { socket(i32::from(AF_INET), SOCK_STREAM | SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket(): {}", std::io::Error::last_os_error());
    // From here the descriptor is owned by the stream, which closes it when dropped.
    // SAFETY: `fd` is a new, open TCP socket that nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let yes: i32 = 1;
    // SAFETY: `yes` is a valid int for the duration of the call; the kernel only reads it.
    let done = unsafe { setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &yes, 4) };
    assert_eq!(done, 0, "setsockopt(IP_BIND_ADDRESS_NO_PORT)");
    let local = SockaddrIn::of(source, 0);
    let size = std::mem::size_of::<SockaddrIn>() as u32;
    // SAFETY: `local` is a valid `sockaddr_in` of `size` bytes for the duration of the call.
    let done = unsafe { bind(fd, &local, size) };
    assert_eq!(done, 0, "bind({source}): {}", std::io::Error::last_os_error());
    let remote = SockaddrIn::of(*to.ip(), to.port());
    // SAFETY: `remote` is a valid `sockaddr_in` of `size` bytes for the duration of the call.
    let done = unsafe { connect(fd, &remote, size) };
    assert_eq!(done, 0, "connect({source} to {to}): {}", std::io::Error::last_os_error());
    stream
}

/// Raises this process's open-file limit (and so its children's) towards `want` as far as the
/// hard limit allows; the limit now in force.
pub fn raise_open_files(want: u64) -> u64 {
    let mut limit = Rlimit { current: 0, max: 0 };
    // SAFETY: `limit` is a valid `struct rlimit` the kernel fills in.
    let done = unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) };
    assert_eq!(done, 0, "getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
    if limit.current >= want {
        return limit.current;
    }
    let raised = Rlimit { current: want.min(limit.max), max: limit.max };
    // SAFETY: `raised` is a valid `struct rlimit` for the duration of the call.
    let done = unsafe { setrlimit(RLIMIT_NOFILE, &raised) };
    assert_eq!(done, 0, "setrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
    raised.current
}
