//! The relay's state machine: every channel, parked request and deadline (protocol §2, §3).
//!
//! Pure: [`Registry::handle`] takes the time and one [`Event`] and appends the [`Reply`]s to send.
//! It never sees a socket and speaks no HTTP: a reply is an [`Answer`], a plain value that
//! `src/http/` renders. `src/http/parked.rs` is the thin loop that owns the connections, feeds
//! events in and hands the answers to the outbox. The `/link` rules live in `link.rs`, the
//! `/inbox` rules in `inbox.rs`.
//!
//! A request that cannot be answered at once is *parked*: it holds an entry here and a deadline
//! on the timer wheel, and no thread. A `/link` hand-off is a reply with `delivery` set: the
//! outbox writes it and reports back with [`Event::DeliveryEnded`] whether the receiver took
//! every byte; only then is the sender told its message was delivered (protocol §2).

pub mod answer;
mod changes;
mod conns;
mod held;
mod inbox;
mod link;
pub(crate) mod snapshot;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::action::Action;
use crate::identity::ClientKey;
use crate::limits::{
    shrink_sparse, Charged, Footprint, Rate, RateTable, Reservation, Shortage, ENTRY_COST,
};
use crate::refused::{RefusalCounts, RefusalReason};
use crate::wheel::{TimerId, TimerWheel};
pub use answer::{Answer, LinkMethod, Party, Protocol, Query, Refusal};
use held::Held;

/// Identifies one client connection for its whole life; never reused.
pub type ConnId = u64;

/// How long a `/link` write claim (`wsecret`) outlives the last activity on its id (protocol §2).
pub const CLAIM_IDLE: Duration = Duration::from_secs(20 * 60);

pub use crate::wheel::TICK;

/// A validated relay request, as the HTTP side hands it over.
#[derive(Debug)]
pub struct Request {
    /// The channel id (percent-decoded path segment).
    pub id: Vec<u8>,
    /// What the request asks.
    pub action: Action,
    /// The client's address (after trusted-proxy resolution).
    pub client: SocketAddr,
    /// Arrival time, Unix milliseconds (for the `HttpRelay-*` headers).
    pub arrived_ms: u64,
    /// What the counterpart is shown of the query (`HttpRelay-Query`: `query::relay_query`),
    /// for a `/link` request; empty otherwise.
    pub query: String,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// A `/link` sender's write secret (`query::write_secret`), if any.
    pub wsecret: Option<Vec<u8>>,
    /// The body, read in full.
    pub body: Arc<[u8]>,
    /// What the gate reserved for everything the request may leave held (its entry, id,
    /// query, content type, claim and body): the registry charges each held value its
    /// footprint from it and gives the rest back.
    pub reservation: Reservation,
}

/// Something that happened, for the registry to act on.
#[derive(Debug)]
pub enum Event {
    /// A request arrived on connection `conn`.
    Arrived { conn: ConnId, request: Request },
    /// The client of a parked request closed its connection.
    Gone { conn: ConnId },
    /// A delivery to `conn` ended: the receiver took every byte (`taken`), or it did not (the
    /// write failed, the connection was reset or hung up, or `--write-timeout` passed).
    DeliveryEnded { conn: ConnId, taken: bool },
    /// Time passed: fire what is due.
    Tick,
    /// The relay is shutting down (`SIGTERM`, `SIGINT`): every parked request is answered
    /// (shutting down, or for a sender whose message the state file keeps, kept), and so is
    /// every request that arrives from now on. Deliveries being written are left to end.
    Drain,
}

/// An answer for the loop to send on connection `conn`, closing it after.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// The connection to answer.
    pub conn: ConnId,
    /// What to say.
    pub answer: Answer,
    /// A `/link` delivery: report whether the receiver took it, as [`Event::DeliveryEnded`].
    pub delivery: bool,
}

impl Reply {
    /// A plain answer to `conn`.
    fn to(conn: ConnId, answer: Answer) -> Reply {
        Reply { conn, answer, delivery: false }
    }

