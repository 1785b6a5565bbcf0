//! Physical memory of a kdump-compressed file or of a `--split` set of them.

use std::sync::Arc;

use vmcore_formats::kdump::{KdumpFile, PageRead};
use vmcore_types::{Pfn, ReadAt};

use crate::cache::PageCache;
use crate::{Error, PageState, PhysMem, PhysRange, Result};

/// One kdump-compressed file as physical memory.
pub type KdumpMem = SplitMem;

/// Physical memory of one kdump-compressed file, or of the files of a `--split` set, each
/// of which holds the pages of one pfn range (and the full bitmaps).
#[derive(Debug)]
pub struct SplitMem {
    /// Sorted by start pfn; their ranges tile `[0, max_mapnr)`.
    parts: Vec<KdumpFile<Arc<dyn ReadAt>>>,
    /// File names, in the order of `parts`, for errors.
    names: Vec<String>,
    cache: PageCache,
    /// The kernel's pages in one block of the files: 1, but for QEMU's arm64 dumps, whose
    /// blocks are 64 KiB whatever the kernel's page size (its "maximum page size").
    pages_per_block: u64,
}

/// Runs of RAM that `ranges` lists at most. A 1st bitmap whose bits alternate has four
/// runs per byte: listed all, a crafted file would take 64 times its bitmap's size.
const MAX_RANGES: usize = 1 << 16;

impl SplitMem {
    /// Joins the parts of a dump. One part that is not a split file is the usual case.
    /// `parts` are the files with their names.
    pub fn new(parts: Vec<(String, KdumpFile<Arc<dyn ReadAt>>)>) -> Result<SplitMem> {
        let mut parts = parts;
        parts.sort_by_key(|(_, p)| p.pfn_range().0);
        let (names, parts): (Vec<String>, Vec<_>) = parts.into_iter().unzip();
        let named: Vec<(&str, &KdumpFile<Arc<dyn ReadAt>>)> = names.iter().map(String::as_str).zip(&parts).collect();
        check_split_set(&named)?;
        Ok(SplitMem { parts, names, cache: PageCache::new(), pages_per_block: 1 })
    }

    /// The block size of the files (their header's block_size).
    pub fn block_size(&self) -> u64 {
        self.parts.first().map_or(4096, |p| u64::from(p.page_size()))
    }

    /// Serves the files' blocks as pages of `page_size` bytes, a divisor of the block size:
    /// QEMU writes arm64 guests' dumps in 64 KiB blocks (each bit of the bitmaps, each
    /// descriptor a block), whatever the kernel's page size.
    pub fn split_blocks(&mut self, page_size: u64) -> Result<()> {
        let block = self.block_size();
        if page_size == 0 || block % page_size != 0 {
            return Err(Error::Mismatch(format!(
                "{}: the kdump header's block_size {block} (offset {:#x}) is no multiple of the page size {page_size}",
                self.primary_name(),
                vmcore_formats::raw::kdump::header::BLOCK_SIZE
            )));
        }
        self.pages_per_block = block / page_size;
        Ok(())
    }

    /// A pfn's block and the page's byte offset in it.
    fn block_of(&self, pfn: u64) -> (u64, usize) {
        let k = self.pages_per_block;
        (pfn / k, ((pfn % k) * (self.block_size() / k)) as usize)
    }

    /// The files, sorted by the pfn range they hold.
    pub fn parts(&self) -> &[KdumpFile<Arc<dyn ReadAt>>] {
        &self.parts
    }

    /// The first (or only) file: its headers and bitmaps stand for the whole set.
    pub fn primary(&self) -> Option<&KdumpFile<Arc<dyn ReadAt>>> {
        self.parts.first()
    }

    /// Calls `f` with each run `[start, end)` of pfns the 1st bitmap has as RAM.
    pub fn for_each_present_run(&self, mut f: impl FnMut(u64, u64)) -> Result<()> {
        let Some(first) = self.parts.first() else { return Ok(()) };
        let k = self.pages_per_block;
        Ok(first.for_each_present_run(|s, e| f(s * k, e * k)).map_err(|e| e.in_file(self.primary_name()))?)
    }

