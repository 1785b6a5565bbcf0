//! The `vmcore` binary: everything lives in the library crates; see crates/cli.

// The static build for kdump initramfs images links musl, whose allocator gives every
// freed block of a few tens of KiB back to the kernel; the LZO compressor allocates its
// 32 KiB dictionary per page, so each page cost an mmap/munmap pair and 5 times the time
// of makedumpfile in a crash kernel. mimalloc keeps such blocks for reuse (at the price
// of a larger resident set, about 57 MB instead of 17 MB writing the fixtures). glibc's
// allocator reuses them already.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    vmcore_cli::main()
}
