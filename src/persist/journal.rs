//! The thread that writes the state file: it appends each batch of [`Change`]s as records, makes
//! them durable at most once per [`SYNC_EVERY`], and rewrites the file whole from a [`Snapshot`]
//! when one is offered (compaction: `PATH.tmp`, mode 0600, fsync, rename over `PATH`).
//!
//! A write that fails (disk full, I/O error) is counted (`state_write_failures`) and logged, the
//! file is cut back to its last whole record, and nothing more is appended: later records would
//! change a state the file no longer matches. The journal is then *stale* until a snapshot is
//! written whole, and the registry thread offers one every second while
//! [`Journal::wants_snapshot`]; what was durable stays so meanwhile. Records wait in memory up
//! to [`QUEUE_LIMIT`] bytes; beyond, they are dropped and a snapshot is written instead.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{error, info};

use super::format;
use super::records::{Change, Snapshot};
use crate::metrics::Gauges;

/// Longest time between a record's write and its fsync: a power cut loses at most this much.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Most bytes of records waiting to be written (or one batch, if larger): a disk slower than
/// the changes costs no more memory than this, and a snapshot instead.
const QUEUE_LIMIT: u64 = 4 << 20;

/// How far the journal may grow past twice the live state before it is compacted: a nearly
/// empty state is not rewritten every few records.
pub const COMPACT_SLACK: u64 = 64 << 10;

/// The state file's writer; see the module docs.
pub struct Journal {
    path: PathBuf,
    /// Where failed writes are counted (`state_write_failures` in `/health` and `/metrics`).
    gauges: Arc<Gauges>,
    shared: Mutex<Shared>,
    changed: Condvar,
}

/// What the registry thread hands over and the writer reports back.
#[derive(Default)]
struct Shared {
    /// A snapshot to write whole; the changes are those made after it.
    snapshot: Option<Snapshot>,
    changes: Vec<Change>,
    /// Bytes of the records of `changes`.
    changes_len: u64,
    /// The file's length once everything handed over is written.
    projected: u64,
    /// Records cannot be appended until a snapshot is written (none was yet, or a write
    /// failed, or too many records waited).
    stale: bool,
    /// Hand-overs so far, those written, and those written and synced.
    offered: u64,
    written: u64,
    durable: u64,
    /// Whether the last write failed.
    failed: bool,
    /// Sync at once, not at the next [`SYNC_EVERY`] (a flush waits).
    sync_now: bool,
}

/// The writer thread's own view of the file.
struct Output {
    /// The file being appended to; `None` while stale.
    file: Option<File>,
    /// Its length up to its last whole record.
    len: u64,
    /// Whether records were written since the last sync, and when that was.
    unsynced: bool,
    last_sync: Instant,
    /// Whether writes are failing: logged at the first failure and at the recovery only.
    failing: bool,
}

