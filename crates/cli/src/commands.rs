//! One function per subcommand.

use std::io::{self, Write};

use anyhow::{Context, Result};
use vmcore_kernel::machine::Machine;
use vmcore_kernel::{Dump, OpenOptions};
use vmcore_physmem::ReadOptions;
use vmcore_report::info::InfoReport;
use vmcore_report::mem_usage::MemUsage;
use vmcore_types::PhysAddr;

use crate::args::{parse_u64, Cli, Command, DumpArgs};
use crate::write::Overwrite;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { dump, json } => info(&dump, json),
        Command::Vmcoreinfo { dump, json } => vmcoreinfo(&dump, json),
        Command::Read { dump, addr, len, phys, zero_excluded } => read(&dump.into(), &addr, len, phys, zero_excluded),
        Command::MemUsage { dump, json } => mem_usage(&dump, json),
        Command::Makedumpfile { args } => {
            let code = crate::compat::main(args);
            if code != 0 {
                std::process::exit(code.into());
            }
            Ok(())
        }
        Command::Dump {
            input,
            output,
            level,
            zlib: _,
            lzo,
            snappy,
            zstd,
            uncompressed,
            elf,
            flatten,
            split,
            splitblock_size,
            threads,
            limit,
            bitmap_memory,
            exclude_unused_vmemmap,
            work_dir,
            force,
            stats,
            dry_run,
            json,
            quiet,
            opts,
        } => {
            let codec = if lzo {
                vmcore_writer::Codec::Lzo
            } else if snappy {
                vmcore_writer::Codec::Snappy
            } else if zstd {
                vmcore_writer::Codec::Zstd
            } else if uncompressed {
                vmcore_writer::Codec::Raw
            } else {
                vmcore_writer::Codec::Zlib
            };
            let args = DumpArgs { file: input, opts };
            let job = crate::write::DumpJob {
                output: output.as_deref(),
                level,
                codec,
                flatten,
                threads,
                limit,
                bitmap_memory,
                work_dir: work_dir.as_deref(),
                cycles: None,
                exclude_unused_vmemmap,
                force: Overwrite::vmcore(force),
                // A dry run's only output is the report.
                stats: stats || dry_run,
                dry_run,
                dry_run_sizes: false,
                json,
                quiet,
                messages: crate::write::Messages::Line,
            };
            let dump = open(&args)?;
            let machine = machine_without_symbols(&dump)?;
            let format =
                crate::write::DumpFormat { elf, split: &split, splitblock_bytes: splitblock_size.saturating_mul(1024) };
            if crate::write::run_with(&dump, &machine, &args.file.display().to_string(), &job, &format)?
                != crate::write::Written::Complete
            {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Rearrange { input, output, force, quiet } => {
            crate::write::rearrange(&input, &output, Overwrite::vmcore(force), quiet)
        }
        Command::Reassemble { files, force, quiet } => {
            crate::write::reassemble(&files, Overwrite::vmcore(force), quiet)
        }
        Command::Symbols { dump, pattern, types, json } => symbols(&dump.into(), pattern.as_deref(), types, json),
        Command::Addr2sym { dump, addr, json } => addr2sym(&dump.into(), addr, json),
        Command::Vtop { dump, addrs, json } => vtop(&dump.into(), &addrs, json),
        Command::Dmesg { dump, partial, json } => {
            let dump = open(&dump)?;
            let machine = machine_without_symbols(&dump)?;
            crate::dmesg::run(&dump, &machine, partial, json, &mut io::stdout().lock())
        }
    }
}

