//! The bridge's integration tests, in one binary (one link instead of one
//! per file):
//!
//! * `cli` — the real binary: exit codes, `check-config`, error reports;
//! * `robustness` — no network input can panic the decoders or the machine;
//! * `zlib_capture` — the zlib-stream decoder against a real wire capture.

mod cli;
mod robustness;
mod zlib_capture;
