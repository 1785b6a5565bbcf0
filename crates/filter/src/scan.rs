//! The filtering pass.

use std::convert::Infallible;
use std::sync::Arc;

use vmcore_formats::elf::{ElfKind, LoadSegment};
use vmcore_kernel::machine::Machine;
use vmcore_kernel::mm::page::level;
use vmcore_kernel::mm::{Class, Decision, MemMap, PageRules};
use vmcore_kernel::Dump;
use vmcore_physmem::{Container, PageState, PhysMem, ReadOptions};
use vmcore_types::ordered::{ordered, Flow};
use vmcore_types::{Pfn, PhysAddr};

use crate::{BitmapStorage, Error, Filtered, PfnBitmap, Result, Stats, VmemmapExclusion};

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
    /// With level bit 1, a page that cannot be read counts as not zero instead of failing
    /// the scan: a writer then meets it in order and keeps every page before it.
    pub unreadable_not_zero: bool,
    /// Threads that read and classify the struct pages.
    pub threads: usize,
    /// Frames per unit of the threads' work (a multiple of 512; default 32768). The result
    /// does not depend on it: small units serve to test exclusions that cross units.
    pub unit_pfns: u64,
    /// Where the bitmaps keep what does not fit their memory budget; None: all in memory.
    pub bitmap_storage: Option<Arc<BitmapStorage>>,
    /// Cut the frames at the end of the kernel's last section with a mem_map, as
    /// makedumpfile cuts max_mapnr for kdump-compressed files. Its ELF output keeps the
    /// pages past it, so the ELF writer's filtering does not cut.
    pub cut_at_last_section: bool,
    /// Which of makedumpfile's two paths the 1st bitmap of an ELF input follows: only the
    /// non-cyclic one marks a segment's partial last page present.
    pub cycles: Cycles,
    /// Count as makedumpfile's ELF writer reports: a segment's partial last page is always
    /// in "Original pages", and, on the cyclic path, an excluded frame counts once per
    /// input segment describing it (the writer's cycles go segment by segment, so the
    /// kernel image's frames, also in the direct map, are classified twice; the non-cyclic
    /// path classifies every frame once).
    pub elf_output: bool,
}

/// How makedumpfile would go through the frames, which decides a detail of its 1st bitmap
/// (a segment's partial last page) and of its report's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycles {
    /// Its own buffer, divided among `files` output files (`--split`): the non-cyclic path
    /// only when one file's buffer holds both bitmaps whole.
    Sized {
        /// Files written at once.
        files: usize,
    },
    /// `--cyclic-buffer`: the cyclic path, however many cycles it takes.
    GivenBuffer,
    /// `--work-dir`: the non-cyclic path, bitmaps in a file.
    NonCyclic,
}

impl Cycles {
    /// Whether makedumpfile takes its non-cyclic path, both bitmaps whole in its buffer,
    /// on a machine of `frames` frames, for a dump. Never for /proc/kcore, of which it
    /// writes no dump (its --mem-usage takes the non-cyclic path, but counts like
    /// several cycles: see `initial_bitmaps`).
    fn non_cyclic(self, frames: u64, kind: ElfKind) -> bool {
        match self {
            Cycles::Sized { files } if files <= 1 => {
                kind != ElfKind::Kcore && frames <= SINGLE_CYCLE_MAX_PFNS && frames % 4 == 0
            }
            Cycles::Sized { .. } | Cycles::GivenBuffer => false,
            Cycles::NonCyclic => true,
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            pg_slab_bug_compat: true,
            classify_excluded_input: false,
            scan_zero_pages: true,
            unreadable_not_zero: false,
            exclude_phys: Vec::new(),
            threads: 1,
            unit_pfns: UNIT_PFNS,
            bitmap_storage: None,
            cut_at_last_section: true,
            cycles: Cycles::Sized { files: 1 },
            elf_output: false,
        }
    }
}

/// Frames the filter accepts: 2^52 bytes of 4 KiB pages, the widest physical address any
/// 64-bit Linux architecture maps (x86_64 with 5-level paging, arm64 with 52-bit PAs).
/// Past it a dump's segments are corrupt, and per-frame bitmaps and loops would not end.
const MAX_FRAMES: u64 = 1 << 40;

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

/// The bitmaps and counts a filter starts from.
struct Initial {
    /// The 1st bitmap: frames the input describes.
    present: PfnBitmap,
    /// The 2nd bitmap before classification: frames with data.
    dumpable: PfnBitmap,
    /// Pages the input describes, counted per segment (overlapping segments count twice,
    /// as in makedumpfile).
    described: u64,
    /// Frames an ELF segment's data ends inside, to leave out after classification.
    half_data: Vec<u64>,
    /// Frames an ELF segment ends inside, present in the 1st bitmap (makedumpfile's
    /// non-cyclic path) but never dumpable.
    partial_present: Vec<u64>,
}

