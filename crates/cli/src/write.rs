//! `vmcore dump`: filter, compress and write; `vmcore rearrange` and `vmcore reassemble`.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vmcore_kernel::machine::Machine;
use vmcore_kernel::Dump;
use vmcore_physmem::Container;
use vmcore_report::filter::FilterReport;
use vmcore_types::ReadAt;
use vmcore_writer::{Codec, FileOutput, FlatOutput, KdumpMeta, Output, Progress, WriteOptions, WriteReport};

/// What `vmcore dump` was asked to do.
pub struct DumpJob<'a> {
    pub output: Option<&'a Path>,
    pub level: u32,
    pub codec: Codec,
    pub flatten: bool,
    pub threads: Option<usize>,
    pub limit: Option<u64>,
    /// Bytes of memory each bitmap keeps before it spills to `work_dir`.
    pub bitmap_memory: u64,
    /// Where bitmaps spill (default: the output's directory, else $TMPDIR).
    pub work_dir: Option<&'a Path>,
    /// How makedumpfile would go through the frames when its options say (the front
    /// end's --work-dir and --cyclic-buffer); None: as it sizes its own buffer.
    pub cycles: Option<vmcore_filter::Cycles>,
    /// makedumpfile -e: leave out the vmemmap pages that describe only excluded frames.
    pub exclude_unused_vmemmap: bool,
    pub force: Overwrite,
    pub stats: bool,
    pub dry_run: bool,
    /// A dry run compresses the pages, writing nothing, to report the bytes the file would
    /// take, as makedumpfile's --dry-run does (the front end); otherwise it only filters.
    pub dry_run_sizes: bool,
    pub json: bool,
    pub quiet: bool,
    /// Where makedumpfile's common messages go (the front end: stdout, stderr under -F,
    /// none without message level bit 2); vmcore's own commands: stderr.
    pub messages: Messages,
}

/// The filter's counts with the zero pages the kdump writer found (the filter leaves them
/// to it, which checks each page as it compresses it), when the level excludes them.
fn with_writers_zero_pages(mut stats: vmcore_filter::Stats, level: u32, zero: u64) -> vmcore_filter::Stats {
    if level & 1 != 0 {
        stats.zero = zero;
        stats.excluded_pages += zero;
        stats.remaining_pages = stats.remaining_pages.saturating_sub(zero);
    }
    stats
}

/// Threads a dump runs at most: each holds its buffers, and past the cores of any machine
/// more only cost memory (and their start-up: 100,000 took seconds).
const MAX_THREADS: usize = 256;

/// A destination for informational messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Messages {
    Off,
    /// makedumpfile's common messages, on stdout: as its own, without a newline (the
    /// next one starts with one).
    Stdout,
    /// The same on stderr (-F, whose stdout is the stream).
    Stderr,
    /// vmcore's own commands: a line on stderr.
    Line,
}

impl Messages {
    fn say(self, text: &str) {
        let _ = match self {
            Messages::Off => Ok(()),
            Messages::Stdout => write!(io::stdout(), "{text}"),
            Messages::Stderr => write!(io::stderr(), "{text}"),
            Messages::Line => writeln!(io::stderr(), "vmcore: {text}"),
        };
    }
}

/// Whether an existing output file may be replaced, and the option that allows it (named
/// when it may not: `--force` in vmcore, `-f` in the makedumpfile front end).
#[derive(Debug, Clone, Copy)]
pub struct Overwrite {
    pub allowed: bool,
    pub option: &'static str,
}

impl Overwrite {
    /// vmcore's own commands: `--force`.
    pub fn vmcore(allowed: bool) -> Overwrite {
        Overwrite { allowed, option: "--force" }
    }
}

/// `--bitmap-memory`'s default: 256 GiB of RAM where kept and excluded pages mix, per
/// bitmap, before spilling.
pub const DEFAULT_BITMAP_MEMORY: u64 = 8 << 20;

/// The format options beyond [`DumpJob`]: ELF output, a split set.
#[derive(Default)]
pub struct DumpFormat<'a> {
    /// ELF output (-E).
    pub elf: bool,
    /// The files of a --split set (none: one output).
    pub split: &'a [PathBuf],
    /// --splitblock-size, in bytes (0: makedumpfile's default, 1 GiB).
    pub splitblock_bytes: u64,
}

