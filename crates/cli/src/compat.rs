//! makedumpfile's command line, for kdump scripts: the binary run as `makedumpfile` (a
//! symlink) or `vmcore makedumpfile ARGS`. Options vmcore implements behave as
//! makedumpfile's; options it does not are refused with a message and exit code 1,
//! never silently accepted.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::args::{parse_size, DumpArgs, DumpOpts};

/// makedumpfile's exit codes.
const COMPLETED: u8 = 0;
const FAILED: u8 = 1;
/// The VMCOREINFO given (-i) is another kernel's.
const WRONG_RELEASE: u8 = 2;

/// The version string kdump scripts may print or parse.
const VERSION: &str = "makedumpfile: version 1.7.9 (vmcore compatible front end, vmcore ";

/// Parsed makedumpfile options.
#[derive(Debug, Default)]
struct Opts {
    levels: Vec<u32>,
    codec: Option<char>,
    elf: bool,
    flatten: bool,
    rearrange: bool,
    split: bool,
    reassemble: bool,
    threads: Option<usize>,
    message_level: Option<u32>,
    mem_usage: bool,
    dump_dmesg: bool,
    partial_dmesg: bool,
    dry_run: bool,
    show_stats: bool,
    limit: Option<u64>,
    bitmap_memory: Option<u64>,
    /// --splitblock-size, in KiB.
    splitblock_kib: Option<u64>,
    work_dir: Option<PathBuf>,
    exclude_unused_vmemmap: bool,
    /// --vtop: a kernel virtual address whose translation is printed after the dump.
    vtop: Option<u64>,
    force: bool,
    vmcoreinfo: Option<PathBuf>,
    debug: bool,
    version: bool,
    help: bool,
    check_params: bool,
    files: Vec<PathBuf>,
}

/// Options makedumpfile has that vmcore does not implement, with why.
const REFUSED: &[(&str, &str)] = &[
    ("-x", "DWARF debug information (vmcore works from VMCOREINFO and the dump's kallsyms)"),
    ("-g", "generating VMCOREINFO from a vmlinux"),
    ("-X", "Xen domain filtering"),
    ("--config", "erasing data by filter configuration"),
    ("--eppic", "EPPIC macros"),
    ("--extension", "BPF extensions"),
    ("--diskset", "sadump disksets"),
    ("--xen-syms", "Xen"),
    ("--xen-vmcoreinfo", "Xen"),
    ("--xen_phys_start", "Xen"),
    ("--dump-dmesg-all", "--dump-dmesg-all"),
];

/// Long options the front end takes (getopt_long also takes any unambiguous prefix).
const LONG: &[&str] = &[
    "--cyclic-buffer",
    "--splitblock-size",
    "--work-dir",
    "--vtop",
    "--num-threads",
    "--message-level",
    "--mem-usage",
    "--dump-dmesg",
    "--partial-dmesg",
    "--dry-run",
    "--show-stats",
    "--split",
    "--reassemble",
    "--check-params",
    "--non-mmap",
    "--help",
    "--version",
];

/// The long option `name` stands for: itself, or the one option it is a prefix of.
fn long_option(name: &str) -> Result<String> {
    let known = LONG.iter().chain(REFUSED.iter().map(|(o, _)| o)).filter(|o| o.starts_with("--"));
    if known.clone().any(|o| *o == name) {
        return Ok(name.to_string());
    }
    let matches: Vec<&str> = known.filter(|o| o.starts_with(name)).copied().collect();
    match matches.as_slice() {
        [one] => Ok(one.to_string()),
        [] => bail!("unrecognized option {name}"),
        many => bail!("option {name} is ambiguous: {}", many.join(", ")),
    }
}

/// A number as C's `strtoul(s, NULL, 0)` reads it (makedumpfile's --vtop): 0x hex, a
/// leading 0 octal, else decimal.
fn strtoul(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if let Some(octal) = s.strip_prefix('0').filter(|o| !o.is_empty()) {
        u64::from_str_radix(octal, 8).ok()
    } else {
        s.parse().ok()
    }
}

