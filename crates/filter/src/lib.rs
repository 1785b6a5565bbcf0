//! Which page frames a dump at a given dump level keeps, and the counts makedumpfile's
//! report prints. One computation serves `vmcore dump --dry-run`, `vmcore mem-usage` and
//! the writer.
//!
//! The steps follow makedumpfile (../shared/docs/makedumpfile.md sections 1.6, 4 and 5.1):
//! the 1st bitmap holds the frames the input's segments describe (an ELF segment's end is
//! rounded down to a page), the 2nd starts as a copy of it less the frames without data,
//! the `struct page` scan clears the classes the level excludes (and hwpoison and offline
//! frames at every level), and with level bit 1 the frames left are checked for zeros.
//!
//! Both reading passes run on `Options::threads` threads, in units of 32768 frames. The
//! scan's result is that of one sequential pass whatever the thread count (see `scan`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bitmap;
mod scan;
mod spill;
mod vmemmap;

pub use bitmap::{Iter, PfnBitmap};
pub use scan::{filter, is_zero, zero_pages, Cycles, Options};
pub use spill::BitmapStorage;
pub use vmemmap::{exclude_unused_vmemmap, VmemmapExclusion};

/// Errors of filtering.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The dump lacks what classification needs.
    #[error("{0}")]
    Missing(String),
    /// Reading the dump failed.
    #[error(transparent)]
    Phys(#[from] vmcore_physmem::Error),
    /// Finding struct pages failed.
    #[error(transparent)]
    MemMap(#[from] vmcore_kernel::mm::memmap::Error),
    /// The page rules could not be read.
    #[error(transparent)]
    Rules(#[from] vmcore_kernel::mm::page::Error),
    /// A bitmap's temporary file failed.
    #[error("{0}")]
    Bitmap(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// The counts of makedumpfile's filtering report (`--message-level 31`), in pages; also
/// the keys of `vmcore dump --dry-run --json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Frames the input's segments describe, counted per segment (a frame described by two
    /// overlapping segments, such as the kernel image, counts twice, as in makedumpfile).
    pub original_pages: u64,
    /// Sum of the classes below.
    pub excluded_pages: u64,
    /// All-zero pages (level bit 1).
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
    /// Offline pages.
    pub offline: u64,
    /// `original_pages - excluded_pages`.
    pub remaining_pages: u64,
    /// `total_pages - original_pages`, wrapping below zero (as makedumpfile's does) where
    /// overlapping segments describe more pages than there are frames.
    pub memory_hole: u64,
    /// One past the highest frame (max_mapnr).
    pub total_pages: u64,
}

/// The result of filtering.
#[derive(Debug, Clone)]
pub struct Filtered {
    /// Dump level applied.
    pub level: u32,
    /// Frames present in the machine (1st bitmap).
    pub present: PfnBitmap,
    /// Frames to dump (2nd bitmap). Zero pages keep their bit: a kdump-compressed file
    /// stores them as descriptors of one shared zero page.
    pub dumpable: PfnBitmap,
    /// Frames found all-zero (a subset of `dumpable`; only with level bit 1).
    pub zero_pages: PfnBitmap,
    /// Whether the filter looked for zero pages (else a writer finds them as it copies).
    pub zero_pages_scanned: bool,
    /// The report.
    pub stats: Stats,
    /// What the filter could not do as asked, and did instead.
    pub warnings: Vec<String>,
    /// What `-e` left out, when it ran (a kdump-compressed file's header then says so).
    pub vmemmap: Option<VmemmapExclusion>,
    /// Whether makedumpfile would hold both bitmaps whole (its non-cyclic path, which it
    /// takes when they fit its buffer, with --work-dir, -e, and refiltering a kdump file):
    /// it then writes them a block at a time, and its "Write bytes" counts whole blocks.
    pub whole_bitmaps: bool,
}
