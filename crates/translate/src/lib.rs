//! Virtual-to-physical translation by walking the dumped kernel's page tables.
//!
//! A page-table format is data ([`Mmu`]): how many levels, how many index bits each, and
//! a function that decodes one entry. One [`Walker`] serves every format; x86_64 4- and
//! 5-level paging are rows of that table ([`Mmu::x86_64`]), and arm64's granules come the
//! same way. Walks read through [`vmcore_physmem::PhysMem`], so they work on every dump
//! format, and they never hang: a walk has at most one step per level, and a table that
//! points back at a table of the same walk is reported as a loop.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod mmu;
mod tlb;
mod walk;

pub use mmu::{Aarch64Pa, Entry, Mmu};
pub use walk::{Step, Translation, Walker};

use vmcore_types::PhysAddr;

/// Errors of translation.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The address is outside the virtual address space the tables describe.
    #[error("virtual address {vaddr:#x} is not canonical for {va_bits}-bit virtual addresses")]
    NonCanonical {
        /// The address.
        vaddr: u64,
        /// Width of the virtual address space.
        va_bits: u32,
    },
    /// An entry on the way is not present: nothing is mapped there.
    #[error("virtual address {vaddr:#x} is not mapped: level-{level} entry {entry:#018x} (table at physical {table}) is not present")]
    NotMapped {
        /// The address.
        vaddr: u64,
        /// Level of the entry (1 = the last level, that maps pages).
        level: usize,
        /// The entry.
        entry: u64,
        /// Physical address of the table holding it.
        table: PhysAddr,
    },
    /// An entry has a form the format does not allow.
    #[error(
        "virtual address {vaddr:#x}: level-{level} entry {entry:#018x} (table at physical {table}) is invalid: {why}"
    )]
    BadEntry {
        /// The address.
        vaddr: u64,
        /// Level of the entry.
        level: usize,
        /// The entry.
        entry: u64,
        /// Physical address of the table holding it.
        table: PhysAddr,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A table entry points back at a table already used by the same walk.
    #[error("virtual address {vaddr:#x}: page-table loop: the level-{level} entry at physical {table} points back to table {target}")]
    Loop {
        /// The address.
        vaddr: u64,
        /// Level of the entry.
        level: usize,
        /// Table holding the entry.
        table: PhysAddr,
        /// Table it points to.
        target: PhysAddr,
    },
    /// A page table could not be read from the dump.
    #[error("virtual address {vaddr:#x}: cannot read the level-{level} table at physical {table}: {why}")]
    Unreadable {
        /// The address.
        vaddr: u64,
        /// Level of the table.
        level: usize,
        /// Its physical address.
        table: PhysAddr,
        /// Why (excluded page, hole, corrupt dump).
        why: String,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests;
