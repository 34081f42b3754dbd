//! The code's seams stay where README "Design" draws them, read file by file from the sources:
//! every file of `src/` is one node, every path it names (`use` trees and paths written in code,
//! test modules included, re-exports followed to the file that defines the item) is an arrow,
//! and the arrows run one way. [`RANKS`] declares the order: a file may only name files of a
//! lower rank. The checks name what breaks it: a cycle as its whole loop, an upward arrow as
//! its two files and their ranks, a file nobody ranked. One declared exception, [`ONE_TYPE`]:
//! the files over which one type's methods are split are one node.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every file of the relay, bottom up: a file may name only files of a lower rank, so files of
/// one rank do not name each other. A new file takes the lowest rank above everything it names.
const RANKS: &[(u32, &[&str])] = &[
    // Plain values, system calls and time: they name nothing of the crate.
    (0, &["action", "http", "identity", "inline", "limits::rate", "payload", "refused"]),
    (0, &["registry::conns", "spare", "sys", "testutil", "wheel"]),
    // Threads, fed through mailboxes and woken through the system's event counters.
    (1, &["threads"]),
    // Values made of them: a message's payload as a response, an answer or a state file's record.
    (1, &["persist::records", "registry::answer", "response"]),
    // Pure computations over them: parsing, the reply writer, the configuration, the budget.
    (1, &["auth", "config", "http::chunked", "http::parse", "http::writer", "limits::connections"]),
    (1, &["limits::memory", "logging", "query"]),
    (2, &["persist::format", "routes"]),
    (2, &["cors", "http::reader", "limits", "registry::burned", "registry::held"]),
    // The registry (with the files of its type, ONE_TYPE), then what reads it.
    (3, &["http::exchange", "registry"]),
    (4, &["bench_scale", "http::gate", "metrics", "registry::charges"]),
    (5, &["http::conn", "http::render", "persist::journal"]),
    (6, &["http::inbound", "persist"]),
    (7, &["http::outbox", "registry::tests"]),
    // The I/O loops, and the process that starts them.
    (8, &["http::registry_thread", "http::shared"]),
    (9, &["http::worker"]),
    (10, &["http::server"]),
    (11, &["main"]),
];

/// Files that hold the methods of one type, defined in the first: `impl Registry` blocks for each
/// channel kind, for the snapshot and for the journal's changes, beside `registry/mod.rs`,
/// which defines `Registry` and hands each event to them. They name each other both ways by
/// construction (the type's fields are the channels' state), so they are one node, named by the
/// first file; every other file of the registry is a file of its own.
const ONE_TYPE: &[&[&str]] = &[&[
    "registry",
    "registry::link",
    "registry::inbox",
    "registry::sync",
    "registry::mcast",
    "registry::changes",
    "registry::snapshot",
]];

/// The node `file` is part of: its own, or its group's in [`ONE_TYPE`].
fn node(file: &str) -> String {
    ONE_TYPE.iter().find(|group| group.contains(&file)).map_or(file, |group| group[0]).to_string()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The module path of a file of the relay's crate: `src/http/outbox.rs` → `http::outbox`,
/// `src/registry/mod.rs` → `registry`, `src/main.rs` → `main` (the crate root). The bench tool
/// under `src/bin/` is another crate and not part of this graph.
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).ok()?;
    let mut parts: Vec<String> =
        relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if parts.first().is_some_and(|first| first == "bin") {
        return None;
    }
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    if parts.is_empty() {
        parts.push("main".to_string());
    }
    Some(parts.join("::"))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a source file with comments, string and character literals blanked out, so that
