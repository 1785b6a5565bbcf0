//! makedumpfile's `-e`: leave out the pages of the vmemmap (the kernel's `struct page`
//! array) whose struct pages all describe excluded memory. A machine of many terabytes,
//! most of it free, has gigabytes of such struct pages (3.67 million pages per TiB);
//! `crash` and the other readers then find those struct pages not dumped, as they find
//! the pages they describe.
//!
//! The study (../shared/docs/makedumpfile.md, the `-e` row of the options table) gives the
//! outline: x86_64, a vmemmap mapped with 2 MiB pages, runs of at least two bitmap words
//! whose 64 frames are all present and all excluded. The details below were established
//! black-box by comparing the 2nd bitmaps of Debian's makedumpfile 1.7.2 with and without
//! `-e` (`--work-dir`, `-d 31`) on the 6.12 fixture and synthetic machines of 160 MiB to
//! 64 GiB with 56- and 64-byte struct pages, with and without a hole in the vmemmap (its
//! `--message-level 31` output prints the ranges it found):
//! - The vmemmap's 2 MiB mappings up to the struct page of the last frame are gathered
//!   into ranges contiguous both virtually and physically; the last range ends at the
//!   start of its last 2 MiB page, which is never left out.
//! - A range stands for the frames `[start / SIZE(page), end / SIZE(page))` of its bytes;
//!   the bitmap words over them are read in blocks of 512 words (4096 bytes, 32768 frames,
//!   aligned on the bitmap's start), and a run of qualifying words does not cross a block.
//!   A run still open where a range ends inside a block is dropped.
//! - A run of at least two words leaves out the vmemmap pages that lie wholly within the
//!   struct pages of its frames (and within the range). Which words qualify is decided on
//!   the bitmaps as filtering left them, before any vmemmap page is taken out; for ELF
//!   output, with the zero pages out (makedumpfile removes them from its bitmap first).
//!
//! With 5-level paging, makedumpfile 1.7.2 walks the vmemmap as if it had four levels and
//! leaves out pages that are not struct pages at all (on the 6.1 fixture, frames 0x5-0x3f
//! among them); so does it when refiltering a kdump-compressed file. This walks the
//! kernel's own tables, with as many levels as they have, whatever the input.

use vmcore_kernel::machine::{Layout, Machine};
use vmcore_kernel::VmcoreInfo;

use crate::{Error, Filtered, PfnBitmap, Result};

/// Size of the vmemmap's pages (x86_64 PMD mappings).
const VMEMMAP_PAGE: u64 = 2 << 20;
/// Bitmap words read as one block (makedumpfile's 4096-byte bitmap buffer).
const BLOCK_WORDS: u64 = 512;
/// Shortest run of qualifying words that leaves out vmemmap pages.
const MIN_RUN_WORDS: u64 = 2;

/// What `-e` left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmemmapExclusion {
    /// Frames of the vmemmap taken out of the dump (they were in it before).
    pub pages: u64,
}

/// A stretch of the vmemmap mapped by consecutive 2 MiB pages at consecutive physical
/// addresses: `[start, end)` as offsets from the vmemmap's start, and where `start` lies.
#[derive(Debug, Clone, Copy)]
struct Range {
    start: u64,
    end: u64,
    phys: u64,
}