fn value(args: &mut std::vec::IntoIter<String>, opt: &str, attached: Option<String>) -> Result<String> {
    match attached {
        Some(v) => Ok(v),
        None => args.next().with_context(|| format!("option {opt} needs a value")),
    }
}

fn parse(argv: Vec<String>) -> Result<Opts> {
    let mut o = Opts::default();
    let mut args = argv.into_iter();
    let mut only_files = false;
    while let Some(arg) = args.next() {
        if only_files || !arg.starts_with('-') || arg == "-" {
            o.files.push(PathBuf::from(arg));
            continue;
        }
        if arg == "--" {
            only_files = true;
            continue;
        }
        let (name, attached) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let name = if name.starts_with("--") { long_option(&name)? } else { name };
        if let Some((_, why)) = REFUSED.iter().find(|(o, _)| *o == name) {
            bail!("{name}: {why} is not implemented by vmcore's makedumpfile front end");
        }
        if name == "--non-mmap" {
            continue;
        }
        match name.as_str() {
            "--cyclic-buffer" => {
                let kib: u64 = value(&mut args, &name, attached)?.parse().context("--cyclic-buffer")?;
                // makedumpfile's buffer holds a cycle of both bitmaps.
                o.bitmap_memory = Some(kib.saturating_mul(1024) / 2);
            }
            "--splitblock-size" => {
                o.splitblock_kib = Some(value(&mut args, &name, attached)?.parse().context("--splitblock-size")?)
            }
            "--work-dir" => o.work_dir = Some(PathBuf::from(value(&mut args, &name, attached)?)),
            "--vtop" => {
                let v = value(&mut args, &name, attached)?;
                o.vtop = Some(strtoul(&v).with_context(|| format!("--vtop {v}: not a number"))?);
            }
            "--num-threads" => o.threads = Some(value(&mut args, &name, attached)?.parse().context("--num-threads")?),
            "--message-level" => {
                o.message_level = Some(value(&mut args, &name, attached)?.parse().context("--message-level")?)
            }
            "--mem-usage" => o.mem_usage = true,
            "--dump-dmesg" => o.dump_dmesg = true,
            "--partial-dmesg" => o.partial_dmesg = true,
            "--dry-run" => o.dry_run = true,
            "--show-stats" => o.show_stats = true,
            "--split" => o.split = true,
            "--reassemble" => o.reassemble = true,
            "--check-params" => o.check_params = true,
            "--help" => o.help = true,
            "--version" => o.version = true,
            long if long.starts_with("--") => bail!("unrecognized option {long}"),
            _ => parse_short(&arg, &mut args, &mut o)?,
        }
    }
    Ok(o)
}

/// Short options, clustered as getopt allows (`-cd31`, `-d 31`, `-lF`).
fn parse_short(arg: &str, args: &mut std::vec::IntoIter<String>, o: &mut Opts) -> Result<()> {
    let mut chars = arg.chars().skip(1);
    while let Some(c) = chars.next() {
        let rest: String = chars.clone().collect();
        let take = |args: &mut std::vec::IntoIter<String>| -> Result<String> {
            let v = if rest.is_empty() { value(args, &format!("-{c}"), None)? } else { rest.clone() };
            Ok(v)
        };
        match c {
            'c' | 'l' | 'p' | 'z' => o.codec = Some(c),
            'E' => o.elf = true,
            'F' => o.flatten = true,
            'R' => o.rearrange = true,
            'f' => o.force = true,
            'D' => o.debug = true,
            'v' => o.version = true,
            'h' => o.help = true,
            'd' => {
                let list = take(args)?;
                o.levels = list
                    .split(',')
                    .map(|l| l.trim().parse::<u32>().ok().filter(|&l| l <= 31))
                    .collect::<Option<Vec<_>>>()
                    .with_context(|| format!("-d {list}: dump levels are 0 to 31, separated by commas"))?;
                return Ok(());
            }
            'L' => {
                o.limit = Some(parse_size(&take(args)?).map_err(anyhow::Error::msg)?);
                return Ok(());
            }
            'i' => {
                o.vmcoreinfo = Some(PathBuf::from(take(args)?));
                return Ok(());
            }
            // -b tunes makedumpfile's bitmap cache, which vmcore does not have: accepted and
            // ignored. (--cyclic-buffer and --work-dir are taken as vmcore's --bitmap-memory
            // and spill directory.)
            'b' => {
                take(args)?;
                return Ok(());
            }
            'e' => o.exclude_unused_vmemmap = true,
            'x' | 'g' | 'X' => bail!("-{c}: not implemented by vmcore's makedumpfile front end"),
            other => bail!("unrecognized option -{other}"),
        }
    }
    Ok(())
}

