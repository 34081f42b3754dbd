//! Who the client is: the TCP peer, or behind `--trust-proxy` the address the proxies name
//! (protocol §4.1). One pure function, [`client`], owns the derivation; everything that asks "who is
//! this" (access lists, `/metrics`, rate and throttle keys, the per-client memory share, the
//! `X-Real-IP`/`X-Real-Port` metadata) uses its answer.
//!
//! Fail closed: an address the relay cannot read where it needs one names a client it cannot
//! identify ([`Client::Unidentified`]), never the proxy that forwarded it. Such a client is not
//! loopback, not trusted, on no allow list, and shares one rate and throttle key of its own.
//! RFC 7239 `Forwarded` is not read (README "Limits", Behind a proxy, says why).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// What limits count per client: an IPv4 address, or the /64 of an IPv6 address (one
/// subscriber's network: a client can use any of its 2^64 addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address (IPv4-mapped IPv6 addresses count as IPv4).
    V4(u32),
    /// The upper 64 bits of an IPv6 address, as bytes: so the key is 4-byte aligned and takes
    /// 12 bytes, not 16, in every request in progress (`http/conn.rs`).
    V6([u8; 8]),
}

impl ClientKey {
    /// The key `ip` is counted under.
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.into()),
                None => {
                    let [prefix @ .., _, _, _, _, _, _, _, _] = v6.octets();
                    ClientKey::V6(prefix)
                }
            },
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            // The key of `identity::UNIDENTIFIED`: no TCP peer has the unspecified address.
            ClientKey::V4(0) => f.write_str("an unidentified client"),
            ClientKey::V4(v4) => write!(f, "{}", std::net::Ipv4Addr::from(v4)),
            ClientKey::V6(prefix) => {
                let mut octets = [0; 16];
                octets[..8].copy_from_slice(&prefix);
                write!(f, "{}/64", Ipv6Addr::from(octets))
            }
        }
    }
}

/// An address range such as `10.0.0.0/8` or `fd00::/8`; a bare address is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range (IPv4-mapped IPv6 addresses match IPv4 ranges).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (bits, net, width) = match (ip, self.network) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                (u128::from(u32::from(a)), u128::from(u32::from(n)), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.prefix);
        shift >= 128 || bits >> shift == net >> shift
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = ();

    fn from_str(text: &str) -> Result<Cidr, ()> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(drop)?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(drop)?
            }
            Some(_) => return Err(()),
            None => width,
        };
        if prefix > width {
            return Err(());
        }
        Ok(Cidr { network, prefix })
    }
}

/// The client of a request, as [`client`] derives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// An address: the TCP peer, or one named by trusted proxies.
    Known {
        ip: IpAddr,
        /// The client's own port when known: the peer's, or one written in the forwarded entry;
        /// never a proxy's port paired with a forwarded address.
        port: Option<u16>,
        /// The address is itself in `--trust-proxy` (a proxy speaking for itself, or a chain
        /// of trusted hops only): it is not a client key for the per-client memory share.
        trusted: bool,
    },
    /// Trusted proxies named the client with something that is not an address (`unknown`, an
    /// obfuscated identifier, garbage).
    Unidentified,
}

/// The address that stands for an unidentified client where the registry needs one (the
/// unspecified address, which no TCP peer has). Access checks never see it: they use [`Client`].
pub const UNIDENTIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl Client {
    /// The key the client is rate-limited, throttled and counted under; one shared key for
    /// every unidentified client.
    pub fn key(self) -> ClientKey {
        ClientKey::of(self.address().ip())
    }

    /// The key of its share of `--max-memory-per-ip`; `None` for a trusted proxy itself.
    pub fn memory_key(self) -> Option<ClientKey> {
        match self {
            Client::Known { trusted: true, .. } => None,
            _ => Some(self.key()),
        }
    }

    /// Whether the client is on loopback (`/metrics` is answered to it); never when unidentified.
    pub fn is_loopback(self) -> bool {
        matches!(self, Client::Known { ip, .. } if ip.to_canonical().is_loopback())
    }

    /// The client as the registry records it and `X-Real-IP`/`X-Real-Port` show it: port 0 when
    /// the port is not known, [`UNIDENTIFIED`] for an unidentified client.
    pub fn address(self) -> SocketAddr {
        match self {
            Client::Known { ip, port, .. } => SocketAddr::new(ip, port.unwrap_or(0)),
            Client::Unidentified => SocketAddr::new(UNIDENTIFIED, 0),
        }
    }

    /// Whether the client is inside one of `cidrs`; an unidentified client is inside none.
    pub fn is_in(self, cidrs: &[Cidr]) -> bool {
        matches!(self, Client::Known { ip, .. } if cidrs.iter().any(|cidr| cidr.contains(ip)))
    }
}

