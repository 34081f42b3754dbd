//! The relay's state machine: every channel, parked request and deadline (protocol §2, §3,
//! §10, §11).
//!
//! Pure: [`Registry::handle`] takes the time and one [`Event`] and appends the [`Reply`]s to send.
//! It never sees a socket and speaks no HTTP: a reply is an [`Answer`], a plain value that
//! `src/http/` renders. `src/http/registry_thread.rs` is the thin loop that owns the connections, feeds
//! events in and hands the answers to the outbox. The `/link` rules live in `link.rs`, the
//! `/inbox` rules in `inbox.rs`, httprelay.io's other two channels in `sync.rs` and `mcast.rs`.
//!
//! A request that cannot be answered at once is *parked*: it holds an entry here and a deadline
//! on the timer wheel, and no thread. A `/link` hand-off is a reply with `delivery` set: the
//! outbox writes it and reports back with [`Event::DeliveryEnded`] whether the receiver took
//! every byte; only then is the sender told its message was delivered (protocol §2). A `/sync`
//! exchange is two such deliveries, one after the other (protocol §10).
//! With `--single-use`, that delivery, and an `/inbox` acknowledgement, burns the id
//! (`burned.rs`): later requests that would write to it or wait on it are refused.

pub mod answer;
mod burned;
mod changes;
mod conns;
mod held;
mod inbox;
mod link;
mod mcast;
pub(crate) mod snapshot;
mod sync;

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
use crate::payload::Payload;
use crate::refused::{RefusalCounts, RefusalReason};
use crate::routes::ChannelId;
use crate::spare::{Slot, SpareBoxes, SPARE_BOXES, SPARE_STORED};
use crate::wheel::{TimerId, TimerWheel};
pub use answer::{Answer, LinkMethod, Party, Protocol, Query, RegistryRefusal};
use burned::{Burned, DigestKey};
pub use conns::{ConnId, ConnMap};
use held::Held;

/// How long a `/link` write claim (`wsecret`) outlives the last activity on its id (protocol §2).
pub const CLAIM_IDLE: Duration = Duration::from_secs(20 * 60);

pub use crate::wheel::TICK;

/// A validated relay request, as the HTTP side hands it over.
#[derive(Debug)]
pub struct Request {
    /// The channel id (percent-decoded path segment), inline: the registry makes its own shared
    /// copy ([`Id`]) only for a new entry.
    pub id: ChannelId,
    /// What the request asks.
    pub action: Action,
    /// The client's address (after trusted-proxy resolution).
    pub client: SocketAddr,
    /// Arrival time, Unix milliseconds (for the `HttpRelay-*` headers).
    pub arrived_ms: u64,
    /// What the counterpart is shown of the query (`HttpRelay-Query`: `query::relay_query`),
    /// for a `/link` request; empty otherwise.
    pub query: String,
    /// A `/link` sender's write secret (`query::write_secret`), if any.
    pub wsecret: Option<Vec<u8>>,
    /// The body, read in full, with the request's `Content-Type`, if any, in one allocation.
    pub body: Payload,
    /// The method, for a `/sync` side's `HttpRelay-Method` (the other routes' sides have the
    /// method their action names).
    pub method: LinkMethod,
    /// The message an `/mcast` reader asks for (`query::wanted_seq`), if it names one.
    pub seq: Option<i64>,
    /// What the gate reserved for everything the request may leave held (its entry, id,
    /// query, content type, claim and body): the registry charges each held value its
    /// footprint from it and gives the rest back.
    pub reservation: Reservation,
}

