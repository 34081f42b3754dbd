//! Which route a request names and which methods that route allows (protocol §1).
//!
//! Pure: the HTTP side calls [`route`] as soon as the head is in, so a wrong path or method is
//! answered before any body is read. Channel ids are one percent-decoded path segment; the query
//! string is never part of them.

use std::fmt;

use crate::action::Action;
use crate::inline::InlineBytes;
use crate::response::Response;

/// The longest channel id a request carries inline, so that it costs no allocation of its own on
/// its way to the registry: room for the ids clients make (a Pubky id is 43 characters, a UUID
/// 36). A longer one, up to `--max-id`, is kept on the heap. Not the whole default `--max-id`
/// (256): every request in the registry's mailbox (`threads.rs`), which keeps its buffers, would
/// carry that room.
pub const INLINE_ID: usize = 64;

/// A channel id as a request carries it (percent-decoded path segment).
pub type ChannelId = InlineBytes<INLINE_ID>;

/// A route of the relay, with its channel id where it has one.
// `Relay`, the large variant (its id inline), is the common one, and a route lives only until the
// gate has decided the request: boxing it would add an allocation to every relay request.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the usage text, and a liveness probe.
    Root,
    /// `GET /health`: live counts and limits as JSON.
    Health,
    /// `GET /metrics`: the same numbers and request counters, in Prometheus text format.
    Metrics,
    /// `OPTIONS` on any route: a CORS preflight, answered without touching relay state.
    Preflight { allow: &'static str },
    /// A `/link`, `/inbox`, `/sync` or `/mcast` request, for the registry.
    Relay { id: ChannelId, action: Action },
}

impl Route {
    /// A short name for logs and metrics, never containing the id.
    pub fn kind(&self) -> RouteKind {
        match self {
            Route::Root => RouteKind::Root,
            Route::Health => RouteKind::Health,
            Route::Metrics => RouteKind::Metrics,
            Route::Preflight { .. } => RouteKind::Preflight,
            Route::Relay { action: Action::LinkReceive | Action::LinkSend, .. } => RouteKind::Link,
            Route::Relay { action: Action::Sync, .. } => RouteKind::Sync,
            Route::Relay { action: Action::McastPost | Action::McastGet, .. } => RouteKind::Mcast,
            Route::Relay { .. } => RouteKind::Inbox,
        }
    }
}

/// A route's name for logs and metrics: one byte, as every request in progress keeps one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// Before the head is read, or when it names no route: `-`.
    Unrouted,
    Root,
    Health,
    Metrics,
    Preflight,
    Link,
    Inbox,
    Sync,
    Mcast,
}

impl RouteKind {
    /// The name, as logged and as the `route` label of `requests_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Unrouted => "-",
            RouteKind::Root => "root",
            RouteKind::Health => "health",
            RouteKind::Metrics => "metrics",
            RouteKind::Preflight => "preflight",
            RouteKind::Link => "link",
            RouteKind::Inbox => "inbox",
            RouteKind::Sync => "sync",
            RouteKind::Mcast => "mcast",
        }
    }
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request names no route it may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// The target is not origin-form (`/path`) or absolute-form (`http://host/path`), or it
    /// holds a fragment (`#`) (400).
    BadTarget,
    /// No route has this path (404).
    NotFound,
    /// The route exists but not for this method (405, with `Allow`).
    MethodNotAllowed { allow: &'static str },
    /// The id has a `%` not followed by two hex digits (400).
    BadPercentEncoding,
    /// The id is longer than `--max-id` bytes once decoded (400).
    IdTooLong { limit: usize },
}