/// The 1st and 2nd bitmaps before classification, and what goes with them.
fn initial_bitmaps(dump: &Dump, total: u64, opts: &Options) -> Result<Initial> {
    let ps = dump.mem.page_size();
    let mut present = match &opts.bitmap_storage {
        Some(storage) => PfnBitmap::spilling(total, storage),
        None => PfnBitmap::new(total),
    };
    let mut dumpable = present.new_like(total);
    match &dump.container {
        Container::Elf { core, .. } => {
            let exclude: Vec<(u64, u64)> = opts.exclude_phys.iter().map(|&(a, b)| (a / ps, b.div_ceil(ps))).collect();
            let mut described = 0u64;
            let mut half_data = Vec::new();
            let mut partial_present = Vec::new();
            let mut nodata = Vec::new();
            // makedumpfile's count, not its bitmap: when the whole machine fits one cycle of
            // its bitmap buffer, a segment's partial last page counts and one page is lost
            // when max_mapnr is not a multiple of 8 (the fixtures' reports show both; with
            // several cycles neither happens).
            // (--mem-usage on /proc/kcore takes makedumpfile's non-cyclic path: neither.)
            // The buffer is sized before the frames are cut to the kernel's sections, by
            // the frames the segments claim, and divided among --split's files: so are
            // these decisions.
            let frames = dump.mem.max_pfn();
            // makedumpfile's bitmap: its buffer is max_mapnr * 2 / 8 bytes (rounded down)
            // up to 4 MiB, and only when that holds both bitmaps whole (max_mapnr a
            // multiple of 4, at most 16 Mi frames) does it take its non-cyclic path, whose
            // 1st bitmap also marks a segment's partial last page. The 6.1 fixture
            // (0x1ffcb frames) is cyclic; a 16 GiB machine is not. A buffer divided among
            // --split's files, or given, never takes it; --work-dir always does.
            // (`Cycles::non_cyclic`.) The ELF writer counts the partial page on either path
            // (Debian makedumpfile's -E reports on the 6.1 fixture, with and without
            // --work-dir or --cyclic-buffer).
            let sized_single = frames <= SINGLE_CYCLE_MAX_PFNS && core.kind != ElfKind::Kcore;
            let partial_last_page_present =
                core.kind != ElfKind::Kcore && (opts.elf_output || opts.cycles.non_cyclic(frames, core.kind));
            let own_buffer = matches!(opts.cycles, Cycles::Sized { files } if files <= 1);
            let single_cycle = sized_single && (opts.elf_output || own_buffer || opts.cycles == Cycles::NonCyclic);
            for s in core.loads.iter().filter(|s| s.paddr != u64::MAX && s.memsz > 0) {
                if core.kind == ElfKind::Kcore && s.paddr == 0 {
                    continue;
                }
                let seg_end = s.paddr.saturating_add(s.memsz);
                // The frame the segment ends in (partly RAM if the end is not page-aligned).
                let partial = seg_end / ps;
                let (start, end) = ((s.paddr / ps).min(total), partial.min(total));
                // Frames past p_filesz have no data ("nodata"): never dumpable, as in
                // makedumpfile, even where another segment (the direct map under the
                // kernel image's) holds their data. The frame the data ends inside is
                // classified (makedumpfile counts it) but then left out too.
                let data_bytes_end = s.paddr.saturating_add(s.filesz);
                let data_end = data_bytes_end.div_ceil(ps).clamp(start, end);
                if data_bytes_end % ps != 0 && data_bytes_end / ps >= start && data_bytes_end.div_ceil(ps) <= end {
                    half_data.push(data_bytes_end / ps);
                }
                if data_end < end {
                    nodata.push((data_end, end));
                }
                for (a, b) in cut(start, end, &exclude) {
                    described += b - a;
                    present.set_range(a, b);
                    dumpable.set_range(a, b.min(data_end));
                }
                if seg_end % ps != 0 {
                    // As Debian makedumpfile's reports count it on patched inputs: always on
                    // the non-cyclic path (past the cut too), and on the cyclic one unless it
                    // is the machine's last frame or past the cut.
                    let counted = partial_last_page_present || single_cycle && partial + 1 < frames && partial < total;
                    described += u64::from(counted);
                    if partial_last_page_present && partial < total && !cut(partial, partial + 1, &exclude).is_empty() {
                        present.set(partial);
                        partial_present.push(partial);
                    }
                }
            }
            // The page lost at the end of a bitmap that is not whole bytes: only on the
            // cyclic path (the non-cyclic one takes max_mapnr a multiple of 4 and loses
            // none, as Debian makedumpfile's report shows at 0x4004 frames).
            if single_cycle && !partial_last_page_present && frames % 8 != 0 {
                described = described.saturating_sub(1);
            }
            for (a, b) in nodata {
                dumpable.clear_range(a, b);
            }
            Ok(Initial { present, dumpable, described, half_data, partial_present })
        }
        Container::Kdump { mem, .. } => {
            // In runs, so that whole chunks become uniform (set bit by bit, they would
            // stay mixed and count against the memory budget).
            mem.for_each_present_run(|start, end| present.set_range(start, end))?;
            mem.for_each_dumped_run(|start, end| dumpable.set_range(start, end))?;
            let described = present.count();
            Ok(Initial { present, dumpable, described, half_data: Vec::new(), partial_present: Vec::new() })
        }
    }
}

