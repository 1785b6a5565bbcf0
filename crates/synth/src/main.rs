//! `vmcore-synth`: writes a synthetic x86_64 crash dump whose every page is known, and
//! optionally its ground truth as JSON.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use vmcore_formats::codec::Codec;
use vmcore_synth::machine::{Layout, Machine, MachineSpec};
use vmcore_synth::sample::{parse_size, SampleMachine};

/// Write a synthetic x86_64 crash dump: a kernel of the chosen generation laid out in
/// SIZE bytes of RAM (page tables, mem_section and struct pages, printk log, kallsyms),
/// contents fixed by the seed, as a sparse ELF vmcore or a kdump-compressed file.
/// `--layout sample` writes the small machine of the first tests instead (RAM in
/// [0x1000, 0xa0000) and [1 MiB, SIZE), no kernel structures).
#[derive(Debug, Parser)]
#[command(name = "vmcore-synth", version)]
struct Args {
    /// Output file; it must not exist (created with mode 0600).
    out: PathBuf,
    /// RAM size, e.g. 64M, 16G, 1024G (K, M, G are powers of 1024; at least 64M except
    /// for `--layout sample`).
    #[arg(long, value_parser = parse_size)]
    size: u64,
    /// Seed of everything random (KASLR, page classes, contents, messages).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Kernel layout: x86_64-{2.6.32,5.4,6.1,6.12}-l{4,5}[-nokaslr], or sample.
    #[arg(long, default_value = "x86_64-6.1-l4")]
    layout: String,
    /// RAM holding something else than free buddy blocks (default: 60% of it, at most 16G).
    #[arg(long, value_parser = parse_size)]
    used: Option<u64>,
    /// Number of printk messages (default 2500).
    #[arg(long)]
    messages: Option<usize>,
    /// Leave the kallsyms tables out (6.x layouts have them by default).
    #[arg(long)]
    no_kallsyms: bool,
    /// Put kallsyms tables in (and name them in VMCOREINFO) even for a pre-6.0 layout.
    #[arg(long, conflicts_with = "no_kallsyms")]
    kallsyms: bool,
    /// Dump levels whose report numbers the truth lists, comma separated (default: 0-31).
    #[arg(long, value_delimiter = ',')]
    levels: Vec<u8>,
    /// Container format.
    #[arg(long, value_enum, default_value_t = Format::Elf)]
    format: Format,
    /// Page codec of a kdump-compressed file.
    #[arg(long, value_enum, default_value_t = CodecArg::Zlib)]
    codec: CodecArg,
    /// Also write the ground truth, as JSON, to this new file.
    #[arg(long)]
    truth: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// ELF64 vmcore, as /proc/vmcore (sparse file).
    Elf,
    /// kdump-compressed, header version 6, every page dumped, zero pages shared (built in
    /// memory: for machines of a few GiB).
    Kdump,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CodecArg {
    Zlib,
    Lzo,
    Snappy,
    Zstd,
    None,
}

impl From<CodecArg> for Codec {
    fn from(c: CodecArg) -> Codec {
        match c {
            CodecArg::Zlib => Codec::Zlib,
            CodecArg::Lzo => Codec::Lzo,
            CodecArg::Snappy => Codec::Snappy,
            CodecArg::Zstd => Codec::Zstd,
            CodecArg::None => Codec::Raw,
        }
    }
}

/// Largest RAM the in-memory kdump writer is asked to hold.
const KDUMP_MAX: u64 = 8 << 30;

enum Built {
    Sample(SampleMachine),
    Machine(Box<Machine>),
}

fn create(path: &Path) -> Result<File> {
    vmcore_synth::create_exclusive(path).with_context(|| format!("cannot create {}", path.display()))
}

fn build(args: &Args) -> Result<Built> {
    if args.layout == "sample" {
        return Ok(Built::Sample(SampleMachine::new(args.size, args.seed)?));
    }
    let layout = Layout::parse(&args.layout)?;
    let mut spec = MachineSpec::new(layout, args.size, args.seed);
    spec.used = args.used;
    spec.messages = args.messages;
    spec.kallsyms = if args.no_kallsyms {
        Some(false)
    } else if args.kallsyms {
        Some(true)
    } else {
        None
    };
    if matches!(args.format, Format::Kdump) && args.size > KDUMP_MAX {
        bail!("--format kdump builds the file in memory: at most 8G of RAM");
    }
    if let Some(l) = args.levels.iter().find(|&&l| l > 31) {
        bail!("dump level {l} is not in 0-31");
    }
    Ok(Built::Machine(Box::new(Machine::new(&spec)?)))
}

fn write_dump(args: &Args, built: &Built, file: File) -> Result<()> {
    match (built, args.format) {
        (Built::Sample(m), Format::Elf) => {
            let mut w = BufWriter::new(file);
            m.elf().write_to(&mut w, |paddr, buf| m.fill(paddr, buf))?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
        }
        (Built::Sample(m), Format::Kdump) => write_all(file, &m.kdump(args.codec.into())?)?,
        (Built::Machine(m), Format::Elf) => {
            m.write_elf_file(&file)?;
            file.sync_all()?;
        }
        (Built::Machine(m), Format::Kdump) => write_all(file, &m.kdump(args.codec.into())?)?,
    }
    Ok(())
}

fn write_all(file: File, bytes: &[u8]) -> Result<()> {
    let mut w = BufWriter::new(file);
    w.write_all(bytes)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}

fn write_truth(args: &Args, built: &Built, file: File) -> Result<()> {
    let mut w = BufWriter::new(file);
    match built {
        Built::Sample(m) => serde_json::to_writer_pretty(&mut w, &m.truth())?,
        Built::Machine(m) => serde_json::to_writer_pretty(&mut w, &m.truth(&args.levels))?,
    }
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(())
}

fn run(args: &Args) -> Result<()> {
    let built = build(args)?;
    // Both files are created before anything is written, so that a name clash fails fast
    // and leaves nothing behind; whatever this run created is removed if it then fails.
    let out = create(&args.out)?;
    let truth = match &args.truth {
        Some(p) => match create(p) {
            Ok(f) => Some((p, f)),
            Err(e) => {
                let _ = std::fs::remove_file(&args.out);
                return Err(e);
            }
        },
        None => None,
    };
    let truth_path = truth.as_ref().map(|(p, _)| p.to_path_buf());
    let result =
        write_dump(args, &built, out).with_context(|| format!("writing {}", args.out.display())).and_then(|()| {
            match truth {
                Some((p, f)) => write_truth(args, &built, f).with_context(|| format!("writing {}", p.display())),
                None => Ok(()),
            }
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&args.out);
        if let Some(p) = truth_path {
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmcore-synth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
