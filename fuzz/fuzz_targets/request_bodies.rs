#![no_main]
//! `request_bodies`: see `credvault_fuzzing::request_bodies` (crates/fuzzing/src/request_bodies.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| credvault_fuzzing::request_bodies::run(data));