const USAGE: &str = "\
vmcore's makedumpfile-compatible front end.

  makedumpfile [-c|-l|-p|-z] [-E] [-F] [-d LEVEL[,LEVEL...]] [--num-threads N]
               [--message-level N] [-L SIZE] [-f] [-i VMCOREINFO] [--dry-run]
               [--show-stats] VMCORE [DUMPFILE]
  makedumpfile --split [options] VMCORE DUMPFILE1 DUMPFILE2 [...]
  makedumpfile --reassemble DUMPFILE1 DUMPFILE2 [...] DUMPFILE
  makedumpfile -R DUMPFILE < flattened-stream
  makedumpfile --dump-dmesg [--partial-dmesg] [-i VMCOREINFO] VMCORE LOGFILE
  makedumpfile --mem-usage /proc/kcore
  makedumpfile -h | -v

--cyclic-buffer KiB bounds the bitmaps' memory (half each) and --work-dir sets where the
rest goes (default: beside the dump). -b and --non-mmap are accepted and
ignored. -e requires --work-dir, as in makedumpfile. -x, -g, -X, --config, --eppic,
Xen and sadump options are refused. --vtop VADDR prints the address's page-table walk
after the dump, as makedumpfile does.
";

fn overwrite(o: &Opts) -> crate::write::Overwrite {
    crate::write::Overwrite { allowed: o.force, option: "-f" }
}

fn dump_args(file: PathBuf, o: &Opts) -> DumpArgs {
    DumpArgs { file, opts: DumpOpts { parts: Vec::new(), vmcoreinfo: o.vmcoreinfo.clone(), system_map: None } }
}

