//! `--state-file`: the stored messages, saved so that a restart loses none (README, "State").
//!
//! The registry produces a [`Snapshot`] (plain data: ids, bodies, deadlines as wall-clock Unix
//! milliseconds, so that downtime counts against them); the [`Persister`] thread writes it, since
//! the registry never blocks on I/O. Only the latest snapshot waits to be written.
//!
//! Format, version 1: the line `handoff-state 1\n`, then records, each a kind byte and its
//! fields; numbers are big-endian, byte strings a `u32` length and the bytes, optional strings a
//! presence byte first. Kind 1 is an `/inbox` message, 2 a `/link` message, 0 the end (a file
//! without it was cut short and counts as corrupt). The file is written to `PATH.tmp` (mode 0600),
//! synced and renamed over `PATH`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::error;

use crate::metrics::Gauges;

const MAGIC: &[u8] = b"handoff-state 1\n";

/// The current wall-clock time, Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A stored `/inbox` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxEntry {
    pub id: Vec<u8>,
    pub content_type: Option<String>,
    /// Acknowledged (the body is then empty; the entry remains for `/ack`).
    pub acked: bool,
    /// End of its TTL, Unix milliseconds.
    pub expires_ms: u64,
    pub body: Arc<[u8]>,
}

/// An undelivered `/link` message and what its receiver learns of the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEntry {
    pub id: Vec<u8>,
    pub content_type: Option<String>,
    /// End of its `--link-timeout`, Unix milliseconds.
    pub expires_ms: u64,
    pub body: Arc<[u8]>,
    pub sender_ip: IpAddr,
    pub sender_port: u16,
    pub sender_arrived_ms: u64,
    /// The sender's `HttpRelay-Query`, already filtered and encoded.
    pub sender_query: String,
}

/// Every message the relay holds, in delivery order per id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub inbox: Vec<InboxEntry>,
    pub link: Vec<LinkEntry>,
}

impl Snapshot {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for e in &self.inbox {
            out.push(1);
            bytes(&mut out, &e.id);
            opt(&mut out, e.content_type.as_deref());
            out.push(u8::from(e.acked));
            out.extend_from_slice(&e.expires_ms.to_be_bytes());
            bytes(&mut out, &e.body);
        }
        for e in &self.link {
            out.push(2);
            bytes(&mut out, &e.id);
            opt(&mut out, e.content_type.as_deref());
            out.extend_from_slice(&e.expires_ms.to_be_bytes());
            bytes(&mut out, &e.body);
            bytes(&mut out, e.sender_ip.to_string().as_bytes());
            out.extend_from_slice(&e.sender_port.to_be_bytes());
            out.extend_from_slice(&e.sender_arrived_ms.to_be_bytes());
            bytes(&mut out, e.sender_query.as_bytes());
        }
        out.push(0);
        out
    }

    /// Parses a file's bytes; `None` if they are not a complete version-1 state file.
    pub fn decode(data: &[u8]) -> Option<Snapshot> {
        let mut r = Cursor(data.strip_prefix(MAGIC)?);
        let mut snapshot = Snapshot::default();
        loop {
            match r.u8()? {
                0 => return r.0.is_empty().then_some(snapshot),
                1 => snapshot.inbox.push(InboxEntry {
                    id: r.bytes()?.to_vec(),
                    content_type: r.opt()?,
                    acked: r.u8()? != 0,
                    expires_ms: r.u64()?,
                    body: Arc::from(r.bytes()?),
                }),
                2 => snapshot.link.push(LinkEntry {
                    id: r.bytes()?.to_vec(),
                    content_type: r.opt()?,
                    expires_ms: r.u64()?,
                    body: Arc::from(r.bytes()?),
                    sender_ip: r.string()?.parse().ok()?,
                    sender_port: u16::from_be_bytes(r.take(2)?.try_into().ok()?),
                    sender_arrived_ms: r.u64()?,
                    sender_query: r.string()?,
                }),
                _ => return None,
            }
        }
    }
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            bytes(out, s.as_bytes());
        }
        None => out.push(0),
    }
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
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?);
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

