//! docs/embedding.md quotes this crate: each block after a
//! `<!-- quote: PATH#NAME -->` line must be exactly the lines between
//! `ANCHOR: NAME` and `ANCHOR_END: NAME` in PATH, and every anchored region
//! must be quoted, so the guide cannot drift from the code CI builds.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The lines between `ANCHOR: name` and `ANCHOR_END: name` in `path`
/// (relative to the repository), other anchor lines left out.
fn region(path: &str, name: &str) -> String {
    let text = std::fs::read_to_string(repository().join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let start = format!("ANCHOR: {name}");
    let end = format!("ANCHOR_END: {name}");
    let mut lines = text.lines();
    assert!(
        lines.any(|l| l.trim_end().ends_with(&start)),
        "{path} has no `{start}`"
    );
    let mut region = Vec::new();
    for line in lines {
        if line.trim_end().ends_with(&end) {
            return region.join("\n");
        }
        if !line.contains("ANCHOR") {
            region.push(line);
        }
    }
    panic!("{path} has no `{end}`");
}

/// Every `(path, name, quoted text)` of the guide.
fn quotes(guide: &str) -> Vec<(String, String, String)> {
    let mut quotes = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        let Some(target) = line
            .strip_prefix("<!-- quote: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let (path, name) = target.split_once('#').expect("PATH#NAME");
        let fence = lines.next().expect("a code block after the quote mark");
        assert!(fence.starts_with("```"), "{target}: no code block");
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        quotes.push((path.to_owned(), name.to_owned(), body.join("\n")));
    }
    quotes
}

/// Every `(path, name)` anchored (a `// ANCHOR: ` or `# ANCHOR: ` line) in
/// this crate's sources and manifest.
fn anchors() -> BTreeSet<(String, String)> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![crate_dir.join("Cargo.toml")];
    for dir in ["src", "tests"] {
        for entry in std::fs::read_dir(crate_dir.join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    let mut anchors = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let relative = file.strip_prefix(repository()).map_or_else(
            |_| {
                format!(
                    "crates/embed-example/{}",
                    file.strip_prefix(crate_dir).unwrap().display()
                )
            },
            |p| p.display().to_string(),
        );
        for line in text.lines() {
            let line = line.trim();
            let name = line
                .strip_prefix("// ANCHOR: ")
                .or_else(|| line.strip_prefix("# ANCHOR: "));
            if let Some(name) = name {
                anchors.insert((relative.clone(), name.to_owned()));
            }
        }
    }
    anchors
}

#[test]
fn every_quote_in_the_guide_is_exactly_the_code_and_every_anchor_is_quoted() {
    let guide = std::fs::read_to_string(repository().join("docs/embedding.md")).unwrap();
    let quotes = quotes(&guide);
    let mut quoted = BTreeSet::new();
    for (path, name, text) in &quotes {
        assert_eq!(
            *text,
            region(path, name),
            "docs/embedding.md's quote of {path}#{name} differs from the code"
        );
        quoted.insert((path.clone(), name.clone()));
    }
    assert_eq!(quoted, anchors(), "anchored regions and quotes differ");
    assert_eq!(quotes.len(), 7);
}