fn run(o: Opts) -> Result<()> {
    let level = o.message_level.unwrap_or(7) | if o.debug { 8 } else { 0 };
    let common = level & 2 != 0;
    if o.help {
        let _ = write!(io::stdout(), "{USAGE}");
        return Ok(());
    }
    if o.version {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{VERSION}{})", env!("CARGO_PKG_VERSION"));
        for codec in [vmcore_writer::Codec::Lzo, vmcore_writer::Codec::Snappy, vmcore_writer::Codec::Zstd] {
            let state = if codec.is_supported() { "enabled" } else { "disabled" };
            let _ = writeln!(out, "{}\t{state}", codec.name());
        }
        let _ = writeln!(out);
        return Ok(());
    }
    if let Some(level) = o.message_level.filter(|&l| l > 31) {
        bail!("--message-level {level} is invalid: 0 to 31");
    }
    if o.partial_dmesg && !o.dump_dmesg {
        bail!("--partial-dmesg goes with --dump-dmesg");
    }
    // --check-params (kdump scripts check their core collector with it when the service
    // starts): every check below runs, and it stops before the first file is touched.
    if o.mem_usage {
        let [file] = o.files.as_slice() else { bail!("--mem-usage takes one file: /proc/kcore") };
        if o.check_params {
            return Ok(());
        }
        return crate::commands::mem_usage(&dump_args(file.clone(), &o), false);
    }
    // makedumpfile refuses these combinations rather than ignore half of them.
    if o.exclude_unused_vmemmap && o.work_dir.is_none() {
        bail!("-e requires --work-dir");
    }
    if o.elf && o.codec.is_some() {
        bail!("-E writes pages uncompressed: it takes no -c, -l, -p or -z");
    }
    if o.rearrange && (o.codec.is_some() || o.elf || o.flatten || o.split) {
        bail!("-R copies the stream as it is: it takes no -c, -l, -p, -z, -E, -F or --split");
    }
    if o.rearrange {
        let [output] = o.files.as_slice() else { bail!("-R takes one DUMPFILE (the stream comes on stdin)") };
        if o.check_params {
            return Ok(());
        }
        crate::write::rearrange(std::path::Path::new("-"), output, overwrite(&o), true)?;
        return completed(common, Some(&output.display().to_string()), &[], false);
    }
    if o.reassemble {
        if o.codec.is_some() || o.elf || o.flatten || o.split {
            bail!(
                "--reassemble copies the split files' pages as they are: it takes no -c, -l, -p, -z, -E, -F or --split"
            );
        }
        if o.files.len() < 3 {
            bail!("--reassemble takes the split files and then the output file");
        }
        if o.check_params {
            return Ok(());
        }
        crate::write::reassemble(&o.files, overwrite(&o), level & 1 == 0)?;
        return completed(common, o.files.last().map(|p| p.display().to_string()).as_deref(), &[], false);
    }
    if o.dump_dmesg {
        let [input, output] = o.files.as_slice() else { bail!("--dump-dmesg takes VMCORE and LOGFILE") };
        if o.flatten || o.split || o.elf {
            bail!("--dump-dmesg writes the log to LOGFILE: it takes no -E, -F or --split");
        }
        if o.check_params {
            return Ok(());
        }
        let dump = crate::commands::open(&dump_args(input.clone(), &o))?;
        let machine = crate::commands::machine_without_symbols(&dump)?;
        // The whole log first (the ring's size at most): a log that cannot be read leaves
        // no file behind, as makedumpfile leaves none.
        let mut log = Vec::new();
        crate::dmesg::run(&dump, &machine, o.partial_dmesg, false, &mut log)?;
        let mut file = vmcore_writer::create_dump_file(output, o.force, &[input.as_path()]).with_context(|| {
            format!("{}: cannot create the log file (if it exists, -f overwrites it)", output.display())
        })?;
        file.write_all(&log).with_context(|| format!("writing {}", output.display()))?;
        if common {
            // kdump scripts send stdout to a log that may sit on the full dump disk.
            let _ = writeln!(io::stdout(), "\nThe dmesg log is saved to {}.", output.display());
        }
        return completed(common, None, &[], false);
    }
    if o.split && (o.elf || o.flatten) {
        bail!("--split writes kdump-compressed files: it takes neither -E nor -F");
    }
    // makedumpfile refuses these, though threads would do no harm here (0 is "no threads").
    if o.threads.is_some_and(|t| t > 0) {
        if o.split {
            bail!("--num-threads cannot be used with --split");
        }
        if o.elf {
            bail!("--num-threads cannot be used with ELF format (-E)");
        }
    }
    if o.flatten && o.limit.is_some() {
        bail!("-L limits a dump file; a flattened stream on stdout has none to stop");
    }
    if o.flatten && o.files.len() > 1 {
        bail!("-F writes the flattened dump to stdout: give only VMCORE");
    }
    let (input, output, split) = match (o.files.as_slice(), o.flatten, o.split) {
        ([input, outputs @ ..], _, true) if outputs.len() >= 2 => (input.clone(), None, outputs.to_vec()),
        (_, _, true) => bail!("--split takes VMCORE and at least two DUMPFILEs"),
        ([input, output], _, false) => (input.clone(), Some(output.clone()), Vec::new()),
        ([input], true, false) => (input.clone(), None, Vec::new()),
        _ => bail!("give VMCORE and DUMPFILE (see -h)"),
    };
    let codec = match o.codec {
        Some('l') => vmcore_writer::Codec::Lzo,
        Some('p') => vmcore_writer::Codec::Snappy,
        Some('z') => vmcore_writer::Codec::Zstd,
        Some('c') => vmcore_writer::Codec::Zlib,
        _ => vmcore_writer::Codec::Raw,
    };
    if o.check_params {
        return Ok(());
    }
    let args = dump_args(input.clone(), &o);
    let dump = crate::commands::open(&args)?;
    let machine = crate::commands::machine_without_symbols(&dump)?;
    let mut job = crate::write::DumpJob {
        output: output.as_deref(),
        level: o.levels.first().copied().unwrap_or(0),
        codec,
        flatten: o.flatten,
        threads: o.threads.map(|t| t.max(1)).or(Some(1)),
        limit: o.limit,
        bitmap_memory: o.bitmap_memory.unwrap_or(crate::write::DEFAULT_BITMAP_MEMORY),
        work_dir: o.work_dir.as_deref(),
        // makedumpfile's --work-dir takes its non-cyclic path, whatever the buffer; a
        // buffer it is given, its cyclic path.
        cycles: match (&o.work_dir, o.bitmap_memory) {
            (Some(_), _) => Some(vmcore_filter::Cycles::NonCyclic),
            (None, Some(_)) => Some(vmcore_filter::Cycles::GivenBuffer),
            (None, None) => None,
        },
        exclude_unused_vmemmap: o.exclude_unused_vmemmap,
        force: overwrite(&o),
        stats: o.show_stats || level & 16 != 0,
        dry_run: o.dry_run,
        dry_run_sizes: true,
        json: false,
        quiet: level & 1 == 0,
        messages: match (common, o.flatten) {
            (false, _) => crate::write::Messages::Off,
            (true, false) => crate::write::Messages::Stdout,
            (true, true) => crate::write::Messages::Stderr,
        },
    };
    let format = crate::write::DumpFormat {
        elf: o.elf,
        split: &split,
        splitblock_bytes: o.splitblock_kib.unwrap_or(0).saturating_mul(1024),
    };
    // makedumpfile prints the translation before it copies pages (so also when that
    // fails), as one of its common messages, on stderr under -F; 0 means none.
    if let (Some(vaddr), true) = (o.vtop.filter(|&v| v != 0), common) {
        let report = vmcore_report::vtop::vtop(&machine, vaddr);
        let mut text = String::new();
        vmcore_report::vtop::render_makedumpfile(&report, &mut text);
        messages(o.flatten).write_all(text.as_bytes())?;
        if let Some(why) = &report.error {
            eprintln!("makedumpfile (vmcore): --vtop {vaddr:#x}: {why}");
        }
    }
    // makedumpfile's retry: a dump that fills the disk (or -L) is written again at the
    // next level of the -d list, over the same files. A stream cannot be taken back.
    let mut retries = o.levels.iter().skip(1);
    loop {
        match crate::write::run_with(&dump, &machine, &input.display().to_string(), &job, &format)? {
            crate::write::Written::Complete => break,
            crate::write::Written::OutOfSpace if !o.flatten => match retries.next() {
                Some(&next) => {
                    if common {
                        eprintln!("makedumpfile (vmcore): out of space: writing the dump again at level {next}");
                    }
                    job.level = next;
                    job.force.allowed = true;
                }
                None => return Err(Reported.into()),
            },
            _ => return Err(Reported.into()),
        }
    }
    let saved = match (&output, o.flatten) {
        _ if o.dry_run => None,
        (_, true) => Some("STDOUT".to_string()),
        (Some(path), false) => Some(path.display().to_string()),
        (None, false) => None,
    };
    completed(common, saved.as_deref(), &split, o.flatten)
}

