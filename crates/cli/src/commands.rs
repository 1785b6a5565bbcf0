//! One function per subcommand.

use std::io::{self, Write};

use anyhow::{Context, Result};
use vmcore_kernel::{Dump, OpenOptions};
use vmcore_physmem::ReadOptions;
use vmcore_report::info::InfoReport;
use vmcore_types::PhysAddr;

use crate::args::{Cli, Command, DumpArgs};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { dump, json } => info(&dump, json),
        Command::Vmcoreinfo { dump } => vmcoreinfo(&dump),
        Command::Read { dump, addr, len, phys: _, zero_excluded } => read_phys(&dump.into(), addr, len, zero_excluded),
    }
}

fn open(args: &DumpArgs) -> Result<Dump> {
    let opts = OpenOptions { vmcoreinfo_file: args.opts.vmcoreinfo.clone(), ..OpenOptions::default() };
    let paths = args.paths();
    Dump::open(&paths, &opts).map_err(|e| {
        if args.file.as_os_str() == "/proc/kcore" && !args.file.exists() {
            anyhow::anyhow!("{e}\n(no /proc/kcore here: is this a container? give a dump FILE)")
        } else {
            e.into()
        }
    })
}

fn info(args: &DumpArgs, json: bool) -> Result<()> {
    let dump = open(args)?;
    let report = InfoReport::new(&dump);
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(report.render().as_bytes())?;
    }
    Ok(out.flush()?)
}

fn vmcoreinfo(args: &DumpArgs) -> Result<()> {
    let dump = open(args)?;
    let vi = dump.require_vmcoreinfo()?;
    let mut out = io::stdout().lock();
    out.write_all(vi.raw())?;
    Ok(out.flush()?)
}

fn read_phys(args: &DumpArgs, addr: u64, len: u64, zero_excluded: bool) -> Result<()> {
    let dump = open(args)?;
    let opts = ReadOptions { excluded_as_zero: zero_excluded };
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        let at = addr.checked_add(done).context("address range wraps around")?;
        dump.mem.read(PhysAddr(at), chunk, opts).with_context(|| format!("{}", args.file.display()))?;
        out.write_all(chunk)?;
        done += n as u64;
    }
    Ok(out.flush()?)
}