/// Filters `dump` at `dump_level` (0-31).
pub fn filter(dump: &Dump, machine: &Machine, dump_level: u32, opts: &Options) -> Result<Filtered> {
    let vi = dump.require_vmcoreinfo().map_err(|e| Error::Missing(e.to_string()))?;
    let frames = dump.mem.max_pfn();
    if frames > MAX_FRAMES {
        return Err(Error::Missing(format!(
            "the dump describes physical memory up to {:#x}: beyond 2^52 bytes, which no kernel maps (a corrupt segment?)",
            frames.saturating_mul(dump.mem.page_size())
        )));
    }
    let needs_scan = dump_level & (level::CACHE | level::CACHE_PRIVATE | level::USER | level::FREE) != 0
        || vi.number("PG_hwpoison").is_some()
        || vi.number("PAGE_OFFLINE_MAPCOUNT_VALUE").is_some();
    // The struct pages' map, found only when the scan or the cut needs it.
    let memmap = (opts.cut_at_last_section || needs_scan)
        .then(|| MemMap::discover(vi, &machine.kmem, frames, dump.mem.page_size()));
    // As makedumpfile does, frames past the last section with a mem_map are not part of
    // the dump: the kernel has no struct page for them. A segment claiming memory beyond
    // what the kernel knows (a corrupt header) then costs nothing past the kernel's end.
    let mut warnings = Vec::new();
    let total = match &memmap {
        Some(Ok(m)) if opts.cut_at_last_section => {
            m.sections.iter().map(|s| s.pfn_end).max().map_or(frames, |end| end.min(frames))
        }
        Some(Err(e)) if opts.cut_at_last_section && !needs_scan => {
            warnings.push(format!(
                "the kernel's memory sections cannot be found ({e}): every frame the input describes, up to {:#x}, is kept",
                frames.saturating_mul(dump.mem.page_size())
            ));
            frames
        }
        _ => frames,
    };
    let Initial { present, mut dumpable, described, half_data, partial_present } = initial_bitmaps(dump, total, opts)?;
    if opts.classify_excluded_input {
        // What the input left out is classified too; a partial last page no other
        // segment holds whole is left out by any filter, the input's or this one.
        let partial_only: Vec<u64> = partial_present.into_iter().filter(|&pfn| !dumpable.get(pfn)).collect();
        dumpable = present.clone();
        for pfn in partial_only {
            dumpable.clear(pfn);
        }
    }
    // Overlapping segments can describe more pages than there are frames (the kernel
    // image is also in the direct map): makedumpfile's hole then wraps below zero, and its
    // report shows it so; total = original + hole still holds.
    let mut stats = Stats {
        total_pages: total,
        memory_hole: total.wrapping_sub(described),
        original_pages: described,
        ..Stats::default()
    };

    let ps = dump.mem.page_size();
    let overlaps = match &dump.container {
        Container::Elf { core, .. } if opts.elf_output && !opts.cycles.non_cyclic(frames, core.kind) => {
            overlapping_frames(core.loads.iter().filter(|s| s.paddr != u64::MAX).map(|s| {
                let start = (s.paddr / ps).min(total);
                (start, (s.paddr.saturating_add(s.memsz) / ps).clamp(start, total))
            }))
        }
        _ => Vec::new(),
    };
    let rules = PageRules::from_vmcoreinfo(vi, opts.pg_slab_bug_compat)?;
    if let (true, Some(memmap)) = (needs_scan, memmap) {
        if dump_level & level::FREE != 0 && !rules.can_see_buddy() {
            return Err(Error::Missing(
                "free pages cannot be told from struct page on this kernel (no PAGE_BUDDY_MAPCOUNT_VALUE or PG_buddy); \
                 the free-list walk is not implemented yet"
                    .into(),
            ));
        }
        let memmap = memmap?;
        let with_data = match &dump.container {
            Container::Elf { core, .. } => Some(frames_with_data(&core.loads, ps, total)),
            Container::Kdump { .. } => None,
        };
        let ctx = Scan { rules: &rules, machine, present: &present, dump_level, with_data };
        scan(&ctx, &memmap, &mut dumpable, &mut stats, &overlaps, opts);
    }

    for pfn in half_data {
        dumpable.clear(pfn);
    }
    let zero_pages_scanned = dump_level & level::ZERO != 0 && opts.scan_zero_pages;
    let zero_pages = if zero_pages_scanned {
        let skip_unreadable = opts.classify_excluded_input || opts.unreadable_not_zero;
        zero_pages(&*dump.mem, &dumpable, opts.threads, opts.unit_pfns, skip_unreadable, None)?
    } else {
        dumpable.new_like(total)
    };
    stats.zero = zero_pages.count() + recounted(&zero_pages, &overlaps, 0, total);
    stats.excluded_pages =
        stats.zero + stats.non_pri_cache + stats.pri_cache + stats.user + stats.free + stats.hwpoison + stats.offline;
    stats.remaining_pages = stats.original_pages.saturating_sub(stats.excluded_pages);
    if let Some(lost) = [&present, &dumpable, &zero_pages].iter().find_map(|b| b.lost()) {
        return Err(Error::Bitmap(lost.to_string()));
    }
    // A kdump input written with -e lacks those vmemmap pages, and so does any dump made
    // from it: its header must keep saying so.
    let vmemmap = match &dump.container {
        Container::Kdump { mem, .. } => {
            mem.primary().filter(|f| f.excludes_vmemmap()).map(|_| VmemmapExclusion::default())
        }
        Container::Elf { .. } => None,
    };
    let whole_bitmaps = match &dump.container {
        Container::Kdump { .. } => true,
        Container::Elf { core, .. } => opts.cycles.non_cyclic(frames, core.kind),
    };
    Ok(Filtered {
        level: dump_level,
        present,
        dumpable,
        zero_pages,
        zero_pages_scanned,
        stats,
        warnings,
        vmemmap,
        whole_bitmaps,
    })
}

