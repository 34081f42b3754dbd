//! Bearer tokens with scopes, read from `--token-file` (protocol §6).
//!
//! Owns the token file's format and checks, the scope each relay action needs, the check of an
//! `Authorization: Bearer` header against the tokens, and the constant-time comparison every
//! secret goes through (tokens here, `/link` write secrets in the registry). It does not decide
//! where a check happens nor throttle failures (the gate does both, once per head:
//! `http/gate.rs`), nor watch for `SIGHUP` (`sys`, `main`).
//!
//! A [`TokenStore`] holds the tokens in force behind an `RwLock<Arc<Tokens>>`: a worker clones the
//! `Arc` and checks against a snapshot; a reload parses the whole file first and swaps the `Arc`
//! only if it is valid, so a bad file never replaces good tokens.

use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::action::Action;

/// Shortest token accepted, in characters: short tokens can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a token may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `POST /link/{id}` and `POST /inbox/{id}`.
    Send,
    /// `GET /link/{id}`; `GET`, `HEAD` and `DELETE /inbox/{id}`; `/inbox/{id}/ack` and `/await`.
    Receive,
    /// The detailed `/health`, and `/metrics` for clients not on loopback.
    Stats,
}

impl Scope {
    /// The scope a relay action needs.
    pub fn of(action: Action) -> Scope {
        match action {
            // A /sync side leaves a body as much as it takes one: it sends.
            Action::LinkSend | Action::InboxPost | Action::Sync | Action::McastPost => Scope::Send,
            Action::LinkReceive
            | Action::McastGet
            | Action::InboxGet
            | Action::InboxDelete
            | Action::InboxAck
            | Action::InboxAwait => Scope::Receive,
        }
    }

    /// The scope's name in the token file.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Receive => "receive",
            Scope::Stats => "stats",
        }
    }

    fn parse(name: &str) -> Option<Scope> {
        [Scope::Send, Scope::Receive, Scope::Stats].into_iter().find(|s| s.name() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Why a request's credentials were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header (401).
    Missing,
    /// A bearer token that is not in the file (401).
    Unknown,
    /// A known token without the scope the request needs (403).
    Scope(Scope),
}

impl Denied {
    /// The HTTP status: 401 for missing or unknown credentials, 403 for a missing scope.
    pub fn status(self) -> u16 {
        match self {
            Denied::Missing | Denied::Unknown => 401,
            Denied::Scope(_) => 403,
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3).
    pub fn challenge(self) -> String {
        match self {
            Denied::Missing => "Bearer realm=\"handoff\"".into(),
            Denied::Unknown => "Bearer realm=\"handoff\", error=\"invalid_token\"".into(),
            Denied::Scope(scope) => format!(
                "Bearer realm=\"handoff\", error=\"insufficient_scope\", scope=\"{}\"",
                scope.name()
            ),
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Missing => {
                f.write_str("This relay needs a token: send Authorization: Bearer <token>.")
            }
            Denied::Unknown => f.write_str("The bearer token is not valid for this relay."),
            Denied::Scope(scope) => {
                write!(f, "The bearer token does not grant the {} scope.", scope.name())
            }
        }
    }
}

/// The tokens of one version of the token file.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<(Vec<u8>, u8)>,
}

impl Tokens {
    /// Parses a token file: `TOKEN scope[,scope...]` per line (whitespace after the token, commas
    /// between scopes), blank lines, and comments from a `#` at the start or after whitespace.
    pub fn parse(text: &str) -> Result<Tokens, Malformed> {
        let mut entries: Vec<(Vec<u8>, u8)> = Vec::new();
        let mut lines_of: Vec<usize> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = strip_comment(line).trim();
            if line.is_empty() {
                continue;
            }
            let at = |problem| Malformed { line: line_no, problem };
            let (token, scopes) = match line.split_once(char::is_whitespace) {
                Some((token, scopes)) => (token, scopes.trim()),
                None => return Err(at(Problem::NoScopes)),
            };
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(at(Problem::BadCharacter));
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(at(Problem::TooShort { len: token.len() }));
            }
            let mut bits = 0;
            for name in scopes.split(',').map(str::trim) {
                let scope = Scope::parse(name)
                    .ok_or_else(|| at(Problem::UnknownScope { name: name.to_string() }))?;
                bits |= scope.bit();
            }
            if let Some(first) = entries.iter().position(|(t, _)| t == token.as_bytes()) {
                return Err(at(Problem::Duplicate { first_line: lines_of[first] }));
            }
            entries.push((token.as_bytes().to_vec(), bits));
            lines_of.push(line_no);
        }
        Ok(Tokens { entries })
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Checks an `Authorization` header value for `scope`. Every token is compared, in constant
    /// time, whichever matches: the time taken says nothing about which one or how close.
    pub fn check(&self, authorization: Option<&[u8]>, scope: Scope) -> Result<(), Denied> {
        let presented = authorization.and_then(bearer).ok_or(Denied::Missing)?;
        let mut granted = None;
        for (token, bits) in &self.entries {
            if same_secret(token, presented) {
                granted = Some(*bits);
            }
        }
        match granted {
            None => Err(Denied::Unknown),
            Some(bits) if bits & scope.bit() == 0 => Err(Denied::Scope(scope)),
            Some(_) => Ok(()),
        }
    }
}