/// Something that happened, for the registry to act on.
// `Arrived`, the large variant (a request carries its id inline), is the common one: boxing it
// would add an allocation to every relay request.
#[allow(clippy::large_enum_variant)]
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
    fn refused(conn: ConnId, refusal: RegistryRefusal) -> Reply {
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
    /// Body bytes an `/mcast` channel keeps, oldest evicted first, never the newest
    /// (`--mcast-retain`).
    pub mcast_retain: usize,
    /// How long an `/mcast` channel keeps its messages after its last POST (`--mcast-idle`).
    pub mcast_idle: Duration,
    /// Whether delivered ids are burned, for how long, and how many are kept (`--single-use`).
    pub single_use: crate::config::SingleUse,
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
    /// `/sync` ids with a side waiting for its counterpart.
    pub syncs: usize,
    /// `/mcast` channels with messages, readers waiting or a write claim.
    pub mcasts: usize,
    /// Requests the registry refused, by reason.
    pub refused: RefusalCounts,
    /// `/link` messages taken in full by a receiver (the sender heard 200), since the start.
    pub link_delivered: u64,
    /// `/inbox` messages answered to a GET or HEAD, since the start.
    pub inbox_fetched: u64,
    /// `/sync` answers taken in full by their side (two per exchange), since the start.
    pub sync_taken: u64,
    /// `/mcast` messages answered to a GET, since the start.
    pub mcast_fetched: u64,
    /// Waits that ran out (408), since the start.
    pub timeouts: u64,
    /// Ids burned and still refused (`--single-use`).
    pub burned: usize,
    /// Burned ids forgotten before their time at `--max-burned`, since the start.
    pub burned_forgotten: u64,
}

/// A channel id as the registry keeps it: one allocation, shared by the id's map key, its
/// parked requests and its timers.
type Id = Arc<[u8]>;

/// What a parked connection waits for. Kept boxed in [`Registry::parked`], so that the map's
/// spare room costs a pointer per slot, not a whole entry; the box is reused (`spare.rs`).
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
            // A sender's entry is charged with its message, which outlives the wait; so is a
            // /sync side's.
            Role::LinkSender(_) | Role::Sync(_) => 0,
            Role::LinkReceiver(party) => ENTRY_COST + self.id.len() + party.query.len(),
            Role::Inbox(..) | Role::McastReader(..) => ENTRY_COST + self.id.len(),
        }
    }
}

impl Parked {
    /// Who parked it, for `--max-parked-per-ip`.
    fn client(&self) -> ClientKey {
        match self.role {
            Role::LinkReceiver(ref party) => ClientKey::of(party.ip),
            Role::LinkSender(client)
            | Role::Inbox(_, client)
            | Role::Sync(client)
            | Role::McastReader(client, _) => client,
        }
    }
}

/// Which wait a parked request is, and who parked it (a receiver's party names its address).
#[derive(Debug)]
enum Role {
    LinkReceiver(Party),
    LinkSender(ClientKey),
    Inbox(inbox::WaitsFor, ClientKey),
    /// A `/sync` side, waiting for its counterpart or for the counterpart to take its answer.
    Sync(ClientKey),
    /// An `/mcast` reader waiting for the channel's next message, with its arrival (Unix ms,
    /// for `HttpRelay-Your-Time`): all its answer shows of it. The arrival is kept as bytes, 4-byte
    /// aligned like the key: as a `u64` it made every parked entry 8 bytes larger.
    McastReader(ClientKey, [u8; 8]),
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
    /// The end of an `/mcast` channel's messages, `--mcast-idle` after its last POST.
    McastIdle(Id),
    /// The end of the oldest burned id's refusal.
    Burned,
}

