//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/*`) through the targets' entry
//! points on stable: no fuzzing, every file once. A file whose input makes an entry point
//! panic fails the test, named. Runs in `cargo test --workspace` (and so in `scripts/test`).
//!
//! `CREDVAULT_FUZZ_CORPUS=<dir>` replays another directory laid out the same way (e.g. a
//! corpus grown by a longer local run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_macros)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn corpus_root() -> PathBuf {
    match std::env::var_os("CREDVAULT_FUZZ_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus"),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Longest one input may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(30);

/// Runs every file of one target's corpus, each on its own thread (a hang is reported, not
/// waited for); returns the number of files and the failures.
fn replay(dir: &Path, run: fn(&[u8])) -> (usize, Vec<String>) {
    let files = files(dir);
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    let mut failures = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| run(&data)).map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            });
            let _ = tx.send(r);
        });
        match rx.recv_timeout(HANG) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => failures.push(format!("{}: {msg}", f.display())),
            Err(_) => {
                failures.push(format!("{}: still running after {HANG:?}", f.display()));
                break; // a hung input may hold the target's lock: the rest would wait too
            }
        }
    }
    (files.len(), failures)
}

#[test]
fn every_corpus_input_replays_without_a_failure() {
    let mut failures = Vec::new();
    for (target, run) in credvault_fuzzing::TARGETS {
        let t = Instant::now();
        let (n, f) = replay(&corpus_root().join(target), *run);
        eprintln!("{target}: {n} inputs in {:.2?}", t.elapsed());
        failures.extend(f);
    }
    credvault_fuzzing::request_bodies::shutdown();
    assert!(
        failures.is_empty(),
        "{} corpus input(s) fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The replay can fail: an input that makes an entry point panic is reported, by file.
#[test]
fn a_failing_entry_point_fails_the_replay() {
    fn boom(data: &[u8]) {
        assert!(data.is_empty(), "boom on {} bytes", data.len());
    }
    let dir = std::env::temp_dir().join(format!("credvault-fuzz-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("quiet"), b"").unwrap();
    std::fs::write(dir.join("loud"), b"x").unwrap();
    let (seen, failures) = replay(&dir, boom);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(seen, 2);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains("loud") && failures[0].contains("boom on 1 bytes"),
        "{failures:?}"
    );
}

/// The fuzz target's copy of the audit hash (`audit_verify::event_hash`, used to seal fuzzed
/// journals) is the server's: events the server wrote keep their hashes when re-sealed.
#[test]
fn sealing_reproduces_the_servers_hashes() {
    let events = credvault_fuzzing::request_bodies::audit_events();
    assert!(events.len() >= 5, "too few events to compare: {}", events.len());
    let mut prev = vec![0u8; 32];
    for v in &events {
        let e: credvault_core::audit::Event = serde_json::from_value(v.clone()).unwrap();
        let at = credvault_domain::time::parse_rfc3339(&e.at).unwrap();
        assert_eq!(e.prev_hash, hex::encode(&prev), "seq {}: prev_hash", e.seq);
        let h = credvault_fuzzing::audit_verify::event_hash(&prev, &e, at).unwrap();
        assert_eq!(hex::encode(&h), e.hash, "seq {}: the re-computed hash differs", e.seq);
        prev = h;
    }
    let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
    let v = credvault_core::audit::verify_exported(
        lines.lines().map(|l| serde_json::from_str(l).map_err(|_| l.to_owned())),
        false,
        &[],
    );
    assert!(v.ok, "{v:?}");
}
