//! The `sealsync` command line: seal Secrets for Git, and recover, re-encrypt and check
//! SealedSecrets offline. Invoked as `kubeseal` (a symlink), it speaks kubeseal's flags.

mod args;
mod audit;
mod cluster;
mod clusters;
mod files;
mod key_backup;
mod keys;
mod kubeseal;
mod ops;
mod reencrypt_all;
mod repo;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

/// Runs the command line `args` (program name first) and returns the exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<ExitCode> {
    let args: Vec<OsString> = args.into_iter().collect();
    let invoked_as = args
        .first()
        .and_then(|program| Path::new(program).file_stem())
        .and_then(|stem| stem.to_str())
        .unwrap_or_default();
    if invoked_as == "kubeseal" {
        match kubeseal::Kubeseal::try_parse_from(&args) {
            Ok(cli) => cli.run().map(|()| ExitCode::SUCCESS),
            Err(error) => Ok(clap_exit(&error)),
        }
    } else {
        match args::Cli::try_parse_from(&args) {
            Ok(cli) => cli.run().map(|()| ExitCode::SUCCESS),
            Err(error) => Ok(clap_exit(&error)),
        }
    }
}

/// Prints a clap error (or help/version text) and returns its exit code.
fn clap_exit(error: &clap::Error) -> ExitCode {
    // Printing to a closed stdout (e.g. `| head`) is not worth a second error.
    let _ = error.print();
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}
