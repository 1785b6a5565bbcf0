//! Command-line definitions: each flag documented once, here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// vmcore: read, analyse and write Linux kernel crash dumps and live kernel memory.
///
/// Inputs are detected by their contents: ELF vmcores (/proc/vmcore or copies of it),
/// /proc/kcore of the running kernel, kdump-compressed files (makedumpfile's default
/// format, any codec, header versions 0-6), flattened streams (makedumpfile -F) and the
/// files of a --split set (give the first as FILE and the others with --part).
#[derive(Debug, Parser)]
#[command(name = "vmcore", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The dump to open, for commands that default to the live kernel.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The dump: a vmcore, kdump-compressed or flattened file, or /proc/kcore.
    #[arg(value_name = "FILE", default_value = "/proc/kcore")]
    pub file: PathBuf,
    #[command(flatten)]
    pub opts: DumpOpts,
}

/// The dump to open, for commands whose FILE comes before other positional arguments.
#[derive(Debug, Args)]
pub struct RequiredDumpArgs {
    /// The dump: a vmcore, kdump-compressed or flattened file, or /proc/kcore.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub opts: DumpOpts,
}

/// Options of every command that opens a dump.
#[derive(Debug, Args)]
pub struct DumpOpts {
    /// Another file of a --split set (repeat for each).
    #[arg(long = "part", value_name = "FILE")]
    pub parts: Vec<PathBuf>,
    /// Use this VMCOREINFO text instead of the dump's own (as makedumpfile -i).
    #[arg(long, value_name = "FILE")]
    pub vmcoreinfo: Option<PathBuf>,
    /// The kernel's System.map, for symbols of kernels before 6.0 (their dumps carry no
    /// kallsyms). Moved by the KASLR offset and checked against VMCOREINFO's symbols.
    #[arg(long, value_name = "FILE")]
    pub system_map: Option<PathBuf>,
}

impl From<RequiredDumpArgs> for DumpArgs {
    fn from(a: RequiredDumpArgs) -> DumpArgs {
        DumpArgs { file: a.file, opts: a.opts }
    }
}