/// Why the relay will not start with this `--state-file`: each message is one line naming the
/// path and the fix. Starting anyway would lose the messages at the first save.
#[derive(Debug)]
pub enum StateError {
    /// The path names a directory.
    IsDirectory { path: PathBuf },
    /// The file exists but cannot be read (permissions, I/O error).
    Unreadable { path: PathBuf, error: io::Error },
    /// The directory the file is to live in does not exist (or is not a directory).
    NoDirectory { path: PathBuf, dir: PathBuf },
    /// `PATH.tmp` cannot be created in the directory, so no save could succeed.
    NotWritable { path: PathBuf, dir: PathBuf, error: io::Error },
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::IsDirectory { path } => write!(
                f,
                "the state file {} is a directory: --state-file must name a file in it, such as {}",
                path.display(),
                path.join("handoff.state").display()
            ),
            StateError::Unreadable { path, error } => write!(
                f,
                "cannot read the state file {}: {error}; give the relay's user read and write \
                 access to it, or move it away to start empty (--state-file)",
                path.display()
            ),
            StateError::NoDirectory { path, dir } => write!(
                f,
                "the directory {} of the state file {} does not exist: create it, writable by the \
                 relay's user (--state-file)",
                dir.display(),
                path.display()
            ),
            StateError::NotWritable { path, dir, error } => write!(
                f,
                "cannot write in {}, the directory of the state file {}: {error}; make it \
                 writable by the relay's user (--state-file)",
                dir.display(),
                path.display()
            ),
        }
    }
}

impl std::error::Error for StateError {}

/// Opens the state file at start as it will be used: the directory must take `PATH.tmp` (created
/// and removed again), and an existing file must be readable. A missing file is an empty state.
/// A corrupt one is logged, moved aside to `PATH.corrupt`, and counts as empty: losing that
/// state is better than not relaying. Anything else is an error, and the relay does not start.
pub fn open(path: &Path) -> Result<Snapshot, StateError> {
    let path_buf = || path.to_path_buf();
    if path.is_dir() {
        return Err(StateError::IsDirectory { path: path_buf() });
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(StateError::NoDirectory { path: path_buf(), dir });
    }
    let tmp = with_suffix(path, ".tmp");
    let probe = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp);
    match probe {
        Ok(file) => {
            drop(file);
            let _ = std::fs::remove_file(&tmp);
        }
        Err(error) => return Err(StateError::NotWritable { path: path_buf(), dir, error }),
    }
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Snapshot::default()),
        Err(error) => return Err(StateError::Unreadable { path: path_buf(), error }),
    };
    if let Some(snapshot) = Snapshot::decode(&data) {
        return Ok(snapshot);
    }
    let aside = with_suffix(path, ".corrupt");
    let moved = match std::fs::rename(path, &aside) {
        Ok(()) => format!("moved to {}", aside.display()),
        Err(e) => format!("cannot move it aside: {e}"),
    };
    error!(
        "the state file {} is corrupt or not a handoff-state 1 file ({moved}); starting empty",
        path.display()
    );
    Ok(Snapshot::default())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `snapshot` to `path` atomically: `PATH.tmp` (mode 0600), fsync, rename. A write that