/// A progress bar on stderr when it is a terminal, nothing otherwise.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn set_total(&self, pages: u64) {
        self.0.set_length(pages);
    }
    fn advance(&self, pages: u64) {
        self.0.inc(pages);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn visible(quiet: bool) -> bool {
    !quiet && io::stderr().is_terminal()
}

/// The bar of a write: pages done of the total, rate, time left.
fn bar(quiet: bool, unit: &str) -> Bar {
    if !visible(quiet) {
        return Bar(indicatif::ProgressBar::hidden());
    }
    let template = format!("{{spinner}} {{elapsed_precise}} [{{wide_bar}}] {{percent:>3}}% {{human_pos}}/{{human_len}} {unit}, ETA {{eta}}");
    let style = indicatif::ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    Bar(indicatif::ProgressBar::new(0).with_style(style))
}

/// A spinner for a phase without a count (filtering, a stream of unknown length).
fn spinner(quiet: bool, message: String, bytes: bool) -> indicatif::ProgressBar {
    if !visible(quiet) {
        return indicatif::ProgressBar::hidden();
    }
    let template = if bytes {
        "{spinner} {elapsed_precise} {bytes} ({bytes_per_sec}) {wide_msg}"
    } else {
        "{spinner} {elapsed_precise} {wide_msg}"
    };
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
    let s = indicatif::ProgressBar::new_spinner().with_style(style).with_message(message);
    // Drawn at once: the ticker's first draw comes a tick later, and a phase that ends
    // sooner would otherwise never say what it was doing.
    s.tick();
    s.enable_steady_tick(Duration::from_millis(120));
    s
}

fn print_report(report: &FilterReport, job: &DumpJob) -> Result<()> {
    let text = match (job.json, job.messages) {
        (true, _) => serde_json::to_string_pretty(report)? + "\n",
        (false, Messages::Line) => report.render(),
        // The front end's report starts after a blank line, as makedumpfile's: its
        // messages before it end without a newline.
        (false, Messages::Off | Messages::Stdout | Messages::Stderr) => format!("\n{}", report.render()),
    };
    if job.flatten {
        io::stderr().write_all(text.as_bytes())?;
    } else {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// Removes `path` if a command that created it failed before writing anything, so that a
/// retry is not refused because the file exists.
fn discard_if_empty(path: &Path) {
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
        let _ = std::fs::remove_file(path);
    }
}

/// After a failed write into `path`, a file this command created (or emptied with
/// --force): removed when the writer left no dump in it (its headers never became whole:
/// readers would take it for a dump, libkdumpfile read one as every page excluded or died
/// on it), otherwise only when it stayed empty.
fn discard_after(path: &Path, e: &vmcore_writer::Error) {
    if e.left_no_dump() {
        // A device given as the output stays (unlinking /dev/sdX helps nobody).
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
            let _ = std::fs::remove_file(path);
        }
    } else {
        discard_if_empty(path);
    }
}

/// Creates a dump file that is none of `inputs`.
fn create(path: &Path, force: Overwrite, inputs: &[&Path]) -> Result<std::fs::File> {
    vmcore_writer::create_dump_file(path, force.allowed, inputs).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::AlreadyExists {
            format!(" ({} overwrites it)", force.option)
        } else {
            String::new()
        };
        anyhow::anyhow!("{}: cannot create the dump: {e}{hint}", path.display())
    })
}

fn stdout_stream() -> Result<FlatOutput<io::BufWriter<io::Stdout>>> {
    let stdout = io::stdout();
    if stdout.is_terminal() {
        bail!("refusing to write a flattened dump to a terminal: redirect stdout");
    }
    if stdout_was_closed() {
        bail!("standard output is closed: a flattened dump needs somewhere to go (a pipe or a file)");
    }
    Ok(FlatOutput::new(io::BufWriter::with_capacity(1 << 20, stdout)))
}

