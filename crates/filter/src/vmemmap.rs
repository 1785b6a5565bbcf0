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
//! 5 GiB with 56- and 64-byte struct pages, with and without a hole in the vmemmap (its
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
//!   the bitmaps as filtering left them, before any vmemmap page is taken out.
//!
//! With 5-level paging, makedumpfile 1.7.2 walks the vmemmap as if it had four levels and
//! leaves out pages that are not struct pages at all (on the 6.1 fixture, frames 0x5-0x3f
//! among them); this walks the kernel's own tables, with as many levels as they have.

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
pub fn exclude_unused_vmemmap(vi: &VmcoreInfo, machine: &Machine, filtered: &mut Filtered) -> Result<VmemmapExclusion> {
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
    let page_size = walker.mmu().page_size();
    // makedumpfile walks the vmemmap as far as the struct page of the last frame: 2 MiB
    // pages past it (struct pages of memory the dump does not describe) are not seen, so
    // they are not the last one either.
    let end = base.saturating_add(filtered.present.len().saturating_mul(struct_page));

    let plan = Plan { struct_page, page_size, present: &filtered.present, dumpable: &filtered.dumpable };
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
    if let Some(lost) = out.lost() {
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
        cursor = va + VMEMMAP_PAGE;
        Some(Ok((va - base, t.paddr)))
    })
}

/// What decides the vmemmap pages of one range.
struct Plan<'a> {
    struct_page: u64,
    page_size: u64,
    present: &'a PfnBitmap,
    dumpable: &'a PfnBitmap,
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
        let mut block = first_word / BLOCK_WORDS * BLOCK_WORDS;
        while block < end_word {
            self.present.fill_bytes(block * 8, &mut present);
            self.dumpable.fill_bytes(block * 8, &mut dumpable);
            let to = end_word.min(block + BLOCK_WORDS);
            let mut run_start = None;
            for word in first_word.max(block)..to {
                let at = ((word - block) * 8) as usize;
                let qualifies = present.get(at..at + 8).is_some_and(|w| w.iter().all(|&b| b == 0xff))
                    && dumpable.get(at..at + 8).is_some_and(|w| w.iter().all(|&b| b == 0));
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
        let mut byte = first_byte;
        while byte < end_byte {
            let pfn = (range.phys + (byte - range.start)) / self.page_size;
            if pfn < out.len() {
                out.set(pfn);
            }
            byte += self.page_size;
        }
    }
}