    /// Calls `f` with each run `[start, end)` of pfns the 2nd bitmap has as dumped.
    pub fn for_each_dumped_run(&self, mut f: impl FnMut(u64, u64)) -> Result<()> {
        let Some(first) = self.parts.first() else { return Ok(()) };
        let k = self.pages_per_block;
        Ok(first.for_each_dumped_run(|s, e| f(s * k, e * k)).map_err(|e| e.in_file(self.primary_name()))?)
    }

    /// Pages the 1st bitmap has as RAM.
    pub fn present_pages(&self) -> u64 {
        self.parts.first().map_or(0, |p| p.present_pages() * self.pages_per_block)
    }

    /// Pages the 2nd bitmap has as dumped.
    pub fn dumped_pages(&self) -> u64 {
        self.parts.first().map_or(0, |p| p.dumped_pages() * self.pages_per_block)
    }

    /// The first file's name, for errors.
    pub fn primary_name(&self) -> &str {
        self.names.first().map_or("", String::as_str)
    }

    /// Reads block `block` (a page, but for QEMU's arm64 dumps) through the cache.
    fn read_block(&self, block: u64, buf: &mut [u8]) -> Result<PageState> {
        if self.cache.get(block, buf) {
            return Ok(PageState::Dumped);
        }
        let Some((part, name)) = self.part_for(block) else {
            return Ok(PageState::Hole);
        };
        let state = state_of(part.read_page(block, buf).map_err(|e| e.in_file(name))?);
        if state == PageState::Dumped {
            self.cache.put(block, buf);
        }
        Ok(state)
    }

    fn part_for(&self, pfn: u64) -> Option<(&KdumpFile<Arc<dyn ReadAt>>, &str)> {
        let i = self.parts.partition_point(|p| p.pfn_range().0 <= pfn).checked_sub(1)?;
        let part = self.parts.get(i).filter(|p| pfn < p.pfn_range().1)?;
        Some((part, self.names.get(i).map_or("", String::as_str)))
    }
}

/// Checks that `parts` (named files, sorted by start pfn) are the files of one dump and
/// together hold all of it: one file that is no split file, or every file of a `--split`
/// set, once each.
pub fn check_split_set(parts: &[(&str, &KdumpFile<Arc<dyn ReadAt>>)]) -> Result<()> {
    let Some(&(first_name, first)) = parts.first() else {
        return Err(Error::Mismatch("no dump file given".into()));
    };
    let mut next = 0u64;
    let mut prev: Option<(&str, (u64, u64))> = None;
    for &(name, p) in parts {
        if !std::ptr::eq(p, first) && !p.same_dump_as(first).map_err(|e| e.in_file(name))? {
            return Err(Error::Mismatch(format!(
                "{name}: its header or bitmap differs from {first_name}'s: not the same dump"
            )));
        }
        let (s, e) = p.pfn_range();
        if let Some((q, (qs, qe))) = prev.filter(|_| s < next) {
            return Err(Error::Mismatch(format!(
                "{q} (pfns {qs:#x}..{qe:#x}) and {name} (pfns {s:#x}..{e:#x}) overlap: a file given twice, or files of two sets?"
            )));
        }
        if s != next {
            let after = prev
                .map(|(q, _)| format!(" (after {q}, before {name})"))
                .unwrap_or_else(|| format!(" (before {name})"));
            return Err(Error::Mismatch(format!(
                "the split files do not tile the dump: pfns {next:#x}..{s:#x} are in none of them{after}: give every file of the set"
            )));
        }
        next = e;
        prev = Some((name, (s, e)));
    }
    let max = first.max_mapnr();
    if next != max {
        let last = prev.map_or(first_name, |(q, _)| q);
        return Err(Error::Mismatch(format!(
            "the split files end at pfn {next:#x} ({last}), before max_mapnr {max:#x}: give every file of the set"
        )));
    }
    Ok(())
}

