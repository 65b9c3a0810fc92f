//! The configuration loader: the input is the TOML file; any bytes, no
//! panic, and every error names a key or the file.
#![no_main]

use discord_bridge::config::{LoadOptions, keys, load};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fuzz.toml");
    std::fs::write(&path, data).expect("write");
    let env = |_: &str| None;
    let result = load(&LoadOptions {
        file: Some(path),
        env: &env,
        base_dir: dir.path().to_owned(),
        require_token: false,
    });
    if let Err(errors) = result {
        for e in &errors.0 {
            // A key of the table, the file itself, or an unknown key of the
            // file (which has no variable).
            let known = e.key == "--config" || keys::by_key(&e.key).is_some();
            assert!(known || (e.env.is_empty() && !e.key.is_empty()), "{e}");
            assert!(!e.message.is_empty(), "{e}");
        }
    }
});
