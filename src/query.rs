//! The httprelay.io query of a `/link`, `/sync` or `/mcast` request (protocol §2, §10, §11):
//! the write secret it may carry (`wsecret`), what the counterpart is shown of it
//! (`HttpRelay-Query`), and the message an `/mcast` reader asks for (`SeqId`, in the query or a
//! cookie). Pure: the gate applies it as a request is admitted, so the registry keeps exactly
//! the bytes it was charged for and never sees a secret's text.

use crate::action::Action;

/// What a relay request keeps of its query and its `HttpRelay-WSecret` header: the query a
/// `/link` or `/sync` counterpart or an `/mcast` reader is shown, and the write secret of a
/// `/link` sender or `/mcast` producer (`/sync` has no write ownership); nothing for `/inbox`
/// and `/mcast` readers.
pub fn kept(action: Action, query: &str, header: Option<&[u8]>) -> (String, Option<Vec<u8>>) {
    match action {
        Action::LinkReceive | Action::Sync => (relay_query(query), None),
        Action::LinkSend | Action::McastPost => (relay_query(query), write_secret(query, header)),
        _ => (String::new(), None),
    }
}

/// The message number an `/mcast` reader asks for: the query's `SeqId` (name in any case)
/// wins over a `SeqId` cookie (`cookies`: every `Cookie` field line); a value that is not a
/// whole number counts as 0, as httprelay.io reads it; `None` when neither is there.
pub fn wanted_seq<'a>(query: &str, cookies: impl Iterator<Item = &'a [u8]>) -> Option<i64> {
    let number = |value: &[u8]| {
        std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    if let Some((_, value)) = query_pairs(query).find(|(k, _)| k.eq_ignore_ascii_case(b"seqid")) {
        return Some(number(&value));
    }
    let mut pairs = cookies.flat_map(|line| line.split(|&b| b == b';'));
    let cookie = pairs.find_map(|pair| {
        let at = pair.iter().position(|&b| b == b'=')?;
        (pair[..at].trim_ascii() == b"SeqId").then(|| &pair[at + 1..])
    })?;
    Some(number(cookie.trim_ascii()))
}

/// A `/link` sender's write secret: the query's `wsecret` wins over the `HttpRelay-WSecret`
/// header; an empty one is none.
pub fn write_secret(query: &str, header: Option<&[u8]>) -> Option<Vec<u8>> {
    let from_query = query_pairs(query).find(|(k, _)| k == b"wsecret").map(|(_, v)| v);
    from_query
        .filter(|v| !v.is_empty())
        .or_else(|| header.map(<[u8]>::to_vec).filter(|h| !h.is_empty()))
}

/// `HttpRelay-Query`: the query minus `wsecret` and `seqid` (any case, as httprelay.io drops
/// them), keys sorted (stable), each pair re-encoded as `application/x-www-form-urlencoded`, as
/// httprelay.io renders it.
pub fn relay_query(query: &str) -> String {
    let hidden = |k: &[u8]| k.eq_ignore_ascii_case(b"wsecret") || k.eq_ignore_ascii_case(b"seqid");
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> =
        query_pairs(query).filter(|(k, _)| !hidden(k)).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (key, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        form_encode(&key, &mut out);
        out.push('=');
        form_encode(&value, &mut out);
    }
    out
}

/// Decoded `key=value` pairs of a query; empty and undecodable pairs are skipped.
fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|pair| !pair.is_empty()).filter_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        Some((form_decode(key)?, form_decode(value)?))
    })
}

fn form_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                (hi * 16 + lo) as u8
            }
            _ => b,
        });
    }
    Some(out)
}

fn form_encode(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_query_drops_secrets_and_sorts() {
        assert_eq!(relay_query("b=2&wsecret=s&a=1&seqid=9"), "a=1&b=2");
        assert_eq!(relay_query("z=1&a=x+y&a=%2F"), "a=x+y&a=%2F&z=1");
        assert_eq!(relay_query("flag&&=v"), "=v&flag=");
        assert_eq!(relay_query("bad=%zz&ok=1"), "ok=1");
        assert_eq!(relay_query(""), "");
        assert_eq!(relay_query("k=%0D%0A"), "k=%0D%0A");
        assert_eq!(relay_query("b=2&a=hello%20world&A=x&SEQID=4"), "A=x&a=hello+world&b=2");
        assert_eq!(relay_query("WSecret=s&SeqId=1&x=1"), "x=1");
    }

    #[test]
    fn the_wanted_message_comes_from_the_query_then_the_cookie() {
        let none: [&[u8]; 0] = [];
        assert_eq!(wanted_seq("", none.into_iter()), None);
        assert_eq!(wanted_seq("x=1", [&b"other=2"[..]].into_iter()), None);
        assert_eq!(wanted_seq("SeqId=5", none.into_iter()), Some(5));
        assert_eq!(wanted_seq("seqid=-3", none.into_iter()), Some(-3));
        assert_eq!(wanted_seq("SEQID=abc", none.into_iter()), Some(0));
        assert_eq!(wanted_seq("SeqId=99999999999999999999", none.into_iter()), Some(0));
        assert_eq!(wanted_seq("SeqId=2", [&b"SeqId=7"[..]].into_iter()), Some(2));
        assert_eq!(wanted_seq("", [&b"a=1; SeqId=7; b=2"[..]].into_iter()), Some(7));
        assert_eq!(wanted_seq("", [&b"a=1"[..], &b"SeqId=x"[..]].into_iter()), Some(0));
        // A cookie's name is case-sensitive; other cookies' values are not looked into.
        assert_eq!(wanted_seq("", [&b"seqid=7; a=SeqId=3"[..]].into_iter()), None);
    }

    #[test]
    fn the_query_secret_wins_over_the_header() {
        assert_eq!(write_secret("wsecret=q", Some(&b"h"[..])), Some(b"q".to_vec()));
        assert_eq!(write_secret("x=1", Some(&b"h"[..])), Some(b"h".to_vec()));
        assert_eq!(write_secret("wsecret=", Some(&b"h"[..])), Some(b"h".to_vec()));
        assert_eq!(write_secret("wsecret=", Some(&b""[..])), None);
        assert_eq!(write_secret("", None), None);
    }
}