/// Whether descriptor 1 was closed when vmcore started. Rust's runtime then opens
/// /dev/null read-write in its place, where a shell's `>/dev/null` opens it write-only; so
/// /dev/null open read-write is taken as a closed stdout, which makedumpfile reports as
/// EBADF rather than writing a whole dump to nowhere and exiting 0. Without /proc, no check.
fn stdout_was_closed() -> bool {
    let is_null = std::fs::read_link("/proc/self/fd/1").is_ok_and(|p| p == Path::new("/dev/null"));
    let flags = std::fs::read_to_string("/proc/self/fdinfo/1").ok().and_then(|info| {
        let octal = info.lines().find_map(|l| l.strip_prefix("flags:"))?.trim().to_string();
        u32::from_str_radix(&octal, 8).ok()
    });
    const O_ACCMODE: u32 = 0o3;
    const O_RDWR: u32 = 0o2;
    is_null && flags.is_some_and(|f| f & O_ACCMODE == O_RDWR)
}

/// The flag Ctrl-C (SIGINT) and SIGTERM set: the writers then close their output as a
/// valid incomplete dump. One handler for the process (the crate allows one), installed
/// on first use, so that the makedumpfile front end's retry at the next dump level is
/// interrupted too.
fn stop_flag() -> Arc<AtomicBool> {
    static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    Arc::clone(STOP.get_or_init(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let handler_stop = Arc::clone(&stop);
        // A second signal while the first is being handled changes nothing: the dump is
        // closed as incomplete either way.
        let _ = ctrlc::set_handler(move || handler_stop.store(true, Ordering::Relaxed));
        stop
    }))
}

/// The dump level of a dump made from `dump` at `level`: a kdump file's pages left out stay
/// out, so its own level is ORed in, as makedumpfile does (and says, in its words).
fn refiltered_level(dump: &Dump, name: &str, level: u32, messages: Messages) -> u32 {
    let Container::Kdump { mem, .. } = &dump.container else { return level };
    let Some(input) = mem.primary().and_then(|k| k.sub.dump_level) else { return level };
    // Bits past the five levels mean nothing; a corrupt header's are taken for what the
    // five low ones say (makedumpfile ORs the whole number, -1 excluding everything).
    let bits = input as u32 & 31;
    if !(0..=31).contains(&input) {
        say!("vmcore: warning: {name}: its header says dump level {input}, not 0-31: taken as {bits}");
    }
    let merged = level | bits;
    if merged != level {
        messages.say(&format!("dump_level is changed to {merged}, because {name} was created by dump_level({input})."));
    }
    merged
}

