//! The repository's references to its documents stay followable: nothing cites the old external
//! document by section (`SPEC` and a `§`); every `protocol §N` (or `§N.M`) names a section of
//! `docs/protocol.md`; every section cited by name (`README "Limits"`, `BENCHMARKS.md, "Soak"`,
//! the README's *State file* section) and every link to a heading (`docs/testing.md#lintian`)
//! names a section the document has. Walks the files of the repository (build output and
//! installed packages aside); a failure names the file, the line and the missing section.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::anchor;

/// Directories that hold no file of the project's own.
const SKIPPED: &[&str] = &[".git", "target", "node_modules", "corpus", "artifacts"];

/// The citation of the document that used to live outside the repository; built from parts so
/// that this file does not match itself.
const OLD_CITATION: &str = concat!("SPEC", " §");

/// How code and docs cite `docs/protocol.md` (the second form is the README's link text); built
/// from parts, as [`OLD_CITATION`].
const CITATIONS: &[&str] = &[concat!("protocol", " §"), concat!("protocol.md", " §")];

/// The documents cited by section name: how a citation names each, and its path. A name is
/// found as a word, with or without `.md` where it has none, so `docs/testing.md` and
/// `../README.md` are found too.
const DOCUMENTS: &[(&str, &str)] = &[
    ("README", "README.md"),
    ("BENCHMARKS", "BENCHMARKS.md"),
    ("testing.md", "docs/testing.md"),
    ("cluster.md", "docs/cluster.md"),
    ("protocol.md", "docs/protocol.md"),
];

/// What may stand between a document's name and the quoted section title, longest first:
/// `README "Limits"`, `BENCHMARKS.md, "Soak"`, `BENCHMARKS.md ("Soak")`, `README's *State file*`.
const SEPARATORS: &[&str] = &[", \"", " (\"", " \"", " *"];

/// How many lines a title may run on over (a citation wrapped with its comment).
const TITLE_LINES: usize = 3;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, skipping [`SKIPPED`] directories.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            if !SKIPPED.iter().any(|s| entry.file_name() == *s) {
                files(&path, out);
            }
        } else if kind.is_file() {
            out.push(path);
        }
    }
}

