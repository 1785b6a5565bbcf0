//! The filtering report of `vmcore dump --dry-run` (and `--stats`), in makedumpfile's
//! words and layout.

use serde::Serialize;
use vmcore_filter::Stats;

/// Counts in pages; the keys of `vmcore dump --dry-run --json`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct FilterReport {
    /// Dump level.
    pub dump_level: u32,
    /// Pages the input describes (the kernel-image segment counts twice where it overlaps
    /// the direct map, as in makedumpfile).
    pub original_pages: u64,
    /// Sum of the excluded classes.
    pub excluded_pages: u64,
    /// All-zero pages.
    pub zero: u64,
    /// Page cache without private data.
    pub non_pri_cache: u64,
    /// Page cache with private data.
    pub pri_cache: u64,
    /// User process data.
    pub user: u64,
    /// Free pages.
    pub free: u64,
    /// Hardware-poisoned pages.
    pub hwpoison: u64,
    /// Logically offline pages.
    pub offline: u64,
    /// Pages left.
    pub remaining_pages: u64,
    /// Frames below max pfn that no segment describes.
    pub memory_hole: u64,
    /// max pfn.
    pub total_pages: u64,
}

impl FilterReport {
    /// The report of `stats` at `dump_level`.
    pub fn new(dump_level: u32, s: &Stats) -> FilterReport {
        FilterReport {
            dump_level,
            original_pages: s.original_pages,
            excluded_pages: s.excluded_pages,
            zero: s.zero,
            non_pri_cache: s.non_pri_cache,
            pri_cache: s.pri_cache,
            user: s.user,
            free: s.free,
            hwpoison: s.hwpoison,
            offline: s.offline,
            remaining_pages: s.remaining_pages,
            memory_hole: s.memory_hole,
            total_pages: s.total_pages,
        }
    }

    /// makedumpfile's `--message-level 31` report, byte for byte.
    pub fn render(&self) -> String {
        let percent = (self.remaining_pages * 100).checked_div(self.original_pages).unwrap_or(0);
        format!(
            "Original pages  : 0x{:016x}\n  Excluded pages   : 0x{:016x}\n    Pages filled with zero  : 0x{:016x}\n    \
             Non-private cache pages : 0x{:016x}\n    Private cache pages     : 0x{:016x}\n    \
             User process data pages : 0x{:016x}\n    Free pages              : 0x{:016x}\n    \
             Hwpoison pages          : 0x{:016x}\n    Offline pages           : 0x{:016x}\n    \
             Extension filter pages  : 0x{:016x}\n  Remaining pages  : 0x{:016x}\n  \
             (The number of pages is reduced to {percent}%.)\nMemory Hole     : 0x{:016x}\n{}\nTotal pages     : 0x{:016x}\n",
            self.original_pages,
            self.excluded_pages,
            self.zero,
            self.non_pri_cache,
            self.pri_cache,
            self.user,
            self.free,
            self.hwpoison,
            self.offline,
            0,
            self.remaining_pages,
            self.memory_hole,
            "-".repeat(50),
            self.total_pages
        )
    }
}
