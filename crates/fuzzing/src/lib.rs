//! The entry points of credvault's fuzz targets, shared by the two ways they run:
//!
//! * `fuzz/` (a cargo-fuzz project outside the workspace) wraps each in a libFuzzer target:
//!   `cargo +nightly fuzz run <target>`;
//! * `tests/corpora.rs` replays every file of `fuzz/corpus/<target>/` through the same function
//!   on stable, so an input that once failed fails `cargo test` / `scripts/test` again.
//!
//! Each entry point takes arbitrary bytes, never panics on its own account, and panics (with a
//! message) when the code under test breaks a promise: a panic in the product code, a status
//! 500, an error that is not a problem document, output that a receiver would split or misread,
//! a value that does not round-trip. See `fuzz/README.md` for the targets and their runs.

pub mod audit_formats;
pub mod audit_verify;
pub mod config_file;
pub mod credential_fields;
pub mod key_files;
pub mod request_bodies;

mod scratch;

/// A target's entry point.
pub type EntryPoint = fn(&[u8]);

/// Every target: its name (the fuzz target and the corpus directory) and its entry point.
pub const TARGETS: &[(&str, EntryPoint)] = &[
    ("credential_fields", credential_fields::run),
    ("request_bodies", request_bodies::run),
    ("audit_formats", audit_formats::run),
    ("config_file", config_file::run),
    ("key_files", key_files::run),
    ("audit_verify", audit_verify::run),
];