/// A line without its comment: from a `#` at the start or after whitespace (so a token may
/// hold a `#` anywhere but first).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let start = (0..bytes.len())
        .find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()));
    start.map_or(line, |i| &line[..i])
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive, RFC 6750).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"Bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares two secrets in time that depends only on their lengths, not on where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    compare(a, b).0
}

/// [`same_secret`], also returning how many byte positions it walked: always `max(len)`, with
/// no early exit on a length mismatch or a differing byte.
fn compare(a: &[u8], b: &[u8]) -> (bool, usize) {
    let mut diff = a.len() ^ b.len();
    let mut walked = 0;
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).copied().unwrap_or(0), b.get(i).copied().unwrap_or(0));
        diff |= usize::from(x ^ y);
        walked += 1;
    }
    // Keeps the optimiser from turning the loop into an early-exit comparison.
    (std::hint::black_box(diff) == 0, walked)
}

/// A line of the token file that is not valid, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a token file line. No variant holds the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A token with no scopes after it.
    NoScopes,
    /// A scope other than `send`, `receive` and `stats`.
    UnknownScope { name: String },
    /// A token shorter than [`MIN_TOKEN_LEN`].
    TooShort { len: usize },
    /// A token with a character other than visible ASCII.
    BadCharacter,
    /// The same token as on an earlier line.
    Duplicate { first_line: usize },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.problem {
            Problem::NoScopes => f.write_str("no scopes; expected TOKEN send,receive,stats"),
            Problem::UnknownScope { name } => {
                write!(f, "unknown scope {name:?}; expected send, receive or stats")
            }
            Problem::TooShort { len } => {
                write!(f, "token of {len} characters; at least {MIN_TOKEN_LEN} are required")
            }
            Problem::BadCharacter => f.write_str("token with a character other than visible ASCII"),
            Problem::Duplicate { first_line } => {
                write!(f, "the same token as line {first_line}")
            }
        }
    }
}

/// Why a token file cannot be used; the message names the file and the fix.
#[derive(Debug)]
pub struct TokenFileError {
    path: PathBuf,
    kind: FileProblem,
}

/// What is wrong with the token file as a whole.
#[derive(Debug)]
enum FileProblem {
    Unreadable(io::Error),
    WorldReadable { mode: u32 },
    Malformed(Malformed),
}

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            FileProblem::Unreadable(e) => {
                write!(f, "cannot read token file {path}: {e} (--token-file)")
            }
            FileProblem::WorldReadable { mode } => write!(
                f,
                "token file {path} is readable by every user (mode {mode:04o}); \
                 run chmod 600 {path} (--token-file)"
            ),
            FileProblem::Malformed(m) => write!(f, "token file {path}, {m} (--token-file)"),
        }
    }
}

impl std::error::Error for TokenFileError {}

