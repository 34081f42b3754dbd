//! Cross-origin access for browser apps that call the relay directly (protocol §5).
//!
//! The Pubky browser SDK fetches with `credentials: 'include'`, for which `*` is not enough: the
//! origin itself must be echoed with `Access-Control-Allow-Credentials: true`. `--cors mirror`
//! (the default) echoes any origin, a list echoes only its members, `off` sends nothing. The
//! decision is made once per request, when its head is read; preflights never touch relay state.

use crate::config::Cors;
use crate::response::Response;

/// Request headers a page may send, whatever it asks for: iOS Safari sends `user-agent`, and
/// refusing it broke Pubky sign-in.
const ALLOWED_HEADERS: &str = "content-type, user-agent, authorization, httprelay-wsecret";

/// Response headers a page may read (`WWW-Authenticate` tells a page with `--token-file` on
/// why its token was refused).
const EXPOSED_HEADERS: &str = "HttpRelay-Time, HttpRelay-Your-Time, HttpRelay-Method, \
                               HttpRelay-Query, HttpRelay-SeqId, X-Real-IP, X-Real-Port, Retry-After, \
                               WWW-Authenticate";

/// How long a browser may cache a preflight, in seconds (browsers cap it lower themselves).
const MAX_AGE: &str = "86400";

/// The origin to echo to this request, if the policy lets it read the response.
pub fn allowed_origin(policy: &Cors, origin: Option<&[u8]>) -> Option<String> {
    let origin = std::str::from_utf8(origin?).ok()?;
    let allowed = match policy {
        Cors::Mirror => true,
        Cors::List(origins) => origins.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        Cors::Off => false,
    };
    allowed.then(|| origin.to_string())
}

/// Adds the headers that let the page of `origin` read `response`.
pub fn add_headers(response: Response, origin: &str) -> Response {
    response
        .header("Access-Control-Allow-Origin", origin)
        .header("Access-Control-Allow-Credentials", "true")
        .header("Access-Control-Expose-Headers", EXPOSED_HEADERS)
        .header("Vary", "Origin")
}

/// The answer to an `OPTIONS` request on a path allowing `allow`. For an allowed origin it grants
/// the path's methods and the request headers [`ALLOWED_HEADERS`] plus any other header names
/// the browser asks for in `Access-Control-Request-Headers`.
pub fn preflight(allow: &'static str, origin_allowed: bool, requested: Option<&[u8]>) -> Response {
    let response = Response::new(204).header("Allow", allow);
    if !origin_allowed {
        return response;
    }
    let mut headers = ALLOWED_HEADERS.to_string();
    let requested = requested.and_then(|r| std::str::from_utf8(r).ok()).unwrap_or("");
    for name in requested.split(',').map(str::trim) {
        let is_token = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if is_token && !ALLOWED_HEADERS.split(", ").any(|known| known.eq_ignore_ascii_case(name)) {
            headers.push_str(", ");
            headers.push_str(&name.to_ascii_lowercase());
        }
    }
    response
        .header("Access-Control-Allow-Methods", allow)
        .header("Access-Control-Allow-Headers", headers)
        .header("Access-Control-Max-Age", MAX_AGE)
        .header("Access-Control-Allow-Private-Network", "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let list = Cors::List(vec!["https://app.example".into()]);
        let app = Some(&b"https://app.example"[..]);
        let other = Some(&b"https://evil.example"[..]);
        assert_eq!(allowed_origin(&Cors::Mirror, other).as_deref(), Some("https://evil.example"));
        assert_eq!(allowed_origin(&Cors::Mirror, None), None);
        assert_eq!(allowed_origin(&list, app).as_deref(), Some("https://app.example"));
        assert_eq!(allowed_origin(&list, other), None);
        assert_eq!(allowed_origin(&Cors::Off, app), None);
    }

    #[test]
    fn preflight_grants_methods_and_headers() {
        let response =
            preflight("GET, POST, OPTIONS", true, Some(b"Content-Type, X-Custom, bad header"));
        assert_eq!(response.status, 204);
        assert_eq!(
            response.header_value("Access-Control-Allow-Methods"),
            Some("GET, POST, OPTIONS")
        );
        assert_eq!(
            response.header_value("Access-Control-Allow-Headers"),
            Some("content-type, user-agent, authorization, httprelay-wsecret, x-custom")
        );
        assert_eq!(response.header_value("Access-Control-Allow-Private-Network"), Some("true"));
        let refused = preflight("GET, POST, OPTIONS", false, None);
        assert_eq!(refused.header_value("Allow"), Some("GET, POST, OPTIONS"));
        assert_eq!(refused.header_value("Access-Control-Allow-Methods"), None);
    }
}
