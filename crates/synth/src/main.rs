//! `vmcore-synth`: writes a small deterministic x86_64 crash dump for tests.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use vmcore_formats::codec::Codec;
use vmcore_synth::sample::{parse_size, SampleMachine};

/// Write a synthetic x86_64 crash dump (a 6.1-like kernel's VMCOREINFO, RAM in
/// [0x1000, 0xa0000) and [1 MiB, SIZE), contents fixed by the seed).
#[derive(Debug, Parser)]
#[command(name = "vmcore-synth", version)]
struct Args {
    /// Output file; it must not exist (created with mode 0600).
    out: PathBuf,
    /// End of RAM, e.g. 64M or 1G (K, M, G are powers of 1024).
    #[arg(long, value_parser = parse_size)]
    size: u64,
    /// Seed of the page contents.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Container format.
    #[arg(long, value_enum, default_value_t = Format::Elf)]
    format: Format,
    /// Page codec of a kdump-compressed file.
    #[arg(long, value_enum, default_value_t = CodecArg::Zlib)]
    codec: CodecArg,
    /// Also write the facts a reader must find, as JSON, to this new file.
    #[arg(long)]
    truth: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// ELF64 vmcore, as /proc/vmcore.
    Elf,
    /// kdump-compressed, header version 6, every page dumped, zero pages shared.
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

fn create(path: &Path) -> Result<File> {
    vmcore_synth::create_exclusive(path).with_context(|| format!("cannot create {}", path.display()))
}

fn write_dump(args: &Args, machine: &SampleMachine, file: File) -> Result<()> {
    let mut w = BufWriter::new(file);
    match args.format {
        Format::Elf => {
            machine.elf().write_to(&mut w, |paddr, buf| machine.fill(paddr, buf))?;
        }
        Format::Kdump => w.write_all(&machine.kdump(args.codec.into())?)?,
    }
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}

fn write_truth(machine: &SampleMachine, file: File) -> Result<()> {
    let mut w = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut w, &machine.truth())?;
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(())
}

fn run(args: &Args) -> Result<()> {
    let machine = SampleMachine::new(args.size, args.seed)?;
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
        write_dump(args, &machine, out).with_context(|| format!("writing {}", args.out.display())).and_then(|()| {
            match truth {
                Some((p, f)) => write_truth(&machine, f).with_context(|| format!("writing {}", p.display())),
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