/// a path in a doc comment or a message is not taken for an import.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && is_raw_string(&chars, i) {
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            i += 2 + hashes;
            while i < chars.len() {
                if chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|&h| h == '#') {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `at` opens a raw string (`r"`, `r#"`) rather than ends a name (`for"`).
fn is_raw_string(chars: &[char], at: usize) -> bool {
    let starts_a_token = at == 0 || !(chars[at - 1].is_alphanumeric() || chars[at - 1] == '_');
    let hashes = chars[at + 1..].iter().take_while(|&&h| h == '#').count();
    starts_a_token && chars.get(at + 1 + hashes) == Some(&'"')
}

/// A token of the code: a name, `::`, or one punctuation character.
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".to_string());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

/// One file as read: its module path, the paths it names (absolute, from the crate root, as
/// written after resolving `crate`, `super`, `self` and child modules), and what it re-exports.
struct File {
    module: String,
    named: Vec<Vec<String>>,
    /// `pub use` names: the name as seen from outside → the absolute path it stands for.
    reexports: BTreeMap<String, Vec<String>>,
}

/// The modules the crate has, to tell `registry::Foo` (a child module's item) from
/// `log::info` (another crate's).
fn read_file(file: &Path, modules: &BTreeSet<String>) -> File {
    let module = module_of(file).expect("a file of the relay's crate");
    let text = fs::read_to_string(file).expect("read a source file");
    let tokens = tokens(&code_only(&text));
    let own: Vec<String> = if module == "main" {
        Vec::new()
    } else {
        module.split("::").map(str::to_string).collect()
    };
    let mut read = File { module: module.clone(), named: Vec::new(), reexports: BTreeMap::new() };
    // The inline modules (`mod tests { … }`) the reading is in, with the brace depth each opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let scope: Vec<String> =
            own.iter().cloned().chain(inline.iter().map(|(name, _)| name.clone())).collect();
        match tokens[i].as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if inline.last().is_some_and(|(_, at)| *at == depth) {
                    inline.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t == "{") => {
                inline.push((tokens[i + 1].clone(), depth));
                depth += 1;
                i += 3;
                continue;
            }
            "use" => {
                let public = i > 0 && (tokens[i - 1] == "pub" || tokens[i - 1] == ")");
                let end =
                    tokens[i..].iter().position(|t| t == ";").map_or(tokens.len(), |at| i + at);
                let mut paths = Vec::new();
                use_tree(&tokens[i + 1..end], &[], &mut paths);
                for (path, alias) in paths {
                    if let Some(absolute) = resolve_start(&path, &scope, modules) {
                        if public && inline.is_empty() {
                            read.reexports.insert(alias, absolute.clone());
                        }
                        read.named.push(absolute);
                    }
                }
                i = end + 1;
                continue;
            }
            _ => {
                let starts_path = i == 0 || tokens[i - 1] != "::";
                if starts_path && tokens.get(i + 1).is_some_and(|t| t == "::") {
                    let mut path = vec![tokens[i].clone()];
                    let mut j = i + 1;
                    while tokens.get(j).is_some_and(|t| t == "::")
                        && tokens.get(j + 1).is_some_and(|t| is_name(t))
                    {
                        path.push(tokens[j + 1].clone());
                        j += 2;
                    }
                    if let Some(absolute) = resolve_start(&path, &scope, modules) {
                        read.named.push(absolute);
                    }
                    i = j;
                    continue;
                }
            }
        }
        i += 1;
    }
    read
}

fn is_name(token: &str) -> bool {
    token.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// The paths of a `use` tree (the tokens between `use` and `;`), each with the name it binds.
fn use_tree(tokens: &[String], prefix: &[String], out: &mut Vec<(Vec<String>, String)>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].as_str() {
            "::" => i += 1,
            "{" => {
                let close = matching_brace(tokens, i);
                for item in split_top_level(&tokens[i + 1..close]) {
                    use_tree(item, &path, out);
                }
                return;
            }
            "as" => {
                let alias = tokens.get(i + 1).cloned().unwrap_or_default();
                out.push((path, alias));
                return;
            }
            "*" => {
                out.push((path, "*".to_string()));
                return;
            }
            name => {
                path.push(name.to_string());
                i += 1;
            }
        }
    }
    if let Some(last) = path.last().cloned() {
        let bound = if last == "self" {
            path.pop();
            path.last().cloned().unwrap_or_default()
        } else {
            last
        };
        out.push((path, bound));
    }
}

fn matching_brace(tokens: &[String], open: usize) -> usize {
    let mut depth = 0;
    for (at, token) in tokens.iter().enumerate().skip(open) {
        match token.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return at;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

fn split_top_level(tokens: &[String]) -> Vec<&[String]> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (at, token) in tokens.iter().enumerate() {
        match token.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            "," if depth == 0 => {
                items.push(&tokens[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&tokens[start..]);
    items.into_iter().filter(|item| !item.is_empty()).collect()
}

/// A written path made absolute: `crate::x` from the root, `super::`/`self::` from the scope,
/// a first name that is a child module of the scope from there; `None` for another crate's
/// path (`std::…`, `log::…`) or a local name.
fn resolve_start(
    path: &[String],
    scope: &[String],
    modules: &BTreeSet<String>,
) -> Option<Vec<String>> {
    let mut at: Vec<String> = scope.to_vec();
    let mut rest = path;
    match rest.first()?.as_str() {
        "crate" => {
            at.clear();
            rest = &rest[1..];
        }
        "self" => rest = &rest[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                at.pop();
                rest = &rest[1..];
            }
        }
        first => {
            let mut child = at.clone();
            child.push(first.to_string());
            if !modules.contains(&child.join("::")) {
                return None;
            }
        }
    }
    at.extend(rest.iter().cloned());
    Some(at)
}

/// The file an absolute path lands in: its longest prefix that is a file, then through that
/// file's re-exports, if the next name is one.
fn target(path: &[String], files: &BTreeMap<String, File>) -> String {
    let mut path = path.to_vec();
    for _ in 0..8 {
        let (module, rest) = (0..=path.len())
            .rev()
            .map(|n| (if n == 0 { "main".to_string() } else { path[..n].join("::") }, &path[n..]))
            .find(|(module, _)| files.contains_key(module))
            .expect("the root is a file");
        let Some(next) = rest.first() else { return module };
        match files[&module].reexports.get(next) {
            Some(to) if to.len() < path.len() || to[..] != path[..] => {
                let mut through = to.clone();
                through.extend(rest[1..].iter().cloned());
                path = through;
            }
            _ => return module,
        }
    }
    path.join("::")
}

/// Each node (a file, or a group of [`ONE_TYPE`]) → the nodes it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut nodes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, named) in file_graph() {
        let from = node(&file);
        let to: BTreeSet<String> = named.iter().map(|n| node(n)).filter(|n| *n != from).collect();
        nodes.entry(from).or_default().extend(to);
    }
    nodes
}

/// Each file → the files it names.
fn file_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut paths = Vec::new();
    sources(&src(), &mut paths);
    let modules: BTreeSet<String> = paths.iter().filter_map(|p| module_of(p)).collect();
    let files: BTreeMap<String, File> = paths
        .iter()
        .filter(|p| module_of(p).is_some())
        .map(|p| read_file(p, &modules))
        .map(|file| (file.module.clone(), file))
        .collect();
    files
        .values()
        .map(|file| {
            let named = file
                .named
                .iter()
                .map(|path| target(path, &files))
                .filter(|to| *to != file.module)
                .collect();
            (file.module.clone(), named)
        })
        .collect()
}

