//! The filtering pass.

use vmcore_formats::elf::ElfKind;
use vmcore_kernel::machine::Machine;
use vmcore_kernel::mm::page::level;
use vmcore_kernel::mm::{Class, Decision, MemMap, PageRules};
use vmcore_kernel::Dump;
use vmcore_physmem::{Container, PageState};
use vmcore_types::Pfn;

use crate::{Error, Filtered, PfnBitmap, Result, Stats};

/// Choices of the filtering pass.
#[derive(Debug, Clone)]
pub struct Options {
    /// Test flag bit 7 as PG_slab when the kernel no longer exports PG_slab (6.10+), as
    /// makedumpfile 1.7.9 does, so that counts are identical to its report.
    pub pg_slab_bug_compat: bool,
    /// Classify every present frame, also those the input file itself left out (a
    /// filtered kdump file still holds their struct pages): for reports about the machine
    /// rather than about a new dump.
    pub classify_excluded_input: bool,
    /// With level bit 1, read every kept page to count zero pages. A writer that checks
    /// each page anyway as it copies it turns this off and counts them itself.
    pub scan_zero_pages: bool,
    /// Physical byte ranges `[start, end)` that are RAM but not the machine's to dump: the
    /// crash kernel's reservation on a live system (makedumpfile cuts `/proc/iomem`'s
    /// "Crash kernel" ranges out of /proc/kcore the same way).
    pub exclude_phys: Vec<(u64, u64)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            pg_slab_bug_compat: true,
            classify_excluded_input: false,
            scan_zero_pages: true,
            exclude_phys: Vec::new(),
        }
    }
}

/// makedumpfile's bitmap buffer is at most 4 MiB, two bits per frame: up to this many
/// frames it works in one cycle.
const SINGLE_CYCLE_MAX_PFNS: u64 = (4 << 20) * 8 / 2;

/// `struct page`s read per batch, as makedumpfile's PGMM_CACHED: a compound head's first
/// tail page is only looked at inside the same batch.
const BATCH: u64 = 512;

/// `[start, end)` less the `exclude` ranges (in pfns), as pieces.
fn cut(start: u64, end: u64, exclude: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut pieces = vec![(start, end)];
    for &(xs, xe) in exclude {
        pieces = pieces
            .into_iter()
            .flat_map(|(s, e)| {
                if xe <= s || xs >= e {
                    vec![(s, e)]
                } else {
                    [(s, xs.max(s)), (xe.min(e), e)].into_iter().filter(|(a, b)| a < b).collect()
                }
            })
            .collect();
    }
    pieces
}

/// The 1st and 2nd bitmaps before classification, and the pages the input describes
/// (counted per segment, so overlapping segments count twice, as in makedumpfile).
fn initial_bitmaps(dump: &Dump, exclude_phys: &[(u64, u64)]) -> (PfnBitmap, PfnBitmap, u64) {
    let total = dump.mem.max_pfn();
    let ps = dump.mem.page_size();
    let mut present = PfnBitmap::new(total);
    let mut dumpable = PfnBitmap::new(total);
    match &dump.container {
        Container::Elf { core, .. } => {
            let exclude: Vec<(u64, u64)> = exclude_phys.iter().map(|&(a, b)| (a / ps, b.div_ceil(ps))).collect();
            let mut described = 0u64;
            // makedumpfile's count, not its bitmap: when the whole machine fits one cycle of
            // its bitmap buffer, a segment's partial last page counts and one page is lost
            // when max_mapnr is not a multiple of 8 (the fixtures' reports show both; with
            // several cycles neither happens).
            // (--mem-usage on /proc/kcore takes makedumpfile's non-cyclic path: neither.)
            let single_cycle = total <= SINGLE_CYCLE_MAX_PFNS && core.kind != ElfKind::Kcore;
            // makedumpfile's bitmap: its buffer is max_mapnr * 2 / 8 bytes (rounded down)
            // up to 4 MiB, and only when that holds both bitmaps whole (max_mapnr a
            // multiple of 4, at most 16 Mi frames) does it take its non-cyclic path, whose
            // 1st bitmap also marks a segment's partial last page. The 6.1 fixture
            // (0x1ffcb frames) is cyclic; a 16 GiB machine is not.
            let partial_last_page_present = single_cycle && total % 4 == 0;
            for s in core.loads.iter().filter(|s| s.paddr != u64::MAX && s.memsz > 0) {
                if core.kind == ElfKind::Kcore && s.paddr == 0 {
                    continue;
                }
                let (start, end) = (s.paddr / ps, s.paddr.saturating_add(s.memsz) / ps);
                // Frames past p_filesz have no data ("nodata"): never dumpable.
                let data_end = s.paddr.saturating_add(s.filesz).div_ceil(ps).min(end);
                for (a, b) in cut(start, end, &exclude) {
                    described += b - a;
                    present.set_range(a, b);
                    dumpable.set_range(a, b.min(data_end));
                }
                if s.paddr.saturating_add(s.memsz) % ps != 0 {
                    if single_cycle {
                        described += 1;
                    }
                    if partial_last_page_present && !cut(end, end + 1, &exclude).is_empty() {
                        present.set(end);
                    }
                }
            }
            if single_cycle && total % 8 != 0 {
                described = described.saturating_sub(1);
            }
            (present, dumpable, described)
        }
        Container::Kdump { mem, .. } => {
            if let Some(p) = mem.primary() {
                for pfn in 0..total {
                    if p.is_present(pfn) {
                        present.set(pfn);
                    }
                    if p.is_dumpable(pfn) {
                        dumpable.set(pfn);
                    }
                }
            }
            let described = present.count();
            (present, dumpable, described)
        }
    }
}

