//! Writing dumps in makedumpfile's formats.
//!
//! The filter (vmcore-filter) decides which pages to keep; this crate reads them, checks for
//! zero pages, compresses them on N threads, and writes them in pfn order through one
//! writer, so the output is byte-identical whatever the thread count. Memory is bounded by
//! the jobs in flight (8 per thread, 64 pages each) and the 1 MiB write buffers, never by
//! the dump size: the pfns to write are taken from the bitmap as they are needed, and the
//! input is read with `pread` (only /proc/vmcore is mapped, in vmcore-formats).
//!
//! Outputs: kdump-compressed ([`write_kdump`]), `--split` sets ([`write_kdump_split`],
//! [`split_ranges`]), ELF ([`write_elf`]), each to a file or as a flattened stream
//! ([`FlatOutput`]); and the two conversions, [`rearrange()`] (flattened stream to file)
//! and [`reassemble()`] (split set to one file).
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod compress;
mod elf;
mod kdump;
#[cfg(feature = "lzo")]
mod lzo;
mod meta;
mod output;
mod pipeline;
mod rearrange;
mod reassemble;
mod split;
#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use vmcore_filter::PfnBitmap;

pub use elf::{elf_plan, split_segment, write_elf, Piece, Pieces, PFN_EXCLUDED};
pub use kdump::{write_kdump, write_kdump_split, KdumpMeta};
pub use output::{create_dump_file, FileOutput, FlatOutput, Output, OutputError};
pub use rearrange::{rearrange, RearrangeReport};
pub use reassemble::reassemble;
pub use split::{split_ranges, DEFAULT_SPLITBLOCK_BYTES};
pub use vmcore_formats::codec::Codec;

/// Errors of writing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the input failed.
    #[error(transparent)]
    Phys(#[from] vmcore_physmem::Error),
    /// The input is not what the writer expected.
    #[error("{0}")]
    Input(String),
    /// Writing the output failed (other than running out of space, which gives an
    /// incomplete dump instead).
    #[error("writing the dump: {0}")]
    Output(std::io::Error),
    /// The size limit or the disk ended the output before its headers and bitmaps were
    /// whole: there is no dump to mark incomplete, and the file is of no use.
    #[error(
        "writing the dump: no space for the dump's headers and bitmaps (a larger -L, or more free space, is needed)"
    )]
    NoRoomForHeaders,
    /// The input stopped (cut short, or Ctrl-C) before the output's headers and bitmaps
    /// were whole: there is no dump to mark incomplete.
    #[error("{0}: no dump was written")]
    NoDump(String),
    /// Writing file `index` (from 0) of a `--split` set failed with `cause`; the files
    /// after it were closed incomplete, without pages.
    #[error("file {} of the split set: {cause}", .index + 1)]
    SplitFile {
        /// Which file.
        index: usize,
        /// What went wrong in it.
        cause: Box<Error>,
    },
    /// Reading the input failed while pages were written: the file is closed as a dump
    /// marked incomplete, readable up to the last page written.
    #[error("{cause}: the dump is closed after {written} of its {pages} pages and marked incomplete")]
    Incomplete {
        /// What stopped the writing.
        cause: Box<Error>,
        /// Pages in the file.
        written: u64,
        /// Pages the file was to hold.
        pages: u64,
    },
}

impl Error {
    /// The output holds no dump (its headers and bitmaps never became whole): the file is
    /// of no use and the caller that created it removes it.
    pub fn left_no_dump(&self) -> bool {
        matches!(self, Error::NoRoomForHeaders | Error::NoDump(_))
    }
}

impl From<OutputError> for Error {
    fn from(e: OutputError) -> Error {
        match e {
            OutputError::Io(e) => Error::Output(e),
            OutputError::Full => Error::NoRoomForHeaders,
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// How to write.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Page codec.
    pub codec: Codec,
    /// Worker threads (1: everything on the calling thread).
    pub threads: usize,
    /// Set (by a Ctrl-C handler) to stop early and leave a valid dump marked incomplete.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for WriteOptions {
    fn default() -> WriteOptions {
        WriteOptions { codec: Codec::Zlib, threads: 1, stop: None }
    }
}

impl WriteOptions {
    /// Whether a stop (Ctrl-C) was asked for.
    fn stopped(&self) -> bool {
        stopped(self.stop.as_deref())
    }
}

/// Whether `stop` is set.
fn stopped(stop: Option<&AtomicBool>) -> bool {
    stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Pages the dump was meant to hold.
    pub pages: u64,
    /// Pages whose data and descriptor are in the file.
    pub pages_written: u64,
    /// Of those, all-zero pages stored as the shared zero page.
    pub zero_pages: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// makedumpfile's "Write bytes": the bytes of every write into the file, which leave
    /// out the holes of a kdump file's headers and bitmaps, and count twice an ELF file's
    /// program headers (written once before the data and again after it).
    pub write_bytes: u64,
    /// The dump was cut short (no space, size limit, interrupted) and is marked incomplete.
    pub incomplete: bool,
}

/// Fails when a bitmap's temporary file could not be read back: the pages written from it
/// are then not the ones the filter chose.
fn bitmaps_read_back(bitmaps: &[&PfnBitmap]) -> Result<()> {
    match bitmaps.iter().find_map(|b| b.lost()) {
        Some(lost) => Err(Error::Input(lost.to_string())),
        None => Ok(()),
    }
}

/// Progress of a long write; the CLI draws it, the library only reports.
pub trait Progress: Sync {
    /// Pages to write.
    fn set_total(&self, pages: u64);
    /// `pages` more written.
    fn advance(&self, pages: u64);
    /// Done.
    fn finish(&self);
}

/// No progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