impl RouteError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RouteError::NotFound => 404,
            RouteError::MethodNotAllowed { .. } => 405,
            RouteError::BadTarget
            | RouteError::BadPercentEncoding
            | RouteError::IdTooLong { .. } => 400,
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::BadTarget => f.write_str(
                "Request target must be a path such as /link/ID (or an http:// or https:// URL), \
                 without a fragment (#).",
            ),
            RouteError::NotFound => f.write_str("No such route; GET / lists the endpoints."),
            RouteError::MethodNotAllowed { allow } => {
                write!(f, "Method not allowed here; allowed: {allow}.")
            }
            RouteError::BadPercentEncoding => {
                f.write_str("Channel id has a % that is not followed by two hex digits.")
            }
            RouteError::IdTooLong { limit } => {
                write!(f, "Channel id is longer than the {limit}-byte limit (--max-id).")
            }
        }
    }
}

/// The answer to `GET /`: name, version and one line per endpoint.
pub fn usage(now: &str) -> Response {
    let text = format!(
        "handoff {} - a relay for login hand-offs\n{now}\n\n\
         GET    /link/{{id}}         wait for the message a sender posts to {{id}} (httprelay.io link)\n\
         POST   /link/{{id}}         hand the body to one waiting receiver; 200 once delivered\n\
         POST   /inbox/{{id}}        store a message (Pubky inbox); 200 at once\n\
         GET    /inbox/{{id}}        the stored message, or wait for one (408: poll again)\n\
         DELETE /inbox/{{id}}        acknowledge the message\n\
         GET    /inbox/{{id}}/ack    true or false: was it acknowledged\n\
         GET    /inbox/{{id}}/await  wait for the acknowledgement\n\
         POST   /sync/{{id}}         swap bodies with the next request on {{id}}; GET, PUT, PATCH, DELETE too\n\
         POST   /mcast/{{id}}        keep a message for every reader (httprelay.io mcast); 200 at once\n\
         GET    /mcast/{{id}}        a kept message by SeqId (query or cookie), or wait for the next\n\
         GET    /health            live counts and limits as JSON\n\
         GET    /metrics           the same in Prometheus text format (loopback or stats token)\n",
        env!("CARGO_PKG_VERSION")
    );
    Response::new(200).header("Content-Type", "text/plain; charset=utf-8").body(text.into_bytes())
}

/// Splits a request target into path and query (without `?`), accepting origin-form and, as
/// RFC 9112 §3.2.2 requires of servers, absolute-form for the `http` and `https` schemes
/// (`http://host/path?q`, scheme in any case). A fragment (`#`) is never part of a request
/// target (RFC 9112 §3.2), so one is refused rather than taken into the id.
pub fn split_target(target: &str) -> Result<(&str, &str), RouteError> {
    if target.contains('#') {
        return Err(RouteError::BadTarget);
    }
    let scheme_end = |scheme: &str| {
        let prefix = target.get(..scheme.len())?;
        prefix.eq_ignore_ascii_case(scheme).then_some(scheme.len())
    };
    let origin_form = match scheme_end("http://").or_else(|| scheme_end("https://")) {
        Some(end) => {
            let rest = &target[end..];
            match rest.find(['/', '?']) {
                Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
                Some(_) | None => "/",
            }
        }
        None => target,
    };
    if !origin_form.starts_with('/') {
        return Err(RouteError::BadTarget);
    }
    Ok(origin_form.split_once('?').unwrap_or((origin_form, "")))
}