/// The frames below `total` that hold file data in some segment, sorted and disjoint (a
/// frame the data ends inside included).
fn frames_with_data(loads: &[LoadSegment], ps: u64, total: u64) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = loads
        .iter()
        .filter(|s| s.paddr != u64::MAX && s.filesz > 0)
        .map(|s| ((s.paddr / ps).min(total), s.paddr.saturating_add(s.filesz).div_ceil(ps).min(total)))
        .filter(|(a, b)| a < b)
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match merged.last_mut() {
            Some((_, end)) if a <= *end => *end = (*end).max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Frame ranges `[start, end)` that more than one of `segments` (frame ranges) describes,
/// each with how many times more (sorted, disjoint).
fn overlapping_frames(segments: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64, u64)> {
    let mut edges: Vec<(u64, i64)> = segments.filter(|(a, b)| a < b).flat_map(|(a, b)| [(a, 1), (b, -1)]).collect();
    edges.sort_unstable();
    let mut overlaps: Vec<(u64, u64, u64)> = Vec::new();
    let mut depth = 0i64;
    let mut from = 0u64;
    for (at, step) in edges {
        if depth > 1 && at > from {
            overlaps.push((from, at, (depth - 1) as u64));
        }
        depth += step;
        from = at;
    }
    overlaps
}

/// The extra counts of `bitmap`'s set frames in `[start, end)` that `overlaps` describes
/// more than once.
fn recounted(bitmap: &PfnBitmap, overlaps: &[(u64, u64, u64)], start: u64, end: u64) -> u64 {
    // Sorted and disjoint: found by bisection, as a dump with many segments can have many
    // overlaps and a scan many runs.
    let first = overlaps.partition_point(|&(_, b, _)| b <= start);
    let within = overlaps.get(first..).unwrap_or_default().iter().take_while(|&&(a, _, _)| a < end);
    within.map(|&(a, b, times)| times.saturating_mul(bitmap.iter_range(a.max(start), b.min(end)).count() as u64)).sum()
}

/// Bytes the zero-page scan reads at a time per thread: one read per run of consecutive
/// frames (page by page, a 16 GiB dump took a `pread` per page).
const ZERO_SCAN_BYTES: usize = 256 << 10;

/// Whether every byte of `page` is zero.
pub fn is_zero(page: &[u8]) -> bool {
    // Blocks of 256 bytes: the OR of a block vectorizes, and a page with data usually
    // shows it in its first block.
    page.chunks(256).all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
}

/// The frames of `dumpable` whose page holds only zero bytes, read on `threads` threads
/// in units of `unit_pfns` frames, taken in pfn order.
/// - A frame past a segment's file size reads as zeros and counts. So does a frame that a
///   segment starts or ends inside, when the part it holds is zeros (makedumpfile reads
///   such pages zero-filled).
/// - A frame the input does not hold is not a zero page: a hole, or a page a filtered
///   input left out.
/// - A read that fails is the error, the first in pfn order, and reading stops there;
///   with `skip_unreadable` the frame is taken as not zero and the scan goes on (for
///   reports about the machine rather than a new dump).
pub fn zero_pages(
    mem: &dyn PhysMem,
    dumpable: &PfnBitmap,
    threads: usize,
    unit_pfns: u64,
    skip_unreadable: bool,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> vmcore_physmem::Result<PfnBitmap> {
    let total = dumpable.len();
    let unit_pfns = unit_pfns.max(64);
    let page_size = usize::try_from(mem.page_size()).unwrap_or(usize::MAX);
    let shift = mem.page_size().trailing_zeros();
    let run_pages = (ZERO_SCAN_BYTES / page_size).max(1);
    let mut zero_pages = dumpable.new_like(total);
    ordered(
        (0..total.div_ceil(unit_pfns)).map(|u| (u * unit_pfns, (u + 1) * unit_pfns)),
        threads,
        || vec![0u8; page_size * run_pages],
        |buf, (start, end)| {
            // Runs [a, b) of zero frames.
            let mut zeros: Vec<(u64, u64)> = Vec::new();
            let mut add_run = |a: u64, b: u64| match zeros.last_mut() {
                Some((_, last)) if *last == a => *last = b,
                _ => zeros.push((a, b)),
            };
            let mut pfns = dumpable.iter_range(start, end).peekable();
            while let Some(first) = pfns.next() {
                if let Some(data_end) = mem.zero_filled_until(Pfn(first)) {
                    // Memory a segment claims past its data reads as zeros: not read, and
                    // taken a run of dumpable frames at a time (it can be 2^40 frames).
                    let zeros_end = data_end.min(end);
                    let mut at = first;
                    while at < zeros_end {
                        let run_end = dumpable.set_run_end(at, zeros_end);
                        if run_end > at {
                            add_run(at, run_end);
                            at = run_end;
                        } else {
                            match dumpable.iter_range(at, zeros_end).next() {
                                Some(next) => at = next,
                                None => break,
                            }
                        }
                    }
                    pfns = dumpable.iter_range(zeros_end, end).peekable();
                    continue;
                }
                let mut n = 1;
                while n < run_pages && pfns.next_if_eq(&(first + n as u64)).is_some() {
                    n += 1;
                }
                let run = buf.get_mut(..n * page_size).unwrap_or_default();
                let whole = first
                    .checked_shl(shift)
                    .is_some_and(|addr| mem.read(PhysAddr(addr), run, ReadOptions::default()).is_ok());
                if whole {
                    for (k, page) in run.chunks(page_size).enumerate() {
                        if is_zero(page) {
                            add_run(first + k as u64, first + k as u64 + 1);
                        }
                    }
                    continue;
                }
                // A frame partly outside the input, or one it lacks: page by page.
                for (k, page) in run.chunks_mut(page_size).enumerate() {
                    let pfn = first + k as u64;
                    match mem.read_page(Pfn(pfn), page) {
                        Ok(PageState::Dumped | PageState::ZeroFilled) if is_zero(page) => add_run(pfn, pfn + 1),
                        Ok(_) => {}
                        Err(_) if skip_unreadable => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(zeros)
        },
        |zeros| {
            for (a, b) in zeros? {
                zero_pages.set_range(a, b);
            }
            // Stopped (Ctrl-C): the frames not scanned count as not zero.
            if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                return Ok(Flow::Stop);
            }
            Ok::<_, vmcore_physmem::Error>(Flow::Continue)
        },
    )?;
    Ok(zero_pages)
}

/// Frames per unit of the parallel scan: a multiple of BATCH, so that the batches are those
/// of one sequential pass, and large enough that an exclusion (a buddy block, a compound
/// page) rarely runs past a unit's end. Larger units hold more decisions in memory (at
/// most two units per thread are in flight).
const UNIT_PFNS: u64 = 1 << 15;

/// Frames whose struct pages are read together: part of one mem_map section.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: u64,
    end: u64,
    /// Virtual address of the struct page of `start`.
    mem_map: u64,
}

/// Frames `[start, end)` to exclude, decided from the struct page of `start`.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u64,
    end: u64,
    class: Class,
    /// Frames the report counts for it.
    counted: u64,
}

/// What every unit's scan reads.
struct Scan<'a> {
    rules: &'a PageRules,
    machine: &'a Machine,
    present: &'a PfnBitmap,
    dump_level: u32,
    /// An ELF input's frames with file data in some segment (sorted, disjoint); None for
    /// a kdump file.
    with_data: Option<Vec<(u64, u64)>>,
}

impl Scan<'_> {
    /// What makedumpfile's report counts for an exclusion decided at `pfn` and covering
    /// `[pfn, end)`: every present frame of it, those the input already left out (a
    /// refiltered kdump file's, or past an ELF segment's data) included, when `pfn` itself
    /// has data in some segment; nothing when it has none (Debian makedumpfile's reports:
    /// the free pages of a `-d 16` file count again at `-d 31`; a buddy block across the
    /// end of a segment's data counts whole; frames another segment holds data for count).
    fn counted(&self, pfn: u64, end: u64) -> u64 {
        let has_data = self.with_data.as_ref().is_none_or(|ranges| {
            let i = ranges.partition_point(|&(_, b)| b <= pfn);
            ranges.get(i).is_some_and(|&(a, _)| a <= pfn)
        });
        if has_data {
            self.present.iter_range(pfn, end).count() as u64
        } else {
            0
        }
    }

    /// The exclusions decided in `unit` when decisions resume at `resume` (frames before
    /// it are covered by an earlier exclusion). One sequential pass decides the same
    /// frames as the units in order, each resumed where the previous one's last
    /// exclusion ended.
    fn unit(&self, unit: &Unit, resume: u64, buf: &mut [u8]) -> Vec<Run> {
        let size = self.rules.size;
        let total = self.present.len();
        let mut runs: Vec<Run> = Vec::new();
        let mut next_pfn = resume;
        let mut chunk = unit.start;
        while chunk < unit.end {
            let chunk_end = ((chunk / BATCH + 1) * BATCH).min(unit.end);
            let n = (chunk_end - chunk) as usize;
            let bytes = buf.get_mut(..n * size).unwrap_or_default();
            // A mem_map address from a corrupt mem_section can run past 2^64.
            let addr = unit.mem_map.checked_add((chunk - unit.start) * size as u64);
            if chunk_end <= next_pfn || addr.is_none_or(|addr| self.machine.kmem.read(addr, bytes).is_err()) {
                // Covered by an exclusion, or struct pages not in the dump (a refiltered
                // input, a corrupt address): nothing to decide.
                chunk = chunk_end;
                continue;
            }
            for pfn in chunk.max(next_pfn)..chunk_end {
                if pfn < next_pfn || !self.present.get(pfn) {
                    continue;
                }
                let i = (pfn - chunk) as usize;
                let page = bytes.get(i * size..(i + 1) * size).unwrap_or_default();
                let next = bytes.get((i + 1) * size..(i + 2) * size);
                if let Decision::Exclude { class, pages } = self.rules.decide(pfn, page, next, self.dump_level) {
                    let end = pfn.saturating_add(pages).min(total);
                    let counted = self.counted(pfn, end);
                    // Frames excluded one by one make one run per class stretch, so that
                    // a unit's decisions stay small.
                    match runs.last_mut() {
                        Some(last) if last.end == pfn && last.class == class => {
                            last.end = end;
                            last.counted += counted;
                        }
                        _ => runs.push(Run { start: pfn, end, class, counted }),
                    }
                    next_pfn = end;
                }
            }
            chunk = chunk_end;
        }
        runs
    }
}

