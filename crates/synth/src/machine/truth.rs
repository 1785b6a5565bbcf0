//! The ground truth of a machine, counted from its plan.
//!
//! `levels` reproduces the numbers of makedumpfile's `--message-level 31` report for each
//! dump level (../shared/docs/makedumpfile.md section 4.4 and the fixtures' README):
//!
//! * `original_pages` = the pages of every PT_LOAD (`ceil(end) - floor(start)` in pfns, so
//!   the partial page at 0x9f000 counts, except above 64 GiB where makedumpfile works in
//!   several cycles and rounds down), so the kernel-image segment, which overlaps the
//!   direct map, counts twice;
//! * `total_pages` = `max_mapnr`; `memory_hole` = total - original (one image too low);
//! * each page of the dumped RAM (once) is classed by its `struct page`: free (bit 16),
//!   non-private cache (bit 2 or 4), private cache (bit 4), user (bit 8), hwpoison and
//!   offline (always); a page not excluded by class is a zero page at levels with bit 1
//!   when its bytes are all zero;
//! * `excluded_pages` = their sum, `remaining_pages` = original - excluded.

use std::collections::BTreeMap;

use serde::Serialize;

use super::phys::{Category, Content, BLOCK_PAGES, CATEGORIES, PAGE};
use super::Machine;

/// The numbers of makedumpfile's report for one dump level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LevelCounts {
    /// "Original pages".
    pub original_pages: u64,
    /// "Excluded pages".
    pub excluded_pages: u64,
    /// "Pages filled with zero".
    pub zero: u64,
    /// "Non-private cache pages".
    pub non_pri_cache: u64,
    /// "Private cache pages".
    pub pri_cache: u64,
    /// "User process data pages".
    pub user: u64,
    /// "Free pages".
    pub free: u64,
    /// "Hwpoison pages".
    pub hwpoison: u64,
    /// "Offline pages".
    pub offline: u64,
    /// "Remaining pages".
    pub remaining_pages: u64,
    /// "Memory Hole".
    pub memory_hole: u64,
    /// "Total pages".
    pub total_pages: u64,
}

/// makedumpfile's report lines in their order: label, and the [`LevelCounts`] field (as
/// serialized) that holds its number.
pub const REPORT_LINES: [(&str, &str); 12] = [
    ("Original pages", "original_pages"),
    ("Excluded pages", "excluded_pages"),
    ("Pages filled with zero", "zero"),
    ("Non-private cache pages", "non_pri_cache"),
    ("Private cache pages", "pri_cache"),
    ("User process data pages", "user"),
    ("Free pages", "free"),
    ("Hwpoison pages", "hwpoison"),
    ("Offline pages", "offline"),
    ("Remaining pages", "remaining_pages"),
    ("Memory Hole", "memory_hole"),
    ("Total pages", "total_pages"),
];

/// The (field, number) pairs of the report lines in `text` (makedumpfile's output, or a
/// saved report), in the order they appear; other lines are skipped.
pub fn parse_report(text: &str) -> Vec<(&'static str, u64)> {
    text.lines()
        .filter_map(|line| {
            let (label, value) = line.split_once(':')?;
            let (_, key) = REPORT_LINES.iter().find(|(l, _)| label.trim() == *l)?;
            let hex = value.trim().strip_prefix("0x")?;
            Some((*key, u64::from_str_radix(hex, 16).ok()?))
        })
        .collect()
}

/// The x86_64 layout values, as `vmcore info --json` reports them under `layout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayoutTruth {
    /// KASLR offset of the image (`KERNELOFFSET`; 0 without KASLR).
    pub kaslr_offset: String,
    /// `phys_base` as an unsigned 64-bit value.
    pub phys_base: String,
    /// 4 or 5.
    pub paging_levels: String,
    /// Physical address of `init_top_pgt`.
    pub pgd: String,
    /// Start of the direct map.
    pub page_offset_base: String,
    /// Start of vmalloc space.
    pub vmalloc_base: String,
    /// Address of pfn 0's `struct page`.
    pub vmemmap_base: String,
}

/// Everything a reader of the dump must find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Truth {
    /// The layout name it was built with.
    pub layout_name: String,
    /// `uname -r`.
    pub release: String,
    /// The seed.
    pub seed: u64,
    /// Page size.
    pub page_size: u64,
    /// `max_mapnr`.
    pub max_pfn: u64,
    /// Report numbers by dump level.
    pub levels: BTreeMap<u8, LevelCounts>,
    /// `makedumpfile --dump-dmesg` output (1.7.9: with caller ids where the kernel has
    /// them).
    pub dmesg: String,
    /// Layout values.
    pub layout: LayoutTruth,
    /// Number of kallsyms symbols, when the tables are in the image.
    pub kallsyms: Option<usize>,
    /// Addresses of kernel symbols the machine defines, as hex strings.
    pub symbols: BTreeMap<String, String>,
    /// Dumped pages per class (zero pages counted apart): what the levels derive from.
    pub pages: BTreeMap<String, u64>,
}