/// A cycle of the graph, as the files around it (the first repeated at the end), if it has one.
fn a_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Open);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|n| n == next).expect("on the stack");
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, marks, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node) {
            if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

fn ranks() -> BTreeMap<&'static str, u32> {
    let mut ranks = BTreeMap::new();
    for (rank, files) in RANKS {
        for file in *files {
            assert!(ranks.insert(*file, *rank).is_none(), "{file} is ranked twice in RANKS");
        }
    }
    ranks
}

#[test]
fn no_file_is_part_of_a_cycle() {
    if let Some(cycle) = a_cycle(&graph()) {
        panic!("an import cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn every_file_has_a_rank_and_names_only_lower_ones() {
    let ranks = ranks();
    let graph = graph();
    let mut wrong = Vec::new();
    for (file, named) in &graph {
        let Some(&rank) = ranks.get(file.as_str()) else {
            wrong.push(format!("{file} has no rank: add it to RANKS in tests/layers.rs"));
            continue;
        };
        for other in named {
            let theirs = ranks.get(other.as_str()).copied().unwrap_or(u32::MAX);
            if theirs >= rank {
                wrong.push(format!("{file} (rank {rank}) names {other} (rank {theirs})"));
            }
        }
    }
    for ranked in ranks.keys() {
        if !graph.contains_key(*ranked) {
            wrong.push(format!("RANKS names {ranked}, which is no file of src/"));
        }
    }
    assert!(wrong.is_empty(), "the layers are broken:\n  {}", wrong.join("\n  "));
}

#[test]
fn the_registry_names_nothing_of_the_http_side() {
    for (file, named) in graph() {
        if file == "registry" || file.starts_with("registry::") {
            let http: Vec<_> =
                named.iter().filter(|n| *n == "http" || n.starts_with("http::")).collect();
            assert!(http.is_empty(), "{file} names {http:?}");
        }
    }
}

#[test]
fn policy_names_nothing_of_the_registry() {
    let graph = graph();
    for policy in ["auth", "limits", "routes", "identity", "cors", "action", "refused"] {
        for (file, named) in &graph {
            if file == policy || file.starts_with(&format!("{policy}::")) {
                let registry: Vec<_> = named
                    .iter()
                    .filter(|n| *n == "registry" || n.starts_with("registry::"))
                    .collect();
                assert!(registry.is_empty(), "{file} names {registry:?}");
            }
        }
    }
}

#[test]
fn the_reading_sees_what_rust_sees() {
    let modules: BTreeSet<String> =
        ["main", "http", "http::conn", "http::outbox", "registry"].map(String::from).into();
    let scope = ["http".to_string(), "outbox".to_string()];
    let code = code_only(
        "use super::conn::{self, Connection as C};\n// use crate::registry;\n\
         let s = \"crate::registry::X\"; let c = 'a'; fn f<'a>() {}\n\
         crate::registry::Registry::new();\nmod tests { use super::*; }",
    );
    assert!(!code.contains("registry::X") && code.contains("'a>"), "{code}");
    let mut paths = Vec::new();
    use_tree(&tokens("super::conn::{self, Connection as C}"), &[], &mut paths);
    let resolved: Vec<_> =
        paths.iter().filter_map(|(p, _)| resolve_start(p, &scope, &modules)).collect();
    assert_eq!(resolved, [vec!["http", "conn"], vec!["http", "conn", "Connection"]]);
    assert_eq!(paths[1].1, "C");
    assert_eq!(resolve_start(&["log".into(), "info".into()], &scope, &modules), None);
}
