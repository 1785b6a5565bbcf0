//! The `vmcore` command line. Parsing and glue only: every piece of work is done by the
//! library crates, every report is a `vmcore-report` struct.
#![forbid(unsafe_code)]

/// `eprintln!` that does not panic (and so abort) when stderr cannot be written: a kdump
/// script may log to the filesystem the dump has just filled.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod args;
mod commands;
mod compat;
mod dmesg;
mod write;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

/// Runs the command line and returns the process exit code: 0 on success, 1 on error (a
/// message on stderr), 0 when the reader of our output went away (`vmcore dmesg | head`);
/// a usage error exits 2 from the argument parser.
pub fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let called_as = argv.next().map(std::path::PathBuf::from);
    if called_as.as_deref().and_then(|p| p.file_name()).is_some_and(|n| n == "makedumpfile") {
        return ExitCode::from(compat::main(argv.collect()));
    }
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = io::stdout().flush();
            say!("vmcore: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}