fn state_of(r: PageRead) -> PageState {
    match r {
        PageRead::Data => PageState::Dumped,
        PageRead::Hole => PageState::Hole,
        PageRead::Excluded => PageState::Excluded,
        PageRead::NotWritten => PageState::NotWritten,
    }
}

impl PhysMem for SplitMem {
    fn page_size(&self) -> u64 {
        self.block_size() / self.pages_per_block
    }

    fn max_pfn(&self) -> u64 {
        self.parts.first().map_or(0, |p| p.max_mapnr() * self.pages_per_block)
    }

    fn page_state(&self, pfn: Pfn) -> Result<PageState> {
        let (block, _) = self.block_of(pfn.0);
        let Some((part, name)) = self.part_for(block) else {
            return Ok(PageState::Hole);
        };
        if !part.is_present(block).map_err(|e| e.in_file(name))? {
            return Ok(PageState::Hole);
        }
        Ok(match part.page_desc(block).map_err(|e| e.in_file(name))? {
            None => PageState::Excluded,
            Some(d) if d.offset == 0 => PageState::NotWritten,
            Some(_) => PageState::Dumped,
        })
    }

    fn read_page(&self, pfn: Pfn, buf: &mut [u8]) -> Result<PageState> {
        if self.pages_per_block == 1 {
            return self.read_block(pfn.0, buf);
        }
        let (block, at) = self.block_of(pfn.0);
        let mut whole = vec![0u8; self.block_size() as usize];
        let state = self.read_block(block, &mut whole)?;
        if let Some(page) = whole.get(at..at + buf.len()) {
            buf.copy_from_slice(page);
        }
        Ok(state)
    }

    /// The 1st bitmap's runs. Past [`MAX_RANGES`] runs, the last range stretches to the end
    /// of the last run (over the holes between). The bitmaps were read whole at open, so
    /// a read failing now (a failing device) only ends the list early.
    fn ranges(&self) -> Vec<PhysRange> {
        let Some(first) = self.parts.first() else {
            return Vec::new();
        };
        let size = u64::from(first.page_size());
        let mut out: Vec<PhysRange> = Vec::new();
        let _ = first.for_each_present_run(|start, end| {
            let range = PhysRange { start: start.saturating_mul(size), end: end.saturating_mul(size) };
            let full = out.len() >= MAX_RANGES;
            match out.last_mut() {
                Some(last) if full => last.end = range.end,
                _ => out.push(range),
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vmcore_formats::kdump::KdumpFile;
    use vmcore_synth::kdump::{write_ranges, KdumpSpec, PfnRange};
    use vmcore_types::ReadAt;

    use super::*;

    #[test]
    fn a_bitmap_of_too_many_runs_lists_a_bounded_number_of_ranges() {
        // RAM at every other frame: one more run than the list holds, and two more.
        let runs = MAX_RANGES as u64 + 2;
        let spec = KdumpSpec { max_mapnr: 2 * runs, ..KdumpSpec::default() };
        let ram: Vec<PfnRange> = (0..runs).map(|i| PfnRange { start: 2 * i, end: 2 * i + 1, dumped: false }).collect();
        let (bytes, _) = write_ranges(&spec, &ram, |_, _| {}).expect("writes");
        let src: Arc<dyn ReadAt> = Arc::new(bytes);
        let mem = SplitMem::new(vec![("t".into(), KdumpFile::parse(src).expect("parses"))]).expect("opens");
        let listed = mem.ranges();
        assert_eq!(listed.len(), MAX_RANGES);
        assert_eq!(listed.first(), Some(&PhysRange { start: 0, end: 0x1000 }));
        let second_last = 2 * (MAX_RANGES as u64 - 2) * 0x1000;
        assert_eq!(listed.get(MAX_RANGES - 2), Some(&PhysRange { start: second_last, end: second_last + 0x1000 }));
        // The last one stretches from the 65536th run over the two after it.
        let last = 2 * (MAX_RANGES as u64 - 1) * 0x1000;
        assert_eq!(listed.last(), Some(&PhysRange { start: last, end: (2 * runs - 1) * 0x1000 }));
    }
}
