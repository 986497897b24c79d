#![no_main]
//! `audit_verify`: see `credvault_fuzzing::audit_verify` (crates/fuzzing/src/audit_verify.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| credvault_fuzzing::audit_verify::run(data));
