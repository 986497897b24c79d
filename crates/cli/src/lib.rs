//! The `credvault` command line: the server (`init`, `serve`) and a client of its HTTP API
//! (`org`, `workspace`, `principal`, `token`, `credential`, …) in one binary.
//!
//! Secrets never come from argv: API tokens come from `CREDVAULT_TOKEN`, a token file or the
//! config file; secret credential fields from a hidden prompt, stdin or a file.

mod args;
mod client;
mod config;
mod keyfiles;
mod server;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;
pub use config::ServerSettings;
pub use server::{init_data_dir, serve};

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(args::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
