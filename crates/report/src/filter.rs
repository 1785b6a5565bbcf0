//! The filtering report of `vmcore dump --dry-run` (and `--stats`), in makedumpfile's
//! words and layout.

use serde::Serialize;
use vmcore_filter::Stats;

/// The report of one filtering: the level, then the counts (flattened into one JSON
/// object, the keys of `vmcore dump --dry-run --json`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct FilterReport {
    /// Dump level.
    pub dump_level: u32,
    /// The counts, in pages.
    #[serde(flatten)]
    pub counts: Stats,
    /// makedumpfile's "Write bytes" of the dump written, or of the dump a dry run plans:
    /// an ELF one's are known without writing; a compressed one's only the front end's
    /// dry run finds, compressing every page as makedumpfile's does (`vmcore dump
    /// --dry-run` only filters: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_bytes: Option<u64>,
    /// For an ELF dump, the pages of data it holds: makedumpfile's remaining pages "in ELF
    /// format" (excluded runs shorter than 256 pages stay in the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages_in_elf: Option<u64>,
}

impl FilterReport {
    /// The report of `stats` at `dump_level`.
    pub fn new(dump_level: u32, stats: &Stats) -> FilterReport {
        FilterReport { dump_level, counts: *stats, write_bytes: None, pages_in_elf: None }
    }

    /// With `write_bytes` as makedumpfile counts them, for a dump written.
    pub fn with_write_bytes(self, write_bytes: u64) -> FilterReport {
        FilterReport { write_bytes: Some(write_bytes), ..self }
    }

    /// With the pages of data of an ELF dump, which makedumpfile's report of one shows.
    pub fn with_pages_in_elf(self, pages: u64) -> FilterReport {
        FilterReport { pages_in_elf: Some(pages), ..self }
    }

    /// makedumpfile's `--message-level 31` report, byte for byte but for its page cache's
    /// hit rate and its step times, which tell of makedumpfile's internals.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let written = self.write_bytes.map(|b| format!("Write bytes     : {b}\n")).unwrap_or_default();
        let remaining = self.pages_in_elf.unwrap_or(c.remaining_pages);
        let percent = (remaining * 100).checked_div(c.original_pages).unwrap_or(0);
        let in_elf = |pages: u64| format!("     in ELF format : 0x{pages:016x}\n");
        let (excluded_in_elf, remaining_in_elf) = match self.pages_in_elf {
            Some(kept) => (in_elf(c.original_pages.saturating_sub(kept)), in_elf(kept)),
            None => Default::default(),
        };
        format!(
            "Original pages  : 0x{:016x}\n  Excluded pages   : 0x{:016x}\n{excluded_in_elf}    Pages filled with zero  : 0x{:016x}\n    \
             Non-private cache pages : 0x{:016x}\n    Private cache pages     : 0x{:016x}\n    \
             User process data pages : 0x{:016x}\n    Free pages              : 0x{:016x}\n    \
             Hwpoison pages          : 0x{:016x}\n    Offline pages           : 0x{:016x}\n    \
             Extension filter pages  : 0x{:016x}\n  Remaining pages  : 0x{:016x}\n{remaining_in_elf}  \
             (The number of pages is reduced to {percent}%.)\nMemory Hole     : 0x{:016x}\n{}\nTotal pages     : 0x{:016x}\n{written}",
            c.original_pages,
            c.excluded_pages,
            c.zero,
            c.non_pri_cache,
            c.pri_cache,
            c.user,
            c.free,
            c.hwpoison,
            c.offline,
            0,
            c.remaining_pages,
            c.memory_hole,
            "-".repeat(50),
            c.total_pages
        )
    }
}
