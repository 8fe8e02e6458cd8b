//! The layering of `src/`, held against the code: every module's imports of other
//! modules of ours must be in its row of [`RULES`], so dependencies point one way:
//!
//! ```text
//! app → http → links → (store, cache, keygen, limits, analytics, stats) → domain
//! ```
//!
//! `config` and `domain` import nothing of ours; `app` (the wiring) is imported by
//! nobody; the store reaches the click pipeline only through its port
//! (`analytics::port`, which the backends implement), and the pipeline never
//! reaches the store. Unit-test modules (`#[cfg(test)] mod tests`) and comments are
//! not production dependencies and are left out. A new module must get a row here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module of `src/` and what it may import of ours ("a::b" allows only that
/// submodule of "a").
const RULES: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("config", &[]),
    ("qr", &[]),
    ("redis", &[]),
    ("telemetry", &["config"]),
    ("analytics", &["domain"]),
    ("store", &["domain", "config", "analytics::port"]),
    ("cache", &["domain", "redis"]),
    ("keygen", &["domain", "store"]),
    ("limits", &["domain", "store", "redis"]),
    ("auth", &["domain", "store"]),
    ("stats", &["domain", "analytics"]),
    ("links", &["domain", "store", "cache", "keygen", "stats"]),
    (
        "http",
        &[
            "domain",
            "config",
            "links",
            "stats",
            "auth",
            "limits",
            "analytics",
            "keygen",
            "store",
            "redis",
            "qr",
            "telemetry",
        ],
    ),
    (
        "app",
        &[
            "domain",
            "config",
            "http",
            "links",
            "stats",
            "auth",
            "limits",
            "analytics",
            "keygen",
            "store",
            "cache",
            "redis",
            "qr",
            "telemetry",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The `.rs` files of a module: `src/name.rs`, or everything under `src/name/`.
fn files_of(module: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{module}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src().join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// The production code of a file: comments dropped, and the unit-test module at the
/// end of the file cut off.
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|l| l.trim_start().starts_with("mod tests"))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every `crate::a` or `crate::a::b` a piece of code names, as "a::b" when `b` is a
/// module of `a` (lower case), else "a". `use crate::{a, b::c}` groups count too.
fn imports(code: &str) -> BTreeSet<String> {
    paths_after(code, "crate::")
}

/// Every path a piece of code names after `prefix` (`crate::`, `super::`), read as
/// [`imports`] reads them.
fn paths_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut from = 0;
    while let Some(i) = code[from..].find(prefix) {
        let at = from + i;
        from = at + prefix.len();
        // The middle of a longer path (`a::super::b`, the second `super::` of two).
        if code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                if let Some(path) = path_of(item.trim()) {
                    found.insert(path);
                }
            }
            continue;
        }
        if let Some(path) = path_of(rest) {
            found.insert(path);
        }
    }
    found
}

fn path_of(text: &str) -> Option<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let first = ident(text);
    if first.is_empty() || first == "self" {
        return None;
    }
    let after = &text[first.len()..];
    if let Some(next) = after.strip_prefix("::") {
        let second = ident(next);
        if !second.is_empty() && second.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
            return Some(format!("{first}::{second}"));
        }
    }
    Some(first)
}

fn top(path: &str) -> &str {
    path.split("::").next().unwrap_or(path)
}

/// What each module imports of the other modules of ours.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (module, _) in RULES {
        let mut used = BTreeSet::new();
        for file in files_of(module) {
            let code = production_code(&std::fs::read_to_string(&file).unwrap());
            used.extend(imports(&code).into_iter().filter(|p| top(p) != *module));
        }
        graph.insert(module.to_string(), used);
    }
    graph
}

#[test]
fn every_module_of_src_has_a_rule() {
    let listed: BTreeSet<&str> = RULES.iter().map(|(m, _)| *m).collect();
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';'))
        .collect();
    assert_eq!(declared, listed, "lib.rs's modules and RULES differ");
}

#[test]
fn imports_follow_the_layering() {
    let rules: BTreeMap<&str, &[&str]> = RULES.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, used) in graph() {
        let allowed = rules[module.as_str()];
        for path in used {
            let ok = allowed.contains(&path.as_str()) || allowed.contains(&top(&path));
            if !ok {
                wrong.push(format!("{module} imports {path}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

/// A cycle of any length through `node`, if there is one: depth-first search for a
/// back edge.
fn visit(
    node: &str,
    edges: &BTreeSet<(String, String)>,
    stack: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(i) = stack.iter().position(|n| n == node) {
        return Some(stack[i..].to_vec());
    }
    if done.contains(node) {
        return None;
    }
    stack.push(node.to_owned());
    for (_, to) in edges.iter().filter(|(from, _)| from == node) {
        if let Some(cycle) = visit(to, edges, stack, done) {
            return Some(cycle);
        }
    }
    stack.pop();
    done.insert(node.to_owned());
    None
}

#[test]
fn no_two_modules_import_each_other_and_nobody_imports_app() {
    let graph = graph();
    let edges: BTreeSet<(String, String)> = graph
        .iter()
        .flat_map(|(m, used)| used.iter().map(move |u| (m.clone(), top(u).to_owned())))
        .collect();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        let cycle = visit(module, &edges, &mut Vec::new(), &mut done);
        assert!(cycle.is_none(), "import cycle: {cycle:?}");
    }
    let importers: Vec<&String> = edges
        .iter()
        .filter(|(_, to)| to == "app")
        .map(|(f, _)| f)
        .collect();
    assert!(importers.is_empty(), "app is imported by {importers:?}");
}

/// Inside a module, its files (but `mod.rs`, which declares and re-exports them)
/// import each other in one direction too: no cycle of any length among them.
#[test]
fn no_import_cycle_among_the_files_of_a_module() {
    for (module, _) in RULES {
        let dir = src().join(module);
        if !dir.is_dir() {
            continue;
        }
        let files: BTreeMap<String, String> = files_of(module)
            .into_iter()
            .filter(|f| f.parent() == Some(dir.as_path()) && !f.ends_with("mod.rs"))
            .map(|f| {
                let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
                (stem, production_code(&std::fs::read_to_string(&f).unwrap()))
            })
            .collect();
        let mut edges = BTreeSet::new();
        for (file, code) in &files {
            let named = paths_after(code, "super::")
                .into_iter()
                .chain(paths_after(code, &format!("crate::{module}::")));
            for path in named {
                let to = top(&path);
                if to != file && files.contains_key(to) {
                    edges.insert((file.clone(), to.to_owned()));
                }
            }
        }
        let mut done = BTreeSet::new();
        for file in files.keys() {
            let cycle = visit(file, &edges, &mut Vec::new(), &mut done);
            assert!(
                cycle.is_none(),
                "import cycle among the files of src/{module}: {cycle:?}"
            );
        }
    }
}

/// The reader this test relies on sees through the shapes imports take.
#[test]
fn the_import_reader_finds_paths_groups_and_skips_tests_and_comments() {
    let code = production_code(
        "use crate::a::b::C;\nuse crate::{d, e::f, g::H};\n// crate::commented\nfn x() { crate::i::j(); }\n\
         #[cfg(test)]\nmod tests {\n    use crate::hidden;\n}\n",
    );
    let found: Vec<String> = imports(&code).into_iter().collect();
    assert_eq!(found, ["a::b", "d", "e::f", "g", "i::j"]);
    let code = "use super::{error::ApiError, extract};\nfn y() { super::super::z(); other::super::w(); }";
    let found: Vec<String> = paths_after(code, "super::").into_iter().collect();
    assert_eq!(found, ["error", "extract", "super::z"]);
}
