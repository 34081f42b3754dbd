//! The code's seams stay where README "Design" draws them: the registry speaks no HTTP, policy
//! (`auth.rs`, `limits.rs`, `routes.rs`, `identity.rs`) does not reach into the registry, and no
//! two modules import each other. Read from the `use crate::` lines of `src/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/http/read.rs` → `http`, `src/auth.rs` → `auth`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file under src/");
    let first = relative.components().next().expect("a path").as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Top-level modules each module imports with `use crate::…` (or names as `crate::…::`),
/// test code included.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let used = graph.entry(module.clone()).or_default();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let name: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                used.insert(name);
            }
        }
    }
    graph
}

#[test]
fn the_registry_imports_nothing_from_the_http_side() {
    let graph = imports();
    assert!(!graph["registry"].contains("http"), "registry imports: {:?}", graph["registry"]);
}

#[test]
fn policy_does_not_import_the_registry() {
    let graph = imports();
    for policy in ["auth", "limits", "routes", "identity", "cors", "action", "refused"] {
        let used = graph.get(policy).cloned().unwrap_or_default();
        assert!(!used.contains("registry"), "{policy} imports the registry: {used:?}");
    }
}

#[test]
fn no_two_modules_import_each_other() {
    let graph = imports();
    for (module, used) in &graph {
        for other in used {
            let back = graph.get(other).is_some_and(|theirs| theirs.contains(module));
            assert!(!back, "{module} and {other} import each other");
        }
    }
}
