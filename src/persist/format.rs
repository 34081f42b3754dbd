//! The state file's bytes: version 2, a journal of checksummed records (docs/protocol.md, "State
//! file"), and version 1, the whole state in one piece, which is still read.
//!
//! Version 2 is the line `handoff-state 2\n`, then records. A record is its payload's length
//! (`u32`), a CRC-32C of that length and the payload (`u32`), then the payload: a kind byte and
//! its fields. Numbers are big-endian, byte strings a `u32` length and the bytes, optional strings
//! a presence byte first. A compacted file holds one put per stored message, then with
//! `--single-use` the key of the burned ids' digests and one record per burned id; changes are
//! appended after it. Reading replays the records in order and stops at the first one that is
//! cut short or fails its checksum: what precedes it is the state, what follows is reported (so
//! a relay that predates burned ids restores the messages ahead of them).

use std::collections::HashMap;
use std::io;

use super::records::{BurnedEntry, Change, InboxEntry, LinkEntry, Snapshot};
use crate::payload::Payload;

/// The first line of a version-2 file.
pub const MAGIC: &[u8] = b"handoff-state 2\n";

/// The first line of a version-1 file (read, never written).
const MAGIC_V1: &[u8] = b"handoff-state 1\n";

/// A record's frame ahead of its payload: its length and its checksum.
const FRAME: usize = 8;

/// Record kinds (the payload's first byte).
const INBOX_PUT: u8 = 1;
const LINK_PUT: u8 = 2;
const INBOX_ACKED: u8 = 3;
const INBOX_GONE: u8 = 4;
const LINK_GONE: u8 = 5;
const BURN_KEY: u8 = 6;
const BURNED: u8 = 7;

/// The length of a burned id's record: frame, kind, digest, expiry.
pub const BURNED_RECORD_LEN: u64 = (FRAME + 1 + 16 + 8) as u64;

/// Where bytes go: a buffer, or a counter that measures without copying (so a snapshot's size
/// costs no copy of its bodies).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

struct Count(u64);

impl Sink for Count {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len() as u64;
    }
}

/// A change or a stored message, as one record's payload.
enum Record<'a> {
    Inbox(&'a InboxEntry),
    Link(&'a LinkEntry),
    InboxAcked(&'a [u8]),
    InboxGone(&'a [u8]),
    LinkGone(&'a [u8], u64),
    BurnKey(&'a [u8; 32]),
    Burned(&'a BurnedEntry),
}

impl Change {
    fn record(&self) -> Record<'_> {
        match self {
            Change::Inbox(entry) => Record::Inbox(entry),
            Change::Link(entry) => Record::Link(entry),
            Change::InboxAcked(id) => Record::InboxAcked(id),
            Change::InboxGone(id) => Record::InboxGone(id),
            Change::LinkGone { id, ticket } => Record::LinkGone(id, *ticket),
            Change::BurnKey(key) => Record::BurnKey(key),
            Change::Burned(entry) => Record::Burned(entry),
        }
    }
}

impl Record<'_> {
    fn payload(&self, out: &mut impl Sink) {
        match self {
            Record::Inbox(e) => {
                out.put(&[INBOX_PUT]);
                bytes(out, &e.id);
                opt(out, e.body.content_type());
                out.put(&[u8::from(e.acked)]);
                out.put(&e.expires_ms.to_be_bytes());
                bytes(out, e.body.body());
            }
            Record::Link(e) => {
                out.put(&[LINK_PUT]);
                bytes(out, &e.id);
                out.put(&e.ticket.to_be_bytes());
                opt(out, e.body.content_type());
                out.put(&e.expires_ms.to_be_bytes());
                bytes(out, e.body.body());
                bytes(out, e.sender_ip.to_string().as_bytes());
                out.put(&e.sender_port.to_be_bytes());
                out.put(&e.sender_arrived_ms.to_be_bytes());
                bytes(out, e.sender_query.as_bytes());
            }
            Record::InboxAcked(id) => {
                out.put(&[INBOX_ACKED]);
                bytes(out, id);
            }
            Record::InboxGone(id) => {
                out.put(&[INBOX_GONE]);
                bytes(out, id);
            }
            Record::LinkGone(id, ticket) => {
                out.put(&[LINK_GONE]);
                bytes(out, id);
                out.put(&ticket.to_be_bytes());
            }
            Record::BurnKey(key) => {
                out.put(&[BURN_KEY]);
                out.put(&key[..]);
            }
            Record::Burned(entry) => {
                out.put(&[BURNED]);
                out.put(&entry.digest);
                out.put(&entry.expires_ms.to_be_bytes());
            }
        }
    }

    /// Appends the framed record to `out`.
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME]);
        self.payload(out);
        let len = (out.len() - start - FRAME) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c(&[&len.to_be_bytes(), &out[start + FRAME..]]);
        out[start + 4..start + FRAME].copy_from_slice(&crc.to_be_bytes());
    }

    /// The framed record's length in bytes.
    fn len(&self) -> u64 {
        let mut count = Count(FRAME as u64);
        self.payload(&mut count);
        count.0
    }
}

fn bytes(out: &mut impl Sink, b: &[u8]) {
    out.put(&(b.len() as u32).to_be_bytes());
    out.put(b);
}

fn opt(out: &mut impl Sink, s: Option<&str>) {
    match s {
        Some(s) => {
            out.put(&[1]);
            bytes(out, s.as_bytes());
        }
        None => out.put(&[0]),
    }
}

fn snapshot_records(snapshot: &Snapshot) -> impl Iterator<Item = Record<'_>> {
    let inbox = snapshot.inbox.iter().map(Record::Inbox);
    let messages = inbox.chain(snapshot.link.iter().map(Record::Link));
    // Last, so that a relay that predates them restores every message before them.
    let key = snapshot.burn_key.as_ref().map(Record::BurnKey);
    messages.chain(key).chain(snapshot.burned.iter().map(Record::Burned))
}