/// Reads and checks the token file at `path`: it must be readable, not readable by every user,
/// and valid line by line.
pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
    let fail = |kind| TokenFileError { path: path.to_path_buf(), kind };
    let text = std::fs::read_to_string(path).map_err(|e| fail(FileProblem::Unreadable(e)))?;
    let metadata = std::fs::metadata(path).map_err(|e| fail(FileProblem::Unreadable(e)))?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o004 != 0 {
        return Err(fail(FileProblem::WorldReadable { mode }));
    }
    Tokens::parse(&text).map_err(|m| fail(FileProblem::Malformed(m)))
}

/// The tokens in force, and the file they are reloaded from.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    current: RwLock<Arc<Tokens>>,
}

impl TokenStore {
    /// Loads `path` for the first time.
    pub fn open(path: &Path) -> Result<TokenStore, TokenFileError> {
        let tokens = load(path)?;
        Ok(TokenStore { path: path.to_path_buf(), current: RwLock::new(Arc::new(tokens)) })
    }

    /// A store of `tokens` that no file backs, for tests of the code that checks them.
    #[cfg(test)]
    pub fn fixed(tokens: Tokens) -> TokenStore {
        TokenStore { path: PathBuf::new(), current: RwLock::new(Arc::new(tokens)) }
    }