/// Writes the dump `job` and `format` say.
pub fn run_with(dump: &Dump, machine: &Machine, name: &str, job: &DumpJob, format: &DumpFormat) -> Result<Written> {
    if !job.codec.is_supported() && !format.elf {
        bail!("this build of vmcore was built without {} (cargo feature {0})", job.codec.name());
    }
    let splitblock_bytes =
        if format.splitblock_bytes == 0 { vmcore_writer::DEFAULT_SPLITBLOCK_BYTES } else { format.splitblock_bytes };
    if !format.split.is_empty() && splitblock_bytes % dump.mem.page_size() != 0 {
        bail!("--splitblock-size {} KiB is not a whole number of pages", splitblock_bytes / 1024);
    }
    if format.elf && !matches!(dump.container, Container::Elf { .. }) {
        bail!("{name}: -E writes ELF dumps from ELF inputs (/proc/vmcore or an ELF vmcore); this input is kdump-compressed");
    }
    let level = refiltered_level(dump, name, job.level, job.messages);
    let mut threads = job.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    if threads > MAX_THREADS {
        say!("vmcore: warning: {threads} threads asked for: using {MAX_THREADS}, the most vmcore runs");
        threads = MAX_THREADS;
    }
    let mut fopts = vmcore_filter::Options {
        threads,
        cut_at_last_section: !format.elf,
        elf_output: format.elf,
        cycles: job.cycles.unwrap_or(vmcore_filter::Cycles::Sized { files: format.split.len().max(1) }),
        ..vmcore_filter::Options::default()
    };
    let beside_output = format
        .split
        .first()
        .map(PathBuf::as_path)
        .or(job.output)
        .filter(|_| !job.flatten && !job.dry_run)
        .map(|out| out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")));
    let spill_dir = job.work_dir.or(beside_output).map_or_else(std::env::temp_dir, Path::to_path_buf);
    fopts.bitmap_storage = Some(Arc::new(vmcore_filter::BitmapStorage { dir: spill_dir, memory: job.bitmap_memory }));
    // An ELF dump of an input that fails midway keeps the pages before the failure, as a
    // kdump-compressed one does: the zero scan before it must not stop at the failure.
    fopts.unreadable_not_zero = format.elf && !job.dry_run;
    // A dry run that reports a compressed file's size writes the file into nothing.
    let sized_dry_run = job.dry_run && job.stats && job.dry_run_sizes && !format.elf && format.split.is_empty();
    if (!job.dry_run || sized_dry_run) && !format.elf {
        // The kdump writer checks every page for zeros as it compresses it. The ELF writer
        // takes them from the filter, which counts them as makedumpfile's ELF writer does
        // (and -e needs them first: they are out of the dump, so it counts them excluded).
        fopts.scan_zero_pages = false;
    }
    let filtering = spinner(job.quiet, format!("filtering at dump level {}: {name}", level), false);
    let filtered = vmcore_filter::filter(dump, machine, level, &fopts)
        .with_context(|| format!("{name}: filtering at dump level {}", level));
    filtering.finish_and_clear();
    let mut filtered = filtered?;
    if job.exclude_unused_vmemmap {
        let done = dump.require_vmcoreinfo().map_err(|e| e.to_string()).and_then(|vi| {
            vmcore_filter::exclude_unused_vmemmap(vi, machine, &mut filtered, format.elf).map_err(|e| e.to_string())
        });
        match done {
            Ok(done) => say!("vmcore: {name}: excluded {} unused vmemmap pages", done.pages),
            // As makedumpfile goes on without -e where it cannot find the vmemmap.
            Err(e) => say!("vmcore: warning: {name}: {e}; the dump is written without it"),
        }
    }
    // The filter ends the bitmaps at the kernel's last memory section (see
    // `Options::cut_at_last_section`): what the input describes past it is left out.
    let (frames, kept) = (dump.mem.max_pfn(), filtered.present.len());
    if frames > kept {
        let ps = dump.mem.page_size();
        say!(
            "vmcore: warning: {name} describes memory up to {:#x}, past the kernel's last memory section at {:#x}: \
             the {} frames past it have no struct page and are left out, as makedumpfile leaves them",
            frames.saturating_mul(ps),
            kept.saturating_mul(ps),
            frames - kept
        );
    }
    for warning in &filtered.warnings {
        say!("vmcore: warning: {name}: {warning}");
    }
    if let Some(why) = filtered.dumpable.spill_stopped().or(filtered.present.spill_stopped()) {
        say!("vmcore: warning: bitmaps could not spill to {why}; they stay in memory, past --bitmap-memory");
    }
    let meta = || KdumpMeta::from_dump(dump, machine).with_context(|| format!("{name}: reading its metadata"));
    let vmcoreinfo_text = dump.vmcoreinfo.as_ref().map(|vi| vi.raw());
    let progress = bar(job.quiet || job.flatten && io::stdout().is_terminal(), "pages");
    if job.dry_run {
        if !job.stats {
            return Ok(Written::Complete);
        }
        // With -F stdout is the stream's, even when there is none: scripts pipe it on.
        let mut report = FilterReport::new(level, &filtered.stats);
        match &dump.container {
            Container::Elf { core, .. } if format.elf => {
                // Nothing to compress: what the file would hold is known, as in makedumpfile.
                let (pages, write_bytes) =
                    vmcore_writer::elf_plan(core, &filtered, dump.mem.page_size(), vmcoreinfo_text);
                report = report.with_pages_in_elf(pages).with_write_bytes(write_bytes);
            }
            // The size of a compressed file takes compressing it, as makedumpfile's dry run
            // does (a split set's makedumpfile does not report). No Ctrl-C handler: there
            // is no file to close, and the default ends the run.
            _ if sized_dry_run => {
                let (opts, meta) = (WriteOptions { codec: job.codec, threads, stop: None }, meta()?);
                let mut discard = FlatOutput::new(io::sink());
                let written = vmcore_writer::write_kdump(&mut discard, &*dump.mem, &filtered, &meta, &opts, &progress)
                    .map_err(|e| match e {
                        // Nothing was closed: the page that failed is the whole story.
                        vmcore_writer::Error::Incomplete { cause, .. } => *cause,
                        e => e,
                    })?;
                let bytes = if job.flatten { discard.stream_len() } else { written.write_bytes };
                let stats = with_writers_zero_pages(filtered.stats, level, written.zero_pages);
                report = FilterReport::new(level, &stats).with_write_bytes(bytes);
            }
            _ => {}
        }
        print_report(&report, job)?;
        return Ok(Written::Complete);
    }
    let meta = meta()?;
    let stop = stop_flag();
    stop.store(false, Ordering::Relaxed);
    let opts = WriteOptions { codec: job.codec, threads, stop: Some(Arc::clone(&stop)) };
    let mem = &*dump.mem;

    let write_to = |out: &mut dyn Output| -> Result<WriteReport> {
        if format.elf {
            let Container::Elf { core, src, .. } = &dump.container else {
                bail!("{name}: not an ELF input");
            };
            Ok(vmcore_writer::write_elf(out, core, &**src, mem, &filtered, vmcoreinfo_text, &opts, &progress)?)
        } else {
            Ok(vmcore_writer::write_kdump(out, mem, &filtered, &meta, &opts, &progress)?)
        }
    };
    let reports: Vec<(String, WriteReport)> = if !format.split.is_empty() {
        let block_pages = splitblock_bytes / mem.page_size();
        let ranges = vmcore_writer::split_ranges(&filtered.dumpable, format.split.len(), block_pages);
        let mut files = Vec::with_capacity(format.split.len());
        // Each part must be a file of its own, and not the input.
        let mut taken: Vec<&Path> = vec![Path::new(name)];
        // The first `n` parts, when they stayed empty. Only parts created here: the one
        // that could not be created may be someone else's file.
        let discard = |n: usize| format.split.iter().take(n).for_each(|p| discard_if_empty(p));
        for path in format.split {
            match create(path, job.force, &taken) {
                Ok(file) => files.push(FileOutput::new(file, job.limit)),
                Err(e) => {
                    discard(files.len());
                    return Err(e);
                }
            }
            taken.push(path);
        }
        let mut outs: Vec<&mut dyn Output> = files.iter_mut().map(|f| f as &mut dyn Output).collect();
        let reports = vmcore_writer::write_kdump_split(&mut outs, &ranges, mem, &filtered, &meta, &opts, &progress)
            .inspect_err(|e| format.split.iter().for_each(|p| discard_after(p, e)))
            .map_err(|e| match e {
                vmcore_writer::Error::SplitFile { index, cause } => {
                    let later = match format.split.get(index + 1..).unwrap_or_default() {
                        [] => String::new(),
                        rest => {
                            let names: Vec<String> = rest.iter().map(|p| p.display().to_string()).collect();
                            format!("; {} hold no pages and are marked incomplete too", names.join(", "))
                        }
                    };
                    let path = format.split.get(index).map(|p| p.display().to_string()).unwrap_or_default();
                    anyhow::anyhow!("writing {path}: {cause}{later}")
                }
                e => anyhow::Error::new(e).context("writing the split files"),
            })?;
        format.split.iter().map(|p| p.display().to_string()).zip(reports).collect()
    } else if job.flatten {
        let mut out = stdout_stream()?;
        let report = write_to(&mut out)?;
        vec![("stdout".into(), WriteReport { write_bytes: out.stream_len(), ..report })]
    } else {
        let path = job.output.context("no output file given")?;
        let mut out = FileOutput::new(create(path, job.force, &[Path::new(name)])?, job.limit);
        let report = write_to(&mut out)
            .inspect_err(|e| match e.downcast_ref::<vmcore_writer::Error>() {
                Some(e) => discard_after(path, e),
                None => discard_if_empty(path),
            })
            .with_context(|| format!("writing {}", path.display()))?;
        vec![(path.display().to_string(), report)]
    };

    let stats = if format.elf {
        filtered.stats
    } else {
        with_writers_zero_pages(filtered.stats, level, reports.iter().map(|(_, r)| r.zero_pages).sum())
    };
    if job.stats {
        // A split set's files add up (makedumpfile prints 0 there, its children writing them).
        let write_bytes = reports.iter().map(|(_, r)| r.write_bytes).sum();
        let mut report = FilterReport::new(level, &stats).with_write_bytes(write_bytes);
        if format.elf {
            // What the file holds: an incomplete one, less than was planned.
            report = report.with_pages_in_elf(reports.iter().map(|(_, r)| r.pages_written).sum());
        }
        print_report(&report, job)?;
    }
    let mut incomplete = false;
    for (file, report) in &reports {
        if report.incomplete {
            incomplete = true;
            let why = if stop.load(Ordering::Relaxed) { "interrupted" } else { "out of space or at the size limit" };
            say!(
                "vmcore: {file}: the dump is INCOMPLETE ({why}): {} of {} pages written, the rest read as not written",
                report.pages_written,
                report.pages
            );
        }
    }
    Ok(match (incomplete, stop.load(Ordering::Relaxed)) {
        (false, _) => Written::Complete,
        (true, true) => Written::Interrupted,
        (true, false) => Written::OutOfSpace,
    })
}

/// How a dump ended. An incomplete one is a valid dump, and still exit status 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Complete,
    /// Ctrl-C.
    Interrupted,
    /// The disk filled or the size limit was reached.
    OutOfSpace,
}

