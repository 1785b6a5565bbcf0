//! Page-table formats as data.

/// What one page-table entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Nothing mapped below this entry.
    NotPresent,
    /// The next-level table is at this physical address.
    Table(u64),
    /// A page (at the last level) or a huge page / block mapping at this physical address.
    Page(u64),
    /// A combination the hardware rejects.
    Invalid(&'static str),
}

/// Decodes entry `pte` found at `level` (1 = last level).
pub type DecodeFn = fn(mmu: &Mmu, pte: u64, level: usize) -> Entry;

/// A page-table format.
#[derive(Debug, Clone, Copy)]
pub struct Mmu {
    /// Human name ("x86_64 4-level").
    pub name: &'static str,
    /// log2 of the base page size.
    pub page_shift: u32,
    /// Number of levels.
    pub levels: usize,
    /// Index bits per level (the top level may use fewer bits than the others; the
    /// address bits above `va_bits` must be a sign extension).
    pub bits_per_level: u32,
    /// Width of the virtual address space.
    pub va_bits: u32,
    /// Bits of an entry that hold the physical address.
    pub addr_mask: u64,
    /// Bits to clear from a physical address before use (x86_64 SME encryption bit).
    pub clear_mask: u64,
    /// Levels at which a leaf (huge page, block) is allowed, as a bit set (bit n = level n).
    pub leaf_levels: u32,
    /// The entry decoder.
    pub decode: DecodeFn,
}

const X86_PRESENT: u64 = 1;
const X86_PSE: u64 = 1 << 7;
/// Physical address bits 12..51 of an x86_64 entry.
const X86_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

fn decode_x86_64(mmu: &Mmu, pte: u64, level: usize) -> Entry {
    if pte & X86_PRESENT == 0 {
        return Entry::NotPresent;
    }
    let addr = pte & mmu.addr_mask & !mmu.clear_mask;
    if level == 1 {
        return Entry::Page(addr);
    }
    if pte & X86_PSE != 0 {
        if mmu.leaf_levels & (1 << level) == 0 {
            return Entry::Invalid("page-size bit set at a level that cannot map a huge page");
        }
        let size_mask = (1u64 << mmu.level_shift(level)) - 1;
        return Entry::Page(addr & !size_mask);
    }
    Entry::Table(addr)
}

impl Mmu {
    /// x86_64 with 4 levels (48-bit addresses) or 5 (57-bit), 4 KiB pages, 2 MiB and
    /// 1 GiB pages at levels 2 and 3. `sme_mask` is the AMD memory-encryption bit
    /// (VMCOREINFO `NUMBER(sme_mask)`), cleared from every physical address.
    pub fn x86_64(levels: usize, sme_mask: u64) -> Mmu {
        Mmu {
            name: if levels == 5 { "x86_64 5-level" } else { "x86_64 4-level" },
            page_shift: 12,
            levels,
            bits_per_level: 9,
            va_bits: 12 + 9 * levels as u32,
            addr_mask: X86_ADDR_MASK,
            clear_mask: sme_mask,
            leaf_levels: (1 << 1) | (1 << 2) | (1 << 3),
            decode: decode_x86_64,
        }
    }

    /// The number of address bits below the index of `level` (1 = last level).
    pub fn level_shift(&self, level: usize) -> u32 {
        self.page_shift + self.bits_per_level * (level as u32 - 1)
    }

    /// The table index of `vaddr` at `level`.
    pub fn index(&self, vaddr: u64, level: usize) -> u64 {
        (vaddr >> self.level_shift(level)) & ((1u64 << self.bits_per_level) - 1)
    }

    /// Whether `vaddr` is a sign extension of its low `va_bits` bits.
    pub fn is_canonical(&self, vaddr: u64) -> bool {
        let shift = 64 - self.va_bits;
        (((vaddr << shift) as i64) >> shift) as u64 == vaddr
    }

    /// Base page size.
    pub fn page_size(&self) -> u64 {
        1 << self.page_shift
    }
}