/// An error whose message was already printed (a dump left incomplete by the disk, -L or
/// Ctrl-C): only makedumpfile's closing line follows.
#[derive(Debug)]
struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the dump is incomplete")
    }
}

impl std::error::Error for Reported {}

/// Where makedumpfile's own messages go: stdout, or stderr when stdout carries a
/// flattened stream (-F).
fn messages(flatten: bool) -> Box<dyn Write> {
    if flatten {
        Box::new(io::stderr())
    } else {
        Box::new(io::stdout())
    }
}

/// makedumpfile's closing messages (message level bit 2).
fn completed(common: bool, saved: Option<&str>, split: &[PathBuf], flatten: bool) -> Result<()> {
    if common {
        let mut out = messages(flatten);
        if let Some(path) = saved {
            writeln!(out, "\nThe dumpfile is saved to {path}.")?;
        } else if let [first @ .., last] = split {
            let names: Vec<String> = first.iter().map(|p| format!("{}, ", p.display())).collect();
            writeln!(out, "\nThe dumpfiles are saved to {}and {}.", names.concat(), last.display())?;
        }
        writeln!(out, "\nmakedumpfile Completed.")?;
    }
    Ok(())
}

/// Runs the front end on `argv` (without the program name) and returns the exit code.
pub fn main(argv: Vec<OsString>) -> u8 {
    let argv: Vec<String> = argv.into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let (result, common, flatten) = match parse(argv) {
        Ok(o) => {
            // An invalid level is refused, and that refusal still closes with "Failed.".
            let (common, flatten) = (o.message_level.filter(|&l| l <= 31).unwrap_or(7) & 2 != 0, o.flatten);
            (run(o), common, flatten)
        }
        Err(e) => (Err(e), true, false),
    };
    match result {
        Ok(()) => COMPLETED,
        Err(e) => {
            if !e.is::<Reported>() {
                say!("makedumpfile (vmcore): {e:#}");
            }
            if common {
                let _ = writeln!(messages(flatten), "\nmakedumpfile Failed.");
            }
            let wrong_release = e.chain().any(|cause| {
                matches!(cause.downcast_ref(), Some(vmcore_kernel::dump::Error::WrongRelease { .. }))
                    || matches!(cause.downcast_ref(), Some(vmcore_kernel::machine::Error::WrongRelease(_)))
            });
            if wrong_release {
                WRONG_RELEASE
            } else {
                FAILED
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Opts> {
        parse(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn kdump_tools_invocations_parse() {
        let o = p(&["-l", "--message-level", "7", "-d", "31", "/proc/vmcore", "/var/crash/dump"]).unwrap();
        assert_eq!((o.codec, o.levels.clone(), o.message_level), (Some('l'), vec![31], Some(7)));
        assert_eq!(o.files.len(), 2);
        let o = p(&["-F", "-c", "-d31", "--num-threads=4", "/proc/vmcore"]).unwrap();
        assert!(o.flatten && o.codec == Some('c') && o.levels == vec![31] && o.threads == Some(4));
        let o = p(&["-cd", "11,31", "-L", "1G", "in", "out"]).unwrap();
        assert_eq!((o.codec, o.levels.clone(), o.limit), (Some('c'), vec![11, 31], Some(1 << 30)));
        let o = p(&["-E", "-d", "1", "--cyclic-buffer", "1024", "--non-mmap", "-b", "8", "--work-dir=/w", "in", "out"])
            .unwrap();
        assert!(o.elf && o.bitmap_memory == Some(512 << 10) && o.work_dir == Some(PathBuf::from("/w")));
        assert_eq!(o.files, [PathBuf::from("in"), PathBuf::from("out")]);
        // --non-mmap takes no value.
        let o = p(&["-c", "--non-mmap", "/proc/vmcore", "out"]).unwrap();
        assert_eq!(o.files, [PathBuf::from("/proc/vmcore"), PathBuf::from("out")]);
        let o = p(&["--split", "-d", "31", "--splitblock-size", "4096", "in", "o1", "o2"]).unwrap();
        assert!(o.split && o.files.len() == 3 && o.splitblock_kib == Some(4096));
    }

    #[test]
    fn unimplemented_options_are_refused_not_ignored() {
        for args in
            [&["-x", "vmlinux", "in", "out"][..], &["--config", "f"], &["--eppic", "x"], &["-X"], &["--bogus"], &["-q"]]
        {
            assert!(p(args).is_err(), "{args:?} was accepted");
        }
        assert!(p(&["-d", "32", "in", "out"]).is_err());
        assert!(p(&["-d"]).is_err());
    }
}
