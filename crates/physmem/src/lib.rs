//! Physical memory of a dumped (or running) machine, whatever file it comes from.
//!
//! [`open_container`] detects the format of one file (or a `--split` set) and returns a
//! [`Container`]: its metadata and raw VMCOREINFO. The kernel layer parses that, learns the
//! page size, and asks [`Container::physmem`] for the [`PhysMem`] every upper layer
//! reads through. Reads say why bytes are missing: a memory hole, a page filtering
//! excluded, or a page an incomplete dump never wrote; never silent zeros unless the
//! caller asks for them ([`ReadOptions::excluded_as_zero`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod container;
mod elf;
mod kdump;

pub use container::{open_container, Container, ContainerInfo};
pub use elf::ElfMem;
pub use kdump::{check_split_set, KdumpMem, SplitMem};

use vmcore_types::{Pfn, PhysAddr};

/// Errors of physical reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The page is RAM of the dumped machine, but filtering left it out of the dump.
    #[error("physical address {addr} (pfn {pfn}) is not in the dump: the page was excluded by filtering")]
    Excluded {
        /// First address that could not be read.
        addr: PhysAddr,
        /// Its page frame.
        pfn: Pfn,
    },
    /// The dump was cut short (disk full, size limit) before this page was written.
    #[error("physical address {addr} (pfn {pfn}) is not in the dump: the dump is incomplete and this page was never written")]
    NotWritten {
        /// First address that could not be read.
        addr: PhysAddr,
        /// Its page frame.
        pfn: Pfn,
    },
    /// No memory at this address (a hole in the physical address space, or past the end).
    #[error("physical address {addr} is not in the dump: no memory there (a hole in the physical memory map)")]
    Hole {
        /// First address that could not be read.
        addr: PhysAddr,
    },
    /// The dump file itself is bad.
    #[error(transparent)]
    Format(#[from] vmcore_formats::Error),
    /// The parts given do not form one dump.
    #[error("{0}")]
    Mismatch(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// What a page frame is, as far as the dump knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageState {
    /// Its bytes are in the dump.
    Dumped,
    /// Described by an ELF segment beyond its file data: reads as zeros.
    ZeroFilled,
    /// RAM that filtering excluded.
    Excluded,
    /// Should be in the dump, but an incomplete dump never wrote it.
    NotWritten,
    /// Not RAM, or outside the dump.
    Hole,
}

/// Options of [`PhysMem::read`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Read excluded and unwritten pages as zeros instead of failing (holes still fail).
    pub excluded_as_zero: bool,
}

/// A physical range present in the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysRange {
    /// First address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
}

/// Physical memory of one machine, shared by threads (`&self` reads).
pub trait PhysMem: Send + Sync + std::fmt::Debug {
    /// Page size of the dumped machine.
    fn page_size(&self) -> u64;
    /// One past the highest page frame the dump describes.
    fn max_pfn(&self) -> u64;
    /// The state of page frame `pfn`.
    fn page_state(&self, pfn: Pfn) -> Result<PageState>;
    /// Reads page `pfn` into `buf` (one page long) and returns its state; `buf` holds the
    /// page for `Dumped` and `ZeroFilled` and is unspecified otherwise.
    fn read_page(&self, pfn: Pfn, buf: &mut [u8]) -> Result<PageState>;
    /// The physical ranges the dump describes (RAM, including excluded pages), sorted.
    fn ranges(&self) -> Vec<PhysRange>;

    /// If frame `pfn` and those after it up to (not including) the returned frame are
    /// all [`PageState::ZeroFilled`], that end; `None` when unknown. Lets a scan pass over
    /// memory a segment claims without data (which may be terabytes) without reading it.
    fn zero_filled_until(&self, _pfn: Pfn) -> Option<u64> {
        None
    }

    /// Reads `buf.len()` bytes at physical address `addr`.
    fn read(&self, addr: PhysAddr, buf: &mut [u8], opts: ReadOptions) -> Result<()> {
        read_by_pages(self, addr, buf, opts)
    }
}

/// The page-by-page read every format can serve; formats with direct byte access
/// override [`PhysMem::read`].
pub fn read_by_pages<M: PhysMem + ?Sized>(mem: &M, addr: PhysAddr, buf: &mut [u8], opts: ReadOptions) -> Result<()> {
    let page_size = mem.page_size();
    let shift = page_size.trailing_zeros();
    let mut page = vec![0u8; page_size as usize];
    let mut done = 0usize;
    while done < buf.len() {
        let cur = addr.0.checked_add(done as u64).ok_or(Error::Hole { addr: PhysAddr(u64::MAX) })?;
        let pfn = Pfn(cur >> shift);
        let in_page = (cur & (page_size - 1)) as usize;
        let n = (page_size as usize - in_page).min(buf.len() - done);
        let dst = buf.get_mut(done..done + n).unwrap_or_default();
        match mem.read_page(pfn, &mut page)? {
            PageState::Dumped | PageState::ZeroFilled => {
                dst.copy_from_slice(page.get(in_page..in_page + n).unwrap_or_default());
            }
            PageState::Excluded | PageState::NotWritten if opts.excluded_as_zero => dst.fill(0),
            PageState::Excluded => return Err(Error::Excluded { addr: PhysAddr(cur), pfn }),
            PageState::NotWritten => return Err(Error::NotWritten { addr: PhysAddr(cur), pfn }),
            PageState::Hole => return Err(Error::Hole { addr: PhysAddr(cur) }),
        }
        done += n;
    }
    Ok(())
}
