//! The layering of `shared/src` (ARCHITECTURE.md, "What may depend on what"),
//! checked on the text: every `.rs` file under `src/` is read, the `crate::`
//! paths of its code are collected (`use` trees and inline paths alike;
//! comment lines are skipped, since a doc may say who uses a module), and
//! each path into another top-level module must be one [`LAYERS`] allows.
//! A failure names file, line and path.
//!
//! Modules stay in one crate (every component links the whole of `shared/`
//! anyway); this test is what keeps the folders' dependencies one way.

use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules of `src/`, lowest layer first, each with what it
/// may use: a folder (`store`) or one module of it (`store::kv`). A module
/// may always use itself; nothing may use a module listed after it.
const LAYERS: &[(&str, &[&str])] = &[
    ("tenancy", &[]),
    ("http", &["tenancy"]),
    ("store", &["tenancy", "http"]),
    ("host", &["http", "store::kv"]),
    ("service", &["tenancy", "http", "store", "host"]),
    ("secrets", &["tenancy", "http", "store", "host", "service"]),
    (
        "flows",
        &["tenancy", "http", "store", "host", "service", "secrets"],
    ),
    (
        "messaging",
        &[
            "tenancy", "http", "store", "host", "service", "secrets", "flows",
        ],
    ),
    (
        "testing",
        &[
            "tenancy",
            "http",
            "store",
            "host",
            "service",
            "secrets",
            "flows",
            "messaging",
        ],
    ),
];

/// The crate root's re-exports, and the module each comes from.
const REEXPORTS: &[(&str, &str)] = &[("TenantCtx", "tenancy"), ("ApiError", "http")];

/// The fixtures' module: compiled only for tests and the `testing` feature,
/// so any module's tests (the code from its `#[cfg(test)]` on) may use it.
const TESTING: &str = "testing";

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A path named in code: where it starts (byte offset) and its segments.
struct Named {
    at: usize,
    segments: Vec<String>,
}

/// The paths of the use tree (or plain path) that starts at `at`, just after
/// `crate::` or `super::`: `a::{b, c::d}` gives `a::b` and `a::c::d`.
fn use_tree(text: &[u8], mut at: usize, prefix: &[String], out: &mut Vec<Named>) -> usize {
    let skip_space = |mut at: usize| {
        while at < text.len() && text[at].is_ascii_whitespace() {
            at += 1;
        }
        at
    };
    at = skip_space(at);
    if text.get(at) == Some(&b'{') {
        at += 1;
        loop {
            at = skip_space(at);
            match text.get(at) {
                Some(b'}') => return at + 1,
                Some(b',') => at += 1,
                Some(_) => at = use_tree(text, at, prefix, out),
                None => return at,
            }
        }
    }
    let start = at;
    while at < text.len() && (text[at].is_ascii_alphanumeric() || text[at] == b'_') {
        at += 1;
    }
    let mut segments = prefix.to_vec();
    if at > start {
        segments.push(String::from_utf8_lossy(&text[start..at]).into_owned());
    }
    if text[at..].starts_with(b"::") {
        return use_tree(text, at + 2, &segments, out);
    }
    if !segments.is_empty() {
        out.push(Named {
            at: start,
            segments,
        });
    }
    at
}

