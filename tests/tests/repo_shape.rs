#![allow(clippy::unwrap_used)]
//! The repository's own rules, checked so they stay true: every `file:item` reference in
//! docs/ARCHITECTURE.md names a file that defines the item, no source file passes 1,000 lines, and
//! the README stays a short door.

use std::path::{Path, PathBuf};

use tests::workspace_root;

/// Where a short reference (`proxy.rs:dispatch`) may live: the document names the crate once and
/// then only the file.
const ROOTS: &[&str] = &[
    "",
    "router/src/",
    "node/src/",
    "protocol/src/",
    "client/src/",
    "src/",
    "tests/src/",
];

fn defines(file: &Path, item: &str) -> bool {
    let Ok(src) = std::fs::read_to_string(file) else {
        return false;
    };
    let name = item.rsplit("::").next().unwrap_or(item);
    let word = |s: &str, at: usize| {
        let end = at + name.len();
        s[end..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_')
    };
    let kinds = [
        "fn", "struct", "enum", "const", "static", "type", "trait", "mod", "impl", "for", "pub",
    ];
    src.match_indices(name).any(|(at, _)| {
        let before = src[..at].trim_end_matches(['<', '&']).trim_end();
        word(&src, at) && kinds.iter().any(|k| before.ends_with(k))
    })
}

#[test]
fn architecture_references_resolve() {
    let root = workspace_root();
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let mut refs = 0;
    let mut unresolved = Vec::new();
    for (start, _) in doc.match_indices('`') {
        let rest = &doc[start + 1..];
        let Some(end) = rest.find('`') else { break };
        let text = &rest[..end];
        let Some((file, item)) = text.split_once(".rs:") else {
            continue;
        };
        if file.contains(' ') || item.is_empty() || item.contains(' ') {
            continue;
        }
        refs += 1;
        let file = format!("{file}.rs");
        if !ROOTS
            .iter()
            .any(|r| defines(&root.join(PathBuf::from(format!("{r}{file}"))), item))
        {
            unresolved.push(text.to_string());
        }
    }
    assert!(
        refs > 30,
        "found only {refs} references: did the format change?"
    );
    assert!(
        unresolved.is_empty(),
        "ARCHITECTURE.md names items no file defines: {unresolved:?}"
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if !p.ends_with("target") && !p.ends_with(".git") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_source_file_passes_a_thousand_lines() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "src"))
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).ok()?.lines().count();
            (n > 1000).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(files.len() > 50, "found only {} files", files.len());
    assert!(long.is_empty(), "source files over 1,000 lines: {long:?}");
}

#[test]
fn readme_stays_a_door() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md is {lines} lines (at most 250)");
}
