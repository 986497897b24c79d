#![no_main]
//! `audit_formats`: see `credvault_fuzzing::audit_formats` (crates/fuzzing/src/audit_formats.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| credvault_fuzzing::audit_formats::run(data));