/// The file's text with comment lines blanked (newlines kept, so offsets
/// still give line numbers).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("//") {
                String::new()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::` path of `code`, and every chain of `super::` that leaves
/// the file's top-level module: `depth` is how deep the file's module is, one
/// more from `tests_from` on (a file's tests are its inline `mod tests`).
fn crate_paths(code: &str, depth: usize, tests_from: usize) -> (Vec<Named>, Vec<usize>) {
    let bytes = code.as_bytes();
    let mut paths = Vec::new();
    let mut escapes = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("crate::") {
        let at = from + found;
        let before = at.checked_sub(1).map(|i| bytes[i]);
        from = if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$') {
            at + 1
        } else {
            use_tree(bytes, at + "crate::".len(), &[], &mut paths)
        };
    }
    let mut from = 0;
    while let Some(found) = code[from..].find("super::") {
        let at = from + found;
        let mut supers = 0;
        let mut end = at;
        while code[end..].starts_with("super::") {
            supers += 1;
            end += "super::".len();
        }
        if supers >= depth + usize::from(at >= tests_from) {
            escapes.push(at);
        }
        from = end;
    }
    (paths, escapes)
}

fn line_of(code: &str, at: usize) -> usize {
    code[..at].matches('\n').count() + 1
}

#[test]
fn the_table_goes_one_way() {
    for (i, (name, allowed)) in LAYERS.iter().enumerate() {
        for entry in *allowed {
            let module = entry.split("::").next().unwrap();
            let below = LAYERS[..i].iter().any(|(n, _)| *n == module);
            assert!(
                below,
                "{name} may use {entry}, which is not a layer listed before it"
            );
        }
    }
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';'))
        .collect();
    let layers: Vec<&str> = LAYERS.iter().map(|(name, _)| *name).collect();
    assert_eq!(declared, layers, "lib.rs declares the layers in order");
    for entry in fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        assert!(
            name == "lib" || layers.contains(&name.as_str()),
            "src/{} is in no layer: add it to LAYERS",
            path.file_name().unwrap().to_string_lossy()
        );
    }
}

#[test]
fn folders_use_only_the_layers_below_them() {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap();
        let shown = format!("shared/src/{}", relative.display());
        let parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts == ["lib.rs"] {
            continue;
        }
        let own = parts[0].trim_end_matches(".rs");
        let Some((_, allowed)) = LAYERS.iter().find(|(name, _)| *name == own) else {
            broken.push(format!("{shown}: `{own}` is in no layer"));
            continue;
        };
        // How deep the file's module sits: `store/kv.rs` is `store::kv` (2),
        // `store/mod.rs` is `store` (1).
        let depth = parts.len() - usize::from(parts.last().unwrap() == "mod.rs");
        let text = fs::read_to_string(file).unwrap();
        let code = code_of(&text);
        let tests_from = code.find("#[cfg(test)]").unwrap_or(code.len());
        let (paths, escapes) = crate_paths(&code, depth, tests_from);
        for at in escapes {
            broken.push(format!(
                "{shown}:{}: `super::` leaves `{own}`: name other modules with `crate::`",
                line_of(&code, at)
            ));
        }
        for named in paths {
            checked += 1;
            let first = named.segments[0].as_str();
            let module = REEXPORTS
                .iter()
                .find(|(name, _)| *name == first)
                .map_or(first, |(_, from)| *from);
            let second = named.segments.get(1).map(String::as_str);
            let ok = module == own
                || allowed.contains(&module)
                || second.is_some_and(|s| allowed.contains(&format!("{module}::{s}").as_str()))
                || (module == TESTING && named.at >= tests_from);
            if !ok {
                let known = LAYERS.iter().any(|(name, _)| *name == module);
                broken.push(format!(
                    "{shown}:{}: `{own}` uses `crate::{}`{}",
                    line_of(&code, named.at),
                    named.segments.join("::"),
                    if known {
                        format!(", but may use only {allowed:?}")
                    } else {
                        ": no such layer".to_owned()
                    }
                ));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} paths found: is the parser broken?"
    );
    assert!(broken.is_empty(), "\n{}", broken.join("\n"));
}

#[test]
fn the_parser_reads_use_trees() {
    let code = "use crate::store::{kv::{self, Cas}, index};\nlet x = crate::tenancy::ids::Day::of(0);\nsuper::super::x";
    let (paths, escapes) = crate_paths(code, 2, code.len());
    let shown: Vec<String> = paths.iter().map(|p| p.segments.join("::")).collect();
    assert_eq!(
        shown,
        [
            "store::kv::self",
            "store::kv::Cas",
            "store::index",
            "tenancy::ids::Day::of"
        ]
    );
    assert_eq!(line_of(code, paths[3].at), 2);
    assert_eq!(escapes.len(), 1);
    assert_eq!(crate_paths("my_crate::x; $crate::y", 1, 0).0.len(), 0);
    let tests = "#[cfg(test)]\nmod tests {\n    use super::*;\n}";
    assert!(crate_paths(tests, 1, 0).1.is_empty());
}
