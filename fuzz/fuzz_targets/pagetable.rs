//! Page-table walks (x86_64 4/5-level, arm64 of every granule) over memory the input
//! gives: `translate` of two addresses, `first_mapped` between them, and `trace` (which
//! must agree with `translate`).
//!
//! Physical addresses wrap around the input's pages, so every table pointer lands on
//! data the fuzzer controls: loops, shared tables and deep walks come up at once. A walk
//! that reads more than `MAX_READS` pages fails the run (the search that cost 512^levels
//! reads before its memo would).
#![no_main]
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vmcore_physmem::{PageState, PhysMem, PhysRange};
use vmcore_translate::{Mmu, Walker};
use vmcore_types::{Pfn, PhysAddr};

const MAX_READS: usize = 100_000;

#[derive(Debug)]
struct Wrapping {
    data: Vec<u8>,
    page_size: u64,
    reads: AtomicUsize,
}

impl PhysMem for Wrapping {
    fn page_size(&self) -> u64 {
        self.page_size
    }
    fn max_pfn(&self) -> u64 {
        1 << 40
    }
    fn page_state(&self, _pfn: Pfn) -> vmcore_physmem::Result<PageState> {
        Ok(PageState::Dumped)
    }
    fn read_page(&self, pfn: Pfn, buf: &mut [u8]) -> vmcore_physmem::Result<PageState> {
        assert!(self.reads.fetch_add(1, Ordering::Relaxed) < MAX_READS, "more than {MAX_READS} page reads");
        let pages = (self.data.len() as u64 / self.page_size).max(1);
        let at = ((pfn.0 % pages) * self.page_size) as usize;
        buf.copy_from_slice(&self.data[at..at + buf.len()]);
        Ok(PageState::Dumped)
    }
    fn ranges(&self) -> Vec<PhysRange> {
        vec![PhysRange { start: 0, end: 1 << 52 }]
    }
}

fuzz_target!(|data: &[u8]| {
    let [config, rest @ ..] = data else { return };
    let config = *config;
    let Some((addrs, memory)) = rest.split_first_chunk::<16>() else { return };
    let mmu = match config % 8 {
        0 => Mmu::x86_64(4, 0),
        1 => Mmu::x86_64(5, 1 << 47),
        n => {
            let page_shift = [12, 14, 16][(n as usize - 2) % 3];
            let va_bits = [39, 42, 47, 48, 52][(config as usize / 8) % 5];
            let Some(mmu) = Mmu::aarch64(page_shift, va_bits, config & 0x80 != 0) else { return };
            mmu
        }
    };
    let page_size = mmu.page_size();
    let mut bytes = memory.to_vec();
    bytes.resize(bytes.len().next_multiple_of(page_size as usize).max(page_size as usize), 0);
    let mem = Arc::new(Wrapping { data: bytes, page_size, reads: AtomicUsize::new(0) });
    let walker = Walker::new(mmu, PhysAddr(0), mem);
    let start = u64::from_le_bytes(addrs[..8].try_into().unwrap());
    let end = u64::from_le_bytes(addrs[8..].try_into().unwrap());
    let _ = walker.translate(start);
    let _ = walker.translate(end);
    let _ = walker.first_mapped(start, end);
    // The traced walk must end where translate's does.
    let (steps, traced) = walker.trace(start);
    assert!(steps.len() <= walker.mmu().levels);
    assert_eq!(traced.ok(), walker.translate(start).ok());
});
