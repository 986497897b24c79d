//! The `credvault` binary: a thin entry point; everything lives in `credvault-cli`.
fn main() -> std::process::ExitCode {
    credvault_cli::main()
}
