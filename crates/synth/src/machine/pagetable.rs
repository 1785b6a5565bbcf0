//! x86_64 page tables built as data: 4- or 5-level, 4 KiB, 2 MiB and 1 GiB pages.
//! Tables are created on demand and get physical addresses only when serialized, so the
//! number of pages they need is known before memory is laid out.

use crate::error::{Error, Result};

/// `_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY`: what the kernel puts in a
/// non-leaf entry (`_KERNPG_TABLE`).
pub const KERNPG_TABLE: u64 = 0x63;
/// `_PAGE_PSE`.
pub const PSE: u64 = 0x80;
/// Kernel text, large page: present, accessed, dirty, PSE, global, read-only.
pub const LARGE_TEXT: u64 = 0x1e1;
/// Kernel data, large page: present, writable, accessed, dirty, PSE, global, NX.
pub const LARGE_DATA: u64 = 0x8000_0000_0000_01e3;
/// Kernel data, 4 KiB page: present, writable, accessed, dirty, global, NX.
pub const PAGE_DATA: u64 = 0x8000_0000_0000_0163;

struct Table {
    entries: Box<[u64; 512]>,
    /// Child table id + 1, or 0.
    children: Box<[u32; 512]>,
}

impl Table {
    fn new() -> Table {
        Table { entries: Box::new([0; 512]), children: Box::new([0; 512]) }
    }
}

/// Page tables under construction. Table 0 is the top level.
pub struct PageTables {
    shifts: &'static [u32],
    tables: Vec<Table>,
}

impl std::fmt::Debug for PageTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageTables").field("levels", &self.shifts.len()).field("tables", &self.tables.len()).finish()
    }
}

impl PageTables {
    /// Empty tables for 4 or 5 levels.
    pub fn new(levels: u8) -> PageTables {
        let shifts: &'static [u32] = if levels == 5 { &[48, 39, 30, 21, 12] } else { &[39, 30, 21, 12] };
        PageTables { shifts, tables: vec![Table::new()] }
    }

    /// Number of tables, the top one included.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether only the top table exists.
    pub fn is_empty(&self) -> bool {
        self.tables.len() == 1
    }

    /// Maps the page of `1 << shift` bytes at `va` to `pa` with leaf flags `flags` (PSE is
    /// added for large pages).
    pub fn map(&mut self, va: u64, pa: u64, shift: u32, flags: u64) -> Result<()> {
        let size = 1u64 << shift;
        if va % size != 0 || pa % size != 0 {
            return Err(Error::spec(format!("page table: {va:#x} -> {pa:#x} not aligned to {size:#x}")));
        }
        let mut table = 0usize;
        for &s in self.shifts {
            let idx = ((va >> s) & 511) as usize;
            if s == shift {
                let t = self.tables.get_mut(table).ok_or_else(|| Error::spec("page table id"))?;
                let (Some(e), Some(c)) = (t.entries.get_mut(idx), t.children.get(idx)) else {
                    return Err(Error::spec("page table index"));
                };
                if *c != 0 || *e != 0 {
                    return Err(Error::spec(format!("page table: {va:#x} mapped twice")));
                }
                *e = (pa & 0x000f_ffff_ffff_f000) | flags | if shift > 12 { PSE } else { 0 };
                return Ok(());
            }
            let existing = self.tables.get(table).and_then(|t| t.children.get(idx)).copied().unwrap_or(0);
            table = if existing != 0 {
                existing as usize - 1
            } else {
                let id = self.tables.len();
                self.tables.push(Table::new());
                let t = self.tables.get_mut(table).ok_or_else(|| Error::spec("page table id"))?;
                if t.entries.get(idx).copied().unwrap_or(0) != 0 {
                    return Err(Error::spec(format!("page table: {va:#x} is inside a large page")));
                }
                if let Some(c) = t.children.get_mut(idx) {
                    *c = id as u32 + 1;
                }
                id
            };
        }
        Err(Error::spec(format!("page table: no level maps {size:#x}-byte pages")))
    }