/// All relay state. See the module docs.
pub struct Registry {
    settings: Settings,
    links: HashMap<Id, link::Channel>,
    inboxes: HashMap<Id, inbox::Inbox>,
    /// The `/sync` side waiting on each id (at most one: the next request pairs with it).
    syncs: HashMap<Id, Charged<link::Message>>,
    mcasts: HashMap<Id, mcast::Channel>,
    parked: ConnMap<Slot<Charged<Parked>>>,
    /// Boxes of the parked entries, of `/link` senders' sides and of `/inbox` messages that
    /// left their maps, for the next ones (`spare.rs`).
    spare_parked: SpareBoxes<Option<Charged<Parked>>>,
    spare_senders: SpareBoxes<link::Senders>,
    spare_stored: SpareBoxes<Option<Charged<inbox::Stored>>>,
    deliveries: ConnMap<link::Delivery>,
    /// `/sync` answers being written, by the connection they are written to.
    sync_deliveries: ConnMap<sync::Delivery>,
    wheel: TimerWheel<Timer>,
    /// Every count but the held messages and bytes, which are `held`'s, and the sizes of maps.
    counts: Counts,
    /// Counts every body held, by the bodies' own lives.
    held: Held,
    /// Parked requests per client.
    parked_by_client: HashMap<ClientKey, usize>,
    /// Write rate per id; ids are keyed by a hash under a per-process key (no raw ids kept).
    write_rate: Option<RateTable<(u8, u64)>>,
    id_hasher: RandomState,
    /// Key of the digests that write claims keep instead of secrets, fresh per process.
    secret_key: DigestKey,
    /// The burned ids, with `--single-use`.
    burned: Option<Burned>,
    /// The timer of the oldest burned id.
    burned_timer: Option<TimerId>,
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
            syncs: HashMap::new(),
            mcasts: HashMap::new(),
            parked: ConnMap::default(),
            spare_parked: SpareBoxes::new(SPARE_BOXES),
            spare_senders: SpareBoxes::new(SPARE_BOXES),
            spare_stored: SpareBoxes::new(SPARE_STORED),
            deliveries: ConnMap::default(),
            sync_deliveries: ConnMap::default(),
            wheel: TimerWheel::new(now, TICK, 1024),
            counts: Counts::default(),
            held: Held::default(),
            parked_by_client: HashMap::new(),
            write_rate: settings
                .rate_per_id
                .map(|per_minute| RateTable::new(Rate { per_minute }, 1 << 20)),
            id_hasher: RandomState::new(),
            secret_key: DigestKey::random(),
            burned: settings.single_use.on.then(|| {
                let single_use = &settings.single_use;
                Burned::new(DigestKey::random(), single_use.retention, single_use.max)
            }),
            burned_timer: None,
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
                out.push(Reply::refused(conn, RegistryRefusal::ShuttingDown))
            }
            Event::Arrived { conn, request } => {
                if let Some(refusal) = self.burned_refusal(now, &request) {
                    return out.push(Reply::refused(conn, refusal));
                }
                if let Err(refusal) = self.check_write_rate(now, &request) {
                    return out.push(Reply::refused(conn, refusal));
                }
                match request.action {
                    Action::LinkReceive => self.link_receive(now, conn, request, out),
                    Action::LinkSend => self.link_send(now, conn, request, out),
                    Action::Sync => self.sync(now, conn, request, out),
                    Action::McastPost => self.mcast_post(now, conn, request, out),
                    Action::McastGet => self.mcast_get(now, conn, request, out),
                    _ => self.inbox(now, conn, request, out),
                }
            }
            Event::Gone { conn } => self.gone(now, conn),
            Event::DeliveryEnded { conn, taken } if self.sync_deliveries.contains_key(&conn) => {
                self.sync_delivery_ended(conn, taken, out)
            }
            Event::DeliveryEnded { conn, taken } => self.link_delivery_ended(now, conn, taken, out),
            Event::Tick => self.tick(now, out),
            Event::Drain => self.drain(now, out),
        }
    }

    /// Answers every parked request and refuses every later one. Nothing the relay keeps is
    /// answered "retry": a sender whose message waits is told it was kept when the state file
    /// keeps it. A sender whose message is being delivered stays parked until the delivery ends
    /// (`link_delivery_ended` answers it), and so does a `/sync` side whose counterpart's answer
    /// is being written (`sync_delivery_ended`); if the process exits first, it is told nothing.
    fn drain(&mut self, now: Instant, out: &mut Vec<Reply>) {
        self.draining = true;
        let link_senders = self.deliveries.values().map(|d| d.message.ticket);
        let in_flight: std::collections::HashSet<ConnId> = link_senders
            .chain(self.sync_deliveries.values().filter_map(sync::Delivery::waiting))
            .collect();
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
                Answer::Refused(RegistryRefusal::ShuttingDown)
            };
            out.push(Reply::to(conn, answer));
        }
    }

    /// Live counts.
    pub fn counts(&self) -> Counts {
        Counts {
            burned: self.burned.as_ref().map_or(0, Burned::len),
            burned_forgotten: self.burned.as_ref().map_or(0, |b| b.forgotten),
            parked: self.parked.len(),
            links: self.links.len(),
            inboxes: self.inboxes.len(),
            syncs: self.syncs.len(),
            mcasts: self.mcasts.len(),
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
        let sync_bodies = self.syncs.values().map(|side| &side.body);
        let exchanged = self.sync_deliveries.values().flat_map(sync::Delivery::bodies);
        let mcast_bodies = self.mcasts.values().flat_map(mcast::Channel::bodies);
        let recount = link_bodies
            .chain(delivered_bodies)
            .chain(inbox_bodies)
            .chain(sync_bodies)
            .chain(exchanged)
            .chain(mcast_bodies)
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

    /// `--rate-per-id`: a write (a POST, a DELETE, a `/sync` side) beyond the id's rate gets
    /// 429. Each channel kind has its own ids.
    fn check_write_rate(&mut self, now: Instant, request: &Request) -> Result<(), RegistryRefusal> {
        let kind = match request.action {
            Action::LinkSend => 0,
            Action::InboxPost | Action::InboxDelete => 1,
            Action::Sync => 2,
            Action::McastPost => 3,
            _ => return Ok(()),
        };
        let Some(table) = &mut self.write_rate else { return Ok(()) };
        let key = (kind, self.id_hasher.hash_one(&request.id[..]));
        table.take(key, now).map_err(|wait| {
            self.counts.refused.add(RefusalReason::RatePerId);
            let per_minute = self.settings.rate_per_id.unwrap_or(0);
            RegistryRefusal::WriteRate { per_minute, wait }
        })
    }

    /// A write secret's 128-bit keyed digest (under a key of this process): what a claim
    /// keeps and compares, so no secret is held and every claim is the same size.
    fn secret_digest(&self, secret: &[u8]) -> [u8; 16] {
        self.secret_key.digest(&[secret])
    }

    /// `--single-use`: a request that would write to a burned id or wait on it gets 410. What
    /// refers to a delivered message (an `/inbox` DELETE, `/ack`, `/await`) is answered as
    /// before.
    fn burned_refusal(&mut self, now: Instant, request: &Request) -> Option<RegistryRefusal> {
        let burned = self.burned.as_ref()?;
        let kind = match request.action {
            Action::LinkReceive | Action::LinkSend => Protocol::Link,
            Action::InboxPost | Action::InboxGet => Protocol::Inbox,
            _ => return None,
        };
        if !burned.contains(&burned.digest(kind, &request.id), now) {
            return None;
        }
        self.counts.refused.add(RefusalReason::Burned);
        Some(RegistryRefusal::Burned { retention: burned.retention })
    }

    /// Burns `id`, of the channel kind `kind`, with `--single-use`, charged from `from`: the
    /// delivered message's charge or the acknowledging request's, which always holds an entry's
    /// worth. Returns whether it was burned now.
    fn burn(&mut self, now: Instant, kind: Protocol, id: &[u8], from: &mut Reservation) -> bool {
        let Some(burned) = &mut self.burned else { return false };
        // An id whose time ended since the last tick is burned anew, not kept as it was.
        burned.expire(now);
        let digest = burned.digest(kind, id);
        let until = crate::wheel::deadline_after(now, burned.retention);
        // A charge that does not fit (never: `from` holds more) leaves the id unburned.
        if !burned.insert(digest, until, from).unwrap_or(false) {
            return false;
        }
        if self.settings.keeps_messages {
            self.touched.push(changes::Touched::Burned { digest, until });
        }
        if self.burned_timer.is_none() {
            self.burned_timer = Some(self.wheel.insert(until, Timer::Burned));
        }
        true
    }

    /// The oldest burned id's time is over: forgets every id that is due, and waits for the next.
    fn burned_expired(&mut self, now: Instant) {
        self.burned_timer = None;
        let Some(next) = self.burned.as_mut().and_then(|b| b.expire(now)) else { return };
        self.burned_timer = Some(self.wheel.insert(next, Timer::Burned));
    }

    /// Charges `value`'s footprint from `from` (what the gate reserved for its request), or
    /// refuses the request when the budget or the client's share has no room for it.
    fn charge<T: Footprint>(
        &mut self,
        value: T,
        from: &mut Reservation,
    ) -> Result<Charged<T>, RegistryRefusal> {
        Charged::new(value, from).map_err(|shortage| {
            let (reason, refusal) = match shortage {
                Shortage::Total => (RefusalReason::Memory, RegistryRefusal::Memory),
                Shortage::Client { limit } => {
                    (RefusalReason::MemoryPerIp, RegistryRefusal::MemoryPerClient { limit })
                }
            };
            self.counts.refused.add(reason);
            refusal
        })
    }

    /// Whether one more request from `client` may park (`--max-parked`, `--max-parked-per-ip`);
    /// if not, the refusal to send.
    fn admit(&mut self, client: ClientKey) -> Result<(), RegistryRefusal> {
        if let Some(max) = self.settings.max_parked.filter(|&max| self.parked.len() >= max) {
            self.counts.refused.add(RefusalReason::Parked);
            return Err(RegistryRefusal::Full { max });
        }
        let waiting = self.parked_by_client.get(&client).copied().unwrap_or(0);
        if self.settings.max_parked_per_ip.is_some_and(|max| waiting >= max) {
            self.counts.refused.add(RefusalReason::ParkedPerIp);
            return Err(RegistryRefusal::ParkedPerClient { waiting });
        }
        Ok(())
    }

    /// Parks `conn` (the caller has checked [`admit`](Self::admit)).
    fn park(&mut self, conn: ConnId, parked: Charged<Parked>) {
        *self.parked_by_client.entry(parked.client()).or_insert(0) += 1;
        self.parked.insert(conn, self.spare_parked.slot(parked));
    }

    /// Unparks `conn`, cancelling its deadline and giving its charge back; `None` if it was not
    /// parked.
    fn unpark(&mut self, conn: ConnId) -> Option<Parked> {
        let parked = self.spare_parked.take(self.parked.remove(&conn)?).into_inner();
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
        if let Some(parked) = self.unpark(conn) {
            self.left(now, conn, &parked);
        }
    }

    /// Takes `conn`, just unparked (`parked`), out of the lists of its channel.
    fn left(&mut self, now: Instant, conn: ConnId, parked: &Parked) {
        match parked.role {
            Role::LinkReceiver(_) => self.link_receiver_gone(now, conn, &parked.id),
            // The message stays deliverable (protocol §2); only its 200 has nobody to go to.
            Role::LinkSender(_) => {}
            Role::Inbox(kind, _) => self.inbox_waiter_gone(conn, &parked.id, kind),
            Role::Sync(_) => self.sync_side_gone(conn, &parked.id),
            Role::McastReader(..) => self.mcast_reader_gone(conn, &parked.id),
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Reply>) {
        shrink_sparse(&mut self.parked);
        shrink_sparse(&mut self.links);
        shrink_sparse(&mut self.inboxes);
        shrink_sparse(&mut self.syncs);
        shrink_sparse(&mut self.mcasts);
        shrink_sparse(&mut self.deliveries);
        shrink_sparse(&mut self.sync_deliveries);
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
                Timer::McastIdle(id) => self.mcast_expired(&id),
                Timer::Burned => self.burned_expired(now),
            }
        }
    }

    fn waiter_expired(&mut self, now: Instant, conn: ConnId, out: &mut Vec<Reply>) {
        let Some(parked) = self.unpark(conn) else {
            return;
        };
        let (protocol, after) = match parked.role {
            // A sender's deadline is its message's.
            Role::LinkSender(_) => return,
            Role::Inbox(..) => (Protocol::Inbox, self.settings.inbox_timeout),
            _ => (Protocol::Link, self.settings.link_timeout),
        };
        self.counts.timeouts += 1;
        self.left(now, conn, &parked);
        out.push(Reply::to(conn, Answer::TimedOut { protocol, after }));
    }
}

/// `id` as `map` keys it: the key's own allocation when the map has it, else a new one (the
/// only allocation an id costs, made as its entry is).
fn shared_id<V>(map: &HashMap<Id, V>, id: &[u8]) -> Id {
    match map.get_key_value(id) {
        Some((key, _)) => Arc::clone(key),
        None => Id::from(id),
    }
}

#[cfg(test)]
mod charges;
#[cfg(test)]
mod tests;