/// Filters `dump` at `dump_level` (0-31).
pub fn filter(dump: &Dump, machine: &Machine, dump_level: u32, opts: &Options) -> Result<Filtered> {
    let vi = dump.require_vmcoreinfo().map_err(|e| Error::Missing(e.to_string()))?;
    let (present, mut dumpable, described) = initial_bitmaps(dump, &opts.exclude_phys);
    if opts.classify_excluded_input {
        dumpable = present.clone();
    }
    let total = present.len();
    // Overlapping segments can describe more pages than there are frames (the kernel
    // image is also in the direct map): makedumpfile's hole then wraps below zero, and its
    // report shows it so; total = original + hole still holds.
    let mut stats = Stats {
        total_pages: total,
        memory_hole: total.wrapping_sub(described),
        original_pages: described,
        ..Stats::default()
    };

    let rules = PageRules::from_vmcoreinfo(vi, opts.pg_slab_bug_compat)?;
    let needs_scan = dump_level & (level::CACHE | level::CACHE_PRIVATE | level::USER | level::FREE) != 0
        || vi.number("PG_hwpoison").is_some()
        || vi.number("PAGE_OFFLINE_MAPCOUNT_VALUE").is_some();
    if needs_scan {
        if dump_level & level::FREE != 0 && !rules.can_see_buddy() {
            return Err(Error::Missing(
                "free pages cannot be told from struct page on this kernel (no PAGE_BUDDY_MAPCOUNT_VALUE or PG_buddy); \
                 the free-list walk is not implemented yet"
                    .into(),
            ));
        }
        let page_size = dump.mem.page_size();
        let memmap = MemMap::discover(vi, &machine.kmem, total, page_size)?;
        scan(&memmap, &rules, machine, &present, &mut dumpable, dump_level, &mut stats)?;
    }

    let mut zero_pages = PfnBitmap::new(total);
    if dump_level & level::ZERO != 0 && opts.scan_zero_pages {
        let mut page = vec![0u8; dump.mem.page_size() as usize];
        for pfn in dumpable.iter().collect::<Vec<_>>() {
            let state = match dump.mem.read_page(Pfn(pfn), &mut page) {
                Ok(s) => s,
                // Left out of the input: its content is unknown, so it is not a zero page.
                Err(_) if opts.classify_excluded_input => continue,
                Err(e) => return Err(e.into()),
            };
            if state == PageState::Dumped && page.iter().all(|&b| b == 0) {
                zero_pages.set(pfn);
                stats.zero += 1;
            }
        }
    }
    stats.excluded_pages =
        stats.zero + stats.non_pri_cache + stats.pri_cache + stats.user + stats.free + stats.hwpoison + stats.offline;
    stats.remaining_pages = stats.original_pages.saturating_sub(stats.excluded_pages);
    Ok(Filtered { level: dump_level, present, dumpable, zero_pages, stats })
}

fn scan(
    memmap: &MemMap,
    rules: &PageRules,
    machine: &Machine,
    present: &PfnBitmap,
    dumpable: &mut PfnBitmap,
    dump_level: u32,
    stats: &mut Stats,
) -> Result<()> {
    let size = rules.size;
    let mut buf = vec![0u8; size * BATCH as usize];
    // An exclusion may run past the batch (a large buddy block): the next pfn to look at.
    let mut next_pfn = 0u64;
    for section in &memmap.sections {
        let mut chunk = section.pfn_start;
        while chunk < section.pfn_end {
            let chunk_end = ((chunk / BATCH + 1) * BATCH).min(section.pfn_end);
            let n = (chunk_end - chunk) as usize;
            let bytes = buf.get_mut(..n * size).unwrap_or_default();
            let addr = section.mem_map + (chunk - section.pfn_start) * size as u64;
            if machine.kmem.read(addr, bytes).is_err() {
                // struct pages not in the dump (a refiltered input): nothing to decide.
                chunk = chunk_end;
                continue;
            }
            for pfn in chunk.max(next_pfn)..chunk_end {
                if pfn < next_pfn || !present.get(pfn) {
                    continue;
                }
                let i = (pfn - chunk) as usize;
                let page = bytes.get(i * size..(i + 1) * size).unwrap_or_default();
                let next = bytes.get((i + 1) * size..(i + 2) * size);
                if let Decision::Exclude { class, pages } = rules.decide(pfn, page, next, dump_level) {
                    let counter = match class {
                        Class::Cache => &mut stats.non_pri_cache,
                        Class::CachePrivate => &mut stats.pri_cache,
                        Class::User => &mut stats.user,
                        Class::Free => &mut stats.free,
                        Class::Hwpoison => &mut stats.hwpoison,
                        Class::Offline => &mut stats.offline,
                    };
                    let end = pfn.saturating_add(pages).min(dumpable.len());
                    for p in pfn..end {
                        if dumpable.clear(p) {
                            *counter += 1;
                        }
                    }
                    next_pfn = end;
                }
            }
            chunk = chunk_end;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cutting_ranges_out_of_a_segment() {
        assert_eq!(cut(0, 100, &[]), vec![(0, 100)]);
        assert_eq!(cut(0, 100, &[(20, 30)]), vec![(0, 20), (30, 100)]);
        assert_eq!(cut(0, 100, &[(0, 30), (90, 200)]), vec![(30, 90)]);
        assert_eq!(cut(10, 20, &[(0, 100)]), vec![]);
        assert_eq!(cut(10, 20, &[(30, 40)]), vec![(10, 20)]);
    }
}