/// Takes the vmemmap pages that describe only excluded frames out of `filtered.dumpable`
/// (makedumpfile `-e`). The report's counts stay as they were, as makedumpfile's do.
///
/// `zero_pages_excluded`: the output leaves `filtered.zero_pages` out too (ELF: a
/// kdump-compressed file keeps them, as references to one stored zero page). makedumpfile
/// takes them out of its 2nd bitmap before `-e` looks at it, so they count as excluded.
pub fn exclude_unused_vmemmap(
    vi: &VmcoreInfo,
    machine: &Machine,
    filtered: &mut Filtered,
    zero_pages_excluded: bool,
) -> Result<VmemmapExclusion> {
    let Layout::X86_64(layout) = &machine.layout else {
        return Err(Error::Missing("-e (unused vmemmap pages) is for x86_64 kernels only, as in makedumpfile".into()));
    };
    let base = layout
        .vmemmap_base
        .value
        .ok_or_else(|| Error::Missing("-e: the vmemmap's start (vmemmap_base) is unknown".into()))?;
    let struct_page = vi
        .size("page")
        .and_then(|s| u64::try_from(s).ok())
        .filter(|&s| (8..=4096).contains(&s))
        .ok_or_else(|| Error::Missing("-e: VMCOREINFO has no usable SIZE(page)".into()))?;
    let walker =
        machine.kmem.walker().ok_or_else(|| Error::Missing("-e: the kernel's page tables are not known".into()))?;
    let mmu = walker.mmu();
    if !mmu.is_canonical(base) || base >> 63 == 0 || base % VMEMMAP_PAGE != 0 {
        return Err(Error::Missing(format!(
            "-e: the vmemmap's start {base:#x} is not a 2 MiB-aligned kernel address (a corrupt layout value?)"
        )));
    }
    let page_size = mmu.page_size();
    // makedumpfile walks the vmemmap as far as the struct page of the last frame: 2 MiB
    // pages past it (struct pages of memory the dump does not describe) are not seen, so
    // they are not the last one either.
    let end = base.saturating_add(filtered.present.len().saturating_mul(struct_page));

    let zero = zero_pages_excluded.then_some(&filtered.zero_pages);
    let plan = Plan { struct_page, page_size, present: &filtered.present, dumpable: &filtered.dumpable, zero };
    let mut out = filtered.dumpable.new_like(filtered.dumpable.len());
    let mut current: Option<Range> = None;
    for mapping in vmemmap_pages(walker, base, end) {
        let (offset, phys) = mapping?;
        match &mut current {
            Some(r) if r.end == offset && r.phys + (r.end - r.start) == phys => r.end += VMEMMAP_PAGE,
            _ => {
                if let Some(done) = current.replace(Range { start: offset, end: offset + VMEMMAP_PAGE, phys }) {
                    plan.mark(done, &mut out);
                }
            }
        }
    }
    if let Some(mut last) = current {
        last.end -= VMEMMAP_PAGE;
        plan.mark(last, &mut out);
    }
    // A bitmap chunk that could not be read back reads as clear: excluded, to the plan.
    if let Some(lost) = [&out, &filtered.present, &filtered.dumpable].iter().find_map(|b| b.lost()) {
        return Err(Error::Bitmap(lost.to_string()));
    }
    let mut pages = 0;
    for pfn in out.iter() {
        if filtered.dumpable.clear(pfn) {
            pages += 1;
        }
    }
    let done = VmemmapExclusion { pages };
    filtered.vmemmap = Some(done);
    Ok(done)
}

/// The vmemmap's 2 MiB pages in `[base, end)`, ascending: (offset from `base`, physical
/// address). Anything else mapped there is an error: makedumpfile's `-e` needs 2 MiB pages.
fn vmemmap_pages(
    walker: &vmcore_translate::Walker,
    base: u64,
    end: u64,
) -> impl Iterator<Item = Result<(u64, u64)>> + '_ {
    let mut cursor = base;
    std::iter::from_fn(move || {
        if cursor >= end {
            return None;
        }
        // The next 2 MiB page usually follows the last: one walk finds it. Otherwise the
        // search skips unmapped tables whole.
        let found = match walker.translate(cursor) {
            Ok(t) => Ok(Some((cursor, t))),
            Err(_) => walker.first_mapped(cursor, end),
        };
        let (va, t) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) => {
                let at = cursor;
                cursor = end;
                return Some(Err(Error::Missing(format!("-e: walking the vmemmap at {at:#x}: {e}"))));
            }
        };
        if t.page_size != VMEMMAP_PAGE || (va - base) % VMEMMAP_PAGE != 0 || t.paddr % VMEMMAP_PAGE != 0 {
            cursor = end;
            return Some(Err(Error::Missing(format!(
                "-e: the vmemmap at {va:#x} is mapped by a {} KiB page, not by 2 MiB pages as -e needs",
                t.page_size / 1024
            ))));
        }
        // The top 2 MiB of the address space ends the walk (no wrap to the lower half).
        cursor = va.checked_add(VMEMMAP_PAGE).unwrap_or(end);
        Some(Ok((va - base, t.paddr)))
    })
}

/// What decides the vmemmap pages of one range.
struct Plan<'a> {
    struct_page: u64,
    page_size: u64,
    present: &'a PfnBitmap,
    dumpable: &'a PfnBitmap,
    /// Frames kept in the bitmap that the output leaves out all the same.
    zero: Option<&'a PfnBitmap>,
}