/// Derives the client of a request from its TCP `peer`, the `--trust-proxy` ranges, every
/// `X-Forwarded-For` field line in the order received and every `X-Real-IP` line.
///
/// An untrusted peer is the client and its headers are ignored. Behind a trusted peer the
/// `X-Forwarded-For` lines are one comma-separated list (RFC 9110 §5.3), read from the right:
/// trusted entries are proxies and are passed; the first entry that is not trusted is the client
/// (what lies to its left may be forged); an entry that is not an address ends the walk as
/// [`Client::Unidentified`]. When every entry is trusted, the left-most one is the client. With
/// no entries at all, one `X-Real-IP` line names the client (an unreadable value, or more than one
/// line, is unidentified); with neither header, the trusted peer itself is the client.
pub fn client<'a>(
    peer: SocketAddr,
    trusted: &[Cidr],
    forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    real_ip: impl Iterator<Item = &'a [u8]>,
) -> Client {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    let known = |ip: IpAddr, port: Option<u16>| Client::Known { ip, port, trusted: is_trusted(ip) };
    if !is_trusted(peer.ip()) {
        return known(peer.ip(), Some(peer.port()));
    }
    let mut nearest = None;
    let entries = forwarded_for.rev().flat_map(|line| line.rsplit(|&b| b == b','));
    for entry in entries.map(trim_ows).filter(|entry| !entry.is_empty()) {
        match parse_entry(entry) {
            Some((ip, port)) if is_trusted(ip) => nearest = Some(known(ip, port)),
            Some((ip, port)) => return known(ip, port),
            None => return Client::Unidentified,
        }
    }
    if let Some(client) = nearest {
        return client;
    }
    let mut real_ip = real_ip.map(trim_ows);
    match (real_ip.next(), real_ip.next()) {
        (None, _) => known(peer.ip(), Some(peer.port())),
        (Some(value), None) => match parse_entry(value) {
            Some((ip, port)) => known(ip, port),
            None => Client::Unidentified,
        },
        (Some(_), Some(_)) => Client::Unidentified,
    }
}

/// Reads one forwarded entry in the forms proxies and clients write: `1.2.3.4`,
/// `1.2.3.4:port`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:port` (surrounding whitespace
/// already trimmed). `None` for anything else, including a port that is not 1 to 5 digits below
/// 65536.
fn parse_entry(entry: &[u8]) -> Option<(IpAddr, Option<u16>)> {
    let text = std::str::from_utf8(entry).ok()?;
    if let Some(bracketed) = text.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']')?;
        let ip: Ipv6Addr = inside.parse().ok()?;
        let port = match after {
            "" => None,
            _ => Some(port(after.strip_prefix(':')?)?),
        };
        return Some((IpAddr::V6(ip), port));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let (address, port_text) = text.split_once(':')?;
    let ip: Ipv4Addr = address.parse().ok()?;
    Some((IpAddr::V4(ip), Some(port(port_text)?)))
}

