//! Physical memory of an ELF core: a sorted map from physical ranges to file ranges.

use std::collections::BTreeMap;
use std::sync::Arc;

use vmcore_formats::elf::{ElfCore, ElfKind, LoadSegment};
use vmcore_types::{Pfn, PhysAddr, ReadAt};

use crate::{Error, PageState, PhysMem, PhysRange, ReadOptions, Result};

/// One piece of the physical map: `[start, end)` is described, `[start, file_end)` has its
/// bytes at `file_offset` onwards, the rest reads as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MapEntry {
    start: u64,
    end: u64,
    file_end: u64,
    file_offset: u64,
}

/// Physical memory of an ELF vmcore or of /proc/kcore.
#[derive(Debug)]
pub struct ElfMem {
    src: Arc<dyn ReadAt>,
    map: Vec<MapEntry>,
    page_size: u64,
    name: String,
}

impl ElfMem {
    /// Builds the physical map of `core`. Segments without a physical address (kcore's
    /// vmalloc, module and vmemmap segments) are left out. Where segments describe the same
    /// physical memory (the kernel image is also in the direct map), one with file data
    /// for it serves it, the larger first: a segment's part past its p_filesz never hides
    /// another's data.
    pub fn new(core: &ElfCore, src: Arc<dyn ReadAt>, page_size: u64) -> ElfMem {
        let mut segs: Vec<&LoadSegment> = core
            .loads
            .iter()
            .filter(|s| s.memsz > 0 && s.paddr != u64::MAX)
            // kcore of old kernels writes p_paddr 0 for every segment: it says nothing.
            .filter(|s| !(core.kind == ElfKind::Kcore && s.paddr == 0))
            .collect();
        segs.sort_by(|a, b| b.memsz.cmp(&a.memsz).then(a.index.cmp(&b.index)));
        // Keyed by start: finding what a segment overlaps and adding its pieces stay
        // logarithmic (with a sorted Vec, 400 thousand segments took 106 s).
        let mut map: BTreeMap<u64, MapEntry> = BTreeMap::new();
        let entries: Vec<MapEntry> = segs
            .iter()
            .map(|s| {
                let end = s.paddr.saturating_add(s.memsz);
                let file_end = s.paddr.saturating_add(s.filesz).min(end);
                MapEntry { start: s.paddr, end, file_end, file_offset: s.offset }
            })
            .collect();
        let with_data = entries.iter().filter(|e| e.file_end > e.start).map(|e| MapEntry { end: e.file_end, ..*e });
        let without = entries.iter().filter(|e| e.file_end < e.end).map(|e| clip(*e, e.file_end, e.end));
        for entry in with_data.collect::<Vec<_>>().into_iter().chain(without) {
            for piece in uncovered(&map, entry) {
                map.insert(piece.start, piece);
            }
        }
        ElfMem { src, map: map.into_values().collect(), page_size, name: String::new() }
    }

    /// Names the file in the errors of reads.
    pub fn named(mut self, name: impl Into<String>) -> ElfMem {
        self.name = name.into();
        self
    }

    fn find(&self, addr: u64) -> Option<&MapEntry> {
        let i = self.map.partition_point(|e| e.start <= addr);
        self.map.get(i.checked_sub(1)?).filter(|e| addr < e.end)
    }
}

/// The parts of `new` that no entry of the disjoint `map` covers.
fn uncovered(map: &BTreeMap<u64, MapEntry>, new: MapEntry) -> Vec<MapEntry> {
    let mut out = Vec::new();
    let mut cur = new.start;
    // The entries are disjoint, so their ends rise with their starts: the ones that
    // overlap `new` are the last ones starting before its end, back to the first that
    // ends after its start.
    let mut overlapping: Vec<&MapEntry> =
        map.range(..new.end).rev().map(|(_, e)| e).take_while(|e| e.end > new.start).collect();
    overlapping.reverse();
    for e in overlapping {
        if e.start > cur {
            out.push(clip(new, cur, e.start));
        }
        cur = cur.max(e.end);
    }
    if cur < new.end {
        out.push(clip(new, cur, new.end));
    }
    out
}

fn clip(e: MapEntry, start: u64, end: u64) -> MapEntry {
    // A piece past the segment's file data may lie past 2^64 in the file (a corrupt
    // p_offset near 2^64 with p_memsz beyond p_filesz): its offset is never read.
    MapEntry {
        start,
        end,
        file_end: e.file_end.clamp(start, end),
        file_offset: e.file_offset.saturating_add(start - e.start),
    }
}

impl PhysMem for ElfMem {
    fn page_size(&self) -> u64 {
        self.page_size
    }

    fn max_pfn(&self) -> u64 {
        let end = self.map.iter().map(|e| e.end).max().unwrap_or(0);
        end.div_ceil(self.page_size)
    }

