#![no_main]
//! `key_files`: see `credvault_fuzzing::key_files` (crates/fuzzing/src/key_files.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| credvault_fuzzing::key_files::run(data));