pub(crate) fn open(args: &DumpArgs) -> Result<Dump> {
    let opts = OpenOptions {
        vmcoreinfo_file: args.opts.vmcoreinfo.clone(),
        system_map: args.opts.system_map.clone(),
        ..OpenOptions::default()
    };
    let paths = args.paths();
    let dump = Dump::open(&paths, &opts).map_err(|e| {
        if args.file.as_os_str() == "/proc/kcore" && !args.file.exists() {
            anyhow::anyhow!("{e}\n(no /proc/kcore here: is this a container? give a dump FILE)")
        } else if args.file.starts_with("/proc") && e.to_string().contains("Permission denied") {
            anyhow::anyhow!("{e}\n(reading {} needs root)", args.file.display())
        } else {
            anyhow::Error::from(e)
        }
    })?;
    if let Some(vi) = &dump.vmcoreinfo {
        const SHOWN: usize = 5;
        let repeated = vi.repeated_keys();
        if !repeated.is_empty() {
            let more = repeated.len().saturating_sub(SHOWN);
            let more = if more > 0 { format!(" and {more} more keys") } else { String::new() };
            say!(
                "vmcore: warning: {}: VMCOREINFO has {}{more} on more than one line: the first of each is used",
                vi.source().name(),
                repeated
                    .iter()
                    .take(SHOWN)
                    .map(|k| vmcore_kernel::vmcoreinfo::shortened(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(dump)
}

fn info(args: &DumpArgs, json: bool) -> Result<()> {
    let dump = open(args)?;
    let (machine, no_layout) = match Machine::new(&dump) {
        Ok(m) => (Some(m), None),
        Err(e) => (None, Some(format!("no kernel layout: {e}"))),
    };
    let mut report = InfoReport::new(&dump, machine.as_ref());
    report.warnings.extend(no_layout);
    for w in &report.warnings {
        say!("vmcore: warning: {w}");
    }
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(report.render().as_bytes())?;
    }
    Ok(out.flush()?)
}

fn vmcoreinfo(args: &DumpArgs, json: bool) -> Result<()> {
    let dump = open(args)?;
    let vi = dump.require_vmcoreinfo()?;
    let mut out = io::stdout().lock();
    if json {
        // Lines in order, duplicates kept: an object would reorder or merge them.
        let lines: Vec<serde_json::Value> =
            vi.lines().map(|(key, value)| serde_json::json!({ "key": key, "value": value })).collect();
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "source": vi.source().name(), "lines": lines }))?;
        writeln!(out)?;
    } else {
        out.write_all(vi.raw())?;
    }
    Ok(out.flush()?)
}

/// The machine without kallsyms, for commands that need no symbol names.
pub(crate) fn machine_without_symbols(dump: &Dump) -> Result<Machine> {
    let name = dump.paths.first().map(|p| p.display().to_string()).unwrap_or_default();
    Machine::without_symbols(dump).with_context(|| name).inspect(warn_layout)
}

pub(crate) fn machine(dump: &Dump) -> Result<Machine> {
    let name = dump.paths.first().map(|p| p.display().to_string()).unwrap_or_default();
    Machine::new(dump).with_context(|| name).inspect(warn_layout)
}

/// Layout methods that disagree, said on stderr by every command (`info` also lists them
/// in its report).
fn warn_layout(machine: &Machine) {
    for w in vmcore_report::layout::warnings(machine) {
        say!("vmcore: warning: {w}");
    }
}

/// ADDR as a number, or SYMBOL[+OFFSET] resolved through kallsyms or VMCOREINFO.
fn resolve(dump: &Dump, machine: &Machine, addr: &str) -> Result<u64> {
    if let Ok(v) = parse_u64(addr) {
        return Ok(v);
    }
    let (name, off) = match addr.split_once('+') {
        Some((n, o)) => (n, parse_u64(o).map_err(anyhow::Error::msg)?),
        None => (addr, 0),
    };
    let base = machine.symbol(dump, name).with_context(|| {
        // Without kallsyms only VMCOREINFO's few symbols are known: say why.
        let why = machine.notes.iter().find(|n| n.starts_with("kallsyms:"));
        let why = why.map(|n| format!("; {n}")).unwrap_or_default();
        format!("{name:?} is neither a number nor a symbol of this kernel (kallsyms or VMCOREINFO SYMBOL){why}")
    })?;
    base.checked_add(off).with_context(|| format!("{addr}: {name} at {base:#x} plus {off:#x} passes 2^64"))
}

fn read(args: &DumpArgs, addr: &str, len: u64, phys: bool, zero_excluded: bool) -> Result<()> {
    let dump = open(args)?;
    let machine = if phys && parse_u64(addr).is_ok() { None } else { Some(machine(&dump)?) };
    let start = match &machine {
        Some(m) => resolve(&dump, m, addr)?,
        None => parse_u64(addr).map_err(anyhow::Error::msg)?,
    };
    let opts = ReadOptions { excluded_as_zero: zero_excluded };
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        let at = start.checked_add(done).context("address range wraps around")?;
        let read = match (&machine, phys) {
            (Some(m), false) => m.kmem.read_with(at, chunk, opts).map_err(|e| e.to_string()),
            _ => dump.mem.read(PhysAddr(at), chunk, opts).map_err(|e| e.to_string()),
        };
        if let Err(e) = read {
            // Errors about the file's structure name it already; those about an address not.
            let name = args.file.display().to_string();
            anyhow::bail!(if e.contains(&format!("{name}: ")) { e } else { format!("{name}: {e}") });
        }
        out.write_all(chunk)?;
        done += n as u64;
    }
    Ok(out.flush()?)
}