    fn page_state(&self, pfn: Pfn) -> Result<PageState> {
        let Some(start) = pfn.to_phys(self.page_size.trailing_zeros()) else {
            return Ok(PageState::Hole);
        };
        // A segment may also start inside the frame (e820 ranges are not page aligned):
        // the frame is then RAM from that byte on, as makedumpfile reads it.
        let first = match self.find(start.0) {
            Some(e) => Some((start.0, e)),
            None => self
                .map
                .get(self.map.partition_point(|e| e.start <= start.0))
                .filter(|e| e.start - start.0 < self.page_size)
                .map(|e| (e.start, e)),
        };
        Ok(match first {
            None => PageState::Hole,
            Some((at, e)) if at < e.file_end => PageState::Dumped,
            Some(_) => PageState::ZeroFilled,
        })
    }

    fn zero_filled_until(&self, pfn: Pfn) -> Option<u64> {
        let shift = self.page_size.trailing_zeros();
        let start = pfn.to_phys(shift)?.0;
        let e = self.find(start).filter(|e| start >= e.file_end)?;
        // The whole frames of this entry from `pfn` on (a partial last frame is not).
        Some(e.end >> shift).filter(|&end| end > pfn.0)
    }

    fn read_page(&self, pfn: Pfn, buf: &mut [u8]) -> Result<PageState> {
        let Some(start) = pfn.to_phys(self.page_size.trailing_zeros()) else { return Ok(PageState::Hole) };
        let state = self.page_state(pfn)?;
        if !matches!(state, PageState::Dumped | PageState::ZeroFilled) {
            return Ok(state);
        }
        // A segment may start or end inside the page: the part outside every segment is not
        // RAM and reads as zeros, as in makedumpfile.
        let mut done = 0usize;
        while done < buf.len() {
            let cur = start.0 + done as u64;
            let next_start = self.map.get(self.map.partition_point(|e| e.start <= cur)).map_or(u64::MAX, |e| e.start);
            let n = match self.find(cur) {
                Some(e) => usize::try_from(e.end - cur).unwrap_or(usize::MAX).min(buf.len() - done),
                None => usize::try_from(next_start - cur).unwrap_or(usize::MAX).min(buf.len() - done),
            };
            let dst = buf.get_mut(done..done + n).unwrap_or_default();
            if self.find(cur).is_some() {
                self.read(PhysAddr(cur), dst, ReadOptions::default())?;
            } else {
                dst.fill(0);
            }
            done += n;
        }
        Ok(state)
    }

    fn ranges(&self) -> Vec<PhysRange> {
        let mut out: Vec<PhysRange> = Vec::new();
        for e in &self.map {
            match out.last_mut() {
                Some(last) if last.end == e.start => last.end = e.end,
                _ => out.push(PhysRange { start: e.start, end: e.end }),
            }
        }
        out
    }

    fn read(&self, addr: PhysAddr, buf: &mut [u8], _opts: ReadOptions) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let cur = addr.0.checked_add(done as u64).ok_or(Error::Hole { addr: PhysAddr(u64::MAX) })?;
            let e = self.find(cur).ok_or(Error::Hole { addr: PhysAddr(cur) })?;
            let n = usize::try_from(e.end - cur).unwrap_or(usize::MAX).min(buf.len() - done);
            let dst = buf.get_mut(done..done + n).unwrap_or_default();
            let in_file = usize::try_from(e.file_end.saturating_sub(cur)).unwrap_or(usize::MAX).min(n);
            let (file_part, zero_part) = dst.split_at_mut(in_file);
            if !file_part.is_empty() {
                let off = e.file_offset + (cur - e.start);
                self.src.read_exact_at(file_part, off).map_err(|source| {
                    vmcore_formats::Error::from_io("PT_LOAD data", off, file_part.len() as u64, source)
                        .in_file(self.name.clone())
                })?;
            }
            zero_part.fill(0);
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmcore_formats::elf::test_support::{header, note};

    fn elf(loads: &[(u64, u64, u64, u64, u64)], file_len: usize) -> (ElfCore, Arc<dyn ReadAt>) {
        let n = note("VMCOREINFO", 0, b"PAGESIZE=4096\n");
        let mut f = header(loads, (0x800, n.len() as u64));
        f.resize(0x800, 0);
        f.extend_from_slice(&n);
        f.resize(file_len, 0);
        for (i, b) in f.iter_mut().enumerate().skip(0x1000) {
            *b = (i / 4096) as u8;
        }
        let core = ElfCore::parse(&f).unwrap();
        (core, Arc::new(f))
    }

