//! Scratch directories for the targets that need a store: on `/dev/shm` when there is one (an
//! fsync there costs nothing, and fuzzing throughput matters), removed when dropped. A process
//! that exits without dropping (libFuzzer ends with `exit`) leaves its directory behind; the
//! next process removes the directories of processes that no longer run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const PREFIX: &str = "credvault-fuzz-";

/// A directory removed on drop.
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A fresh, empty directory.
    pub(crate) fn new() -> ScratchDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let root = [Path::new("/dev/shm"), &std::env::temp_dir()]
            .into_iter()
            .find(|p| p.is_dir())
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        remove_stale(&root);
        let pid = std::process::id();
        let dir = root.join(format!("{PREFIX}{pid}-{}", N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create the scratch directory {}: {e}", dir.display());
        }
        ScratchDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// `sqlite://` URL of a database file in this directory.
    pub(crate) fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.0.join("credvault.db").display())
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes the scratch directories of processes that have exited (Linux: `/proc/<pid>`).
fn remove_stale(root: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
