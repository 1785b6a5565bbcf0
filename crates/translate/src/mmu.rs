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
    /// arm64 only: how descriptors hold physical addresses.
    pub aarch64_pa: Aarch64Pa,
    /// The tables map only the top of the address space (arm64's TTBR1: every bit above
    /// `va_bits` set), not both sign-extended halves (x86_64).
    pub upper_half_only: bool,
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

/// Descriptor bits of arm64 stage-1 tables.
const ARM_VALID: u64 = 1;
const ARM_TABLE_OR_PAGE: u64 = 2;

/// How an arm64 descriptor holds a physical address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aarch64Pa {
    /// Bits 47..page_shift (48-bit physical addresses).
    Pa48,
    /// 64K pages with 52-bit PAs (LPA): bits 15..12 hold PA bits 51..48.
    Lpa,
    /// 4K/16K pages with 52-bit PAs (LPA2): bits 49..page_shift, and bits 9..8 hold PA
    /// bits 51..50.
    Lpa2,
}

fn decode_aarch64(mmu: &Mmu, pte: u64, level: usize) -> Entry {
    if pte & ARM_VALID == 0 {
        return Entry::NotPresent;
    }
    let low = pte & mmu.addr_mask;
    let addr = match mmu.aarch64_pa {
        Aarch64Pa::Pa48 => low,
        Aarch64Pa::Lpa => low | ((pte >> 12) & 0xf) << 48,
        Aarch64Pa::Lpa2 => low | ((pte >> 8) & 0x3) << 50,
    };
    let is_table_or_page = pte & ARM_TABLE_OR_PAGE != 0;
    if level == 1 {
        return if is_table_or_page { Entry::Page(addr) } else { Entry::Invalid("block descriptor at the page level") };
    }
    if is_table_or_page {
        return Entry::Table(addr);
    }
    if mmu.leaf_levels & (1 << level) == 0 {
        return Entry::Invalid("block descriptor at a level that cannot hold blocks");
    }
    Entry::Page(addr & !((1u64 << mmu.level_shift(level)) - 1))
}

impl Mmu {
    /// arm64 kernel (TTBR1) tables: 4K, 16K or 64K granule (`page_shift` 12, 14, 16) and
    /// `va_bits` of virtual address (36 to 52). Levels follow from both
    /// (`ceil((va_bits - page_shift) / (page_shift - 3))`), and the top level resolves the
    /// bits left over. 52-bit physical addresses are LPA with 64K pages and LPA2 with
    /// 4K/16K (`pa52`).
    pub fn aarch64(page_shift: u32, va_bits: u32, pa52: bool) -> Option<Mmu> {
        if ![12, 14, 16].contains(&page_shift) || !(36..=52).contains(&va_bits) || va_bits <= page_shift {
            return None;
        }
        let bits_per_level = page_shift - 3;
        let levels = (va_bits - page_shift).div_ceil(bits_per_level) as usize;
        let aarch64_pa = match (pa52, page_shift) {
            (false, _) => Aarch64Pa::Pa48,
            (true, 16) => Aarch64Pa::Lpa,
            (true, _) => Aarch64Pa::Lpa2,
        };
        let top = if aarch64_pa == Aarch64Pa::Lpa2 { 50 } else { 48 };
        let addr_mask = ((1u64 << top) - 1) & !((1u64 << page_shift) - 1);
        Some(Mmu {
            name: "arm64",
            page_shift,
            levels,
            bits_per_level,
            va_bits,
            addr_mask,
            clear_mask: 0,
            // Blocks at level 2 (2M/32M/512M) and 3 (1G, 64G, 4T).
            leaf_levels: (1 << 1) | (1 << 2) | (1 << 3),
            aarch64_pa,
            upper_half_only: true,
            decode: decode_aarch64,
        })
    }

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
            aarch64_pa: Aarch64Pa::Pa48,
            upper_half_only: false,
            decode: decode_x86_64,
        }
    }

    /// The number of address bits below the index of `level` (1 = last level).
    pub fn level_shift(&self, level: usize) -> u32 {
        self.page_shift + self.bits_per_level * (level as u32 - 1)
    }

    /// Index bits of `level`: the top level resolves only what is left of `va_bits`.
    pub fn index_bits(&self, level: usize) -> u32 {
        self.bits_per_level.min(self.va_bits.saturating_sub(self.level_shift(level)))
    }

    /// The table index of `vaddr` at `level`.
    pub fn index(&self, vaddr: u64, level: usize) -> u64 {
        (vaddr >> self.level_shift(level)) & ((1u64 << self.index_bits(level)) - 1)
    }

    /// Whether the tables can map `vaddr`: a sign extension of its low `va_bits` bits
    /// (x86_64), or all ones above them (arm64 kernel addresses).
    pub fn is_canonical(&self, vaddr: u64) -> bool {
        if self.upper_half_only {
            return vaddr >> self.va_bits == u64::MAX >> self.va_bits;
        }
        let shift = 64 - self.va_bits;
        (((vaddr << shift) as i64) >> shift) as u64 == vaddr
    }

    /// Base page size.
    pub fn page_size(&self) -> u64 {
        1 << self.page_shift
    }
}
