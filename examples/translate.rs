//! Benchmark: page-table translations per second over every direct-map page of a dump.
//!
//! Usage: `translate FILE [--passes N]`. Prints one JSON line. The first pass walks the
//! tables (TLB cold); later passes show the TLB's effect. The walk is the x86_64 walker over
//! the dump's own tables, not the direct-map shortcut.
use std::time::Instant;

use vmcore_kernel::machine::{Layout, Machine};
use vmcore_kernel::{Dump, OpenOptions};
use vmcore_physmem::PageState;
use vmcore_types::Pfn;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let file = args.get(1).ok_or("usage: translate FILE [--passes N]")?;
    let passes: usize = match args.iter().position(|a| a == "--passes") {
        Some(i) => args.get(i + 1).ok_or("--passes N")?.parse()?,
        None => 3,
    };
    let dump = Dump::open(&[file.into()], &OpenOptions::default())?;
    let machine = Machine::new(&dump)?;
    let Layout::X86_64(layout) = &machine.layout else { return Err("x86_64 dumps only".into()) };
    let pob = layout.page_offset_base.value.ok_or("page_offset_base unknown")?;
    let pfns: Vec<u64> = (0..dump.mem.max_pfn())
        .filter(|&p| matches!(dump.mem.page_state(Pfn(p)), Ok(PageState::Dumped | PageState::Excluded)))
        .collect();
    let mut per_pass = Vec::new();
    let mut sum = 0u64;
    for _ in 0..passes {
        let t = Instant::now();
        for &pfn in &pfns {
            sum = sum.wrapping_add(machine.kmem.walk(pob + pfn * 4096)?);
        }
        per_pass.push(pfns.len() as f64 / t.elapsed().as_secs_f64());
    }
    println!(
        "{{\"tool\":\"vmcore\",\"file\":{file:?},\"pages\":{},\"translations_per_sec\":{:?},\"checksum\":\"{sum:#x}\"}}",
        pfns.len(),
        per_pass.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    Ok(())
}
