//! A relayed message's bytes ([`Payload`]): its `Content-Type` and its body in one shared
//! allocation, made once as the body is read (`http/reader.rs`) and shared, never copied, by
//! the registry that holds it, every answer that carries it and the state file's records.
//!
//! Only bytes: what a content type or a body may be, and what is charged for them, is decided
//! where they are read and held.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// A message's content type (if any) and body, in one `Arc<[u8]>`: the content type's bytes,
/// then the body's. Derefs to the body, so a response writes it as it is.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    bytes: Arc<[u8]>,
    /// The content type's length plus one; 0 when there is none (`None` and `Some("")` differ
    /// on the wire: an empty `Content-Type` header is still sent).
    split: usize,
}

/// An empty body, one for all: an empty `Arc<[u8]>` is an allocation of its own, and most
/// requests and answers have no body.
fn empty_body() -> Arc<[u8]> {
    static EMPTY: OnceLock<Arc<[u8]>> = OnceLock::new();
    Arc::clone(EMPTY.get_or_init(|| Arc::from(&b""[..])))
}

impl Payload {
    /// No content type and no body: shared, no allocation.
    pub fn empty() -> Payload {
        Payload { bytes: empty_body(), split: 0 }
    }

    /// `content_type` and `body` copied into one allocation (none when both are empty).
    pub fn new(content_type: Option<&str>, body: &[u8]) -> Payload {
        let prefix = content_type.map_or(&[][..], str::as_bytes);
        let split = content_type.map_or(0, |t| t.len() + 1);
        if prefix.is_empty() {
            let bytes = if body.is_empty() { empty_body() } else { Arc::from(body) };
            return Payload { bytes, split };
        }
        let mut bytes: Arc<[u8]> = std::iter::repeat_n(0, prefix.len() + body.len()).collect();
        match Arc::get_mut(&mut bytes) {
            Some(room) => {
                room[..prefix.len()].copy_from_slice(prefix);
                room[prefix.len()..].copy_from_slice(body);
            }
            // Unreachable: a new `Arc` has no other owner. Copied through a buffer should it.
            None => bytes = [prefix, body].concat().into(),
        }
        Payload { bytes, split }
    }

    /// A buffer to read a body into, behind `content_type`, with room for `body` bytes of it:
    /// [`Payload::from_buffer`] makes it a payload.
    pub fn buffer(content_type: Option<&str>, body: usize) -> PayloadBuffer {
        let prefix = content_type.map_or(&[][..], str::as_bytes);
        let mut bytes = Vec::with_capacity(prefix.len() + body);
        bytes.extend_from_slice(prefix);
        PayloadBuffer { bytes, split: content_type.map_or(0, |t| t.len() + 1) }
    }

    /// The payload a buffer was read into: one more allocation, the buffer's is given back.
    pub fn from_buffer(buffer: PayloadBuffer) -> Payload {
        let PayloadBuffer { bytes, split } = buffer;
        let bytes = if bytes.is_empty() { empty_body() } else { Arc::from(bytes) };
        Payload { bytes, split }
    }

    /// The content type, if the message had one.
    pub fn content_type(&self) -> Option<&str> {
        let end = self.split.checked_sub(1)?;
        // Always UTF-8: it was made from a `str`.
        self.bytes.get(..end).and_then(|t| std::str::from_utf8(t).ok())
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        self.bytes.get(self.split.saturating_sub(1)..).unwrap_or_default()
    }

    /// Every byte held, content type and body: what holding it costs.
    pub fn footprint(&self) -> usize {
        self.bytes.len()
    }
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.body()
    }
}

impl From<Arc<[u8]>> for Payload {
    /// A body without a content type, shared as it is.
    fn from(body: Arc<[u8]>) -> Payload {
        Payload { bytes: body, split: 0 }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(body: Vec<u8>) -> Payload {
        Payload::from(Arc::<[u8]>::from(body))
    }
}

impl From<&[u8]> for Payload {
    fn from(body: &[u8]) -> Payload {
        Payload::new(None, body)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("content_type", &self.content_type())
            .field("body", &String::from_utf8_lossy(self.body()))
            .finish()
    }
}

/// A body being read behind its content type ([`Payload::buffer`]).
pub struct PayloadBuffer {
    bytes: Vec<u8>,
    split: usize,
}

impl PayloadBuffer {
    /// The body bytes read so far.
    pub fn body_len(&self) -> usize {
        self.bytes.len() - self.split.saturating_sub(1)
    }

    /// The buffer, to append body bytes to (a decoder appends; it never looks back).
    pub fn append_to(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_and_body_share_one_allocation() {
        let payload = Payload::new(Some("text/plain"), b"hello");
        assert_eq!(payload.content_type(), Some("text/plain"));
        assert_eq!((payload.body(), &*payload), (&b"hello"[..], &b"hello"[..]));
        assert_eq!((payload.footprint(), payload.len()), (15, 5));
        let shared = payload.clone();
        assert!(Arc::ptr_eq(&payload.bytes, &shared.bytes));
    }

    #[test]
    fn no_content_type_differs_from_an_empty_one() {
        let none = Payload::new(None, b"x");
        let empty = Payload::new(Some(""), b"x");
        assert_eq!((none.content_type(), empty.content_type()), (None, Some("")));
        assert_ne!(none, empty);
        assert_eq!(none.body(), empty.body());
        assert_eq!(Payload::new(Some(""), b"").content_type(), Some(""));
        assert_eq!(Payload::new(None, b""), Payload::empty());
        assert_eq!(Payload::new(Some("t"), b"").body(), b"");
    }

    #[test]
    fn a_buffer_read_behind_the_content_type_becomes_the_same_payload() {
        let mut buffer = Payload::buffer(Some("application/json"), 4);
        assert_eq!(buffer.body_len(), 0);
        buffer.append_to().extend_from_slice(b"{}");
        buffer.append_to().extend_from_slice(b"[]");
        assert_eq!(buffer.body_len(), 4);
        let payload = Payload::from_buffer(buffer);
        assert_eq!(payload, Payload::new(Some("application/json"), b"{}[]"));
        let empty = Payload::from_buffer(Payload::buffer(None, 0));
        assert_eq!(empty, Payload::empty());
    }

    #[test]
    fn a_body_alone_is_shared_as_it_is() {
        let body: Arc<[u8]> = Arc::from(&b"abc"[..]);
        let payload = Payload::from(Arc::clone(&body));
        assert!(Arc::ptr_eq(&payload.bytes, &body));
        assert_eq!((payload.content_type(), payload.body()), (None, &b"abc"[..]));
    }
}
