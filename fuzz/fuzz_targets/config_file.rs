#![no_main]
//! `config_file`: see `credvault_fuzzing::config_file` (crates/fuzzing/src/config_file.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| credvault_fuzzing::config_file::run(data));