const CATEGORY_NAMES: [&str; CATEGORIES] = ["kernel", "cache", "private_cache", "user", "free", "hwpoison", "offline"];

/// Dumped pages by (category, zero).
pub(crate) fn histogram(m: &Machine) -> [[u64; 2]; CATEGORIES] {
    let model = m.model();
    let mut h = [[0u64; 2]; CATEGORIES];
    let mut add = |c: Category, zero: bool, n: u64| {
        if let Some(slot) = h.get_mut(c as usize).and_then(|r| r.get_mut(usize::from(zero))) {
            *slot += n;
        }
    };
    for &(s, e) in m.dumped_ram() {
        let (a, b) = (s / PAGE, e.div_ceil(PAGE));
        let mut pfn = a;
        while pfn < b {
            let block = pfn / BLOCK_PAGES;
            let end = b.min((block + 1) * BLOCK_PAGES);
            if model.free_block(block) {
                add(Category::Free, true, end - pfn);
            } else {
                for q in pfn..end {
                    let (desc, content) = model.info(q);
                    let zero = match content {
                        Content::Zero => true,
                        Content::Random | Content::Text => false,
                        _ => model.page_is_zero(q),
                    };
                    add(desc.category(), zero, 1);
                }
            }
            pfn = end;
        }
    }
    h
}

pub(crate) fn levels_from(h: &[[u64; 2]; CATEGORIES], original: u64, total: u64, level: u8) -> LevelCounts {
    let l = u32::from(level);
    let mut c = LevelCounts { original_pages: original, total_pages: total, ..LevelCounts::default() };
    for (i, row) in h.iter().enumerate() {
        for (z, &n) in row.iter().enumerate() {
            let slot = match i {
                1 if l & 6 != 0 => Some(&mut c.non_pri_cache),
                2 if l & 4 != 0 => Some(&mut c.pri_cache),
                3 if l & 8 != 0 => Some(&mut c.user),
                4 if l & 16 != 0 => Some(&mut c.free),
                5 => Some(&mut c.hwpoison),
                6 => Some(&mut c.offline),
                _ if z == 1 && l & 1 != 0 => Some(&mut c.zero),
                _ => None,
            };
            if let Some(s) = slot {
                *s += n;
            }
        }
    }
    c.excluded_pages = c.zero + c.non_pri_cache + c.pri_cache + c.user + c.free + c.hwpoison + c.offline;
    // makedumpfile's counters are unsigned and wrap: on a small machine the doubly counted
    // kernel image makes "Original pages" exceed "Total pages" and the hole "negative".
    c.remaining_pages = original.wrapping_sub(c.excluded_pages);
    c.memory_hole = total.wrapping_sub(original);
    c
}

/// Largest `max_mapnr` makedumpfile handles in one cycle: its bitmap buffer is at most
/// 4 MiB (`bufsize_cyclic`, less when the machine running it has under ~7 MiB free), two
/// bits per page.
pub const SINGLE_CYCLE_MAX_PFNS: u64 = 4 << 20 << 3 >> 1;

/// "Original pages": every PT_LOAD's pages, the kernel image twice. Observed with
/// makedumpfile 1.7.2 and 1.7.9: in one cycle a segment's partial last page (0x9f000)
/// counts and one page is lost when `max_mapnr` is not a multiple of 8 (never the case
/// here: RAM ends on 2 MiB boundaries); over several cycles (more than 64 GiB of
/// physical address space) partial pages do not count.
fn original_pages(m: &Machine) -> u64 {
    let single = m.max_pfn() <= SINGLE_CYCLE_MAX_PFNS;
    let end = |e: u64| if single { e.div_ceil(PAGE) } else { e / PAGE };
    let sum: u64 = m.loads().iter().map(|l| end(l.paddr + l.memsz) - l.paddr / PAGE).sum();
    sum.saturating_sub(u64::from(single && m.max_pfn() % 8 != 0))
}

pub(crate) fn compute(m: &Machine, levels: &[u8]) -> Truth {
    let h = histogram(m);
    let total = m.max_pfn();
    let original = original_pages(m);
    let wanted: Vec<u8> = if levels.is_empty() { (0..32).collect() } else { levels.to_vec() };
    let mut pages = BTreeMap::new();
    for (name, row) in CATEGORY_NAMES.iter().zip(h.iter()) {
        pages.insert((*name).to_string(), row[0]);
        pages.insert(format!("{name}_zero"), row[1]);
    }
    Truth {
        layout_name: m.spec().layout.name(),
        release: m.spec().layout.generation.release().to_string(),
        seed: m.spec().seed,
        page_size: PAGE,
        max_pfn: total,
        levels: wanted.iter().map(|&l| (l, levels_from(&h, original, total, l & 31))).collect(),
        dmesg: m.dmesg().to_string(),
        layout: m.layout_truth().clone(),
        kallsyms: m.kallsyms_count(),
        symbols: m.symbols().iter().map(|(k, v)| (k.clone(), format!("{v:#x}"))).collect(),
        pages,
    }
}
