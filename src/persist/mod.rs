//! `--state-file`: the stored messages, kept so that a restart loses none (README, "State file").
//!
//! The registry reports each [`Change`] to the stored messages as plain data (ids, bodies,
//! deadlines as wall-clock Unix milliseconds, so that downtime counts against them); the
//! [`Journal`] thread appends them to the file as checksummed records and makes them durable at
//! most once a second, and rewrites the file whole from a [`Snapshot`] (compaction) only when
//! the records have grown past twice the live state. The bytes are `format`'s; the writing and
//! its failures are `journal`'s.

mod format;
mod journal;
mod records;

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use log::{error, info, warn};

pub use format::{snapshot_len, BURNED_RECORD_LEN};
use journal::with_suffix;
pub use journal::Journal;
pub use records::{BurnedEntry, Change, InboxEntry, LinkEntry, Snapshot};

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
/// A torn or corrupt end is logged and ignored, what precedes it restored. A file that is not a
/// state file at all is logged, moved aside to `PATH.corrupt`, and counts as empty: losing that
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
    if let Some(read) = format::read(&data) {
        if let Some((at, ignored)) = read.ignored {
            warn!(
                "the state file {} ends in {ignored} bytes that are not a whole record (a crash \
                 while writing, or damage), from byte {at}: ignored; the {} records before them \
                 are restored",
                path.display(),
                read.records
            );
        }
        if read.version == 1 {
            info!("the state file {} is version 1: rewriting it as version 2", path.display());
        }
        return Ok(read.snapshot);
    }
    let aside = with_suffix(path, ".corrupt");
    let moved = match std::fs::rename(path, &aside) {
        Ok(()) => format!("moved to {}", aside.display()),
        Err(e) => format!("cannot move it aside: {e}"),
    };
    error!(
        "the state file {} is corrupt or not a handoff-state file ({moved}); starting empty",
        path.display()
    );
    Ok(Snapshot::default())
}

/// What a restart restores from `snapshot` written as a compacted file with `changes` appended.
#[cfg(test)]
pub fn replayed(snapshot: &Snapshot, changes: &[Change]) -> Snapshot {
    let mut data = format::encode_snapshot(snapshot);
    format::encode_changes(changes, &mut data);
    format::read(&data).expect("a file just written reads back").snapshot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_reads_restores_and_sets_a_corrupt_file_aside() {
        let dir = std::env::temp_dir().join(format!("handoff-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        assert_eq!(open(&path).unwrap(), Snapshot::default(), "a missing file is an empty state");
        assert!(!dir.join("state.tmp").exists(), "the probe is removed");
        let entry = InboxEntry {
            id: b"x".to_vec(),
            acked: false,
            expires_ms: 1,
            body: crate::payload::Payload::from(&b"body"[..]),
        };
        let snapshot = Snapshot { inbox: vec![entry], ..Snapshot::default() };
        let mut data = format::encode_snapshot(&snapshot);
        data.extend_from_slice(b"\0\0\0\x09torn");
        std::fs::write(&path, &data).unwrap();
        assert_eq!(open(&path).unwrap(), snapshot, "a torn tail is ignored");
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
}