/// Writes a whole compacted file to `out`, a record at a time: the magic line and a put per
/// stored message.
pub fn write_snapshot(snapshot: &Snapshot, out: &mut impl io::Write) -> io::Result<()> {
    out.write_all(MAGIC)?;
    let mut buf = Vec::new();
    for record in snapshot_records(snapshot) {
        buf.clear();
        record.encode(&mut buf);
        out.write_all(&buf)?;
    }
    Ok(())
}

/// [`write_snapshot`]'s bytes.
#[cfg(test)]
pub fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let mut out = Vec::new();
    write_snapshot(snapshot, &mut out).expect("a Vec takes every write");
    out
}

/// The length of [`encode_snapshot`]'s bytes, measured without making them.
pub fn snapshot_len(snapshot: &Snapshot) -> u64 {
    MAGIC.len() as u64 + snapshot_records(snapshot).map(|r| r.len()).sum::<u64>()
}

/// Appends the records of `changes` to `out`.
pub fn encode_changes(changes: &[Change], out: &mut Vec<u8>) {
    for change in changes {
        change.record().encode(out);
    }
}

/// The length of [`encode_changes`]'s bytes, measured without making them.
pub fn changes_len(changes: &[Change]) -> u64 {
    changes.iter().map(|c| c.record().len()).sum()
}