pub(crate) fn mem_usage(args: &DumpArgs, json: bool) -> Result<()> {
    let dump = open(args)?;
    let machine = machine_without_symbols(&dump)?;
    // On a live system the crash kernel's reservation is RAM that no dump will hold: like
    // makedumpfile, leave it out of the table.
    let exclude_phys = if dump.container.info().format.ends_with("kcore") {
        std::fs::read_to_string("/proc/iomem").map(|t| crash_kernel_ranges(&t)).unwrap_or_default()
    } else {
        Vec::new()
    };
    let opts = vmcore_filter::Options {
        classify_excluded_input: true,
        exclude_phys,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        // A live machine of many TiB must not cost its workload hundreds of MiB.
        bitmap_storage: Some(std::sync::Arc::new(vmcore_filter::BitmapStorage {
            dir: std::env::temp_dir(),
            memory: crate::write::DEFAULT_BITMAP_MEMORY,
        })),
        ..vmcore_filter::Options::default()
    };
    let filtered = vmcore_filter::filter(&dump, &machine, 31, &opts)
        .with_context(|| format!("{}: classifying pages", args.file.display()))?;
    let not_in_dump = match &dump.container {
        vmcore_physmem::Container::Kdump { mem, .. } => Some(mem.present_pages().saturating_sub(mem.dumped_pages())),
        vmcore_physmem::Container::Elf { .. } => None,
    };
    let report = MemUsage::new(&filtered.stats, dump.mem.page_size(), not_in_dump);
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(report.render().as_bytes())?;
    }
    Ok(out.flush()?)
}

/// The "Crash kernel" ranges of /proc/iomem (`start-end : Crash kernel`, end inclusive).
fn crash_kernel_ranges(iomem: &str) -> Vec<(u64, u64)> {
    iomem
        .lines()
        .filter_map(|l| {
            let (range, name) = l.split_once(" : ")?;
            if name.trim() != "Crash kernel" {
                return None;
            }
            let (a, b) = range.trim().split_once('-')?;
            let (a, b) = (u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?);
            (a <= b).then(|| (a, b.saturating_add(1)))
        })
        .collect()
}

