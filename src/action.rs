//! What a relay request asks of a channel: the one vocabulary the routes, the access policy and
//! the registry share, kept apart so that policy (`routes.rs`, `auth.rs`) need not import the
//! registry, nor the registry the HTTP side (protocol §2, §3, §10, §11).

/// What a request asks of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `GET /link/{id}`: wait for a sender's message.
    LinkReceive,
    /// `POST /link/{id}`: hand the body to one receiver.
    LinkSend,
    /// `GET`/`HEAD /inbox/{id}`: the stored message, or wait for one.
    InboxGet,
    /// `POST /inbox/{id}`: store the body, replacing any earlier message.
    InboxPost,
    /// `DELETE /inbox/{id}`: acknowledge the message.
    InboxDelete,
    /// `GET /inbox/{id}/ack`: whether the message was acknowledged.
    InboxAck,
    /// `GET /inbox/{id}/await`: wait for the acknowledgement.
    InboxAwait,
    /// Any method but `OPTIONS` on `/sync/{id}`: swap bodies with the next request on the id.
    Sync,
    /// `POST /mcast/{id}`: keep the body as the channel's next message.
    McastPost,
    /// `GET /mcast/{id}`: a kept message by sequence number, or wait for the next one.
    McastGet,
}
