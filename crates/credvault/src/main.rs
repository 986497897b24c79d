//! The `credvault` binary: a thin entry point; everything lives in `credvault-cli`.

/// mimalloc: a resolve allocates and frees many small buffers on two threads' worth of tasks
/// and the SQLite writer; glibc's allocator cost about a fifth of resolve throughput at c=64
/// (`bench/README.md`). Secrets are zeroized before their buffers are freed, whatever the
/// allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    credvault_cli::main()
}