/// Finds the route of `method` on `path` (already split from its query).
pub fn route(method: &str, path: &str, max_id: usize) -> Result<Route, RouteError> {
    let (kind, segment) = match path {
        "/" => (PathKind::Root, ""),
        "/health" => (PathKind::Health, ""),
        "/metrics" => (PathKind::Metrics, ""),
        _ => relay_path(path).ok_or(RouteError::NotFound)?,
    };
    let allow = kind.allow();
    if method == "OPTIONS" {
        return Ok(Route::Preflight { allow });
    }
    if !allow.split(", ").any(|m| m == method) {
        return Err(RouteError::MethodNotAllowed { allow });
    }
    let action = match (kind, method) {
        (PathKind::Root, _) => return Ok(Route::Root),
        (PathKind::Health, _) => return Ok(Route::Health),
        (PathKind::Metrics, _) => return Ok(Route::Metrics),
        (PathKind::Link, "POST") => Action::LinkSend,
        (PathKind::Link, _) => Action::LinkReceive,
        (PathKind::Inbox, "POST") => Action::InboxPost,
        (PathKind::Inbox, "DELETE") => Action::InboxDelete,
        (PathKind::Inbox, _) => Action::InboxGet,
        (PathKind::InboxAck, _) => Action::InboxAck,
        (PathKind::InboxAwait, _) => Action::InboxAwait,
        (PathKind::Sync, _) => Action::Sync,
        (PathKind::Mcast, "POST") => Action::McastPost,
        (PathKind::Mcast, _) => Action::McastGet,
    };
    Ok(Route::Relay { id: channel_id(segment, max_id)?, action })
}

/// The shapes of path the relay knows.
#[derive(Clone, Copy)]
enum PathKind {
    Root,
    Health,
    Metrics,
    Link,
    Inbox,
    InboxAck,
    InboxAwait,
    Sync,
    Mcast,
}

impl PathKind {
    /// The methods allowed on the path, as the `Allow` header lists them.
    fn allow(self) -> &'static str {
        match self {
            PathKind::Root
            | PathKind::Health
            | PathKind::Metrics
            | PathKind::InboxAck
            | PathKind::InboxAwait => "GET, HEAD, OPTIONS",
            PathKind::Link => "GET, POST, OPTIONS",
            PathKind::Inbox => "GET, HEAD, POST, DELETE, OPTIONS",
            // The methods a fetch() or curl sends with or for a body; `HttpRelay-Method` names
            // them to the counterpart without keeping the method's text (protocol §10).
            PathKind::Sync => "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
            PathKind::Mcast => "GET, POST, OPTIONS",
        }
    }
}

/// Splits `/link/{id}`, `/sync/{id}`, `/mcast/{id}`, `/inbox/{id}`, `/inbox/{id}/ack` and
/// `/inbox/{id}/await` into their kind and id segment; the segment is exactly one non-empty path
/// segment.
fn relay_path(path: &str) -> Option<(PathKind, &str)> {
    let (kind, segment) = if let Some(segment) = path.strip_prefix("/link/") {
        (PathKind::Link, segment)
    } else if let Some(segment) = path.strip_prefix("/sync/") {
        (PathKind::Sync, segment)
    } else if let Some(segment) = path.strip_prefix("/mcast/") {
        (PathKind::Mcast, segment)
    } else {
        let rest = path.strip_prefix("/inbox/")?;
        match rest.split_once('/') {
            None => (PathKind::Inbox, rest),
            Some((segment, "ack")) => (PathKind::InboxAck, segment),
            Some((segment, "await")) => (PathKind::InboxAwait, segment),
            Some(_) => return None,
        }
    };
    (!segment.is_empty() && !segment.contains('/')).then_some((kind, segment))
}

