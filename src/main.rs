//! The `vmcore` binary: everything lives in the library crates; see crates/cli.
//!
//! The static (musl) build uses musl's own allocator: the writer allocates its buffers
//! once per thread and reuses job outputs, so nothing is allocated per page, and musl
//! keeps the resident set at 4-6 MiB writing the fixtures (mimalloc, used before, took
//! 16-33 MiB at the same speed).

fn main() -> std::process::ExitCode {
    vmcore_cli::main()
}
