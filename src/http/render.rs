//! How the registry's answers are said in HTTP: status, headers and the one-sentence body of
//! each (protocol §2–§4). The registry decides what happened; this file is the only
//! place that knows how a hand-off, a timeout or a refusal looks on the wire.

use crate::config::PeerAddress;
use crate::limits::retry_after;
use crate::payload::Payload;
#[cfg(test)]
use crate::registry::LinkMethod;
use crate::registry::{Answer, Party, Protocol, RegistryRefusal};
use crate::response::Response;

/// The response for `answer`; `peer`: whether an answer that carries a counterpart's metadata
/// (`/link`, `/sync`, `/mcast`) names its address (`--peer-address`).
pub fn render(answer: Answer, peer: PeerAddress) -> Response {
    match answer {
        Answer::LinkMessage { body, own, sender } => {
            with_metadata(message(body), own.arrived_ms, &sender, peer)
        }
        Answer::LinkDelivered { own, receiver } => {
            with_metadata(Response::new(200), own.arrived_ms, &receiver, peer)
        }
        // 202: accepted, not yet delivered. A 2xx, so no client sends the message again; not
        // 200, which on /link means "a receiver took it".
        Answer::LinkKept => Response::text(
            202,
            "The relay is restarting; your message was kept and will be delivered after the \
             restart (--state-file). Do not send it again.",
        )
        .header("HttpRelay-Kept", "1"),
        Answer::McastMessage { body, arrived_ms, producer, seq, id } => {
            // The cookie names the next message for the next read of this channel alone
            // (its path); SameSite=None and Secure let a page on another origin send it back
            // with `credentials: 'include'` (protocol §11).
            let cookie = format_args!(
                "SeqId={}; Path=/mcast/{}; SameSite=None; Secure",
                seq.saturating_add(1),
                PathSegment(&id)
            );
            with_metadata(message(body), arrived_ms, &producer, peer)
                .header("HttpRelay-SeqId", seq)
                .header("Set-Cookie", cookie)
        }
        Answer::McastKept { seq } => Response::new(200).header("HttpRelay-SeqId", seq),
        Answer::InboxMessage { body } => {
            let content_type = body.content_type().unwrap_or("application/octet-stream");
            Response::new(200).header("Content-Type", content_type).body(body)
        }
        Answer::Done => Response::new(200),
        Answer::Acknowledged(acked) => Response::new(200)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(if acked { &b"true"[..] } else { &b"false"[..] }),
        Answer::NoMessage => Response::text(
            404,
            "No message in this inbox: none was posted, or it expired (--inbox-ttl).",
        ),
        Answer::Replaced => Response::text(
            404,
            "The message was replaced by a newer one before it was acknowledged.",
        ),
        Answer::TimedOut { protocol: Protocol::Link, after } => Response::text(
            408,
            format_args!(
                "Request timed out: no counterpart arrived within {} s (--link-timeout).",
                after.as_secs_f64()
            ),
        ),
        Answer::TimedOut { protocol: Protocol::Inbox, after } => Response::text(
            408,
            format_args!(
                "Request timed out: nothing arrived within {} s (--inbox-timeout); poll again.",
                after.as_secs_f64()
            ),
        ),
        Answer::Refused(refusal) => refused(refusal),
    }
}

fn refused(refusal: RegistryRefusal) -> Response {
    match refusal {
        RegistryRefusal::Full { max } => Response::text(
            503,
            format_args!(
                "The relay is full: {max} requests are waiting (--max-parked); retry shortly."
            ),
        )
        .header("Retry-After", "1"),
        RegistryRefusal::ParkedPerClient { waiting } => Response::text(
            429,
            format_args!(
                "This client already has {waiting} requests waiting (--max-parked-per-ip)."
            ),
        )
        .header("Retry-After", "1"),
        RegistryRefusal::WriteRate { per_minute, wait } => Response::text(
            429,
            format_args!(
                "Too many writes to this id: at most {per_minute} a minute (--rate-per-id)."
            ),
        )
        .header("Retry-After", retry_after(wait)),
        RegistryRefusal::InboxWaiters { max } => Response::text(
            503,
            format_args!("{max} requests already wait on this inbox; retry shortly."),
        )
        .header("Retry-After", "1"),
        RegistryRefusal::Claimed => Response::text(
            401,
            "This id is claimed by another sender; send its secret in ?wsecret= or \
             HttpRelay-WSecret.",
        ),
        RegistryRefusal::ShuttingDown => shutting_down(),
        // Said as the gate says them when it refuses at the door: one sentence each.
        RegistryRefusal::Memory => super::gate::RequestRefusal::Memory.response(),
        RegistryRefusal::MemoryPerClient { limit } => {
            super::gate::RequestRefusal::MemoryPerIp { limit }.response()
        }
        RegistryRefusal::Burned { retention } => Response::text(
            410,
            format_args!(
                "This id was already used: a message was delivered through it, and a used id \
                 is refused for {} (--single-use, --burned-for). Use a new id.",
                crate::config::show_duration(retention)
            ),
        ),
    }
}

