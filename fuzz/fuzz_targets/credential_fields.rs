#![no_main]
//! `credential_fields`: see `credvault_fuzzing::credential_fields` (crates/fuzzing/src/credential_fields.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| credvault_fuzzing::credential_fields::run(data));