/// The units of `memmap`'s sections, in pfn order, cut at multiples of `unit_pfns`.
fn units(memmap: &MemMap, struct_page_size: u64, unit_pfns: u64) -> Vec<Unit> {
    // Units must be whole batches, or a compound head would see a different next page.
    let unit_pfns = unit_pfns.clamp(BATCH, 1 << 40).next_multiple_of(BATCH);
    let mut units = Vec::new();
    for section in &memmap.sections {
        let mut start = section.pfn_start;
        while start < section.pfn_end {
            let end = ((start / unit_pfns + 1) * unit_pfns).min(section.pfn_end);
            // A corrupt mem_section can put a section's array near 2^64: its frames past
            // the end of the address space have no struct page to read.
            let Some(mem_map) = section.mem_map.checked_add((start - section.pfn_start) * struct_page_size) else {
                break;
            };
            units.push(Unit { start, end, mem_map });
            start = end;
        }
    }
    units
}

/// Classifies the struct pages of the present frames on `threads` threads and clears the
/// excluded ones in `dumpable`, counting them per class. The result is that of one
/// sequential pass whatever the thread count: workers scan units independently, each as if
/// no exclusion ran into it, and the units are applied in order; the rare unit that an
/// earlier exclusion does run into is scanned again from where that exclusion ends.
/// Frames in `overlaps` count that many more times.
fn scan(
    ctx: &Scan,
    memmap: &MemMap,
    dumpable: &mut PfnBitmap,
    stats: &mut Stats,
    overlaps: &[(u64, u64, u64)],
    opts: &Options,
) {
    let units = units(memmap, ctx.rules.size as u64, opts.unit_pfns);
    let batch_bytes = ctx.rules.size * BATCH as usize;
    // For the rescans, on the merging thread.
    let mut buf = vec![0u8; batch_bytes];
    let mut next_pfn = 0u64;
    let Ok(()) = ordered::<_, _, _, Infallible>(
        units.iter(),
        opts.threads,
        || vec![0u8; batch_bytes],
        |buf, unit| (unit, ctx.unit(unit, unit.start, buf)),
        |(unit, runs)| {
            let runs = if next_pfn > unit.start { ctx.unit(unit, next_pfn, &mut buf) } else { runs };
            for run in runs {
                let counter = match run.class {
                    Class::Cache => &mut stats.non_pri_cache,
                    Class::CachePrivate => &mut stats.pri_cache,
                    Class::User => &mut stats.user,
                    Class::Free => &mut stats.free,
                    Class::Hwpoison => &mut stats.hwpoison,
                    Class::Offline => &mut stats.offline,
                };
                *counter += recounted(dumpable, overlaps, run.start, run.end) + run.counted;
                dumpable.clear_range(run.start, run.end);
                next_pfn = run.end;
            }
            Ok(Flow::Continue)
        },
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vmcore_formats::elf::{ElfCore, LoadSegment};
    use vmcore_physmem::ElfMem;
    use vmcore_synth::elf::{ElfVmcore, Load, EM_X86_64};
    use vmcore_types::ReadAt;

    use vmcore_physmem::{PageState, ReadOptions};
    use vmcore_types::{Pfn, PhysAddr};

    use super::{cut, frames_with_data, overlapping_frames, recounted, zero_pages};
    use crate::PfnBitmap;

    #[test]
    fn overlapping_frames_say_how_many_times_more_they_are_described() {
        let segments = [(0, 10), (5, 15), (7, 8), (20, 20), (30, 40)];
        assert_eq!(overlapping_frames(segments.into_iter()), vec![(5, 7, 1), (7, 8, 2), (8, 10, 1)]);
        assert_eq!(overlapping_frames([(0, 4), (4, 8)].into_iter()), vec![]);
        let mut bits = PfnBitmap::new(16);
        bits.set_range(6, 9);
        // Frames 6 (once more), 7 (twice more) and 8 (once more).
        assert_eq!(recounted(&bits, &overlapping_frames(segments.into_iter()), 0, 16), 4);
        assert_eq!(recounted(&bits, &overlapping_frames(segments.into_iter()), 8, 16), 1);
    }

    #[test]
    fn frames_with_data_merge_segments_and_end_where_the_data_ends() {
        let load =
            |paddr: u64, filesz: u64, memsz: u64| LoadSegment { index: 0, vaddr: 0, paddr, offset: 0, filesz, memsz };
        let ps = 4096;
        let loads = [
            // The direct map's first 10 frames, data in the first 6.5 (frame 6 half).
            load(0, 6 * ps + 100, 10 * ps),
            // The kernel image inside it, whole, then memory without data.
            load(2 * ps, 8 * ps, 8 * ps),
            load(20 * ps, 0, 4 * ps),
            load(u64::MAX, ps, ps),
            // Past `total` (30 frames): cut there.
            load(28 * ps, 4 * ps, 4 * ps),
        ];
        assert_eq!(frames_with_data(&loads, ps, 30), vec![(0, 10), (28, 30)]);
        assert_eq!(frames_with_data(&loads[..1], ps, 30), vec![(0, 7)]);
    }

    /// Frames 0-9 of one segment: 0, 2 and 5 hold data, 1, 3 and 4 zeros, 6-8 lie past the
    /// segment's file size (zero-filled), and 9 is half in the segment, its part zeros.
    /// Frame 4 is not to be dumped, so not looked at.
    #[test]
    fn zero_pages_read_runs_and_count_zero_filled_and_partial_frames() {
        let mut spec = ElfVmcore::new(EM_X86_64);
        spec.loads.push(Load { paddr: 0, vaddr: 0xffff_8880_0000_0000, memsz: 0x9800, filesz: 0x6000 });
        let file = spec
            .to_vec(|paddr, buf| buf.fill(if [0, 2, 5].contains(&(paddr / 4096)) { 0xaa } else { 0 }))
            .expect("writes");
        let src: Arc<dyn ReadAt> = Arc::new(file);
        let core = ElfCore::parse(&*src).expect("parses");
        let mem = ElfMem::new(&core, src, 4096);
        let mut dumpable = PfnBitmap::new(10);
        dumpable.set_range(0, 10);
        dumpable.clear(4);
        for threads in [1, 2] {
            let zeros = zero_pages(&mem, &dumpable, threads, 64, false, None).expect("reads");
            assert_eq!(zeros.iter().collect::<Vec<_>>(), vec![1, 3, 6, 7, 8, 9], "{threads} threads");
        }
    }

    /// Memory that counts the bytes read through it.
    #[derive(Debug)]
    struct Counting(ElfMem, std::sync::atomic::AtomicU64);

    impl vmcore_physmem::PhysMem for Counting {
        fn page_size(&self) -> u64 {
            self.0.page_size()
        }
        fn max_pfn(&self) -> u64 {
            self.0.max_pfn()
        }
        fn page_state(&self, pfn: Pfn) -> vmcore_physmem::Result<PageState> {
            self.0.page_state(pfn)
        }
        fn read_page(&self, pfn: Pfn, buf: &mut [u8]) -> vmcore_physmem::Result<PageState> {
            self.1.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.0.read_page(pfn, buf)
        }
        fn ranges(&self) -> Vec<vmcore_physmem::PhysRange> {
            self.0.ranges()
        }
        fn read(&self, addr: PhysAddr, buf: &mut [u8], opts: ReadOptions) -> vmcore_physmem::Result<()> {
            self.1.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.0.read(addr, buf, opts)
        }
        fn zero_filled_until(&self, pfn: Pfn) -> Option<u64> {
            self.0.zero_filled_until(pfn)
        }
    }

    #[test]
    fn memory_claimed_past_a_segments_data_counts_as_zeros_without_being_read() {
        // 16 frames of data (the odd ones zero), then 1 GiB the segment claims without data.
        let mut spec = ElfVmcore::new(EM_X86_64);
        spec.loads.push(Load { paddr: 0, vaddr: 0xffff_8880_0000_0000, memsz: 1 << 30, filesz: 16 << 12 });
        let file = spec.to_vec(|paddr, buf| buf.fill(if (paddr >> 12) % 2 == 0 { 0xaa } else { 0 })).expect("writes");
        let src: Arc<dyn ReadAt> = Arc::new(file);
        let core = ElfCore::parse(&*src).expect("parses");
        let mem = Counting(ElfMem::new(&core, src, 4096), Default::default());
        let frames = (1u64 << 30) >> 12;
        let mut dumpable = PfnBitmap::new(frames);
        dumpable.set_range(0, frames);
        for threads in [1, 2] {
            mem.1.store(0, std::sync::atomic::Ordering::Relaxed);
            let zeros = zero_pages(&mem, &dumpable, threads, 4096, false, None).expect("reads");
            assert_eq!(zeros.count(), 8 + (frames - 16), "{threads} threads");
            assert!(zeros.get(1) && !zeros.get(2) && zeros.get(16) && zeros.get(frames - 1));
            // The data, and what the run of reads that began in it took past its end.
            let read = mem.1.load(std::sync::atomic::Ordering::Relaxed);
            assert!((16 << 12..=(16 << 12) + super::ZERO_SCAN_BYTES as u64).contains(&read), "{read} bytes read");
        }
    }

    #[test]
    fn cutting_ranges_out_of_a_segment() {
        assert_eq!(cut(0, 100, &[]), vec![(0, 100)]);
        assert_eq!(cut(0, 100, &[(20, 30)]), vec![(0, 20), (30, 100)]);
        assert_eq!(cut(0, 100, &[(0, 30), (90, 200)]), vec![(30, 90)]);
        assert_eq!(cut(10, 20, &[(0, 100)]), vec![]);
        assert_eq!(cut(10, 20, &[(30, 40)]), vec![(10, 20)]);
    }

    /// Found by the model fuzz target: a corrupt mem_section put a section's struct pages
    /// at the top of the address space, and the address of its second unit overflowed.
    /// Units stop where the address would pass 2^64.
    #[test]
    fn units_stop_where_struct_page_addresses_would_pass_2_64() {
        use vmcore_kernel::mm::{MemMap, Section};
        let unit = 1u64 << 15;
        let top = MemMap {
            sections: vec![Section { pfn_start: 0, pfn_end: 4 * unit, mem_map: 0u64.wrapping_sub(64 * unit) }],
            page_struct_size: 64,
            model: "SPARSEMEM",
        };
        let units = super::units(&top, 64, unit);
        let got: Vec<(u64, u64, u64)> = units.iter().map(|u| (u.start, u.end, u.mem_map)).collect();
        assert_eq!(got, [(0, unit, 0u64.wrapping_sub(64 * unit))]);
        assert_eq!(top.page_struct(unit - 1), Some(u64::MAX - 63));
        assert_eq!(top.page_struct(unit), None);
    }
}