/// A port: 1 to 5 ASCII digits, at most 65535.
fn port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `bytes` without leading and trailing spaces and tabs (RFC 9110 OWS).
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn client_keys() {
        assert_eq!(ClientKey::of(ip("192.0.2.1")).to_string(), "192.0.2.1");
        assert_eq!(ClientKey::of(ip("::ffff:192.0.2.1")), ClientKey::of(ip("192.0.2.1")));
        let a = ClientKey::of(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, ClientKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_ne!(a, ClientKey::of(ip("2001:db8:1:3::1")));
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn cidrs() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.1.1.1", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::/0", "2001:db8::1", true),
            ("::1", "::1", true),
        ];
        for (cidr, address, expected) in cases {
            let cidr: Cidr = cidr.parse().unwrap();
            assert_eq!(cidr.contains(ip(address)), expected, "{cidr:?} {address}");
        }
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8", "x", "10.0.0.0/+8", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    fn known(address: &str, port: Option<u16>, trusted: bool) -> Client {
        Client::Known { ip: ip(address), port, trusted }
    }

    #[test]
    fn entries() {
        let v6 = ip("2001:db8::1");
        type Parsed = Option<(IpAddr, Option<u16>)>;
        let cases: [(&str, Parsed); 22] = [
            ("1.2.3.4", Some((ip("1.2.3.4"), None))),
            ("1.2.3.4:4711", Some((ip("1.2.3.4"), Some(4711)))),
            ("1.2.3.4:0", Some((ip("1.2.3.4"), Some(0)))),
            ("2001:db8::1", Some((v6, None))),
            ("[2001:db8::1]", Some((v6, None))),
            ("[2001:db8::1]:443", Some((v6, Some(443)))),
            ("::ffff:1.2.3.4", Some((ip("::ffff:1.2.3.4"), None))),
            ("1.2.3.4:65536", None),
            ("1.2.3.4:", None),
            ("1.2.3.4:+80", None),
            ("1.2.3.4:000080", None),
            ("[1.2.3.4]", None),
            ("[2001:db8::1", None),
            ("[2001:db8::1]443", None),
            ("[2001:db8::1]:", None),
            ("2001:db8::1:443x", None),
            ("fe80::1%eth0", None),
            ("unknown", None),
            ("_hidden", None),
            ("\"[2001:db8::1]\"", None),
            ("1.2.3", None),
            ("", None),
        ];
        for (entry, expected) in cases {
            assert_eq!(parse_entry(entry.as_bytes()), expected, "{entry:?}");
        }
    }

    /// (peer, X-Forwarded-For lines, X-Real-IP lines, expected client).
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], Client);

    #[test]
    fn derivation() {
        let trusted: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let proxy = "127.0.0.1:9000";
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // An untrusted peer is the client, with its own port; its headers are ignored.
            ("203.0.113.7:5000", &["198.51.100.1"], &["198.51.100.2"], known("203.0.113.7", Some(5000), false)),
            ("203.0.113.7:5000", &["garbage"], &[], known("203.0.113.7", Some(5000), false)),
            // The right-most untrusted entry; no proxy port goes with it.
            (proxy, &["6.6.6.6, 198.51.100.1"], &[], known("198.51.100.1", None, false)),
            (proxy, &["6.6.6.6, 198.51.100.1, 10.1.1.1"], &[], known("198.51.100.1", None, false)),
            (proxy, &["198.51.100.1,10.1.1.1 ,10.2.2.2"], &[], known("198.51.100.1", None, false)),
            // Several lines are one list, in order: a forged first line is to the left.
            (proxy, &["127.0.0.1", "198.51.100.1"], &[], known("198.51.100.1", None, false)),
            (proxy, &["10.9.9.9", "198.51.100.1, 10.1.1.1"], &[], known("198.51.100.1", None, false)),
            (proxy, &["198.51.100.1", "10.1.1.1"], &[], known("198.51.100.1", None, false)),
            // Ports and brackets, with the entry's own port.
            (proxy, &["203.0.113.7:4711"], &[], known("203.0.113.7", Some(4711), false)),
            (proxy, &["[2001:db8::7]"], &[], known("2001:db8::7", None, false)),
            (proxy, &[" [2001:db8::7]:443 , 10.1.1.1:80"], &[], known("2001:db8::7", Some(443), false)),
            (proxy, &["2001:db8::7"], &[], known("2001:db8::7", None, false)),
            // Empty list elements are not entries.
            (proxy, &[",, 198.51.100.1 ,,"], &[], known("198.51.100.1", None, false)),
            (proxy, &[""], &["198.51.100.2"], known("198.51.100.2", None, false)),
            // What cannot be read is an unidentified client, never the proxy.
            (proxy, &["198.51.100.1, garbage, 10.1.1.1"], &[], Client::Unidentified),
            (proxy, &["unknown"], &[], Client::Unidentified),
            (proxy, &["127.0.0.1", "_obfuscated"], &[], Client::Unidentified),
            (proxy, &["1.2.3.4:99999"], &[], Client::Unidentified),
            // An unreadable entry left of the client is never reached.
            (proxy, &["garbage, 198.51.100.1"], &[], known("198.51.100.1", None, false)),
            // Only trusted entries: the left-most, a trusted address.
            (proxy, &["10.1.1.1, 10.2.2.2"], &[], known("10.1.1.1", None, true)),
            // X-Real-IP when there is no X-Forwarded-For entry.
            (proxy, &[], &["2001:db8::5"], known("2001:db8::5", None, false)),
            (proxy, &[], &["[2001:db8::5]:8443"], known("2001:db8::5", Some(8443), false)),
            (proxy, &[], &["nonsense"], Client::Unidentified),
            (proxy, &[], &["198.51.100.1", "198.51.100.2"], Client::Unidentified),
            (proxy, &["198.51.100.1"], &["nonsense"], known("198.51.100.1", None, false)),
            // Neither header: the trusted peer itself, with its port.
            (proxy, &[], &[], known("127.0.0.1", Some(9000), true)),
        ];
        for &(peer, xff, real, expected) in cases {
            let peer: SocketAddr = peer.parse().unwrap();
            let got = client(
                peer,
                &trusted,
                xff.iter().map(|line| line.as_bytes()),
                real.iter().map(|line| line.as_bytes()),
            );
            assert_eq!(got, expected, "{peer} {xff:?} {real:?}");
        }
    }

    #[test]
    fn an_unidentified_client_is_nobody_in_particular() {
        let client = Client::Unidentified;
        let everything: Vec<Cidr> = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
        assert!(!client.is_in(&everything));
        assert!(!client.is_loopback());
        assert_eq!(client.key(), ClientKey::of(UNIDENTIFIED));
        assert_eq!(client.memory_key(), Some(client.key()));
        assert_eq!(client.key().to_string(), "an unidentified client");
        let loopback = known("::ffff:127.0.0.1", None, false);
        assert!(loopback.is_loopback());
        assert_ne!(client.key(), loopback.key());
        assert_eq!(known("10.1.1.1", None, true).memory_key(), None);
        assert_eq!(known("10.1.1.1", Some(7), false).address(), "10.1.1.1:7".parse().unwrap());
        assert_eq!(known("10.1.1.1", None, false).address(), "10.1.1.1:0".parse().unwrap());
    }
}