/// CRC-32C (Castagnoli, as iSCSI and ext4 use it) over `parts` in turn.
fn crc32c(parts: &[&[u8]]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for part in parts {
        for &byte in *part {
            crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

/// What reading a state file found.
#[derive(Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The stored messages, as the records that could be read leave them.
    pub snapshot: Snapshot,
    /// The file's version (1 or 2).
    pub version: u8,
    /// Records read (version 2).
    pub records: usize,
    /// A version-2 file's unreadable end (a record cut short by a crash, or corrupt): where it
    /// starts, and how many bytes are ignored.
    pub ignored: Option<(usize, usize)>,
}

/// Reads a state file's bytes; `None` if they are neither a version-2 file nor a complete
/// version-1 file.
pub fn read(data: &[u8]) -> Option<Loaded> {
    if let Some(rest) = data.strip_prefix(MAGIC_V1) {
        let snapshot = decode_v1(rest)?;
        return Some(Loaded { snapshot, version: 1, records: 0, ignored: None });
    }
    let mut rest = data.strip_prefix(MAGIC)?;
    let mut replay = Replay::default();
    let mut records = 0;
    while !rest.is_empty() {
        let Some((change, used)) = next_record(rest) else {
            let at = data.len() - rest.len();
            let snapshot = replay.finish();
            return Some(Loaded { snapshot, version: 2, records, ignored: Some((at, rest.len())) });
        };
        replay.apply(change);
        records += 1;
        rest = &rest[used..];
    }
    Some(Loaded { snapshot: replay.finish(), version: 2, records, ignored: None })
}

/// The change the record at the start of `data` makes and the bytes it takes; `None` if it is
/// cut short, fails its checksum or does not parse.
fn next_record(data: &[u8]) -> Option<(Change, usize)> {
    let mut frame = Cursor(data);
    let len_bytes = frame.take(4)?;
    let crc = frame.u32()?;
    let len = u32::from_be_bytes(len_bytes.try_into().ok()?);
    let payload = frame.take(len as usize)?;
    if crc32c(&[len_bytes, payload]) != crc {
        return None;
    }
    let mut r = Cursor(payload);
    let change = match r.u8()? {
        INBOX_PUT => Change::Inbox(read_inbox(&mut r)?),
        LINK_PUT => Change::Link(read_link(&mut r, true)?),
        INBOX_ACKED => Change::InboxAcked(r.bytes()?.to_vec()),
        INBOX_GONE => Change::InboxGone(r.bytes()?.to_vec()),
        LINK_GONE => Change::LinkGone { id: r.bytes()?.to_vec(), ticket: r.u64()? },
        BURN_KEY => Change::BurnKey(r.take(32)?.try_into().ok()?),
        BURNED => {
            let digest = r.take(16)?.try_into().ok()?;
            Change::Burned(BurnedEntry { digest, expires_ms: r.u64()? })
        }
        _ => return None,
    };
    r.0.is_empty().then_some((change, FRAME + len as usize))
}

/// The stored messages as records replayed so far leave them. Puts keep their order (a `/link`
/// id's messages are delivered in it); a removed message leaves a hole until [`finish`].
#[derive(Default)]
struct Replay {
    inbox: Vec<Option<InboxEntry>>,
    inbox_at: HashMap<Vec<u8>, usize>,
    link: Vec<Option<LinkEntry>>,
    link_at: HashMap<(Vec<u8>, u64), usize>,
    burn_key: Option<[u8; 32]>,
    burned: Vec<BurnedEntry>,
}

impl Replay {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Inbox(entry) => {
                if let Some(at) = self.inbox_at.insert(entry.id.clone(), self.inbox.len()) {
                    self.inbox[at] = None;
                }
                self.inbox.push(Some(entry));
            }
            Change::InboxAcked(id) => {
                let at = self.inbox_at.get(&id).copied();
                if let Some(Some(entry)) = at.map(|at| &mut self.inbox[at]) {
                    entry.acked = true;
                    entry.body = Payload::new(entry.body.content_type(), b"");
                }
            }
            Change::InboxGone(id) => {
                if let Some(at) = self.inbox_at.remove(&id) {
                    self.inbox[at] = None;
                }
            }
            Change::Link(entry) => match self.link_at.get(&(entry.id.clone(), entry.ticket)) {
                Some(&at) => self.link[at] = Some(entry),
                None => {
                    self.link_at.insert((entry.id.clone(), entry.ticket), self.link.len());
                    self.link.push(Some(entry));
                }
            },
            Change::LinkGone { id, ticket } => {
                if let Some(at) = self.link_at.remove(&(id, ticket)) {
                    self.link[at] = None;
                }
            }
            Change::BurnKey(key) => self.burn_key = Some(key),
            Change::Burned(entry) => self.burned.push(entry),
        }
    }

    fn finish(self) -> Snapshot {
        Snapshot {
            inbox: self.inbox.into_iter().flatten().collect(),
            link: self.link.into_iter().flatten().collect(),
            burn_key: self.burn_key,
            burned: self.burned,
        }
    }
}