    /// A refusal to `conn`.
    fn refused(conn: ConnId, refusal: Refusal) -> Reply {
        Reply::to(conn, Answer::Refused(refusal))
    }
}

/// Settings the registry needs from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Longest wait of either side of `/link` (`--link-timeout`).
    pub link_timeout: Duration,
    /// Longest wait of an `/inbox` GET or `/await` (`--inbox-timeout`).
    pub inbox_timeout: Duration,
    /// Life of a stored `/inbox` message from its POST (`--inbox-ttl`).
    pub inbox_ttl: Duration,
    /// Most parked requests over all ids (`--max-parked`); `None` for no limit.
    pub max_parked: Option<usize>,
    /// Most parked requests per client (`--max-parked-per-ip`).
    pub max_parked_per_ip: Option<usize>,
    /// Writes (POST, DELETE) per minute per id (`--rate-per-id`).
    pub rate_per_id: Option<u32>,
    /// Whether undelivered messages survive a restart (`--state-file`): then a sender waiting
    /// at shutdown is told its message was kept, not to send it again.
    pub keeps_messages: bool,
}

/// Live counts, for `/health` and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Parked requests (waiting receivers and senders).
    pub parked: usize,
    /// Messages held for delivery.
    pub messages: usize,
    /// Bytes of message bodies held.
    pub bytes: usize,
    /// `/link` ids with someone waiting, a message, or a write claim.
    pub links: usize,
    /// `/inbox` ids with a message or someone waiting.
    pub inboxes: usize,
    /// Requests the registry refused, by reason.
    pub refused: RefusalCounts,
    /// `/link` messages taken in full by a receiver (the sender heard 200), since the start.
    pub link_delivered: u64,
    /// `/inbox` messages answered to a GET or HEAD, since the start.
    pub inbox_fetched: u64,
    /// Waits that ran out (408), since the start.
    pub timeouts: u64,
}

/// A channel id as the registry keeps it: one allocation, shared by the id's map key, its
/// parked requests and its timers.
type Id = Arc<[u8]>;

/// What a parked connection waits for. Kept boxed in [`Registry::parked`], so that the map's
/// spare room costs a pointer per slot, not a whole entry.
#[derive(Debug)]
struct Parked {
    id: Id,
    role: Role,
    /// The waiter's own deadline; senders have theirs on their message instead.
    timer: Option<TimerId>,
}

impl Footprint for Parked {
    fn footprint(&self) -> usize {
        match &self.role {
            // A sender's entry is charged with its message, which outlives the wait.
            Role::LinkSender(_) => 0,
            Role::LinkReceiver(party) => ENTRY_COST + self.id.len() + party.query.len(),
            Role::Inbox(..) => ENTRY_COST + self.id.len(),
        }
    }
}

impl Parked {
    /// Who parked it, for `--max-parked-per-ip`.
    fn client(&self) -> ClientKey {
        match self.role {
            Role::LinkReceiver(ref party) => ClientKey::of(party.ip),
            Role::LinkSender(client) | Role::Inbox(_, client) => client,
        }
    }
}

/// Which wait a parked request is, and who parked it (a receiver's party names its address).
#[derive(Debug)]
enum Role {
    LinkReceiver(Party),
    LinkSender(ClientKey),
    Inbox(inbox::WaitsFor, ClientKey),
}

/// What a timer-wheel entry stands for.
#[derive(Debug)]
enum Timer {
    /// A parked receiver's deadline.
    Waiter(ConnId),
    /// A `/link` message's deadline; `ticket` is its sender's connection id.
    LinkMessage { id: Id, ticket: ConnId },
    /// The end of an idle write claim.
    LinkClaim(Id),
    /// The end of an `/inbox` message's life.
    InboxMessage(Id),
}

