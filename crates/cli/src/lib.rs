//! The `credvault` command line: the server (`init`, `serve`) and a client of its HTTP API
//! (`org`, `workspace`, `principal`, `token`, `credential`, …) in one binary.
//!
//! Secrets never come from argv: API tokens come from `CREDVAULT_TOKEN`, a token file or the
//! config file; secret credential fields from a hidden prompt, stdin or a file.

// The command line writes to its terminal (clippy.toml keeps print macros out of the libraries).
#![allow(clippy::disallowed_macros)]

mod args;
mod client;
mod config;
mod exec;
mod keyfiles;
mod server;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;
pub use config::ServerSettings;
pub use server::{init_data_dir, serve};

/// The config file's text as `serve --config` reads it (TOML into the file's settings, then
/// resolved with no flags). For the `config_file` fuzz target.
#[doc(hidden)]
pub fn parse_config_text(text: &str) -> anyhow::Result<ServerSettings> {
    let file: config::FileConfig = toml::from_str(text)?;
    ServerSettings::resolve(config::RawServer::default(), &file)
}

/// The KMS-wrapped key file's reader (no KMS call). For the `key_files` fuzz target.
#[doc(hidden)]
pub use keyfiles::parse_kms_file;

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

/// Progress of a long operation on stderr: a line rewritten in place on a terminal; nothing
/// when stderr is a file or a pipe, where only [`progress_done`]'s final line belongs.
pub(crate) fn progress(line: std::fmt::Arguments<'_>) {
    if std::io::stderr().is_terminal() {
        eprint!("\r{line}");
    }
}

/// The final line of a long operation (replacing its progress line on a terminal).
pub(crate) fn progress_done(line: std::fmt::Arguments<'_>) {
    if std::io::stderr().is_terminal() {
        eprintln!("\r{line}");
    } else {
        eprintln!("{line}");
    }
}
