//! The `vmcore` binary: everything lives in the library crates; see crates/cli.
fn main() -> std::process::ExitCode {
    vmcore_cli::main()
}