/// `vmcore rearrange IN OUT`.
pub fn rearrange(input: &Path, output: &Path, force: Overwrite, quiet: bool) -> Result<()> {
    let mut reader: Box<dyn Read> = if input.as_os_str() == "-" {
        if io::stdin().is_terminal() {
            bail!("refusing to read a flattened stream from a terminal: pipe it in");
        }
        Box::new(io::BufReader::with_capacity(1 << 20, io::stdin().lock()))
    } else {
        let f = std::fs::File::open(input).with_context(|| format!("{}: cannot open", input.display()))?;
        Box::new(io::BufReader::with_capacity(1 << 20, f))
    };
    let source = if input.as_os_str() == "-" { Path::new("/dev/stdin") } else { input };
    let mut out = FileOutput::new(create(output, force, &[source])?, None);
    let progress = Bar(spinner(quiet, format!("rearranging into {}", output.display()), true));
    let shown = if input.as_os_str() == "-" { "stdin".to_string() } else { input.display().to_string() };
    let stop = stop_flag();
    vmcore_writer::rearrange(&mut reader, &mut out, &progress, Some(&stop)).map_err(|e| {
        discard_after(output, &e);
        let kept = if output.exists() { " (the file holds what came before)" } else { "" };
        anyhow::Error::new(e).context(format!("{shown} -> {}: rearranging stopped{kept}", output.display()))
    })?;
    // Every chunk landed, but a stream's chunks may still overwrite its own headers: the
    // file must open as a dump for the command to have done its job.
    vmcore_physmem::open_container(&[output.to_path_buf()])
        .with_context(|| format!("{shown} -> {}: the rearranged file is not a dump", output.display()))?;
    Ok(())
}