/// 503 with `Retry-After: 1`: the relay is draining; nothing was kept for this request.
pub fn shutting_down() -> Response {
    Response::text(503, "The relay is shutting down; retry in a moment.").header("Retry-After", "1")
}

/// A relayed message: 200 with its body and its `Content-Type`, none if its writer sent none.
fn message(body: Payload) -> Response {
    let response = match body.content_type() {
        Some(content_type) => Response::new(200).header("Content-Type", content_type),
        None => Response::new(200),
    };
    response.body(body)
}

/// A channel id as one path segment: percent-encoded but for the characters a path segment may
/// carry as they are (RFC 3986 `pchar`), less `;` and `,`, which a cookie attribute cannot.
struct PathSegment<'a>(&'a [u8]);

impl std::fmt::Display for PathSegment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for &b in self.0 {
            if b.is_ascii_alphanumeric() || b"-._~!$&'()*+=:@".contains(&b) {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// Adds what a party that arrived at `own_arrived_ms` (Unix ms) may know of its counterpart
/// `other` (httprelay.io's metadata headers); its address only with `--peer-address show`, else
/// no header at all stands for it.
fn with_metadata(
    response: Response,
    own_arrived_ms: u64,
    other: &Party,
    peer: PeerAddress,
) -> Response {
    let response = match peer {
        PeerAddress::Show => {
            response.header("X-Real-IP", other.ip).header("X-Real-Port", other.port)
        }
        PeerAddress::Hide => response,
    };
    let response = response
        .header("HttpRelay-Time", other.arrived_ms)
        .header("HttpRelay-Your-Time", own_arrived_ms)
        .header("HttpRelay-Method", other.method);
    if other.query.is_empty() {
        response
    } else {
        response.header("HttpRelay-Query", &other.query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_is_a_2xx_that_is_not_200() {
        let response = render(Answer::LinkKept, PeerAddress::Hide);
        assert_eq!(response.status, 202);
        assert_eq!(response.header_value("HttpRelay-Kept"), Some("1"));
    }

    #[test]
    fn inbox_message_without_a_type_is_octet_stream() {
        let body = Payload::from(&b"x"[..]);
        let response = render(Answer::InboxMessage { body }, PeerAddress::Hide);
        assert_eq!(response.header_value("Content-Type"), Some("application/octet-stream"));
        let typed = Payload::new(Some("text/x-y"), b"x");
        let response = render(Answer::InboxMessage { body: typed }, PeerAddress::Hide);
        assert_eq!(response.header_value("Content-Type"), Some("text/x-y"));
        assert_eq!(&*response.body, b"x");
    }

    #[test]
    fn the_peer_address_is_sent_only_when_shown() {
        let party = |method| Party {
            ip: "192.0.2.7".parse().unwrap(),
            port: 4711,
            arrived_ms: 1,
            method,
            query: crate::registry::Query::default(),
        };
        let delivered = || Answer::LinkDelivered {
            own: party(LinkMethod::Post),
            receiver: party(LinkMethod::Get),
        };
        let shown = render(delivered(), PeerAddress::Show);
        assert_eq!(shown.header_value("X-Real-IP"), Some("192.0.2.7"));
        assert_eq!(shown.header_value("X-Real-Port"), Some("4711"));
        let hidden = render(delivered(), PeerAddress::Hide);
        assert_eq!(
            (hidden.header_value("X-Real-IP"), hidden.header_value("X-Real-Port")),
            (None, None)
        );
        assert_eq!(hidden.header_value("HttpRelay-Method"), Some("GET"));
    }
}
