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
    /// RAM as the first file's 1st bitmap has it, in runs.
    ranges: Vec<PhysRange>,
    cache: PageCache,
}

impl SplitMem {
    /// Joins the parts of a dump. One part that is not a split file is the usual case.
    /// `parts` are the files with their names.
    pub fn new(parts: Vec<(String, KdumpFile<Arc<dyn ReadAt>>)>) -> Result<SplitMem> {
        let mut parts = parts;
        parts.sort_by_key(|(_, p)| p.pfn_range().0);
        let (names, parts): (Vec<String>, Vec<_>) = parts.into_iter().unzip();
        let first = parts.first().ok_or_else(|| Error::Mismatch("no dump file given".into()))?;
        let (bs, max) = (first.page_size(), first.max_mapnr());
        let mut next = 0u64;
        for (i, p) in parts.iter().enumerate() {
            if p.page_size() != bs || p.max_mapnr() != max {
                return Err(Error::Mismatch(format!(
                    "split part {} has page size {} and max_mapnr {:#x}, the first has {bs} and {max:#x}: not parts of one dump",
                    i + 1, p.page_size(), p.max_mapnr())));
            }
            let (s, e) = p.pfn_range();
            if s != next {
                return Err(Error::Mismatch(format!(
                    "split parts do not tile the dump: pfns {next:#x}..{s:#x} are in no part (give every file of the set)")));
            }
            next = e;
        }
        if next != max {
            return Err(Error::Mismatch(format!(
                "split parts end at pfn {next:#x}, before max_mapnr {max:#x} (give every file of the set)"
            )));
        }
        let size = u64::from(bs);
        let mut ranges = Vec::new();
        first
            .for_each_present_run(|start, end| ranges.push(PhysRange { start: start * size, end: end * size }))
            .map_err(|e| e.in_file(names.first().map_or("", String::as_str)))?;
        Ok(SplitMem { parts, names, ranges, cache: PageCache::new() })
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
    pub fn for_each_present_run(&self, f: impl FnMut(u64, u64)) -> Result<()> {
        let Some(first) = self.parts.first() else { return Ok(()) };
        Ok(first.for_each_present_run(f).map_err(|e| e.in_file(self.primary_name()))?)
    }

    /// Calls `f` with each run `[start, end)` of pfns the 2nd bitmap has as dumped.
    pub fn for_each_dumped_run(&self, f: impl FnMut(u64, u64)) -> Result<()> {
        let Some(first) = self.parts.first() else { return Ok(()) };
        Ok(first.for_each_dumped_run(f).map_err(|e| e.in_file(self.primary_name()))?)
    }

    fn primary_name(&self) -> &str {
        self.names.first().map_or("", String::as_str)
    }

    fn part_for(&self, pfn: u64) -> Option<(&KdumpFile<Arc<dyn ReadAt>>, &str)> {
        let i = self.parts.partition_point(|p| p.pfn_range().0 <= pfn).checked_sub(1)?;
        let part = self.parts.get(i).filter(|p| pfn < p.pfn_range().1)?;
        Some((part, self.names.get(i).map_or("", String::as_str)))
    }
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
        self.parts.first().map_or(4096, |p| u64::from(p.page_size()))
    }

    fn max_pfn(&self) -> u64 {
        self.parts.first().map_or(0, |p| p.max_mapnr())
    }

    fn page_state(&self, pfn: Pfn) -> Result<PageState> {
        let Some((part, name)) = self.part_for(pfn.0) else {
            return Ok(PageState::Hole);
        };
        if !part.is_present(pfn.0).map_err(|e| e.in_file(name))? {
            return Ok(PageState::Hole);
        }
        Ok(match part.page_desc(pfn.0).map_err(|e| e.in_file(name))? {
            None => PageState::Excluded,
            Some(d) if d.offset == 0 => PageState::NotWritten,
            Some(_) => PageState::Dumped,
        })
    }

    fn read_page(&self, pfn: Pfn, buf: &mut [u8]) -> Result<PageState> {
        if self.cache.get(pfn.0, buf) {
            return Ok(PageState::Dumped);
        }
        let Some((part, name)) = self.part_for(pfn.0) else {
            return Ok(PageState::Hole);
        };
        let state = state_of(part.read_page(pfn.0, buf).map_err(|e| e.in_file(name))?);
        if state == PageState::Dumped {
            self.cache.put(pfn.0, buf);
        }
        Ok(state)
    }

    fn ranges(&self) -> Vec<PhysRange> {
        self.ranges.clone()
    }
}