/// Version 1 after its magic line: records, each a kind byte (1 `/inbox`, 2 `/link`, 0 the end,
/// which must be last) and the fields of version 2's puts, without a ticket.
fn decode_v1(data: &[u8]) -> Option<Snapshot> {
    let mut r = Cursor(data);
    let mut snapshot = Snapshot::default();
    loop {
        match r.u8()? {
            0 => return r.0.is_empty().then_some(snapshot),
            1 => snapshot.inbox.push(read_inbox(&mut r)?),
            2 => snapshot.link.push(read_link(&mut r, false)?),
            _ => return None,
        }
    }
}

/// The fields of an `/inbox` put, the same in both versions.
fn read_inbox(r: &mut Cursor) -> Option<InboxEntry> {
    let id = r.bytes()?.to_vec();
    let content_type = r.opt()?;
    Some(InboxEntry {
        id,
        acked: r.u8()? != 0,
        expires_ms: r.u64()?,
        body: Payload::new(content_type.as_deref(), r.bytes()?),
    })
}

/// The fields of a `/link` put; `ticketed`: version 2, with the ticket after the id.
fn read_link(r: &mut Cursor, ticketed: bool) -> Option<LinkEntry> {
    let id = r.bytes()?.to_vec();
    let ticket = if ticketed { r.u64()? } else { 0 };
    let content_type = r.opt()?;
    Some(LinkEntry {
        id,
        ticket,
        expires_ms: r.u64()?,
        body: Payload::new(content_type.as_deref(), r.bytes()?),
        sender_ip: r.string()?.parse().ok()?,
        sender_port: u16::from_be_bytes(r.take(2)?.try_into().ok()?),
        sender_arrived_ms: r.u64()?,
        sender_query: r.string()?,
    })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()?;
        self.take(len as usize)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    fn opt(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.string()?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox(id: &str, body: &str) -> InboxEntry {
        InboxEntry {
            id: id.as_bytes().to_vec(),
            acked: false,
            expires_ms: 1_700_000_000_123,
            body: Payload::new(Some("text/plain"), body.as_bytes()),
        }
    }

    fn link(id: &str, ticket: u64, body: &str) -> LinkEntry {
        LinkEntry {
            id: id.as_bytes().to_vec(),
            ticket,
            expires_ms: 42,
            body: Payload::from(body.as_bytes()),
            sender_ip: "::1".parse().unwrap(),
            sender_port: 5000,
            sender_arrived_ms: 7,
            sender_query: "a=1".into(),
        }
    }

    fn sample() -> Snapshot {
        let mut odd = inbox("x", "\0body\u{ff}");
        odd.id = vec![0, 255, b'x'];
        let burned =
            |n: u8| BurnedEntry { digest: [n; 16], expires_ms: 1_700_000_000_000 + n as u64 };
        Snapshot {
            inbox: vec![odd],
            link: vec![link("y", 9, ""), link("y", 3, "second")],
            burn_key: Some([7; 32]),
            burned: vec![burned(1), burned(2)],
        }
    }

    fn file(snapshot: &Snapshot, changes: &[Change]) -> Vec<u8> {
        let mut data = encode_snapshot(snapshot);
        encode_changes(changes, &mut data);
        data
    }

    #[test]
    fn crc32c_matches_the_check_value() {
        assert_eq!(crc32c(&[b"123456789"]), 0xE306_9283);
        assert_eq!(crc32c(&[b"1234", b"56789"]), 0xE306_9283);
    }

    #[test]
    fn a_snapshot_reads_back_and_its_length_is_measured() {
        for snapshot in [sample(), Snapshot::default()] {
            let data = encode_snapshot(&snapshot);
            assert_eq!(snapshot_len(&snapshot), data.len() as u64);
            let read = read(&data).unwrap();
            assert_eq!(
                (read.version, read.records, read.ignored),
                (2, snapshot_records(&snapshot).count(), None)
            );
            assert_eq!(read.snapshot, snapshot);
        }
    }

    #[test]
    fn changes_replay_in_order() {
        let changes = [
            Change::Inbox(inbox("a", "first")),
            Change::Inbox(inbox("b", "kept")),
            Change::Inbox(inbox("a", "replaced")),
            Change::InboxAcked(b"b".to_vec()),
            Change::Inbox(inbox("c", "expires")),
            Change::InboxGone(b"c".to_vec()),
            Change::Link(link("l", 1, "one")),
            Change::Link(link("l", 2, "two")),
            Change::LinkGone { id: b"y".to_vec(), ticket: 9 },
            Change::LinkGone { id: b"l".to_vec(), ticket: 1 },
            Change::InboxGone(b"never stored".to_vec()),
            Change::Burned(BurnedEntry { digest: [9; 16], expires_ms: 5 }),
        ];
        let data = file(&sample(), &changes);
        assert_eq!(changes_len(&changes), (data.len() - encode_snapshot(&sample()).len()) as u64);
        let got = read(&data).unwrap();
        assert_eq!(got.ignored, None);
        let mut acked = inbox("b", "");
        acked.acked = true;
        let expected = Snapshot {
            inbox: vec![sample().inbox[0].clone(), acked, inbox("a", "replaced")],
            link: vec![link("y", 3, "second"), link("l", 2, "two")],
            burn_key: sample().burn_key,
            burned: [&sample().burned[..], &[BurnedEntry { digest: [9; 16], expires_ms: 5 }]]
                .concat(),
        };
        assert_eq!(got.snapshot, expected);
    }

    /// A journal cut at every byte offset of its last record restores what precedes it, and
    /// reports the rest; a flipped bit anywhere in the last record does the same.
    #[test]
    fn a_torn_or_corrupt_last_record_is_ignored() {
        let before = [Change::Inbox(inbox("a", "durable")), Change::InboxAcked(b"a".to_vec())];
        let last = Change::Link(link("l", 5, "the last record"));
        let whole = file(&sample(), &[before[0].clone(), before[1].clone(), last]);
        let good = file(&sample(), &before);
        let expected = read(&good).unwrap().snapshot;
        for cut in good.len()..whole.len() {
            let got = read(&whole[..cut]).unwrap();
            assert_eq!(got.snapshot, expected, "cut at {cut}");
            let ignored = (cut > good.len()).then_some((good.len(), cut - good.len()));
            assert_eq!(got.ignored, ignored, "cut at {cut}");
        }
        for at in good.len()..whole.len() {
            for bit in [0x01, 0x80] {
                let mut flipped = whole.clone();
                flipped[at] ^= bit;
                let got = read(&flipped).unwrap();
                assert_eq!(got.snapshot, expected, "bit {bit:#x} flipped at {at}");
                assert_eq!(got.ignored, Some((good.len(), whole.len() - good.len())));
            }
        }
    }

    #[test]
    fn version_1_is_read_and_anything_else_refused() {
        // A version-1 file: one /inbox message (id "x", no content type, not acked).
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&[1, 0, 0, 0, 1, b'x', 0, 0]);
        v1.extend_from_slice(&99u64.to_be_bytes());
        v1.extend_from_slice(&[0, 0, 0, 2, b'h', b'i', 0]);
        let got = read(&v1).unwrap();
        assert_eq!(got.version, 1);
        assert_eq!(got.snapshot.inbox.len(), 1);
        assert_eq!(&*got.snapshot.inbox[0].body, b"hi");
        // Version 1 has no journal: cut short or with trailing bytes it is corrupt.
        for len in MAGIC_V1.len()..v1.len() {
            assert_eq!(read(&v1[..len]), None, "cut at {len}");
        }
        v1.push(0);
        assert_eq!(read(&v1), None);
        assert_eq!(read(b"garbage"), None);
        assert_eq!(read(b"handoff-state 3\n"), None);
        assert_eq!(read(b""), None);
    }
}