    /// Maps `[va, va + len)` to `[pa, ...)` with the largest pages that fit (1 GiB only
    /// when `allow_1g`), 4 KiB pages at unaligned ends.
    pub fn map_range(&mut self, va: u64, pa: u64, len: u64, allow_1g: bool, large: u64, small: u64) -> Result<()> {
        let mut off = 0u64;
        while off < len {
            let (v, p, left) = (va + off, pa + off, len - off);
            let fits = |shift: u32| {
                let s = 1u64 << shift;
                v % s == 0 && p % s == 0 && left >= s
            };
            let shift = if allow_1g && fits(30) {
                30
            } else if fits(21) {
                21
            } else {
                12
            };
            self.map(v, p, shift, if shift > 12 { large } else { small })?;
            off += 1 << shift;
        }
        Ok(())
    }

    /// The tables' bytes: table 0 at `top_pa`, the others one page each from `rest_pa`
    /// in creation order. Returns `(physical address, 4096 bytes)` per table.
    pub fn serialize(&self, top_pa: u64, rest_pa: u64) -> Vec<(u64, Vec<u8>)> {
        let pa_of = |id: usize| if id == 0 { top_pa } else { rest_pa + (id as u64 - 1) * 4096 };
        self.tables
            .iter()
            .enumerate()
            .map(|(id, t)| {
                let mut bytes = Vec::with_capacity(4096);
                for (e, &c) in t.entries.iter().zip(t.children.iter()) {
                    let v = if c != 0 { pa_of(c as usize - 1) | KERNPG_TABLE } else { *e };
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                (pa_of(id), bytes)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(tables: &[(u64, Vec<u8>)], top: u64, levels: u8, va: u64) -> Option<u64> {
        let read = |pa: u64, idx: u64| -> Option<u64> {
            let t = tables.iter().find(|(p, _)| *p == pa)?;
            Some(u64::from_le_bytes(t.1.get(idx as usize * 8..idx as usize * 8 + 8)?.try_into().ok()?))
        };
        let shifts: &[u32] = if levels == 5 { &[48, 39, 30, 21, 12] } else { &[39, 30, 21, 12] };
        let mut table = top;
        for &s in shifts {
            let e = read(table, (va >> s) & 511)?;
            if e & 1 == 0 {
                return None;
            }
            let addr = e & 0x000f_ffff_ffff_f000;
            if s == 12 || e & PSE != 0 {
                let mask = (1u64 << s) - 1;
                return Some((addr & !mask) + (va & mask));
            }
            table = addr;
        }
        None
    }

    #[test]
    fn mappings_walk_back() {
        for levels in [4u8, 5] {
            let mut pt = PageTables::new(levels);
            let base = 0xff11_0000_4000_0000u64;
            pt.map_range(base + 0x1000, 0x1000, 0x9f000, true, LARGE_DATA, PAGE_DATA).unwrap();
            pt.map_range(base + 0x10_0000, 0x10_0000, (3u64 << 30) - 0x10_0000, true, LARGE_DATA, PAGE_DATA).unwrap();
            pt.map(0xffff_ffff_a000_0000, 0x1200_0000, 21, LARGE_TEXT).unwrap();
            assert!(pt.map(0xffff_ffff_a000_0000, 0, 21, LARGE_TEXT).is_err());
            let tables = pt.serialize(0x100_0000, 0x200_0000);
            for (va, pa) in [
                (base + 0x1234, Some(0x1234)),
                (base + 0x10_0008, Some(0x10_0008)),
                (base + 0x4567_8000, Some(0x4567_8000)),
                (base + (2u64 << 30) + 5, Some((2u64 << 30) + 5)),
                (base, None),
                (base + 0xa0000, None),
                (0xffff_ffff_a012_3456, Some(0x1212_3456)),
            ] {
                assert_eq!(walk(&tables, 0x100_0000, levels, va), pa, "{va:#x}");
            }
        }
    }
}