fn symbols(args: &DumpArgs, pattern: Option<&str>, types: bool, json: bool) -> Result<()> {
    let dump = open(args)?;
    let machine = machine(&dump)?;
    let syms = machine
        .symbols
        .as_ref()
        .with_context(|| format!("{}: no symbols: {}", args.file.display(), machine.notes.join("; ")))?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for s in syms.symbols().iter().filter(|s| pattern.is_none_or(|p| matches(p, &s.name))) {
        if json {
            let line = serde_json::json!({ "address": format!("{:#x}", s.address), "name": s.name, "type": s.kind.to_string() });
            writeln!(out, "{line}")?;
        } else if types {
            writeln!(out, "{:016x} {} {}", s.address, s.kind, s.name)?;
        } else {
            writeln!(out, "{:016x} {}", s.address, s.name)?;
        }
    }
    Ok(out.flush()?)
}

/// A glob with `*` and `?` when it has one, else a substring.
fn matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return name.contains(pattern);
    }
    fn glob(p: &[u8], n: &[u8]) -> bool {
        match (p.split_first(), n.split_first()) {
            (None, None) => true,
            (Some((b'*', rest)), _) => glob(rest, n) || n.split_first().is_some_and(|(_, nr)| glob(p, nr)),
            (Some((b'?', rest)), Some((_, nr))) => glob(rest, nr),
            (Some((c, rest)), Some((d, nr))) if c == d => glob(rest, nr),
            _ => false,
        }
    }
    glob(pattern.as_bytes(), name.as_bytes())
}

fn addr2sym(args: &DumpArgs, addr: u64, json: bool) -> Result<()> {
    let dump = open(args)?;
    let machine = machine(&dump)?;
    let syms = machine
        .symbols
        .as_ref()
        .with_context(|| format!("{}: no symbols: {}", args.file.display(), machine.notes.join("; ")))?;
    let (sym, off, size) = syms.addr2sym(addr).with_context(|| format!("{addr:#x}: no symbol holds this address"))?;
    let mut out = io::stdout().lock();
    if json {
        let answer = serde_json::json!({
            "address": format!("{addr:#x}"),
            "symbol": sym.name,
            "offset": format!("{off:#x}"),
            "size": format!("{size:#x}"),
        });
        writeln!(out, "{answer}")?;
    } else {
        writeln!(out, "{}+{off:#x}/{size:#x}", sym.name)?;
    }
    Ok(out.flush()?)
}

fn vtop(args: &DumpArgs, addrs: &[String], json: bool) -> Result<()> {
    let dump = open(args)?;
    let machine = machine(&dump)?;
    let reports = addrs
        .iter()
        .map(|a| resolve(&dump, &machine, a).map(|v| vmcore_report::vtop::vtop(&machine, v)))
        .collect::<Result<Vec<_>>>()?;
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &reports)?;
        writeln!(out)?;
    } else {
        let mut text = String::new();
        for (i, r) in reports.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            vmcore_report::vtop::render(r, &mut text);
        }
        out.write_all(text.as_bytes())?;
    }
    out.flush()?;
    // Like `read`: an address that leads nowhere is a failure the caller can test.
    match reports.iter().find(|r| r.paddr.is_none()) {
        // The walk's error names the address and the entry (or the read) that failed.
        Some(r) => anyhow::bail!(
            "{}: {}",
            args.file.display(),
            r.error.clone().unwrap_or_else(|| format!("virtual address {} is not mapped", r.vaddr))
        ),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn crash_kernel_reservations_from_iomem() {
        let iomem = "00001000-0009fbff : System RAM\n00100000-1ffcafff : System RAM\n  \
                     08000000-13ffffff : Crash kernel\n  0c600000-0d5fffff : Kernel code\n";
        assert_eq!(super::crash_kernel_ranges(iomem), vec![(0x0800_0000, 0x1400_0000)]);
        assert!(super::crash_kernel_ranges("garbage\n").is_empty());
    }

    #[test]
    fn patterns() {
        assert!(matches("uts", "init_uts_ns"));
        assert!(matches("init_*", "init_uts_ns"));
        assert!(matches("*_ns", "init_uts_ns"));
        assert!(matches("in?t_uts_ns", "init_uts_ns"));
        assert!(!matches("init_?", "init_uts_ns"));
        assert!(!matches("foo", "init_uts_ns"));
    }
}
