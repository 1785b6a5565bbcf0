//! `vmcore dump`: filter, compress and write.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use vmcore_kernel::machine::Machine;
use vmcore_kernel::Dump;
use vmcore_report::filter::FilterReport;
use vmcore_writer::{Codec, KdumpMeta, Progress, WriteOptions};

/// What `vmcore dump` was asked to do.
pub struct DumpJob<'a> {
    pub output: Option<&'a Path>,
    pub level: u32,
    pub codec: Codec,
    pub flatten: bool,
    pub threads: Option<usize>,
    pub limit: Option<u64>,
    pub force: bool,
    pub stats: bool,
    pub dry_run: bool,
    pub json: bool,
    pub quiet: bool,
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

fn bar(quiet: bool) -> Bar {
    if quiet || !io::stderr().is_terminal() {
        return Bar(indicatif::ProgressBar::hidden());
    }
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{bar:40}] {pos}/{len} pages, {per_sec}, ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    Bar(indicatif::ProgressBar::new(0).with_style(style))
}

fn print_report(report: &FilterReport, json: bool, to_stderr: bool) -> Result<()> {
    let text = if json { serde_json::to_string_pretty(report)? + "\n" } else { report.render() };
    if to_stderr {
        io::stderr().write_all(text.as_bytes())?;
    } else {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

pub fn run(dump: &Dump, machine: &Machine, name: &str, job: &DumpJob) -> Result<()> {
    let mut fopts = vmcore_filter::Options::default();
    if !job.dry_run {
        // The writer checks every page for zeros as it copies it.
        fopts.scan_zero_pages = false;
    }
    let filtered = vmcore_filter::filter(dump, machine, job.level, &fopts)
        .with_context(|| format!("{name}: filtering at dump level {}", job.level))?;
    if job.dry_run {
        return print_report(&FilterReport::new(job.level, &filtered.stats), job.json, false);
    }
    let meta = KdumpMeta::from_dump(dump, machine).with_context(|| format!("{name}: reading its metadata"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = Arc::clone(&stop);
    // A second Ctrl-C while the first is being handled is ignored: the dump is closed as
    // incomplete either way.
    let _ = ctrlc::set_handler(move || handler_stop.store(true, Ordering::Relaxed));
    let threads = job.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let opts = WriteOptions { codec: job.codec, threads: threads.max(1), stop: Some(Arc::clone(&stop)) };
    let progress = bar(job.quiet || job.flatten && io::stdout().is_terminal());
    let report = if job.flatten {
        let stdout = io::stdout();
        if stdout.is_terminal() {
            anyhow::bail!("refusing to write a flattened dump to a terminal: redirect stdout");
        }
        let mut out = vmcore_writer::FlatOutput::new(io::BufWriter::with_capacity(1 << 20, stdout));
        vmcore_writer::write_kdump(&mut out, &*dump.mem, &filtered, &meta, &opts, &progress)?
    } else {
        let path = job.output.context("no output file given")?;
        let file = vmcore_writer::create_dump_file(path, job.force).with_context(|| {
            format!("{}: cannot create the dump (it exists? use --force to overwrite)", path.display())
        })?;
        let mut out = vmcore_writer::FileOutput::new(file, job.limit);
        vmcore_writer::write_kdump(&mut out, &*dump.mem, &filtered, &meta, &opts, &progress)
            .with_context(|| format!("writing {}", path.display()))?
    };
    let mut stats = filtered.stats;
    if job.level & 1 != 0 {
        stats.zero = report.zero_pages;
        stats.excluded_pages += report.zero_pages;
        stats.remaining_pages = stats.remaining_pages.saturating_sub(report.zero_pages);
    }
    if job.stats {
        print_report(&FilterReport::new(job.level, &stats), job.json, job.flatten)?;
    }
    if report.incomplete {
        let why = if stop.load(Ordering::Relaxed) { "interrupted" } else { "out of space or at the size limit" };
        eprintln!(
            "vmcore: the dump is INCOMPLETE ({why}): {} of {} pages written, the rest read as not written",
            report.pages_written, report.pages
        );
        std::process::exit(1);
    }
    Ok(())
}