/// All relay state. See the module docs.
pub struct Registry {
    settings: Settings,
    links: HashMap<Id, link::Channel>,
    inboxes: HashMap<Id, inbox::Inbox>,
    parked: HashMap<ConnId, Box<Charged<Parked>>>,
    deliveries: HashMap<ConnId, link::Delivery>,
    wheel: TimerWheel<Timer>,
    /// Every count but the held messages and bytes, which are `held`'s, and the sizes of maps.
    counts: Counts,
    /// Counts every body held, by the bodies' own lives.
    held: Held,
    /// Parked requests per client.
    parked_by_client: HashMap<ClientKey, usize>,
    /// Write rate per id; ids are keyed by a hash under a per-process key (no raw ids kept).
    write_rate: Option<RateTable<(bool, u64)>>,
    id_hasher: RandomState,
    /// Keys of the digests that write claims keep instead of secrets, fresh per process.
    secret_keys: [RandomState; 2],
    /// Set by [`Event::Drain`]: nothing parks any more.
    draining: bool,
    /// Keys of the stored messages changed since the last [`take_changes`](Self::take_changes),
    /// with `--state-file` (`changes.rs`).
    touched: Vec<changes::Touched>,
}

impl Registry {
    /// An empty registry whose clock starts at `now`.
    pub fn new(settings: Settings, now: Instant) -> Registry {
        Registry {
            links: HashMap::new(),
            inboxes: HashMap::new(),
            parked: HashMap::new(),
            deliveries: HashMap::new(),
            wheel: TimerWheel::new(now, TICK, 1024),
            counts: Counts::default(),
            held: Held::default(),
            parked_by_client: HashMap::new(),
            write_rate: settings
                .rate_per_id
                .map(|per_minute| RateTable::new(Rate { per_minute }, 1 << 20)),
            id_hasher: RandomState::new(),
            secret_keys: [RandomState::new(), RandomState::new()],
            draining: false,
            touched: Vec::new(),
            settings,
        }
    }

    /// Acts on one event at time `now`, appending the replies to send to `out`.
    pub fn handle(&mut self, now: Instant, event: Event, out: &mut Vec<Reply>) {
        let before = self.before(&event);
        let start = out.len();
        self.act(now, event, out);
        if let Some(before) = before {
            self.after(before, &out[start..]);
        }
    }

    fn act(&mut self, now: Instant, event: Event, out: &mut Vec<Reply>) {
        match event {
            Event::Arrived { conn, .. } if self.draining => {
                out.push(Reply::refused(conn, Refusal::ShuttingDown))
            }
            Event::Arrived { conn, request } => {
                if let Err(refusal) = self.check_write_rate(now, &request) {
                    return out.push(Reply::refused(conn, refusal));
                }
                match request.action {
                    Action::LinkReceive => self.link_receive(now, conn, request, out),
                    Action::LinkSend => self.link_send(now, conn, request, out),
                    _ => self.inbox(now, conn, request, out),
                }
            }
            Event::Gone { conn } => self.gone(now, conn),
            Event::DeliveryEnded { conn, taken } => self.link_delivery_ended(now, conn, taken, out),
            Event::Tick => self.tick(now, out),
            Event::Drain => self.drain(now, out),
        }
    }