impl Journal {
    /// Starts the writer thread for `path`, stale: the first [`compact`](Self::compact) writes
    /// the file, and records follow it.
    pub fn start(path: PathBuf, gauges: Arc<Gauges>) -> io::Result<Arc<Journal>> {
        let shared = Mutex::new(Shared { stale: true, ..Shared::default() });
        let journal = Arc::new(Journal { path, gauges, shared, changed: Condvar::new() });
        let writer = Arc::clone(&journal);
        std::thread::Builder::new().name("state".into()).spawn(move || writer.run())?;
        Ok(journal)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands over changes to append, in order; dropped while stale (the next snapshot holds
    /// them).
    pub fn append(&self, mut changes: Vec<Change>) {
        let len = format::changes_len(&changes);
        let mut shared = self.lock();
        if shared.stale {
            return;
        }
        // One batch is always taken: its bodies are the registry's, charged to the budget.
        if shared.changes_len > 0 && shared.changes_len + len > QUEUE_LIMIT {
            shared.changes.clear();
            shared.changes_len = 0;
            shared.stale = true;
            return;
        }
        shared.changes.append(&mut changes);
        shared.changes_len += len;
        shared.projected += len;
        shared.offered += 1;
        self.changed.notify_all();
    }

    /// Hands over a snapshot of every stored message, to replace the file with; it supersedes
    /// whatever still waits.
    pub fn compact(&self, snapshot: Snapshot) {
        let len = format::snapshot_len(&snapshot);
        let mut shared = self.lock();
        shared.snapshot = Some(snapshot);
        shared.changes.clear();
        shared.changes_len = 0;
        shared.projected = len;
        shared.stale = false;
        shared.offered += 1;
        self.changed.notify_all();
    }

    /// Whether only a snapshot can bring the file up to date.
    pub fn wants_snapshot(&self) -> bool {
        self.lock().stale
    }

    /// Whether the file, once everything handed over is written, is longer than twice `live`
    /// (the live state's length as a compacted file, or less) plus [`COMPACT_SLACK`].
    pub fn compaction_due(&self, live: u64) -> bool {
        self.lock().projected > live.saturating_mul(2).saturating_add(COMPACT_SLACK)
    }

    /// Waits up to `limit` until everything handed over so far is written and synced; whether
    /// it was, in time and without error.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut shared = self.lock();
        let target = shared.offered;
        shared.sync_now = true;
        self.changed.notify_all();
        while shared.durable < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            shared = self.changed.wait_timeout(shared, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        !shared.failed && !shared.stale
    }

    fn run(&self) {
        let mut out = Output {
            file: None,
            len: 0,
            unsynced: false,
            last_sync: Instant::now(),
            failing: false,
        };
        let mut buf = Vec::new();
        let mut shared = self.lock();
        loop {
            let sync_at = out.last_sync + SYNC_EVERY;
            let sync_due = out.unsynced && (shared.sync_now || Instant::now() >= sync_at);
            if shared.snapshot.is_none() && shared.changes.is_empty() && !sync_due {
                if shared.sync_now {
                    // Nothing unsynced: everything written is durable.
                    shared.sync_now = false;
                    shared.durable = shared.written;
                    self.changed.notify_all();
                }
                shared = if out.unsynced {
                    let left = sync_at.saturating_duration_since(Instant::now());
                    self.changed.wait_timeout(shared, left).unwrap_or_else(|e| e.into_inner()).0
                } else {
                    self.changed.wait(shared).unwrap_or_else(|e| e.into_inner())
                };
                continue;
            }
            let snapshot = shared.snapshot.take();
            let changes = std::mem::take(&mut shared.changes);
            shared.changes_len = 0;
            let handed = shared.offered;
            let sync_now = std::mem::take(&mut shared.sync_now);
            drop(shared);
            let result = self.write(&mut out, snapshot, &changes, sync_now, &mut buf);
            drop(changes);
            shared = self.lock();
            shared.written = handed;
            match result {
                Ok(()) => {
                    if out.failing && out.file.is_some() {
                        info!("writing the state file {} again", self.path.display());
                        out.failing = false;
                    }
                    shared.failed = false;
                }
                Err(e) => {
                    self.gauges.state_write_failed();
                    if !out.failing {
                        error!(
                            "cannot write the state file {}: {e}; what it held stays, and it is \
                             written whole again once that works",
                            self.path.display()
                        );
                        out.failing = true;
                    }
                    shared.failed = true;
                    // Changes handed over meanwhile follow the ones lost: a snapshot must come
                    // first, unless one already waits.
                    if shared.snapshot.is_none() {
                        shared.stale = true;
                        shared.changes.clear();
                        shared.changes_len = 0;
                    }
                }
            }
            if !out.unsynced {
                shared.durable = handed;
            }
            self.changed.notify_all();
        }
    }

    /// Writes what was handed over: the snapshot first, then the records, then a sync if one
    /// is due. A failure leaves the file as it was (or cut back to its last whole record) and
    /// `out` stale.
    fn write(
        &self,
        out: &mut Output,
        snapshot: Option<Snapshot>,
        changes: &[Change],
        sync_now: bool,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        if let Some(snapshot) = snapshot {
            out.file = None;
            out.unsynced = false;
            let file = rewrite(&self.path, &snapshot)?;
            out.len = format::snapshot_len(&snapshot);
            out.file = Some(file);
            out.last_sync = Instant::now();
        }
        let Some(file) = out.file.as_mut() else {
            // Stale: these changes are in the snapshot to come, and nothing is left to sync.
            out.unsynced = false;
            return Ok(());
        };
        if !changes.is_empty() {
            buf.clear();
            format::encode_changes(changes, buf);
            if let Err(e) = file.write_all(buf) {
                // Cut back so that no torn record is left for a restart to report.
                let _ = file.set_len(out.len);
                out.file = None;
                out.unsynced = false;
                return Err(e);
            }
            out.len += buf.len() as u64;
            out.unsynced = true;
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
        }
        if out.unsynced && (sync_now || out.last_sync.elapsed() >= SYNC_EVERY) {
            if let Err(e) = file.sync_data() {
                out.file = None;
                out.unsynced = false;
                return Err(e);
            }
            out.unsynced = false;
            out.last_sync = Instant::now();
        }
        Ok(())
    }
}

/// Writes `snapshot` as the whole of `path`: `PATH.tmp` (mode 0600), fsync, rename, fsync of the
/// directory; the file open at its end, to append to. A write that fails removes `PATH.tmp`
/// again: it would hold message bodies nobody reads.
fn rewrite(path: &Path, snapshot: &Snapshot) -> io::Result<File> {
    let tmp = with_suffix(path, ".tmp");
    let write = || -> io::Result<File> {
        let file =
            OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        let mut writer = BufWriter::with_capacity(64 << 10, file);
        format::write_snapshot(snapshot, &mut writer)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(file)
    };
    let file = write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the directory is; not every file system allows this.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(file)
}

/// `path` with `suffix` added to its file name: where a new file is written before it replaces
/// the state file, and where an unreadable one is set aside.
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::super::records::InboxEntry;
    use super::*;

    /// What the file at `path` holds, read as a start reads it.
    fn open(path: &Path) -> Option<Snapshot> {
        format::read(&std::fs::read(path).ok()?).map(|read| read.snapshot)
    }

    fn gauges() -> Arc<Gauges> {
        Arc::new(Gauges::new(None))
    }

    fn entry(id: &str, body: &str) -> InboxEntry {
        InboxEntry {
            id: id.as_bytes().to_vec(),
            acked: false,
            expires_ms: u64::MAX,
            body: crate::payload::Payload::from(body.as_bytes()),
        }
    }

    fn dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("handoff-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_snapshot_then_records_are_written_and_read_back() {
        let dir = dir("journal");
        let path = dir.join("state");
        let journal = Journal::start(path.clone(), gauges()).unwrap();
        journal.append(vec![Change::Inbox(entry("lost", "before any snapshot"))]);
        let base = Snapshot { inbox: vec![entry("a", "one")], ..Snapshot::default() };
        journal.compact(base.clone());
        journal.append(vec![Change::Inbox(entry("b", "two"))]);
        journal.append(vec![Change::InboxGone(b"a".to_vec())]);
        assert!(journal.flush(Duration::from_secs(10)));
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        assert!(!dir.join("state.tmp").exists());
        let expected = Snapshot { inbox: vec![entry("b", "two")], ..Snapshot::default() };
        assert_eq!(open(&path).unwrap(), expected);
        // The records are appended: the file is the snapshot and two records long.
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > format::snapshot_len(&base), "{len}");
        assert!(!journal.compaction_due(0), "{len} bytes are within the slack");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_is_counted_and_only_a_snapshot_follows() {
        let dir = dir("journal-fail");
        // The path is a directory: the rename fails after PATH.tmp was written.
        let path = dir.join("state");
        std::fs::create_dir_all(path.join("inside")).unwrap();
        let counted = gauges();
        let journal = Journal::start(path.clone(), Arc::clone(&counted)).unwrap();
        journal.compact(Snapshot { inbox: vec![entry("a", "one")], ..Snapshot::default() });
        assert!(!journal.flush(Duration::from_secs(10)), "a failed write reported as saved");
        assert_eq!(counted.state_write_failures(), 1);
        assert!(!dir.join("state.tmp").exists(), "PATH.tmp left behind with message bodies");
        assert!(journal.wants_snapshot());
        journal.append(vec![Change::Inbox(entry("b", "dropped: stale"))]);
        std::fs::remove_dir_all(&path).unwrap();
        journal.compact(Snapshot { inbox: vec![entry("c", "three")], ..Snapshot::default() });
        assert!(journal.flush(Duration::from_secs(10)));
        assert!(!journal.wants_snapshot());
        let expected = Snapshot { inbox: vec![entry("c", "three")], ..Snapshot::default() };
        assert_eq!(open(&path).unwrap(), expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