/// `vmcore reassemble IN... OUT`.
pub fn reassemble(files: &[PathBuf], force: Overwrite, quiet: bool) -> Result<()> {
    let Some((output, inputs)) = files.split_last() else { bail!("give the split files and then the output file") };
    if inputs.is_empty() {
        bail!("give the split files and then the output file");
    }
    let mut parts: Vec<(String, Arc<dyn ReadAt>)> = Vec::with_capacity(inputs.len());
    for p in inputs {
        let f = vmcore_formats::FileSource::open(p).with_context(|| format!("{}: cannot open", p.display()))?;
        parts.push((p.display().to_string(), Arc::new(f)));
    }
    let sources: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let mut out = FileOutput::new(create(output, force, &sources)?, None);
    let progress = bar(quiet, "pages");
    let stop = stop_flag();
    let report = vmcore_writer::reassemble(parts, &mut out, &progress, Some(&stop))
        .inspect_err(|e| discard_after(output, e))
        .with_context(|| format!("reassembling into {}", output.display()))?;
    if report.incomplete {
        say!(
            "vmcore: {}: the dump is INCOMPLETE (a part was, or the disk filled): {} of {} pages, the rest read as not written",
            output.display(),
            report.pages_written,
            report.pages
        );
        std::process::exit(1);
    }
    Ok(())
}
