//! The repository's references to its contract, `docs/protocol.md`, stay followable: nothing
//! cites the old external document by section (`SPEC` and a `§`), and every `protocol §N`
//! names a section that exists. Walks the files of the repository (build output and installed
//! packages aside).

use std::fs;
use std::path::{Path, PathBuf};

/// Directories that hold no file of the project's own.
const SKIPPED: &[&str] = &[".git", "target", "node_modules", "corpus", "artifacts"];

/// The citation of the document that used to live outside the repository; built from parts so
/// that this file does not match itself.
const OLD_CITATION: &str = concat!("SPEC", " §");

/// How code and docs cite `docs/protocol.md` (the second form is the README's link text); built
/// from parts, as [`OLD_CITATION`].
const CITATIONS: &[&str] = &[concat!("protocol", " §"), concat!("protocol.md", " §")];

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

/// The section numbers `docs/protocol.md` has: its `## N. Title` headings.
fn sections() -> Vec<u32> {
    let doc = fs::read_to_string(root().join("docs/protocol.md")).expect("docs/protocol.md");
    doc.lines()
        .filter_map(|line| line.strip_prefix("## "))
        .filter_map(|title| title.split_once(". "))
        .filter_map(|(number, _)| number.parse().ok())
        .collect()
}

/// The section numbers cited right after `at` in `text`: `§4`, `§4, §7`, `§1–§3`, `§2; §3`.
fn cited(text: &str) -> Vec<u32> {
    let mut numbers = Vec::new();
    let mut rest = text;
    loop {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse() {
            Ok(n) => numbers.push(n),
            Err(_) => return numbers,
        }
        rest = &rest[digits.len()..];
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
    let docs = root.join("docs");
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut found = Vec::new();
    for path in all.iter().filter(|p| !p.starts_with(&docs)) {
        let Ok(bytes) = fs::read(path) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if !check(line) {
                let shown = path.strip_prefix(&root).unwrap_or(path).display();
                found.push(format!("{shown}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
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
    assert!(sections.len() >= 9, "docs/protocol.md has {} numbered sections", sections.len());
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
fn citations_are_read_in_every_form() {
    assert_eq!(cited("4)"), vec![4]);
    assert_eq!(cited("4, §7)."), vec![4, 7]);
    assert_eq!(cited("1–§3),"), vec![1, 3]);
    assert_eq!(cited("N`."), Vec::<u32>::new());
}