    #[test]
    fn overlapping_segments_take_the_larger_and_zero_fill_past_filesz() {
        // Kernel-image segment (small, first) overlapping a RAM segment (large).
        let (core, src) = elf(&[(0x3000, 0, 0x5000, 0x1000, 0x1000), (0x1000, 0, 0x1000, 0x4000, 0x6000)], 0x6000);
        let m = ElfMem::new(&core, src, 4096);
        assert_eq!(m.ranges(), vec![PhysRange { start: 0x1000, end: 0x7000 }]);
        assert_eq!(m.max_pfn(), 7);
        let mut b = [0u8; 4];
        m.read(PhysAddr(0x3000), &mut b, ReadOptions::default()).unwrap();
        assert_eq!(b, [3; 4], "page 3 comes from the RAM segment's file offset 0x3000");
        assert_eq!(m.page_state(Pfn(4)).unwrap(), PageState::Dumped);
        assert_eq!(m.page_state(Pfn(5)).unwrap(), PageState::ZeroFilled);
        assert_eq!(m.page_state(Pfn(0)).unwrap(), PageState::Hole);
        let mut across = [0xffu8; 8];
        m.read(PhysAddr(0x4ffc), &mut across, ReadOptions::default()).unwrap();
        assert_eq!(across, [4, 4, 4, 4, 0, 0, 0, 0]);
        let err = m.read(PhysAddr(0x6ffc), &mut across, ReadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Hole { addr: PhysAddr(0x7000) }), "{err}");
    }

    #[test]
    fn a_segment_over_two_others_serves_only_the_gap_between_them() {
        // Two RAM segments, then one as large that spans the end of the first, the gap
        // and the start of the second: it serves only the gap, from its own file data.
        let (core, src) = elf(
            &[
                (0x1000, 0, 0x1000, 0x3000, 0x3000),
                (0x5000, 0, 0x5000, 0x3000, 0x3000),
                (0x3000, 0, 0x9000, 0x3000, 0x3000),
            ],
            0xc000,
        );
        let m = ElfMem::new(&core, src, 4096);
        assert_eq!(m.ranges(), vec![PhysRange { start: 0x1000, end: 0x8000 }]);
        let mut page = vec![0u8; 4096];
        let byte = |m: &ElfMem, pfn: u64, page: &mut Vec<u8>| {
            m.read_page(Pfn(pfn), page).unwrap();
            page[0]
        };
        // File byte values are the file page numbers.
        assert_eq!([3, 4, 5].map(|pfn| byte(&m, pfn, &mut page)), [3, 0xa, 5]);
    }

    #[test]
    fn zero_filled_runs_end_at_the_segments_last_whole_frame() {
        // Data in frames 1-2, claimed without data up to 0x7800: frames 3-6 are whole.
        let (core, src) = elf(&[(0x1000, 0, 0x1000, 0x2000, 0x6800)], 0x3000);
        let m = ElfMem::new(&core, src, 4096);
        assert_eq!(
            [0, 1, 2, 3, 6, 7, 8].map(|pfn| m.zero_filled_until(Pfn(pfn))),
            [None, None, None, Some(7), Some(7), None, None]
        );
        assert_eq!(m.page_state(Pfn(7)).unwrap(), PageState::ZeroFilled, "the partial frame, not in the run");
    }

    #[test]
    fn a_page_partly_outside_the_segments_reads_its_part_and_zeros() {
        let (core, src) = elf(&[(0x1000, 0, 0x1000, 0x1c00, 0x1c00)], 0x3000);
        let m = ElfMem::new(&core, src, 4096);
        let mut page = vec![0xffu8; 4096];
        assert_eq!(m.read_page(Pfn(2), &mut page).unwrap(), PageState::Dumped);
        assert!(page[..0xc00].iter().all(|&b| b == 2) && page[0xc00..].iter().all(|&b| b == 0));
        let err = m.read(PhysAddr(0x2bf0), &mut page[..32], ReadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Hole { addr: PhysAddr(0x2c00) }), "{err}");
    }

    #[test]
    fn a_page_whose_segment_starts_inside_it_reads_zeros_then_its_part() {
        // RAM [0x1400, 0x3000) from file offset 0x1000, whose bytes are offset / 4096.
        let (core, src) = elf(&[(0x1400, 0, 0x1000, 0x1c00, 0x1c00)], 0x3000);
        let m = ElfMem::new(&core, src, 4096);
        assert_eq!(m.page_state(Pfn(0)).unwrap(), PageState::Hole);
        assert_eq!(m.page_state(Pfn(1)).unwrap(), PageState::Dumped);
        assert_eq!(m.page_state(Pfn(3)).unwrap(), PageState::Hole);
        let mut page = vec![0xffu8; 4096];
        assert_eq!(m.read_page(Pfn(1), &mut page).unwrap(), PageState::Dumped);
        assert!(page[..0x400].iter().all(|&b| b == 0) && page[0x400..].iter().all(|&b| b == 1));
        assert_eq!(m.read_page(Pfn(2), &mut page).unwrap(), PageState::Dumped);
        assert!(page[..0x400].iter().all(|&b| b == 1) && page[0x400..].iter().all(|&b| b == 2));
    }

    #[test]
    fn segments_without_physical_address_are_not_mapped() {
        let (core, src) = elf(&[(u64::MAX, 0xffffc90000000000, 0x1000, 0x1000, 0x1000)], 0x2000);
        let m = ElfMem::new(&core, src, 4096);
        assert!(m.ranges().is_empty());
        assert_eq!(m.max_pfn(), 0);
    }
}
