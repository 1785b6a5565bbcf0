//! The page-table walker.

use std::collections::HashSet;
use std::sync::Arc;

use vmcore_physmem::{PhysMem, ReadOptions};
use vmcore_types::PhysAddr;

use crate::mmu::{Entry, Mmu};
use crate::tlb::Tlb;
use crate::{Error, Result};

/// Where a virtual address leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The physical address.
    pub paddr: u64,
    /// Size of the mapping that holds it (4 KiB, 2 MiB, 1 GiB, ...).
    pub page_size: u64,
    /// Level of the entry that mapped it (1 = last level).
    pub level: usize,
}

/// One entry read by a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Level of the table (1 = last level; the root has `Mmu::levels`).
    pub level: usize,
    /// Physical address of the table.
    pub table: PhysAddr,
    /// Index of the entry in it.
    pub index: u64,
    /// The entry.
    pub entry: u64,
}

impl Step {
    /// Physical address of the entry.
    pub fn entry_addr(&self) -> u64 {
        self.table.0 + self.index * 8
    }
}

/// Walks one address space: a page-table format and the physical address of its root.
#[derive(Debug)]
pub struct Walker {
    mmu: Mmu,
    root: PhysAddr,
    mem: Arc<dyn PhysMem>,
    tlb: Tlb,
}

impl Walker {
    /// A walker of the tables rooted at `root` (physical) in `mem`.
    pub fn new(mmu: Mmu, root: PhysAddr, mem: Arc<dyn PhysMem>) -> Walker {
        Walker { mmu, root, mem, tlb: Tlb::new() }
    }

    /// The format.
    pub fn mmu(&self) -> &Mmu {
        &self.mmu
    }