impl Plan<'_> {
    /// Marks in `out` the frames of the vmemmap pages of `range` that describe only
    /// excluded frames.
    fn mark(&self, range: Range, out: &mut PfnBitmap) {
        let first_word = range.start / self.struct_page / 64;
        let range_end_word = (range.end / self.struct_page).div_ceil(64);
        // Past the bitmap no word qualifies: the scan may stop there, ending any run.
        let bitmap_words = self.present.len().div_ceil(64);
        let end_word = range_end_word.min(bitmap_words + 1);
        if first_word >= end_word {
            return;
        }
        let mut present = vec![0u8; (BLOCK_WORDS * 8) as usize];
        let mut dumpable = vec![0u8; (BLOCK_WORDS * 8) as usize];
        let mut zero = vec![0u8; (BLOCK_WORDS * 8) as usize];
        let mut block = first_word / BLOCK_WORDS * BLOCK_WORDS;
        while block < end_word {
            self.present.fill_bytes(block * 8, &mut present);
            self.dumpable.fill_bytes(block * 8, &mut dumpable);
            if let Some(z) = self.zero {
                z.fill_bytes(block * 8, &mut zero);
            }
            let to = end_word.min(block + BLOCK_WORDS);
            let mut run_start = None;
            for word in first_word.max(block)..to {
                let at = ((word - block) * 8) as usize;
                let qualifies = present.get(at..at + 8).is_some_and(|w| w.iter().all(|&b| b == 0xff))
                    && dumpable
                        .get(at..at + 8)
                        .zip(zero.get(at..at + 8))
                        .is_some_and(|(d, z)| d.iter().zip(z).all(|(&d, &z)| d & !z == 0));
                match (qualifies, run_start) {
                    (true, None) => run_start = Some(word),
                    (false, Some(start)) => {
                        self.mark_run(range, start, word, out);
                        run_start = None;
                    }
                    _ => {}
                }
            }
            // A run still open where the range ends inside a block is dropped, as
            // makedumpfile drops it (seen with 56-byte struct pages, whose ranges end
            // mid-block; with 64-byte ones every range ends on a block's end).
            let range_ends_mid_block = to == range_end_word && to % BLOCK_WORDS != 0;
            if let (Some(start), false) = (run_start, range_ends_mid_block) {
                self.mark_run(range, start, to, out);
            }
            block += BLOCK_WORDS;
        }
    }

    /// Marks the frames of the vmemmap pages wholly within the struct pages of words
    /// `[start, end)` and within `range`, if the run is long enough.
    fn mark_run(&self, range: Range, start: u64, end: u64, out: &mut PfnBitmap) {
        if end - start < MIN_RUN_WORDS {
            return;
        }
        let first_byte = (start * 64 * self.struct_page).div_ceil(self.page_size) * self.page_size;
        let end_byte = end * 64 * self.struct_page / self.page_size * self.page_size;
        let (first_byte, end_byte) = (first_byte.max(range.start), end_byte.min(range.end));
        if first_byte < end_byte {
            // The range is physically contiguous: its pages are one run of frames.
            let frame = |byte: u64| (range.phys + (byte - range.start)) / self.page_size;
            out.set_range(frame(first_byte), frame(end_byte));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use vmcore_physmem::{PageState, PhysMem, PhysRange};
    use vmcore_translate::{Mmu, Walker};
    use vmcore_types::{Pfn, PhysAddr};

    use super::vmemmap_pages;

    /// Physical memory holding only the pages given.
    #[derive(Debug)]
    struct Tables(HashMap<u64, Vec<u8>>);

    impl Tables {
        fn set(&mut self, paddr: u64, entry: u64) {
            let page = self.0.entry(paddr >> 12).or_insert_with(|| vec![0; 4096]);
            let at = (paddr & 4095) as usize;
            page[at..at + 8].copy_from_slice(&entry.to_le_bytes());
        }
    }

    impl PhysMem for Tables {
        fn page_size(&self) -> u64 {
            4096
        }
        fn max_pfn(&self) -> u64 {
            1 << 20
        }
        fn page_state(&self, pfn: Pfn) -> vmcore_physmem::Result<PageState> {
            Ok(if self.0.contains_key(&pfn.0) { PageState::Dumped } else { PageState::ZeroFilled })
        }
        fn read_page(&self, pfn: Pfn, buf: &mut [u8]) -> vmcore_physmem::Result<PageState> {
            match self.0.get(&pfn.0) {
                Some(p) => buf.copy_from_slice(p),
                None => buf.fill(0),
            }
            self.page_state(pfn)
        }
        fn ranges(&self) -> Vec<PhysRange> {
            vec![PhysRange { start: 0, end: 1 << 32 }]
        }
    }

    /// A 2 MiB page mapped at the very top of the address space (a corrupt dump, or a
    /// wrong vmemmap_base) is found once, and the walk stops there instead of wrapping
    /// around to address 0 and searching the whole lower half.
    #[test]
    fn the_walk_stops_at_the_top_of_the_address_space() {
        let mut t = Tables(HashMap::new());
        // PGD at 0x1000, PUD at 0x2000, PMD at 0x3000: entry 511 of each, then a 2 MiB
        // page at 0x20_0000 (present, writable, accessed, dirty; PS in the PMD).
        t.set(0x1000 + 511 * 8, 0x2000 | 0x63);
        t.set(0x2000 + 511 * 8, 0x3000 | 0x63);
        t.set(0x3000 + 511 * 8, 0x20_0000 | 0x63 | 0x80);
        // A mapping in the lower half that a wrapped walk would find.
        t.set(0x1000, 0x2000 | 0x63);
        let walker = Walker::new(Mmu::x86_64(4, 0), PhysAddr(0x1000), Arc::new(t));
        let base = 0xffff_ffff_ffe0_0000;
        let found: Vec<_> = vmemmap_pages(&walker, base, u64::MAX).take(4).collect::<Result<_, _>>().unwrap();
        assert_eq!(found, [(0, 0x20_0000)]);
    }
}