    /// The file the tokens come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens in force now.
    pub fn current(&self) -> Arc<Tokens> {
        Arc::clone(&self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Reads the file again and, only if it is valid, puts its tokens in force at once; returns
    /// how many there are. On an error the tokens in force stay.
    pub fn reload(&self) -> Result<usize, TokenFileError> {
        let tokens = Arc::new(load(&self.path)?);
        let count = tokens.len();
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = tokens;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaa-send";
    const B: &str = "bbbbbbbbbbbbbbbb-all";

    fn tokens() -> Tokens {
        Tokens::parse(&format!(
            "# handoff tokens\n\n{A} send\n  {B}\tsend, receive,stats  # all of them\n"
        ))
        .unwrap()
    }

    fn header(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn scopes_of_actions() {
        assert_eq!(Scope::of(Action::LinkSend), Scope::Send);
        assert_eq!(Scope::of(Action::InboxPost), Scope::Send);
        assert_eq!(Scope::of(Action::Sync), Scope::Send);
        assert_eq!(Scope::of(Action::McastPost), Scope::Send);
        for action in [
            Action::LinkReceive,
            Action::McastGet,
            Action::InboxGet,
            Action::InboxDelete,
            Action::InboxAck,
            Action::InboxAwait,
        ] {
            assert_eq!(Scope::of(action), Scope::Receive, "{action:?}");
        }
    }

    #[test]
    fn checks_tokens_and_scopes() {
        let t = tokens();
        assert_eq!(t.len(), 2);
        assert_eq!(t.check(Some(&header(A)), Scope::Send), Ok(()));
        assert_eq!(t.check(Some(&header(A)), Scope::Receive), Err(Denied::Scope(Scope::Receive)));
        assert_eq!(t.check(Some(&header(A)), Scope::Stats), Err(Denied::Scope(Scope::Stats)));
        for scope in [Scope::Send, Scope::Receive, Scope::Stats] {
            assert_eq!(t.check(Some(&header(B)), scope), Ok(()));
        }
        assert_eq!(t.check(None, Scope::Send), Err(Denied::Missing));
        assert_eq!(t.check(Some(b"Basic abc"), Scope::Send), Err(Denied::Missing));
        assert_eq!(t.check(Some(b"Bearer"), Scope::Send), Err(Denied::Missing));
        assert_eq!(t.check(Some(b"Bearer   "), Scope::Send), Err(Denied::Missing));
        assert_eq!(t.check(Some(b"Bearerx"), Scope::Send), Err(Denied::Missing));
        let unknown = Err(Denied::Unknown);
        assert_eq!(t.check(Some(&header("aaaaaaaaaaaaaaaa")), Scope::Send), unknown);
        assert_eq!(t.check(Some(&header(&format!("{A}x"))), Scope::Send), unknown);
        // The scheme is case-insensitive; surrounding spaces are not part of the token.
        let lower = format!("bearer   {A} ").into_bytes();
        assert_eq!(t.check(Some(&lower), Scope::Send), Ok(()));
        assert_eq!(Tokens::default().check(Some(&header(A)), Scope::Send), unknown);
    }

    #[test]
    fn malformed_lines_are_named() {
        let cases: [(&str, usize, Problem); 6] = [
            ("aaaaaaaaaaaaaaaa\n", 1, Problem::NoScopes),
            ("# c\naaaaaaaaaaaaaaaa send,sned\n", 2, Problem::UnknownScope { name: "sned".into() }),
            ("aaaaaaaaaaaaaaaa send,\n", 1, Problem::UnknownScope { name: "".into() }),
            ("\n\nshort send\n", 3, Problem::TooShort { len: 5 }),
            ("aaaaaaaaaaaaaaaé send\n", 1, Problem::BadCharacter),
            (
                "aaaaaaaaaaaaaaaa send\nbbbbbbbbbbbbbbbb stats\naaaaaaaaaaaaaaaa receive\n",
                3,
                Problem::Duplicate { first_line: 1 },
            ),
        ];
        for (text, line, problem) in cases {
            assert_eq!(Tokens::parse(text).unwrap_err(), Malformed { line, problem }, "{text:?}");
        }
        let message = Tokens::parse("x\nshort-token send\n").unwrap_err().to_string();
        assert_eq!(message, "line 1: no scopes; expected TOKEN send,receive,stats");
        let message = Tokens::parse("short-token send\n").unwrap_err().to_string();
        assert_eq!(message, "line 1: token of 11 characters; at least 16 are required");
        assert!(!message.contains("short-token"), "a token is never shown");
        assert_eq!(Tokens::parse("# only comments\n\n   # indented\n").unwrap().len(), 0);
        let hash = Tokens::parse("abc#defghijklmnopq send # phone\n").unwrap();
        assert_eq!(hash.check(Some(b"Bearer abc#defghijklmnopq"), Scope::Send), Ok(()));
    }

    #[test]
    fn same_secret_compares_whole_values() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
        assert!(same_secret(b"", b""));
        // A prefix padded with the zero bytes the walk pads with is still different.
        assert!(!same_secret(b"ab", b"ab\0"));
    }

    #[test]
    fn comparison_walks_every_byte_whatever_the_inputs() {
        let secret = b"0123456789abcdef0123";
        let cases: [(&[u8], usize); 6] = [
            (b"0123456789abcdef0123", 20),    // equal
            (b"x123456789abcdef0123", 20),    // differs at the first byte
            (b"0123456789abcdef012x", 20),    // differs at the last byte
            (b"0", 20),                       // shorter
            (b"", 20),                        // empty
            (b"0123456789abcdef0123456", 23), // longer
        ];
        for (other, walked) in cases {
            assert_eq!(compare(secret, other).1, walked, "{other:?}");
            assert_eq!(compare(other, secret).1, walked, "{other:?}");
        }
    }

    #[test]
    fn challenges() {
        assert_eq!(Denied::Missing.challenge(), "Bearer realm=\"handoff\"");
        assert!(Denied::Unknown.challenge().contains("invalid_token"));
        assert!(Denied::Scope(Scope::Stats).challenge().ends_with("scope=\"stats\""));
        assert_eq!(Denied::Scope(Scope::Send).status(), 403);
        assert_eq!(Denied::Unknown.status(), 401);
    }

    #[test]
    fn store_reloads_only_a_valid_file() {
        let dir = std::env::temp_dir().join(format!("handoff-auth-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&format!("{A} send\n"), 0o600);
        let store = TokenStore::open(&path).unwrap();
        assert_eq!(store.current().len(), 1);
        write(&format!("{A} send\n{B} stats\n"), 0o640);
        assert_eq!(store.reload().unwrap(), 2);
        write(&format!("{A} send\n{A} stats\n"), 0o600);
        let err = store.reload().unwrap_err().to_string();
        assert!(err.contains("line 2: the same token as line 1"), "{err}");
        assert_eq!(store.current().len(), 2, "the old tokens stay in force");
        write(&format!("{A} send\n"), 0o644);
        let err = store.reload().unwrap_err().to_string();
        assert!(err.contains("mode 0644") && err.contains("chmod 600"), "{err}");
        assert_eq!(store.current().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(store.reload().unwrap_err().to_string().starts_with("cannot read token file"));
    }
}