/// The section numbers `docs/protocol.md` has: `2` for `## 2. Title`, `2.1` for `### 2.1 Title`.
fn sections() -> Vec<String> {
    let doc = fs::read_to_string(root().join("docs/protocol.md")).expect("docs/protocol.md");
    headings(&doc)
        .iter()
        .filter_map(|title| title.split_once(' '))
        .map(|(number, _)| number.trim_end_matches('.'))
        .filter(|number| !number.is_empty() && number.split('.').all(is_number))
        .map(str::to_string)
        .collect()
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// The section numbers cited right after `§` in `text`: `§4`, `§4.3`, `§4, §7`, `§1–§3`,
/// `§2; §3`. A sentence's full stop after a number is not a subsection.
fn cited(text: &str) -> Vec<String> {
    let mut numbers = Vec::new();
    let mut rest = text;
    loop {
        let digits = |s: &str| s.chars().take_while(char::is_ascii_digit).count();
        let mut len = digits(rest);
        if len == 0 {
            return numbers;
        }
        if let Some(after) = rest[len..].strip_prefix('.') {
            let more = digits(after);
            if more > 0 {
                len += 1 + more;
            }
        }
        numbers.push(rest[..len].to_string());
        rest = &rest[len..];
        let next = [", §", "–§", "; §"].iter().find_map(|sep| rest.strip_prefix(sep));
        match next {
            Some(after) => rest = after,
            None => return numbers,
        }
    }
}

/// Each `path:line: text` where `text` holds a citation that fails `check`.
fn offending(check: impl Fn(&str) -> bool) -> Vec<String> {
    let root = root();
    let mut found = Vec::new();
    for (path, text) in &project_files() {
        for (n, line) in text.lines().enumerate() {
            if !check(line) {
                let shown = path.strip_prefix(&root).unwrap_or(path).display();
                found.push(format!("{shown}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

/// Every file of the project with its text (bytes that are not UTF-8 replaced).
fn project_files() -> Vec<(PathBuf, String)> {
    let mut all = Vec::new();
    files(&root(), &mut all);
    all.sort();
    all.into_iter()
        .filter_map(|path| {
            let bytes = fs::read(&path).ok()?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            Some((path, text))
        })
        .collect()
}

/// The titles of a Markdown document's headings (`## Title` → `Title`), outside code blocks.
fn headings(doc: &str) -> Vec<String> {
    let mut in_code = false;
    let mut titles = Vec::new();
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let hashes = line.bytes().take_while(|&b| b == b'#').count();
        if !in_code && (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            titles.push(line[hashes..].trim().to_string());
        }
    }
    titles
}

/// The sections a document can be cited by: its headings, and its paragraphs that open with a
/// bold title (`**State file.** With ...` → `State file`).
fn section_titles(doc: &str) -> Vec<String> {
    let mut titles = headings(doc);
    for line in doc.lines() {
        let Some(rest) = line.strip_prefix("**") else { continue };
        if let Some((title, _)) = rest.split_once("**") {
            titles.push(title.trim_end_matches(['.', ':']).to_string());
        }
    }
    titles
}

/// Whether `cited` names `title`: the same words (case aside), or the title without what
/// follows it in parentheses or after a colon (`The state file` for `The state file
/// (`tests/state.rs`)`).
fn names(cited: &str, title: &str) -> bool {
    let (cited, title) = (cited.to_lowercase(), title.to_lowercase());
    cited == title
        || title
            .strip_prefix(&cited)
            .is_some_and(|rest| rest.starts_with(" (") || rest.starts_with(':'))
}

/// A line with the comment markers that may open it taken away (for a title that wraps).
fn uncommented(line: &str) -> &str {
    let line = line.trim_start();
    let line = ["//!", "///", "//", "#", "*", "<!--"]
        .iter()
        .find_map(|marker| line.strip_prefix(marker))
        .unwrap_or(line);
    line.trim()
}

/// The sections cited by name from `lines[at]` on, each as (the document's path, the title):
/// a document's name as a word, then one of [`SEPARATORS`] and a title up to its closing quote or
/// `*`, which may come up to [`TITLE_LINES`] lines later. JSON's `\"` counts as a quote.
fn named_citations(lines: &[&str], at: usize) -> Vec<(&'static str, String)> {
    let line = lines[at].replace("\\\"", "\"");
    let mut found = Vec::new();
    for &(name, path) in DOCUMENTS {
        for (start, _) in line.match_indices(name) {
            let before = line[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut rest = &line[start + name.len()..];
            rest = rest.strip_prefix(".md").unwrap_or(rest);
            rest = rest.strip_prefix("'s").unwrap_or(rest);
            let Some(sep) = SEPARATORS.iter().find(|sep| rest.starts_with(**sep)) else {
                continue;
            };
            let quote = sep.chars().next_back().expect("a separator ends with its quote");
            let mut title = rest[sep.len()..].to_string();
            let mut next = at + 1;
            while !title.contains(quote) && next < lines.len() && next <= at + TITLE_LINES {
                title = format!("{title} {}", uncommented(&lines[next].replace("\\\"", "\"")));
                next += 1;
            }
            if let Some((title, _)) = title.split_once(quote) {
                found.push((path, title.trim().to_string()));
            }
        }
    }
    found
}

/// The links of a Markdown line to a heading, each as (the target's path from the root, the
/// anchor): `[text](#anchor)` in `file` itself, `[text](docs/testing.md#lintian)` relative to it.
fn anchored_links(file: &Path, line: &str) -> Vec<(PathBuf, String)> {
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut found = Vec::new();
    for (start, _) in line.match_indices("](") {
        let target = &line[start + 2..];
        let Some(end) = target.find(')') else { continue };
        let Some((path, anchor)) = target[..end].split_once('#') else { continue };
        if path.contains("://") || !(path.is_empty() || path.ends_with(".md")) {
            continue;
        }
        let target = if path.is_empty() { file.to_path_buf() } else { dir.join(path) };
        found.push((target, anchor.to_string()));
    }
    found
}

/// Whether the Markdown document `doc` has a heading whose anchor is `wanted` (a repeated
/// heading's later anchors end in `-1`, `-2`, ...).
fn has_anchor(doc: &str, wanted: &str) -> bool {
    let anchors: Vec<String> = headings(doc).iter().map(|title| anchor(title)).collect();
    anchors.iter().any(|a| a == wanted)
        || wanted.rsplit_once('-').is_some_and(|(base, n)| {
            is_number(n) && anchors.iter().filter(|a| *a == base).count() > n.parse().unwrap_or(0)
        })
}

/// How many named sections and heading links the project has, and those whose document does
/// not have them, as `path:line: ...`.
fn missing_sections() -> (usize, Vec<String>) {
    let root = root();
    let read = |path: &Path| fs::read_to_string(path).ok();
    let documents: Vec<(&str, Vec<String>)> = DOCUMENTS
        .iter()
        .map(|&(_, path)| {
            let doc = read(&root.join(path)).unwrap_or_else(|| panic!("cannot read {path}"));
            (path, section_titles(&doc))
        })
        .collect();
    let this_file = root.join("tests/docs.rs");
    let (mut checked, mut missing) = (0, Vec::new());
    for (file, text) in project_files().iter().filter(|(path, _)| *path != this_file) {
        let shown = file.strip_prefix(&root).unwrap_or(file).display();
        let lines: Vec<&str> = text.lines().collect();
        let markdown = file.extension().is_some_and(|e| e == "md");
        for at in 0..lines.len() {
            for (path, title) in named_citations(&lines, at) {
                checked += 1;
                let (_, titles) = documents.iter().find(|(p, _)| *p == path).expect("listed");
                if !titles.iter().any(|t| names(&title, t)) {
                    missing.push(format!("{shown}:{}: {path} has no section {title:?}", at + 1));
                }
            }
            if !markdown {
                continue;
            }
            for (target, anchor) in anchored_links(file, lines[at]) {
                checked += 1;
                let target_shown = target.strip_prefix(&root).unwrap_or(&target).display();
                match read(&target) {
                    Some(doc) if has_anchor(&doc, &anchor) => {}
                    Some(_) => missing.push(format!(
                        "{shown}:{}: {target_shown} has no heading for #{anchor}",
                        at + 1
                    )),
                    None => missing.push(format!("{shown}:{}: no file {target_shown}", at + 1)),
                }
            }
        }
    }
    (checked, missing)
}

#[test]
fn nothing_cites_the_external_spec() {
    let found = offending(|line| !line.contains(OLD_CITATION));
    assert!(
        found.is_empty(),
        "cite docs/protocol.md as `protocol §N` instead of {OLD_CITATION:?}:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_protocol_citation_names_a_section() {
    let sections = sections();
    assert!(
        sections.iter().filter(|s| !s.contains('.')).count() >= 9,
        "docs/protocol.md has numbered sections {sections:?}"
    );
    let valid = |line: &str| {
        CITATIONS.iter().all(|marker| {
            line.match_indices(marker).all(|(at, _)| {
                let rest = &line[at + marker.len()..];
                // `§N` is the placeholder, in sentences that explain the form.
                let numbers = cited(rest);
                rest.starts_with('N')
                    || !numbers.is_empty() && numbers.iter().all(|n| sections.contains(n))
            })
        })
    };
    let found = offending(valid);
    assert!(found.is_empty(), "no such section in docs/protocol.md:\n{}", found.join("\n"));
}

#[test]
fn every_section_cited_by_name_exists() {
    let (checked, missing) = missing_sections();
    println!("{checked} sections cited by name or linked");
    assert!(checked >= 50, "only {checked} citations found: is the parser still reading them?");
    assert!(
        missing.is_empty(),
        "cited sections that do not exist (rename the citation, or the heading):\n{}",
        missing.join("\n")
    );
}

#[test]
fn citations_are_read_in_every_form() {
    assert_eq!(cited("4)"), ["4"]);
    assert_eq!(cited("4.3)."), ["4.3"]);
    assert_eq!(cited("4. Then"), ["4"]);
    assert_eq!(cited("4, §7)."), ["4", "7"]);
    assert_eq!(cited("1–§3),"), ["1", "3"]);
    assert!(cited("N`.").is_empty());

    let titles = |text: &str| {
        let lines: Vec<&str> = text.lines().collect();
        named_citations(&lines, 0)
            .into_iter()
            .map(|(path, title)| format!("{path}: {title}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(titles(r#"(README "Design")"#), ["README.md: Design"]);
    assert_eq!(titles(r#"BENCHMARKS.md, "Soak"."#), ["BENCHMARKS.md: Soak"]);
    assert_eq!(titles(r#"BENCHMARKS.md ("Soak") has"#), ["BENCHMARKS.md: Soak"]);
    assert_eq!(titles("The README's *State file* section"), ["README.md: State file"]);
    assert_eq!(
        titles(r#"see docs/testing.md "The state file"."#),
        ["docs/testing.md: The state file"]
    );
    assert_eq!(
        titles(r#""description": "a row (README \"Monitoring\")."#),
        ["README.md: Monitoring"]
    );
    assert_eq!(
        titles("//! (BENCHMARKS.md, \"What one\n//! parked receiver\") more"),
        ["BENCHMARKS.md: What one parked receiver"]
    );
    assert!(titles(r#"root().join("README.md")"#).is_empty());
    assert!(titles("the README says so").is_empty());

    assert!(names("The state file", "The state file (`tests/state.rs`)"));
    assert!(names("memory per parked receiver", "Memory per parked receiver"));
    assert!(!names("The state", "The state file's writes"));
    assert_eq!(
        anchor("Debian and Raspberry Pi OS: the `.deb`"),
        "debian-and-raspberry-pi-os-the-deb"
    );
    assert_eq!(anchor("The floor of a C = 1 hand-off"), "the-floor-of-a-c--1-hand-off");
    assert_eq!(
        section_titles("**State file.** With it\n```\n# not a heading\n```\n## 7. Signals"),
        ["7. Signals", "State file"]
    );
}