/// fails removes `PATH.tmp` again: it would hold message bodies nobody reads.
pub fn save(path: &Path, snapshot: &Snapshot) -> io::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let write = || {
        let mut file =
            OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(&snapshot.encode())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the directory is; not every file system allows this.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[derive(Default)]
struct Slot {
    pending: Option<Snapshot>,
    /// Snapshots offered, and written (or failed), so far.
    offered: u64,
    done: u64,
    /// Whether the last snapshot written failed.
    failed: bool,
}

/// The thread that writes snapshots; only the latest one offered waits to be written.
pub struct Persister {
    path: PathBuf,
    /// Where failed writes are counted (`state_write_failures` in `/health` and `/metrics`).
    gauges: Arc<Gauges>,
    slot: Mutex<Slot>,
    changed: Condvar,
}

impl Persister {
    /// Starts the writer thread for `path`; failed writes are counted in `gauges`.
    pub fn start(path: PathBuf, gauges: Arc<Gauges>) -> io::Result<Arc<Persister>> {
        let slot = Mutex::default();
        let persister = Arc::new(Persister { path, gauges, slot, changed: Condvar::new() });
        let writer = Arc::clone(&persister);
        std::thread::Builder::new().name("state".into()).spawn(move || writer.run())?;
        Ok(persister)
    }

    /// Hands over a snapshot to write, replacing one still waiting.
    pub fn offer(&self, snapshot: Snapshot) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.pending = Some(snapshot);
        slot.offered += 1;
        self.changed.notify_all();
    }

    /// Waits up to `limit` until every snapshot offered so far is written; whether the last
    /// one was written in time and without error.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        while slot.done < slot.offered {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            slot = self.changed.wait_timeout(slot, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        !slot.failed
    }

    fn run(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let Some(snapshot) = slot.pending.take() else {
                slot = self.changed.wait(slot).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let offered = slot.offered;
            drop(slot);
            let saved = save(&self.path, &snapshot);
            if let Err(e) = &saved {
                self.gauges.state_write_failed();
                error!("cannot write the state file {}: {e}", self.path.display());
            }
            slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            slot.done = offered;
            slot.failed = saved.is_err();
            self.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn gauges() -> Arc<Gauges> {
        Arc::new(Gauges::new("test".into(), false))
    }

    fn sample() -> Snapshot {
        Snapshot {
            inbox: vec![InboxEntry {
                id: vec![0, 255, b'x'],
                content_type: Some("text/plain".into()),
                acked: false,
                expires_ms: 1_700_000_000_123,
                body: Arc::from(&b"\0body\xff"[..]),
            }],
            link: vec![LinkEntry {
                id: b"y".to_vec(),
                content_type: None,
                expires_ms: 42,
                body: Arc::from(&b""[..]),
                sender_ip: "::1".parse().unwrap(),
                sender_port: 5000,
                sender_arrived_ms: 7,
                sender_query: "a=1".into(),
            }],
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let snapshot = sample();
        assert_eq!(Snapshot::decode(&snapshot.encode()), Some(snapshot));
        let empty = Snapshot::default();
        assert_eq!(Snapshot::decode(&empty.encode()), Some(empty));
    }

    #[test]
    fn corrupt_data_is_refused() {
        let data = sample().encode();
        // Cut short anywhere, or with a bad magic line, trailing bytes or an unknown record.
        for len in 0..data.len() {
            assert_eq!(Snapshot::decode(&data[..len]), None, "cut at {len}");
        }
        assert_eq!(Snapshot::decode(b"handoff-state 2\n\0"), None);
        let mut trailing = data.clone();
        trailing.push(0);
        assert_eq!(Snapshot::decode(&trailing), None);
        assert_eq!(Snapshot::decode(b"handoff-state 1\n\x07"), None);
    }

    #[test]
    fn save_load_and_corrupt_file() {
        let dir = std::env::temp_dir().join(format!("handoff-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        assert_eq!(open(&path).unwrap(), Snapshot::default(), "a missing file is an empty state");
        assert!(!dir.join("state.tmp").exists(), "the probe is removed");
        save(&path, &sample()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!dir.join("state.tmp").exists());
        assert_eq!(open(&path).unwrap(), sample());
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(open(&path).unwrap(), Snapshot::default());
        assert_eq!(std::fs::read(dir.join("state.corrupt")).unwrap(), b"garbage");
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_refuses_what_it_could_not_use() {
        let dir = std::env::temp_dir().join(format!("handoff-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let is_dir = open(&dir).unwrap_err();
        assert!(matches!(is_dir, StateError::IsDirectory { .. }), "{is_dir}");
        assert!(is_dir.to_string().contains("is a directory"), "{is_dir}");
        let missing = dir.join("no-such-dir").join("state");
        let no_dir = open(&missing).unwrap_err();
        assert!(matches!(no_dir, StateError::NoDirectory { .. }), "{no_dir}");
        assert!(no_dir.to_string().contains("does not exist: create it"), "{no_dir}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_save_leaves_no_tmp_file() {
        let dir = std::env::temp_dir().join(format!("handoff-failed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // The path is a directory: the rename fails after PATH.tmp was written.
        let path = dir.join("state");
        std::fs::create_dir_all(path.join("inside")).unwrap();
        assert!(save(&path, &sample()).is_err());
        assert!(!dir.join("state.tmp").exists(), "PATH.tmp left behind with message bodies");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn persister_writes_the_latest() {
        let dir = std::env::temp_dir().join(format!("handoff-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        let persister = Persister::start(path.clone(), gauges()).unwrap();
        persister.offer(Snapshot::default());
        persister.offer(sample());
        assert!(persister.flush(Duration::from_secs(5)));
        assert_eq!(open(&path).unwrap(), sample());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flush_says_whether_the_last_snapshot_was_written() {
        let dir = std::env::temp_dir().join(format!("handoff-flush-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let counted = gauges();
        let missing =
            Persister::start(dir.join("no-such-dir").join("state"), Arc::clone(&counted)).unwrap();
        missing.offer(sample());
        assert!(!missing.flush(Duration::from_secs(10)), "a failed write reported as saved");
        assert_eq!(counted.state_write_failures(), 1, "the failed write is counted");

        std::fs::create_dir_all(&dir).unwrap();
        let fine = Persister::start(dir.join("state"), gauges()).unwrap();
        fine.offer(sample());
        assert!(fine.flush(Duration::from_secs(10)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
