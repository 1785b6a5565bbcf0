//! Benchmark helper: extract the kernel log of a dump, as `vmcore dmesg FILE` does.
//!
//! Usage: `dmesg FILE [OUT] [--partial]`. Writes makedumpfile's `--dump-dmesg` text to OUT
//! (stdout when absent) and one JSON line of timings to stderr: opening the dump, knowing
//! the machine (layout, kallsyms), reading the log, rendering it.
use std::io::Write;
use std::time::Instant;

use vmcore_kernel::machine::Machine;
use vmcore_kernel::printk::{read_log, render, Escape, Options};
use vmcore_kernel::{Dump, OpenOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let partial = args.iter().any(|a| a == "--partial");
    let mut pos = args.iter().filter(|a| !a.starts_with("--"));
    let file = pos.next().ok_or("usage: dmesg FILE [OUT] [--partial]")?;
    let out_path = pos.next();
    let t0 = Instant::now();
    let dump = Dump::open(&[file.into()], &OpenOptions::default())?;
    let t_open = t0.elapsed();
    let machine = Machine::new(&dump)?;
    let t_machine = t0.elapsed();
    let vi = dump.vmcoreinfo.as_ref().ok_or("no VMCOREINFO")?;
    let read = |a: u64, b: &mut [u8]| machine.kmem.read(a, b).map_err(|e| e.to_string());
    let log = read_log(vi, &read, &Options { partial, live: false })?;
    let t_read = t0.elapsed();
    for w in &log.warnings {
        eprintln!("warning: {w}");
    }
    let mut text = Vec::new();
    render(&log, Escape::for_arch(machine.arch), &mut text)?;
    match out_path {
        Some(p) => std::fs::write(p, &text)?,
        None => std::io::stdout().lock().write_all(&text)?,
    }
    let t_all = t0.elapsed();
    eprintln!(
        "{{\"file\":{file:?},\"records\":{},\"bytes\":{},\"open_s\":{:.6},\"machine_s\":{:.6},\"read_s\":{:.6},\"total_s\":{:.6}}}",
        log.records.len(),
        text.len(),
        t_open.as_secs_f64(),
        (t_machine - t_open).as_secs_f64(),
        (t_read - t_machine).as_secs_f64(),
        t_all.as_secs_f64()
    );
    Ok(())
}