/// Percent-decodes one path segment into a channel id of 1 to `max_id` bytes.
fn channel_id(segment: &str, max_id: usize) -> Result<ChannelId, RouteError> {
    let mut id = ChannelId::with_capacity(segment.len().min(max_id));
    let mut bytes = segment.bytes();
    while let Some(b) = bytes.next() {
        let byte = if b == b'%' {
            let hi = bytes.next().and_then(hex_value);
            let lo = bytes.next().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => hi << 4 | lo,
                _ => return Err(RouteError::BadPercentEncoding),
            }
        } else {
            b
        };
        if id.len() == max_id {
            return Err(RouteError::IdTooLong { limit: max_id });
        }
        id.push(byte);
    }
    Ok(id)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(id: &[u8], action: Action) -> Result<Route, RouteError> {
        Ok(Route::Relay { id: ChannelId::copy_of(id), action })
    }

    #[test]
    fn routes_and_methods() {
        use Action::*;
        const LINK: &str = "GET, POST, OPTIONS";
        const INBOX: &str = "GET, HEAD, POST, DELETE, OPTIONS";
        const READ: &str = "GET, HEAD, OPTIONS";
        const SYNC: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
        const MCAST: &str = "GET, POST, OPTIONS";
        let not_allowed = |allow| Err(RouteError::MethodNotAllowed { allow });
        let cases: &[(&str, &str, Result<Route, RouteError>)] = &[
            ("GET", "/", Ok(Route::Root)),
            ("HEAD", "/", Ok(Route::Root)),
            ("GET", "/health", Ok(Route::Health)),
            ("GET", "/metrics", Ok(Route::Metrics)),
            ("POST", "/metrics", not_allowed(READ)),
            ("POST", "/health", not_allowed(READ)),
            ("GET", "/link/abc", relay(b"abc", LinkReceive)),
            ("POST", "/link/abc", relay(b"abc", LinkSend)),
            ("HEAD", "/link/abc", not_allowed(LINK)),
            ("PUT", "/link/abc", not_allowed(LINK)),
            ("OPTIONS", "/link/abc", Ok(Route::Preflight { allow: LINK })),
            ("GET", "/link/a%2Fb%20c", relay(b"a/b c", LinkReceive)),
            ("GET", "/link/%zz", Err(RouteError::BadPercentEncoding)),
            ("GET", "/link/%4", Err(RouteError::BadPercentEncoding)),
            ("GET", "/link/%", Err(RouteError::BadPercentEncoding)),
            ("GET", "/link", Err(RouteError::NotFound)),
            ("GET", "/link/", Err(RouteError::NotFound)),
            ("GET", "/link/a/b", Err(RouteError::NotFound)),
            ("GET", "/link/a/", Err(RouteError::NotFound)),
            ("GET", "/nope", Err(RouteError::NotFound)),
            ("GET", "/healthz", Err(RouteError::NotFound)),
            ("GET", "/inbox/x", relay(b"x", InboxGet)),
            ("HEAD", "/inbox/x", relay(b"x", InboxGet)),
            ("POST", "/inbox/x", relay(b"x", InboxPost)),
            ("DELETE", "/inbox/x", relay(b"x", InboxDelete)),
            ("PUT", "/inbox/x", not_allowed(INBOX)),
            ("GET", "/inbox/x/ack", relay(b"x", InboxAck)),
            ("GET", "/inbox/ack", relay(b"ack", InboxGet)),
            ("GET", "/inbox/await", relay(b"await", InboxGet)),
            ("GET", "/link/ack", relay(b"ack", LinkReceive)),
            ("HEAD", "/inbox/x/await", relay(b"x", InboxAwait)),
            ("POST", "/inbox/x/ack", not_allowed(READ)),
            ("OPTIONS", "/inbox/x/await", Ok(Route::Preflight { allow: READ })),
            ("OPTIONS", "/health", Ok(Route::Preflight { allow: READ })),
            ("GET", "/inbox/", Err(RouteError::NotFound)),
            ("GET", "/inbox/x/", Err(RouteError::NotFound)),
            ("GET", "/inbox//ack", Err(RouteError::NotFound)),
            ("GET", "/inbox/x/other", Err(RouteError::NotFound)),
            ("GET", "/inbox/x/ack/more", Err(RouteError::NotFound)),
            ("OPTIONS", "/nope", Err(RouteError::NotFound)),
            ("GET", "/sync/s", relay(b"s", Sync)),
            ("PUT", "/sync/s", relay(b"s", Sync)),
            ("DELETE", "/sync/s", relay(b"s", Sync)),
            ("HEAD", "/sync/s", relay(b"s", Sync)),
            ("TRACE", "/sync/s", not_allowed(SYNC)),
            ("OPTIONS", "/sync/s", Ok(Route::Preflight { allow: SYNC })),
            ("GET", "/sync/", Err(RouteError::NotFound)),
            ("GET", "/sync/a/b", Err(RouteError::NotFound)),
            ("GET", "/mcast/m", relay(b"m", McastGet)),
            ("POST", "/mcast/m", relay(b"m", McastPost)),
            ("HEAD", "/mcast/m", not_allowed(MCAST)),
            ("DELETE", "/mcast/m", not_allowed(MCAST)),
            ("GET", "/mcast/", Err(RouteError::NotFound)),
            ("GET", "/mcast/m/x", Err(RouteError::NotFound)),
        ];
        for (method, path, expected) in cases {
            assert_eq!(&route(method, path, 256), expected, "{method} {path}");
        }
    }

    #[test]
    fn id_length_limit_counts_decoded_bytes() {
        let get = Action::LinkReceive;
        assert_eq!(route("GET", "/link/abcd", 4), relay(b"abcd", get));
        assert_eq!(route("GET", "/link/abcde", 4), Err(RouteError::IdTooLong { limit: 4 }));
        assert_eq!(route("GET", "/link/%41%42%43%44", 4), relay(b"ABCD", get));
        let long = route("GET", "/link/%41%42%43%44%45", 4);
        assert_eq!(long, Err(RouteError::IdTooLong { limit: 4 }));
    }

    #[test]
    fn ids_up_to_the_inline_room_are_inline_and_longer_ones_work_as_before() {
        let id = |route: Result<Route, RouteError>| match route {
            Ok(Route::Relay { id, .. }) => id,
            other => panic!("{other:?}"),
        };
        let at = "a".repeat(INLINE_ID);
        let inline = id(route("GET", &format!("/link/{at}"), INLINE_ID));
        assert!(!inline.is_on_heap() && inline.as_slice() == at.as_bytes());
        let over = "b".repeat(INLINE_ID + 1);
        let too_long = Err(RouteError::IdTooLong { limit: INLINE_ID });
        assert_eq!(route("GET", &format!("/link/{over}"), INLINE_ID), too_long);
        let long = id(route("GET", &format!("/link/{over}"), 65535));
        assert!(long.is_on_heap() && long.as_slice() == over.as_bytes());
        // Percent-encoded past the room, decoded within it: the same id either way.
        let encoded = "%41".repeat(100);
        let decoded = id(route("GET", &format!("/link/{encoded}"), 65535));
        assert_eq!(decoded.as_slice(), "A".repeat(100).as_bytes());
        let decoded_long = id(route("GET", &format!("/inbox/{}", "%42".repeat(300)), 65535));
        assert_eq!(decoded_long.as_slice(), "B".repeat(300).as_bytes());
    }

    #[test]
    fn targets() {
        assert_eq!(split_target("/link/a?x=1&y"), Ok(("/link/a", "x=1&y")));
        assert_eq!(split_target("/link/a"), Ok(("/link/a", "")));
        assert_eq!(split_target("http://relay.example/link/a?q"), Ok(("/link/a", "q")));
        assert_eq!(split_target("https://relay.example"), Ok(("/", "")));
        assert_eq!(split_target("http://relay.example?q"), Ok(("/", "")));
        assert_eq!(split_target("*"), Err(RouteError::BadTarget));
        assert_eq!(split_target("link/a"), Err(RouteError::BadTarget));
        assert_eq!(split_target("HTTPS://relay.example/x"), Ok(("/x", "")));
        assert_eq!(split_target("httpfoo://evil/health"), Err(RouteError::BadTarget));
        assert_eq!(split_target("ftp://evil/health"), Err(RouteError::BadTarget));
        assert_eq!(split_target("/inbox/a#frag/ack"), Err(RouteError::BadTarget));
        assert_eq!(split_target("/inbox/a?x=1#f"), Err(RouteError::BadTarget));
        assert_eq!(split_target("http://h/inbox/a#f"), Err(RouteError::BadTarget));
    }
}
