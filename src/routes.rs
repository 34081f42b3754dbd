//! Which route a request names and which methods that route allows (SPEC §1).
//!
//! Pure: the HTTP side calls [`route`] as soon as the head is in, so a wrong path or method is
//! answered before any body is read. Channel ids are one percent-decoded path segment; the query
//! string is never part of them.

use std::fmt;

use crate::http::response::Response;

/// A route of the relay, with its channel id where it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the usage text, and a liveness probe.
    Root,
    /// `GET /health`: live counts and limits as JSON.
    Health,
    /// `/link/{id}`: the synchronous one-to-one hand-off (SPEC §2).
    Link { id: Vec<u8>, send: bool },
}

impl Route {
    /// A short name for logs and metrics, never containing the id.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Root => "root",
            Route::Health => "health",
            Route::Link { .. } => "link",
        }
    }
}

/// Why a request names no route it may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// The target is not origin-form (`/path`) or absolute-form (`http://host/path`) (400).
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
            RouteError::BadTarget | RouteError::BadPercentEncoding | RouteError::IdTooLong { .. } => 400,
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::BadTarget => f.write_str("Request target must be a path such as /link/ID."),
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
pub fn usage() -> Response {
    let text = format!(
        "handoff {} - a relay for login hand-offs\n\n\
         GET  /link/{{id}}   wait for the message a sender posts to {{id}} (httprelay.io link)\n\
         POST /link/{{id}}   hand the body to one waiting receiver; 200 once delivered\n\
         GET  /health       live counts and limits as JSON\n",
        env!("CARGO_PKG_VERSION")
    );
    Response::new(200).header("Content-Type", "text/plain; charset=utf-8").body(text.into_bytes())
}

/// Splits a request target into path and query (without `?`), accepting origin-form and, as
/// RFC 9112 §3.2.2 requires of servers, absolute-form (`http://host/path?q`).
pub fn split_target(target: &str) -> Result<(&str, &str), RouteError> {
    let origin_form = match target.find("://") {
        Some(scheme_end) if target.starts_with("http") => {
            let rest = &target[scheme_end + 3..];
            match rest.find(['/', '?']) {
                Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
                Some(_) | None => "/",
            }
        }
        _ => target,
    };
    if !origin_form.starts_with('/') {
        return Err(RouteError::BadTarget);
    }
    Ok(origin_form.split_once('?').unwrap_or((origin_form, "")))
}

/// Finds the route of `method` on `path` (already split from its query).
pub fn route(method: &str, path: &str, max_id: usize) -> Result<Route, RouteError> {
    const READ: &str = "GET, HEAD";
    const LINK: &str = "GET, POST";
    let allow = |allowed: &'static str| {
        if allowed.split(", ").any(|m| m == method) {
            Ok(())
        } else {
            Err(RouteError::MethodNotAllowed { allow: allowed })
        }
    };
    match path {
        "/" => allow(READ).map(|()| Route::Root),
        "/health" => allow(READ).map(|()| Route::Health),
        _ => {
            let segment = path.strip_prefix("/link/").ok_or(RouteError::NotFound)?;
            if segment.is_empty() || segment.contains('/') {
                return Err(RouteError::NotFound);
            }
            allow(LINK)?;
            let id = channel_id(segment, max_id)?;
            Ok(Route::Link { id, send: method == "POST" })
        }
    }
}

/// Percent-decodes one path segment into a channel id of 1 to `max_id` bytes.
fn channel_id(segment: &str, max_id: usize) -> Result<Vec<u8>, RouteError> {
    let mut id = Vec::with_capacity(segment.len().min(max_id));
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

    fn link(id: &[u8], send: bool) -> Result<Route, RouteError> {
        Ok(Route::Link { id: id.to_vec(), send })
    }

    #[test]
    fn routes_and_methods() {
        let cases: &[(&str, &str, Result<Route, RouteError>)] = &[
            ("GET", "/", Ok(Route::Root)),
            ("HEAD", "/", Ok(Route::Root)),
            ("GET", "/health", Ok(Route::Health)),
            ("POST", "/health", Err(RouteError::MethodNotAllowed { allow: "GET, HEAD" })),
            ("GET", "/link/abc", link(b"abc", false)),
            ("POST", "/link/abc", link(b"abc", true)),
            ("HEAD", "/link/abc", Err(RouteError::MethodNotAllowed { allow: "GET, POST" })),
            ("PUT", "/link/abc", Err(RouteError::MethodNotAllowed { allow: "GET, POST" })),
            ("GET", "/link/a%2Fb%20c", link(b"a/b c", false)),
            ("GET", "/link/%zz", Err(RouteError::BadPercentEncoding)),
            ("GET", "/link/%4", Err(RouteError::BadPercentEncoding)),
            ("GET", "/link/%", Err(RouteError::BadPercentEncoding)),
            ("GET", "/link", Err(RouteError::NotFound)),
            ("GET", "/link/", Err(RouteError::NotFound)),
            ("GET", "/link/a/b", Err(RouteError::NotFound)),
            ("GET", "/link/a/", Err(RouteError::NotFound)),
            ("GET", "/nope", Err(RouteError::NotFound)),
            ("GET", "/healthz", Err(RouteError::NotFound)),
        ];
        for (method, path, expected) in cases {
            assert_eq!(&route(method, path, 256), expected, "{method} {path}");
        }
    }

    #[test]
    fn id_length_limit_counts_decoded_bytes() {
        assert_eq!(route("GET", "/link/abcd", 4), link(b"abcd", false));
        assert_eq!(route("GET", "/link/abcde", 4), Err(RouteError::IdTooLong { limit: 4 }));
        assert_eq!(route("GET", "/link/%41%42%43%44", 4), link(b"ABCD", false));
        assert_eq!(route("GET", "/link/%41%42%43%44%45", 4), Err(RouteError::IdTooLong { limit: 4 }));
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
    }
}