    /// Physical address of the root table.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    fn read_entry(&self, vaddr: u64, table: u64, level: usize, index: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        let at = table + index * 8;
        self.mem.read(PhysAddr(at), &mut b, ReadOptions::default()).map_err(|e| Error::Unreadable {
            vaddr,
            level,
            table: PhysAddr(table),
            why: e.to_string(),
        })?;
        Ok(u64::from_le_bytes(b))
    }

    /// Translates `vaddr`.
    pub fn translate(&self, vaddr: u64) -> Result<Translation> {
        let mmu = &self.mmu;
        if !mmu.is_canonical(vaddr) {
            return Err(Error::NonCanonical { vaddr, va_bits: mmu.va_bits });
        }
        let page_mask = mmu.page_size() - 1;
        if let Some((ppage, size)) = self.tlb.get(vaddr & !page_mask, mmu.page_shift) {
            return Ok(Translation { paddr: ppage | (vaddr & page_mask), page_size: size, level: 0 }.with_level(mmu));
        }
        let t = self.walk(vaddr, |_| {})?;
        self.tlb.put(vaddr & !page_mask, mmu.page_shift, t.paddr & !page_mask, t.page_size);
        Ok(t)
    }

    /// Translates `vaddr` by reading the tables (no cache), with every entry read on the
    /// way: what `vmcore vtop` and makedumpfile's `--vtop` show.
    pub fn trace(&self, vaddr: u64) -> (Vec<Step>, Result<Translation>) {
        let mut steps = Vec::with_capacity(self.mmu.levels);
        let result = if self.mmu.is_canonical(vaddr) {
            self.walk(vaddr, |step| steps.push(step))
        } else {
            Err(Error::NonCanonical { vaddr, va_bits: self.mmu.va_bits })
        };
        (steps, result)
    }

    /// Walks the tables from the root for a canonical `vaddr`, telling `seen` each entry.
    fn walk(&self, vaddr: u64, mut seen: impl FnMut(Step)) -> Result<Translation> {
        let mmu = &self.mmu;
        let mut table = self.root.0;
        let mut path = [0u64; 8];
        for (depth, level) in (1..=mmu.levels).rev().enumerate() {
            if let Some(slot) = path.get_mut(depth) {
                *slot = table;
            }
            let index = mmu.index(vaddr, level);
            let pte = self.read_entry(vaddr, table, level, index)?;
            seen(Step { level, table: PhysAddr(table), index, entry: pte });
            match (mmu.decode)(mmu, pte, level) {
                Entry::NotPresent => {
                    return Err(Error::NotMapped { vaddr, level, entry: pte, table: PhysAddr(table) });
                }
                Entry::Invalid(why) => {
                    return Err(Error::BadEntry { vaddr, level, entry: pte, table: PhysAddr(table), why });
                }
                Entry::Page(base) => {
                    let size = 1u64 << mmu.level_shift(level);
                    return Ok(Translation { paddr: base | (vaddr & (size - 1)), page_size: size, level });
                }
                Entry::Table(next) => {
                    if level == 1 {
                        return Err(Error::BadEntry {
                            vaddr,
                            level,
                            entry: pte,
                            table: PhysAddr(table),
                            why: "a last-level entry points to a table",
                        });
                    }
                    if path.iter().take(depth + 1).any(|&t| t == next) {
                        return Err(Error::Loop { vaddr, level, table: PhysAddr(table), target: PhysAddr(next) });
                    }
                    table = next;
                }
            }
        }
        Err(Error::BadEntry { vaddr, level: 0, entry: 0, table: PhysAddr(table), why: "walk ended without a page" })
    }

    /// The lowest mapped page at or above `start` and below `end` (both canonical and in
    /// the same half of the address space), with its translation. Reads whole tables and
    /// skips unmapped subtrees in one step.
    ///
    /// A table found to map nothing over its whole range is remembered with its level and
    /// not read again: entries may share a table, and a corrupt dump pointing every entry
    /// of each level at one table would otherwise cost 512^levels reads (hours at 5
    /// levels). So the tables read are at most the distinct (table, level) pairs reached,
    /// plus two per level searched in part at the ends of the range. A table already on
    /// the current path (a loop) is skipped.
    pub fn first_mapped(&self, start: u64, end: u64) -> Result<Option<(u64, Translation)>> {
        let mut search = Search::default();
        self.first_mapped_in(self.root.0, self.mmu.levels, start, end, false, &mut search)
    }

    /// `whole`: `start..end` is the table's entire range, so an empty result is a property
    /// of the table alone, whichever entry led here.
    fn first_mapped_in(
        &self,
        table: u64,
        level: usize,
        start: u64,
        end: u64,
        whole: bool,
        search: &mut Search,
    ) -> Result<Option<(u64, Translation)>> {
        let mmu = &self.mmu;
        if search.path.contains(&table) || (whole && search.empty.contains(&(table, level))) {
            return Ok(None);
        }
        search.path.push(table);
        let bits = mmu.index_bits(level);
        let mut raw = vec![0u8; 8 << bits];
        self.mem.read(PhysAddr(table), &mut raw, ReadOptions::default()).map_err(|e| Error::Unreadable {
            vaddr: start,
            level,
            table: PhysAddr(table),
            why: e.to_string(),
        })?;
        let shift = mmu.level_shift(level);
        let span = 1u64 << shift;
        let first = mmu.index(start, level);
        let mut result = None;
        for (index, chunk) in raw.chunks_exact(8).enumerate().skip(first as usize) {
            // The address this entry covers: start's bits above this table, then the index.
            let above = if shift + bits >= 64 { 0 } else { start & !((1u64 << (shift + bits)) - 1) };
            let base = above | ((index as u64) << shift);
            if base >= end {
                break;
            }
            let pte = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let from = start.max(base);
            match (mmu.decode)(mmu, pte, level) {
                Entry::NotPresent | Entry::Invalid(_) => {}
                Entry::Page(p) => {
                    let t = Translation { paddr: p + (from - base), page_size: span, level };
                    result = Some((from, t));
                }
                Entry::Table(next) if level > 1 => {
                    // The top entry of the upper half ends at 2^64: saturated, its range
                    // stops one byte short, which still holds all of its pages.
                    let limit = base.saturating_add(span);
                    let sub_end = end.min(limit);
                    let sub_whole = from == base && sub_end == limit;
                    result = self.first_mapped_in(next, level - 1, from, sub_end, sub_whole, search)?;
                }
                Entry::Table(_) => {}
            }
            if result.is_some() {
                break;
            }
        }
        search.path.pop();
        if whole && result.is_none() {
            search.empty.insert((table, level));
        }
        Ok(result)
    }
}

/// State of one [`Walker::first_mapped`] search.
#[derive(Default)]
struct Search {
    /// Tables from the root down to the one being searched.
    path: Vec<u64>,
    /// (table, level) searched over their whole range and found to map nothing.
    empty: HashSet<(u64, usize)>,
}

impl Translation {
    fn with_level(self, mmu: &Mmu) -> Translation {
        let level = (1..=mmu.levels).find(|&l| 1u64 << mmu.level_shift(l) == self.page_size).unwrap_or(1);
        Translation { level, ..self }
    }
}