    /// Answers every parked request and refuses every later one. Nothing the relay keeps is
    /// answered "retry": a sender whose message waits is told it was kept when the state file
    /// keeps it. A sender whose message is being delivered stays parked until the delivery ends
    /// (`link_delivery_ended` answers it); if the process exits first, it is told nothing.
    fn drain(&mut self, now: Instant, out: &mut Vec<Reply>) {
        self.draining = true;
        let in_flight: std::collections::HashSet<ConnId> =
            self.deliveries.values().map(|d| d.message.ticket).collect();
        let mut conns: Vec<ConnId> = self.parked.keys().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            if in_flight.contains(&conn) {
                continue;
            }
            let sender =
                self.parked.get(&conn).is_some_and(|p| matches!(p.role, Role::LinkSender(_)));
            self.gone(now, conn);
            let answer = if sender && self.settings.keeps_messages {
                Answer::LinkKept
            } else {
                Answer::Refused(Refusal::ShuttingDown)
            };
            out.push(Reply::to(conn, answer));
        }
    }

    /// Live counts.
    pub fn counts(&self) -> Counts {
        Counts {
            parked: self.parked.len(),
            links: self.links.len(),
            inboxes: self.inboxes.len(),
            messages: self.held.messages(),
            bytes: self.held.bytes(),
            ..self.counts
        }
    }

    /// Panics unless every hand-kept count matches a recount of what the registry holds: the
    /// held messages and bytes, the parked requests per client, the deliveries per `/link` id.
    /// The scenario tests call it after every event.
    #[cfg(test)]
    pub(crate) fn check_counts(&self) {
        let link_bodies = self.links.values().flat_map(|c| c.messages().map(|m| &m.body));
        let delivered_bodies = self.deliveries.values().map(|d| &d.message.body);
        let inbox_bodies =
            self.inboxes.values().filter_map(|i| i.message.as_ref()?.body.as_deref());
        let recount = link_bodies
            .chain(delivered_bodies)
            .chain(inbox_bodies)
            .fold((0, 0), |(messages, bytes), body| (messages + 1, bytes + body.bytes().len()));
        assert_eq!(
            (self.held.messages(), self.held.bytes()),
            recount,
            "held messages and bytes drifted from a recount"
        );
        let mut by_client: HashMap<ClientKey, usize> = HashMap::new();
        for parked in self.parked.values() {
            *by_client.entry(parked.client()).or_insert(0) += 1;
        }
        assert_eq!(self.parked_by_client, by_client, "parked per client drifted from a recount");
        for (id, channel) in &self.links {
            let in_flight = self.deliveries.values().filter(|d| &d.id == id).count();
            assert_eq!(channel.in_flight(), in_flight, "deliveries in flight drifted on {id:?}");
        }
    }

    /// Whether nothing is waiting for time to pass, so the loop may sleep until the next event.
    pub fn is_idle(&self) -> bool {
        self.wheel.is_empty()
    }

    /// `--rate-per-id`: a write (POST, DELETE) beyond the id's rate gets 429.
    fn check_write_rate(&mut self, now: Instant, request: &Request) -> Result<(), Refusal> {
        let link = match request.action {
            Action::LinkSend => true,
            Action::InboxPost | Action::InboxDelete => false,
            _ => return Ok(()),
        };
        let Some(table) = &mut self.write_rate else { return Ok(()) };
        let key = (link, self.id_hasher.hash_one(&request.id));
        table.take(key, now).map_err(|wait| {
            self.counts.refused.add(RefusalReason::RatePerId);
            let per_minute = self.settings.rate_per_id.unwrap_or(0);
            Refusal::WriteRate { per_minute, wait }
        })
    }

    /// A write secret's 128-bit keyed digest (two SipHash keys of this process): what a claim
    /// keeps and compares, so no secret is held and every claim is the same size.
    fn secret_digest(&self, secret: &[u8]) -> [u8; 16] {
        let [first, second] = &self.secret_keys;
        let mut digest = [0; 16];
        digest[..8].copy_from_slice(&first.hash_one(secret).to_le_bytes());
        digest[8..].copy_from_slice(&second.hash_one(secret).to_le_bytes());
        digest
    }

    /// Charges `value`'s footprint from `from` (what the gate reserved for its request), or
    /// refuses the request when the budget or the client's share has no room for it.
    fn charge<T: Footprint>(
        &mut self,
        value: T,
        from: &mut Reservation,
    ) -> Result<Charged<T>, Refusal> {
        Charged::new(value, from).map_err(|shortage| {
            let (reason, refusal) = match shortage {
                Shortage::Total => (RefusalReason::Memory, Refusal::Memory),
                Shortage::Client { limit } => {
                    (RefusalReason::MemoryPerIp, Refusal::MemoryPerClient { limit })
                }
            };
            self.counts.refused.add(reason);
            refusal
        })
    }

    /// Whether one more request from `client` may park (`--max-parked`, `--max-parked-per-ip`);
    /// if not, the refusal to send.
    fn admit(&mut self, client: ClientKey) -> Result<(), Refusal> {
        if let Some(max) = self.settings.max_parked.filter(|&max| self.parked.len() >= max) {
            self.counts.refused.add(RefusalReason::Parked);
            return Err(Refusal::Full { max });
        }
        let waiting = self.parked_by_client.get(&client).copied().unwrap_or(0);
        if self.settings.max_parked_per_ip.is_some_and(|max| waiting >= max) {
            self.counts.refused.add(RefusalReason::ParkedPerIp);
            return Err(Refusal::ParkedPerClient { waiting });
        }
        Ok(())
    }

    /// Parks `conn` (the caller has checked [`admit`](Self::admit)).
    fn park(&mut self, conn: ConnId, parked: Charged<Parked>) {
        *self.parked_by_client.entry(parked.client()).or_insert(0) += 1;
        self.parked.insert(conn, Box::new(parked));
    }

    /// Unparks `conn`, cancelling its deadline and giving its charge back; `None` if it was not
    /// parked.
    fn unpark(&mut self, conn: ConnId) -> Option<Parked> {
        let parked = self.parked.remove(&conn)?.into_inner();
        if let Some(timer) = parked.timer {
            self.wheel.cancel(timer);
        }
        let client = parked.client();
        if let Some(count) = self.parked_by_client.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                self.parked_by_client.remove(&client);
            }
        }
        Some(parked)
    }

    fn gone(&mut self, now: Instant, conn: ConnId) {
        let Some(parked) = self.unpark(conn) else {
            return;
        };
        match parked.role {
            Role::LinkReceiver(_) => self.link_receiver_gone(now, conn, &parked.id),
            // The message stays deliverable (protocol §2); only its 200 has nobody to go to.
            Role::LinkSender(_) => {}
            Role::Inbox(kind, _) => self.inbox_waiter_gone(conn, &parked.id, kind),
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Reply>) {
        shrink_sparse(&mut self.parked);
        shrink_sparse(&mut self.links);
        shrink_sparse(&mut self.inboxes);
        shrink_sparse(&mut self.deliveries);
        shrink_sparse(&mut self.parked_by_client);
        let mut expired = Vec::new();
        self.wheel.advance(now, &mut expired);
        for timer in expired {
            self.expiring(&timer);
            match timer {
                Timer::Waiter(conn) => self.waiter_expired(now, conn, out),
                Timer::LinkMessage { id, ticket } => {
                    self.link_message_expired(now, &id, ticket, out)
                }
                Timer::LinkClaim(id) => self.link_claim_expired(&id),
                Timer::InboxMessage(id) => self.inbox_message_expired(&id, out),
            }
        }
    }

    fn waiter_expired(&mut self, now: Instant, conn: ConnId, out: &mut Vec<Reply>) {
        let Some(parked) = self.unpark(conn) else {
            return;
        };
        match parked.role {
            Role::LinkReceiver(_) => {
                self.counts.timeouts += 1;
                self.link_receiver_gone(now, conn, &parked.id);
                let after = self.settings.link_timeout;
                out.push(Reply::to(conn, Answer::TimedOut { protocol: Protocol::Link, after }));
            }
            Role::Inbox(kind, _) => {
                self.counts.timeouts += 1;
                self.inbox_waiter_gone(conn, &parked.id, kind);
                let after = self.settings.inbox_timeout;
                out.push(Reply::to(conn, Answer::TimedOut { protocol: Protocol::Inbox, after }));
            }
            Role::LinkSender(_) => {}
        }
    }
}

/// `id` as `map` keys it: the key's own allocation when the map has it, else a new one.
fn shared_id<V>(map: &HashMap<Id, V>, id: Vec<u8>) -> Id {
    match map.get_key_value(&id[..]) {
        Some((key, _)) => Arc::clone(key),
        None => Id::from(id),
    }
}

#[cfg(test)]
mod charges;
#[cfg(test)]
mod tests;