impl DumpArgs {
    pub fn paths(&self) -> Vec<PathBuf> {
        std::iter::once(self.file.clone()).chain(self.opts.parts.iter().cloned()).collect()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// What a dump is: format, architecture, kernel release, page size, crash time,
    /// physical memory ranges, max pfn, and for kdump-compressed files the header version,
    /// dump level, compression and page counts.
    Info {
        #[command(flatten)]
        dump: DumpArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the dump's VMCOREINFO text exactly as stored.
    Vmcoreinfo {
        #[command(flatten)]
        dump: DumpArgs,
        /// Its lines as JSON: where it came from, and each KEY=VALUE in order.
        #[arg(long)]
        json: bool,
    },
    /// Write LEN bytes of memory at ADDR to stdout, raw.
    ///
    /// ADDR is a kernel virtual address (translated through the dump's own page tables),
    /// a symbol name with an optional +OFFSET (`init_uts_ns`, `linux_banner+0x10`), or with
    /// --phys a physical address. Pages that filtering excluded from the dump are an error
    /// ("excluded") unless --zero-excluded is given; memory holes are always an error.
    Read {
        #[command(flatten)]
        dump: RequiredDumpArgs,
        /// Start address (0x... hex or decimal) or SYMBOL[+OFFSET].
        #[arg(value_name = "ADDR")]
        addr: String,
        /// Number of bytes (0x... hex or decimal, with an optional K, M or G suffix).
        #[arg(value_name = "LEN", value_parser = parse_size)]
        len: u64,
        /// ADDR is a physical address.
        #[arg(long)]
        phys: bool,
        /// Read excluded and never-written pages as zeros instead of failing.
        #[arg(long)]
        zero_excluded: bool,
    },
    /// makedumpfile's command line (for kdump scripts): `vmcore makedumpfile -l -d 31
    /// /proc/vmcore OUT`. The binary also behaves so when run as `makedumpfile` (a symlink).
    #[command(disable_help_flag = true)]
    Makedumpfile {
        /// makedumpfile's options and files.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
    /// How memory is used, by page class: makedumpfile's --mem-usage table. Without FILE
    /// it reads the running kernel's /proc/kcore (root needed); it also works on any dump.
    MemUsage {
        #[command(flatten)]
        dump: DumpArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Filter and write a dump (makedumpfile's dump levels). With --dry-run: only the
    /// filtering report, what a dump at that level would keep.
    ///
    /// Dump level bits: 1 zero pages, 2 page cache without private data, 4 all page cache,
    /// 8 user process data, 16 free pages; hwpoison and offline pages are always excluded.
    ///
    /// Formats: kdump-compressed (default; pages compressed with zlib unless -l, -p, -z or
    /// --uncompressed chooses otherwise), ELF with
    /// -E (makedumpfile's segments: excluded runs of 256 pages or more are left out, shorter
    /// ones kept), either as a flattened stream on stdout with -F; a --split set of files.
    Dump {
        /// The input dump (or /proc/vmcore, /proc/kcore).
        #[arg(value_name = "IN")]
        input: PathBuf,
        /// The output file (omit with --flatten: the stream goes to stdout; with --split
        /// the files follow it).
        #[arg(value_name = "OUT", required_unless_present_any = ["dry_run", "flatten", "split"],
              conflicts_with_all = ["split", "flatten"])]
        output: Option<PathBuf>,
        /// Dump level, 0-31.
        #[arg(short = 'd', long = "dump-level", value_name = "LEVEL", default_value_t = 31,
              value_parser = clap::value_parser!(u32).range(0..=31))]
        level: u32,
        /// Compress pages with zlib (makedumpfile -c).
        #[arg(short = 'c', group = "codec")]
        zlib: bool,
        /// Compress pages with LZO1X-1 (makedumpfile -l).
        #[arg(short = 'l', group = "codec")]
        lzo: bool,
        /// Compress pages with snappy (makedumpfile -p).
        #[arg(short = 'p', group = "codec")]
        snappy: bool,
        /// Compress pages with zstd (makedumpfile -z).
        #[arg(short = 'z', group = "codec")]
        zstd: bool,
        /// Write pages uncompressed (makedumpfile without -c, -l, -p or -z): the largest
        /// file, the least CPU.
        #[arg(long, group = "codec")]
        uncompressed: bool,
        /// Write an ELF dump (makedumpfile -E): readable by any ELF core reader, pages
        /// uncompressed; zero pages are left out with level bit 1.
        #[arg(short = 'E', long = "elf", conflicts_with = "codec")]
        elf: bool,
        /// Write a flattened stream to stdout (makedumpfile -F), for a pipe or ssh;
        /// `vmcore rearrange` (or makedumpfile -R) makes the file from it.
        #[arg(short = 'F', long = "flatten")]
        flatten: bool,
        /// Write N files, each with the pages of one pfn range balanced by kept pages
        /// (makedumpfile --split); read them with --part, or join them with `vmcore
        /// reassemble`.
        #[arg(long, value_name = "OUT", num_args = 2.., conflicts_with_all = ["flatten", "elf"])]
        split: Vec<PathBuf>,
        /// Granularity of the --split ranges, in KiB (makedumpfile --splitblock-size).
        #[arg(long, value_name = "KIB", default_value_t = 1 << 20, requires = "split")]
        splitblock_size: u64,
        /// Compression threads (default: the cores available). The output is the same
        /// whatever the number.
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Stop at SIZE bytes (K, M, G suffixes) and leave a valid dump marked incomplete
        /// (each file of a --split set).
        #[arg(short = 'L', long = "limit", value_name = "SIZE", value_parser = parse_size, conflicts_with = "flatten")]
        limit: Option<u64>,
        /// Memory each page bitmap keeps (K, M, G suffixes); past it, the parts where kept
        /// and excluded pages mix go to an unlinked file in --work-dir. 8 MiB holds 256 GiB
        /// of such RAM.
        #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = crate::write::DEFAULT_BITMAP_MEMORY)]
        bitmap_memory: u64,
        /// Leave out the pages of the kernel's struct page array (vmemmap) that describe
        /// only excluded memory (makedumpfile -e; x86_64, 2 MiB vmemmap pages). Where it
        /// cannot, the dump is written without it, with a warning.
        #[arg(short = 'e', long)]
        exclude_unused_vmemmap: bool,
        /// Where bitmaps spill past --bitmap-memory (makedumpfile --work-dir); default:
        /// OUT's directory, or $TMPDIR (or /tmp) with -F and --dry-run.
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Overwrite OUT if it exists (it is still made mode 0600).
        #[arg(short = 'f', long)]
        force: bool,
        /// Print the filtering report after writing, with the bytes written and, for -E,
        /// the pages the ELF file holds (makedumpfile --show-stats).
        #[arg(long)]
        stats: bool,
        /// Compute and print the filtering report; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long, short = 'q')]
        quiet: bool,
        #[command(flatten)]
        opts: DumpOpts,
    },
    /// Turn a flattened stream (`vmcore dump -F`, makedumpfile -F) back into the dump file
    /// it carries (makedumpfile -R). The stream is read once, in order: IN may be a pipe,
    /// or - for stdin.
    Rearrange {
        /// The flattened stream, or - for stdin.
        #[arg(value_name = "IN")]
        input: PathBuf,
        /// The dump file to write (created mode 0600; it must not exist unless --force).
        #[arg(value_name = "OUT")]
        output: PathBuf,
        /// Overwrite OUT if it exists.
        #[arg(short = 'f', long)]
        force: bool,
        /// No progress display.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Join the files of a --split set into one kdump-compressed file (makedumpfile
    /// --reassemble), copying the stored pages as they are.
    #[command(override_usage = "vmcore reassemble [OPTIONS] IN... OUT")]
    Reassemble {
        /// The split files (IN...), in any order, then the file to write (OUT).
        #[arg(value_name = "FILE", num_args = 2.., required = true)]
        files: Vec<PathBuf>,
        /// Overwrite OUT if it exists.
        #[arg(short = 'f', long)]
        force: bool,
        /// No progress bar.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// List the kernel's symbols, decoded from the dump's own kallsyms tables (kernels 6.0
    /// and later export them in VMCOREINFO; no vmlinux or debuginfo needed), or read from
    /// --system-map FILE for older kernels.
    ///
    /// Lines `%016x NAME`, sorted by address then name. PATTERN selects names: with * or ?
    /// it is a glob, otherwise a substring.
    Symbols {
        #[command(flatten)]
        dump: RequiredDumpArgs,
        /// Only names matching this.
        #[arg(value_name = "PATTERN")]
        pattern: Option<String>,
        /// Also print each symbol's type letter (T, t, D, ...) as /proc/kallsyms does.
        #[arg(long)]
        types: bool,
        /// JSON Lines: one object per symbol (address, name, type).
        #[arg(long)]
        json: bool,
    },
    /// The symbol holding an address: NAME+0xOFFSET/0xSIZE (sizes are estimates: the
    /// distance to the next symbol, as kallsyms stores none).
    Addr2sym {
        #[command(flatten)]
        dump: RequiredDumpArgs,
        /// Kernel virtual address.
        #[arg(value_name = "ADDR", value_parser = parse_u64)]
        addr: u64,
        /// The answer as a JSON object (address, symbol, offset, size).
        #[arg(long)]
        json: bool,
    },
    /// Translate kernel virtual addresses through the dump's own page tables, showing
    /// every entry read (as makedumpfile --vtop and crash's vtop), the region and symbol
    /// holding each address, and whether the region's fixed offset agrees with the walk.
    Vtop {
        #[command(flatten)]
        dump: RequiredDumpArgs,
        /// Kernel virtual addresses (0x... hex or decimal) or SYMBOL[+OFFSET].
        #[arg(value_name = "ADDR", required = true)]
        addrs: Vec<String>,
        /// One JSON object per address, in an array.
        #[arg(long)]
        json: bool,
    },
    /// The kernel log (dmesg) of the dump, or of the running kernel without FILE: exactly
    /// what `makedumpfile --dump-dmesg` writes, read with VMCOREINFO alone (the printk ring
    /// buffer of 5.10+, printk_log records of 3.5-5.9, the plain log_buf before 3.5).
    Dmesg {
        #[command(flatten)]
        dump: DumpArgs,
        /// Start at the last `dmesg --clear`, as makedumpfile --partial-dmesg.
        #[arg(long)]
        partial: bool,
        /// JSON Lines, one object per record: seq, ts_nsec, level, facility, caller, text
        /// (a string, or {"bytes": [...]} when not UTF-8), subsystem, device. seq is the
        /// kernel's from 5.10 on; before, records carry none, and it counts from 0 at the
        /// oldest record the log still holds.
        #[arg(long)]
        json: bool,
    },
}

/// A number in decimal or 0x-prefixed hex.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse::<u64>(),
    };
    r.map_err(|e| format!("{s:?} is not a number (decimal or 0x hex): {e}"))
}

/// A size: a number with an optional K, M or G (binary) suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n = parse_u64(num)?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(parse_u64("0x1000"), Ok(4096));
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert!(parse_u64("0xzz").is_err());
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("0x10M"), Ok(16 << 20));
        assert!(parse_size("99999999999999999G").is_err());
    }
}
