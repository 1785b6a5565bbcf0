//! Benchmark of 4 KiB physical reads: every dumped page of a dump, read once per pass in
//! ascending order (`seq`) or in a deterministic shuffled order (`random`).
//!
//! ```text
//! cargo build --release --example physread
//! target/release/examples/physread FILE [--mode seq|random] [--seed N] [--passes N]
//!                                       [--list-pfns OUT] [--sample-out OUT] [--samples N]
//! ```
//!
//! Prints one JSON line:
//! `{"tool":"vmcore","file":..,"mode":..,"pages":N,"seconds":S,"pages_per_sec":R,"checksum":"0x.."}`.
//!
//! `--list-pfns OUT` also writes the dumped pfns (the pages read), ascending, one a line, so
//! that `bench/physread_libkdumpfile.py` reads exactly the same pages; the shuffle of
//! `random` is the same xorshift64* Fisher-Yates in both programs. `--sample-out OUT`
//! writes `--samples N` (default 16) evenly spread pages as raw records (8-byte
//! little-endian pfn, then the 4096 bytes read) for a byte-for-byte comparison.
//!
//! The checksum is position-sensitive but order-independent: for each page, the xor of its
//! 512 little-endian u64 words is mixed with the pfn and added (mod 2^64) to the total, so
//! both modes (and both tools) print the same value when they read the same bytes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use vmcore_kernel::{Dump, OpenOptions};
use vmcore_physmem::{PageState, ReadOptions};
use vmcore_types::{Pfn, PhysAddr};

const READ_SIZE: usize = 4096;

/// xorshift64* (Vigna); the Python side implements the same generator.
#[derive(Debug)]
struct XorShift64Star(u64);

