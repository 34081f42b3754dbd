//! One request's bookkeeping on the HTTP side ([`Exchange`]): how to answer it (its method, a
//! CORS origin, whether it came through a trusted proxy) and what to log (its route, its id's
//! tag, its client, when it started). A plain value: the gate fills it in, and it travels with
//! the connection to the registry thread and the outbox.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::identity::ClientKey;
use crate::logging::IdTag;
use crate::routes::RouteKind;

/// One request's bookkeeping on the HTTP side: how to answer it and what to log. It lives as
/// long as its request waits, so it is kept compact: no field allocates but an allowed origin,
/// and a parked connection with it fits musl's 112-byte class (`registry_thread.rs` tests).
pub struct Exchange {
    pub(super) method: Method,
    pub(super) route: RouteKind,
    pub(super) id_tag: Option<IdTag>,
    /// The browser origin allowed to read the response (protocol §5), if any: boxed again so
    /// that the field is one pointer wide (most requests have none).
    #[allow(clippy::box_collection)]
    pub(super) cors_origin: Option<Box<String>>,
    /// Who asked: the TCP peer until the head names a client behind a trusted proxy.
    pub(super) client: ClientKey,
    /// Whether the TCP peer is a trusted proxy (`--trust-proxy`), which may close a connection
    /// it has read in full with a reset (HAProxy does): see `writer.rs`.
    pub(super) via_proxy: bool,
    pub(super) started: Started,
}

impl Exchange {
    /// Bookkeeping for a request from `client` whose first byte may arrive from `started` on.
    pub fn new(client: ClientKey, started: Instant) -> Exchange {
        Exchange {
            method: Method::UNREAD,
            route: RouteKind::Unrouted,
            id_tag: None,
            cors_origin: None,
            client,
            via_proxy: false,
            started: Started::at(started),
        }
    }

    /// Records the request's method, for the log and to answer `HEAD` without a body.
    pub fn set_method(&mut self, method: &str) {
        self.method = Method::of(method);
    }

    /// The channel id's tag for the log, or `-`.
    pub(super) fn tag(&self) -> impl fmt::Display {
        struct Tag(Option<IdTag>);
        impl fmt::Display for Tag {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    Some(tag) => tag.fmt(f),
                    None => f.write_str("-"),
                }
            }
        }
        Tag(self.id_tag)
    }
}

/// When a request's first byte could arrive, for the duration in its log line, in 8 bytes (an
/// `Instant` takes 16): nanoseconds since [`EPOCH`].
#[derive(Clone, Copy)]
pub(super) struct Started(u64);

/// What [`Started`] counts from: the first moment taken. A moment before it (another worker
/// first) counts as the epoch itself.
static EPOCH: OnceLock<Instant> = OnceLock::new();

impl Started {
    fn at(at: Instant) -> Started {
        let epoch = *EPOCH.get_or_init(|| at);
        let since = at.saturating_duration_since(epoch).as_nanos();
        Started(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// Time since then.
    pub(super) fn elapsed(self) -> Duration {
        let epoch = *EPOCH.get_or_init(Instant::now);
        epoch.checked_add(Duration::from_nanos(self.0)).map_or(Duration::ZERO, |at| at.elapsed())
    }
}

/// A request's method as logged, held inline: up to [`Method::MAX`] bytes, else `?`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Method {
    len: u8,
    bytes: [u8; Method::MAX],
}

impl Method {
    /// The longest method kept as it is.
    const MAX: usize = 16;

    /// Before the head is read: `-`.
    const UNREAD: Method = Method::inline(b"-");

    const fn inline(text: &[u8]) -> Method {
        let mut bytes = [0; Method::MAX];
        let mut i = 0;
        while i < text.len() {
            bytes[i] = text[i];
            i += 1;
        }
        Method { len: text.len() as u8, bytes }
    }

    fn of(method: &str) -> Method {
        if method.len() <= Method::MAX {
            Method::inline(method.as_bytes())
        } else {
            Method::inline(b"?")
        }
    }

    pub(super) fn as_str(&self) -> &str {
        // A method is kept whole or not at all, so these bytes are the prefix of a `&str` that
        // ends at a character boundary; `?` stands in should that ever not hold.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("?")
    }
}

impl PartialEq<&str> for Method {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_is_kept_inline_up_to_sixteen_bytes() {
        let mut exchange = Exchange::new(ClientKey::V4(0), Instant::now());
        assert_eq!(exchange.method.to_string(), "-");
        exchange.set_method("HEAD");
        assert!(exchange.method == "HEAD");
        exchange.set_method("SIXTEEN-BYTES-OK");
        assert_eq!(exchange.method.to_string(), "SIXTEEN-BYTES-OK");
        exchange.set_method("SEVENTEEN-BYTES-X");
        assert_eq!(exchange.method.to_string(), "?");
    }

    #[test]
    fn started_keeps_the_moment_to_the_nanosecond() {
        let _ = Started::at(Instant::now());
        let at = Instant::now();
        let started = Started::at(at);
        let before = at.elapsed();
        let elapsed = started.elapsed();
        assert!(before <= elapsed && elapsed <= at.elapsed());
    }

    #[test]
    fn the_tag_is_written_only_when_there_is_an_id() {
        let mut exchange = Exchange::new(ClientKey::V4(0), Instant::now());
        assert_eq!(exchange.tag().to_string(), "-");
        let tag = crate::logging::id_tag(b"some-id");
        exchange.id_tag = Some(tag);
        assert_eq!(exchange.tag().to_string(), tag.to_string());
    }
}
