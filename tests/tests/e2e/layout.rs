//! The workspace's boundaries: the production library compiles in neither
//! the gateway simulator nor the payload corpus, and the simulator keeps its
//! own reading of Discord's rules instead of importing the bridge's.

use std::path::{Path, PathBuf};

use discord_bridge_e2e::workspace::root;

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&root().join(dir), &mut files);
    assert!(!files.is_empty(), "{dir} has Rust sources");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            (p, text)
        })
        .collect()
}

/// The lines of one `[section]` of a manifest.
fn section<'a>(manifest: &'a str, name: &str) -> Vec<&'a str> {
    manifest
        .lines()
        .skip_while(|l| l.trim() != name)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .collect()
}

#[test]
fn the_bridge_embeds_no_fixtures() {
    for (path, text) in sources("bridge/src") {
        let embeds = text.contains("include_str!") || text.contains("include_bytes!");
        assert!(
            !(embeds && text.contains("fixtures")),
            "{path:?} embeds fixtures into the bridge"
        );
    }
}

#[test]
fn the_simulator_is_only_in_the_demo_feature_of_the_bridge() {
    let manifest = read("bridge/Cargo.toml");
    let dependency: Vec<&str> = section(&manifest, "[dependencies]")
        .into_iter()
        .filter(|l| l.starts_with("discord-gateway-sim"))
        .collect();
    assert_eq!(dependency.len(), 1, "{dependency:?}");
    assert!(dependency[0].contains("optional = true"), "{dependency:?}");
    let demo = section(&manifest, "[features]")
        .into_iter()
        .find(|l| l.starts_with("demo ="))
        .expect("a demo feature");
    assert!(demo.contains("\"dep:discord-gateway-sim\""), "{demo}");
    let default = section(&manifest, "[features]")
        .into_iter()
        .find(|l| l.starts_with("default ="))
        .expect("default features");
    assert!(!default.contains("discord-gateway-sim"), "{default}");
}

#[test]
fn the_simulator_does_not_depend_on_the_bridge() {
    let manifest = read("sim/Cargo.toml");
    let dependencies = section(&manifest, "[dependencies]");
    assert!(!dependencies.is_empty());
    assert!(
        dependencies
            .iter()
            .all(|l| !l.starts_with("discord-bridge")),
        "{dependencies:?}"
    );
    for (path, text) in sources("sim/src") {
        assert!(
            !text.contains("discord_bridge"),
            "{path:?} uses the bridge: the simulator keeps its own Discord rules"
        );
    }
}