impl XorShift64Star {
    fn new(seed: u64) -> XorShift64Star {
        // A zero state would stay zero.
        XorShift64Star(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Fisher-Yates, from the end: `j = next % (i + 1)`.
fn shuffle(v: &mut [u64], seed: u64) {
    let mut rng = XorShift64Star::new(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Xor of the little-endian u64 words of `page`.
fn fold(page: &[u8]) -> u64 {
    page.chunks_exact(8).fold(0u64, |acc, w| {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        acc ^ u64::from_le_bytes(b)
    })
}

/// The contribution of one page to the checksum.
fn page_sum(pfn: u64, page: &[u8]) -> u64 {
    (fold(page) ^ pfn.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

#[derive(Debug)]
struct Args {
    file: PathBuf,
    random: bool,
    seed: u64,
    passes: u64,
    list_pfns: Option<PathBuf>,
    sample_out: Option<PathBuf>,
    samples: usize,
}

const USAGE: &str = "usage: physread FILE [--mode seq|random] [--seed N] [--passes N] [--list-pfns OUT] \
                     [--sample-out OUT] [--samples N]";

fn parse_args() -> Result<Args, String> {
    let mut file = None;
    let mut random = false;
    let mut seed = 1u64;
    let mut passes = 1u64;
    let mut list_pfns = None;
    let mut sample_out = None;
    let mut samples = 16usize;
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let name = arg.to_string_lossy().into_owned();
        let mut value = || it.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match name.as_str() {
            "-h" | "--help" => return Err(USAGE.to_string()),
            "--mode" => {
                random = match value()?.to_string_lossy().as_ref() {
                    "seq" => false,
                    "random" => true,
                    other => return Err(format!("--mode: expected seq or random, got {other}")),
                }
            }
            "--seed" => seed = parse_num(&name, value()?)?,
            "--passes" => passes = parse_num(&name, value()?)?.max(1),
            "--list-pfns" => list_pfns = Some(PathBuf::from(value()?)),
            "--sample-out" => sample_out = Some(PathBuf::from(value()?)),
            "--samples" => samples = parse_num(&name, value()?)? as usize,
            _ if name.starts_with('-') => return Err(format!("unknown option {name}\n{USAGE}")),
            _ if file.is_none() => file = Some(PathBuf::from(arg)),
            _ => return Err(format!("one FILE only\n{USAGE}")),
        }
    }
    let file = file.ok_or_else(|| USAGE.to_string())?;
    Ok(Args { file, random, seed, passes, list_pfns, sample_out, samples })
}

fn parse_num(name: &str, v: std::ffi::OsString) -> Result<u64, String> {
    let s = v.to_string_lossy();
    let r = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{name} {s}: {e}"))
}

fn write_file(path: &PathBuf, data: &[u8]) -> Result<(), String> {
    std::fs::write(path, data).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(args: &Args) -> Result<(), String> {
    let dump = Dump::open(std::slice::from_ref(&args.file), &OpenOptions::default())
        .map_err(|e| format!("{}: {e}", args.file.display()))?;
    let mem = &dump.mem;
    let page_size = mem.page_size();
    if page_size != READ_SIZE as u64 {
        return Err(format!("{}: page size {page_size}, this benchmark reads 4 KiB pages", args.file.display()));
    }

    // A page the dump says is `Dumped` can still be only partly described (an ELF segment
    // ending mid-page, e.g. at 0x9fc00 on x86_64): a whole-page read of it fails with a
    // hole, so such pages are left out (and counted).
    let ranges = mem.ranges();
    let whole = |pfn: u64| {
        let start = pfn * page_size;
        let i = ranges.partition_point(|r| r.start <= start);
        i.checked_sub(1).and_then(|i| ranges.get(i)).is_some_and(|r| start + page_size <= r.end)
    };
    let mut pfns = Vec::new();
    let mut partial = 0u64;
    for pfn in 0..mem.max_pfn() {
        match mem.page_state(Pfn(pfn)) {
            Ok(PageState::Dumped) if whole(pfn) => pfns.push(pfn),
            Ok(PageState::Dumped) => partial += 1,
            Ok(_) => {}
            Err(e) => return Err(format!("pfn {pfn}: {e}")),
        }
    }
    if pfns.is_empty() {
        return Err(format!("{}: no dumped pages", args.file.display()));
    }

    let mut buf = vec![0u8; READ_SIZE];
    if let Some(out) = &args.list_pfns {
        let mut text = String::with_capacity(pfns.len() * 8);
        for pfn in &pfns {
            text.push_str(&pfn.to_string());
            text.push('\n');
        }
        write_file(out, text.as_bytes())?;
    }
    if let Some(out) = &args.sample_out {
        let n = args.samples.clamp(1, pfns.len());
        let mut data = Vec::with_capacity(n * (8 + READ_SIZE));
        for k in 0..n {
            // Evenly spread, first and last included.
            let idx = if n == 1 { 0 } else { k * (pfns.len() - 1) / (n - 1) };
            let pfn = pfns.get(idx).copied().unwrap_or_default();
            mem.read(PhysAddr(pfn * page_size), &mut buf, ReadOptions::default())
                .map_err(|e| format!("pfn {pfn}: {e}"))?;
            data.extend_from_slice(&pfn.to_le_bytes());
            data.extend_from_slice(&buf);
        }
        write_file(out, &data)?;
    }

    if args.random {
        shuffle(&mut pfns, args.seed);
    }

    let mut checksum = 0u64;
    let start = Instant::now();
    for _ in 0..args.passes {
        for &pfn in &pfns {
            mem.read(PhysAddr(pfn * page_size), &mut buf, ReadOptions::default())
                .map_err(|e| format!("pfn {pfn}: {e}"))?;
            checksum = checksum.wrapping_add(page_sum(pfn, &buf));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let pages = pfns.len() as u64 * args.passes;

    let line = serde_json::json!({
        "tool": "vmcore",
        "file": args.file.display().to_string(),
        "mode": if args.random { "random" } else { "seq" },
        "seed": args.seed,
        "passes": args.passes,
        "pages": pages,
        "partial_pages_skipped": partial,
        "seconds": seconds,
        "pages_per_sec": if seconds > 0.0 { pages as f64 / seconds } else { 0.0 },
        "checksum": format!("{checksum:#018x}"),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| format!("stdout: {e}"))?;
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("physread: {msg}");
            ExitCode::FAILURE
        }
    }
}
