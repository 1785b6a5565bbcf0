//! Kernel generations and layout names: what differs between the kernels the builder
//! imitates (struct page, page flags and types, printk, VMCOREINFO keys, paging, KASLR).

use crate::error::{Error, Result};

/// A kernel generation, chosen for what changed in the structures dump tools read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Generation {
    /// 2.6.32 (RHEL 6 era): plain `log_buf` text ring, the `PG_buddy` page flag,
    /// 56-byte `struct page`, no KASLR, `init_level4_pgt`, `mem_section` a static array in
    /// the kernel image, no `NUMBER(phys_base)`.
    V2_6_32,
    /// 5.4: variable-length `struct printk_log` records (3.5-5.9 keys), page types as
    /// inverted bits (`PAGE_BUDDY_MAPCOUNT_VALUE` = -129), compound dtor and order bytes,
    /// memory KASLR, no `MAX_PHYSMEM_BITS`/`SECTION_SIZE_BITS` keys, no kallsyms keys.
    V5_4,
    /// 6.1 (Debian 12): lockless `printk_ringbuffer`, `PG_slab`, kallsyms in VMCOREINFO.
    /// Modelled on the x86_64-6.1-l5-kaslr fixture's VMCOREINFO.
    V6_1,
    /// 6.12: one page type per page in the top byte of `page_type`
    /// (`PAGE_*_MAPCOUNT_VALUE = PGTY_* << 24`), no `PG_slab`, folio order in the first
    /// tail's flags, `NUMBER(VMALLOC_START)` and `SYMBOL(vmemmap)`. Modelled on the
    /// x86_64-6.12-l4-kaslr fixture's VMCOREINFO.
    V6_12,
}

/// How the kernel stores its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintkKind {
    /// `char log_buf[]` with `log_end` (before 3.5).
    LogBuf,
    /// `struct printk_log` records (3.5 to 5.9).
    PrintkLog,
    /// The lockless ring buffer (5.10 and later).
    Ringbuffer,
}

/// How page types (buddy, offline, hugetlb, slab) are marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeScheme {
    /// `PG_buddy` page flag; no offline type.
    BuddyFlag,
    /// `_mapcount == ~PG_<type>` (4.18-6.11).
    InvertedBit,
    /// `page_type == PGTY_<type> << 24` (6.12+).
    Pgty,
}

/// How the order and kind of a compound page are stored in its first tail page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompoundStyle {
    /// No compound pages are laid out (2.6.32 here).
    None,
    /// `compound_dtor` and `compound_order` bytes (4.16-6.2).
    DtorOrder {
        /// Offset of `compound_dtor`.
        dtor: usize,
        /// Offset of `compound_order`.
        order: usize,
    },
    /// Order in the low byte of the first tail's flags (`_flags_1`, 6.6+), hugetlb a page type.
    Flags1,
}

/// `struct page` of a generation: size, field offsets, flag bits, type values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageStruct {
    /// `SIZE(page)`.
    pub size: usize,
    /// `OFFSET(page._refcount)` (`_count` before 4.6).
    pub refcount: usize,
    /// `OFFSET(page._mapcount)` (the `page_type` word).
    pub mapcount: usize,
    /// `OFFSET(page.private)`.
    pub private: usize,
    /// `OFFSET(page.mapping)`.
    pub mapping: usize,
    /// Offset of `index`.
    pub index: usize,
    /// `OFFSET(page.lru)`; `compound_head` shares it.
    pub lru: usize,
    /// Compound page encoding.
    pub compound: CompoundStyle,
    /// Page type encoding.
    pub types: TypeScheme,
    /// Flag bit numbers.
    pub pg: PageFlags,
}

/// Page flag bit numbers of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PageFlags {
    pub referenced: u32,
    pub uptodate: u32,
    pub lru: u32,
    pub active: u32,
    pub slab: Option<u32>,
    pub reserved: u32,
    pub private: u32,
    pub swapcache: u32,
    pub swapbacked: u32,
    pub head: u32,
    pub hwpoison: Option<u32>,
    pub buddy: Option<u32>,
}

/// `HUGETLB_PAGE_DTOR` of 4.16-6.5.
pub const HUGETLB_PAGE_DTOR: u8 = 2;
/// `TRANSHUGE_PAGE_DTOR` of 4.16-6.5.
pub const TRANSHUGE_PAGE_DTOR: u8 = 3;
/// `COMPOUND_PAGE_DTOR` of 4.16-6.5.
pub const COMPOUND_PAGE_DTOR: u8 = 1;

impl Generation {
    /// Every generation, oldest first.
    pub const ALL: [Generation; 4] = [Generation::V2_6_32, Generation::V5_4, Generation::V6_1, Generation::V6_12];

    /// The version part of layout names (`6.1`).
    pub fn version(self) -> &'static str {
        match self {
            Generation::V2_6_32 => "2.6.32",
            Generation::V5_4 => "5.4",
            Generation::V6_1 => "6.1",
            Generation::V6_12 => "6.12",
        }
    }

    /// `uname -r` of the synthetic kernel.
    pub fn release(self) -> &'static str {
        match self {
            Generation::V2_6_32 => "2.6.32-synthetic",
            Generation::V5_4 => "5.4.0-synthetic",
            Generation::V6_1 => "6.1.0-synthetic",
            Generation::V6_12 => "6.12.0-synthetic",
        }
    }

    /// The log format.
    pub fn printk(self) -> PrintkKind {
        match self {
            Generation::V2_6_32 => PrintkKind::LogBuf,
            Generation::V5_4 => PrintkKind::PrintkLog,
            Generation::V6_1 | Generation::V6_12 => PrintkKind::Ringbuffer,
        }
    }

    /// Whether the kernel randomizes its layout (KASLR; memory randomization from 4.8).
    pub fn has_kaslr(self) -> bool {
        self != Generation::V2_6_32
    }

    /// Whether 5-level paging exists (4.14+).
    pub fn has_l5(self) -> bool {
        self != Generation::V2_6_32
    }

    /// Whether VMCOREINFO carries the kallsyms tables (6.0+).
    pub fn kallsyms_in_vmcoreinfo(self) -> bool {
        matches!(self, Generation::V6_1 | Generation::V6_12)
    }

    /// `SIZE(mem_section)`.
    pub fn mem_section_size(self) -> u64 {
        match self {
            Generation::V2_6_32 => 16,
            _ => 32,
        }
    }

    /// Whether `mem_section` is a pointer to an allocated root array (4.15+), so that
    /// `SYMBOL(mem_section)` gives the array's direct-map address; before, the root array
    /// is a static array in the kernel image.
    pub fn mem_section_allocated(self) -> bool {
        self != Generation::V2_6_32
    }

    /// Bits of the `section_mem_map` flags this generation sets on a boot-time section.
    pub fn section_flags(self) -> u64 {
        match self {
            // SECTION_MARKED_PRESENT | SECTION_HAS_MEM_MAP
            Generation::V2_6_32 => 0b11,
            // | SECTION_IS_ONLINE | SECTION_IS_EARLY
            _ => 0b1111,
        }
    }

    /// `struct page` of the generation.
    pub fn page_struct(self) -> PageStruct {
        match self {
            Generation::V2_6_32 => PageStruct {
                size: 56,
                refcount: 8,
                mapcount: 12,
                private: 16,
                mapping: 24,
                index: 32,
                lru: 40,
                compound: CompoundStyle::None,
                types: TypeScheme::BuddyFlag,
                pg: PageFlags {
                    referenced: 2,
                    uptodate: 3,
                    lru: 5,
                    active: 6,
                    slab: Some(7),
                    reserved: 10,
                    private: 11,
                    swapcache: 16,
                    swapbacked: 20,
                    head: 14,
                    hwpoison: None,
                    buddy: Some(19),
                },
            },
            Generation::V5_4 | Generation::V6_1 => PageStruct {
                size: 64,
                refcount: 52,
                mapcount: 48,
                private: 40,
                mapping: 24,
                index: 32,
                lru: 8,
                compound: CompoundStyle::DtorOrder { dtor: 16, order: 17 },
                types: TypeScheme::InvertedBit,
                pg: PageFlags {
                    referenced: 1,
                    uptodate: 2,
                    lru: 4,
                    active: 5,
                    slab: Some(9),
                    reserved: 12,
                    private: 13,
                    swapcache: 10,
                    swapbacked: 19,
                    head: 16,
                    hwpoison: Some(23),
                    buddy: None,
                },
            },
            Generation::V6_12 => PageStruct {
                size: 64,
                refcount: 52,
                mapcount: 48,
                private: 40,
                mapping: 24,
                index: 32,
                lru: 8,
                compound: CompoundStyle::Flags1,
                types: TypeScheme::Pgty,
                pg: PageFlags {
                    referenced: 2,
                    uptodate: 3,
                    lru: 5,
                    active: 8,
                    slab: None,
                    reserved: 13,
                    private: 14,
                    swapcache: 10,
                    swapbacked: 17,
                    head: 6,
                    hwpoison: Some(20),
                    buddy: None,
                },
            },
        }
    }
}

impl PageStruct {
    /// The `_mapcount`/`page_type` word of a free buddy block's head (`None`: flag scheme).
    pub fn buddy_type(&self) -> Option<u32> {
        match self.types {
            TypeScheme::BuddyFlag => None,
            TypeScheme::InvertedBit => Some(!0x80),
            TypeScheme::Pgty => Some(0xf0 << 24),
        }
    }

    /// The word of a logically offline page.
    pub fn offline_type(&self) -> Option<u32> {
        match self.types {
            TypeScheme::BuddyFlag => None,
            TypeScheme::InvertedBit => Some(!0x100),
            TypeScheme::Pgty => Some(0xf1 << 24),
        }
    }

    /// The word of a hugetlb folio's head (6.9+).
    pub fn hugetlb_type(&self) -> Option<u32> {
        match self.types {
            TypeScheme::Pgty => Some(0xf4 << 24),
            _ => None,
        }
    }

    /// The word of a slab page (6.10+).
    pub fn slab_type(&self) -> Option<u32> {
        match self.types {
            TypeScheme::Pgty => Some(0xf5 << 24),
            _ => None,
        }
    }
}

/// A named machine layout: kernel generation, paging levels, KASLR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Kernel generation.
    pub generation: Generation,
    /// 4 or 5.
    pub paging_levels: u8,
    /// Randomized image and memory regions.
    pub kaslr: bool,
}

impl Layout {
    /// The default layout: a 6.1 kernel with 4-level paging and KASLR.
    pub const DEFAULT: Layout = Layout { generation: Generation::V6_1, paging_levels: 4, kaslr: true };

    /// Every layout name [`Layout::parse`] accepts.
    pub fn names() -> Vec<String> {
        let mut out = Vec::new();
        for g in Generation::ALL {
            for levels in [4u8, 5] {
                if levels == 5 && !g.has_l5() {
                    continue;
                }
                let l = Layout { generation: g, paging_levels: levels, kaslr: g.has_kaslr() };
                out.push(l.name());
                if g.has_kaslr() {
                    out.push(Layout { kaslr: false, ..l }.name());
                }
            }
        }
        out
    }

    /// `x86_64-VERSION-lN[-nokaslr]`.
    pub fn name(&self) -> String {
        let suffix = if self.generation.has_kaslr() && !self.kaslr { "-nokaslr" } else { "" };
        format!("x86_64-{}-l{}{suffix}", self.generation.version(), self.paging_levels)
    }

    /// Parses a layout name: `x86_64-6.1-l4`, `x86_64-6.1-l5`, `x86_64-6.12-l4`,
    /// `x86_64-5.4-l5-nokaslr`, `x86_64-2.6.32-l4`, ...
    pub fn parse(name: &str) -> Result<Layout> {
        let bad =
            || Error::spec(format!("unknown layout {name:?}; known layouts: sample, {}", Layout::names().join(", ")));
        let rest = name.strip_prefix("x86_64-").ok_or_else(bad)?;
        let (rest, kaslr) = match rest.strip_suffix("-nokaslr") {
            Some(r) => (r, false),
            None => (rest, true),
        };
        let (version, levels) = rest.rsplit_once("-l").ok_or_else(bad)?;
        let generation = Generation::ALL.into_iter().find(|g| g.version() == version).ok_or_else(bad)?;
        let paging_levels = match levels {
            "4" => 4,
            "5" if generation.has_l5() => 5,
            _ => return Err(bad()),
        };
        if !generation.has_kaslr() && !kaslr {
            return Err(bad());
        }
        Ok(Layout { generation, paging_levels, kaslr: kaslr && generation.has_kaslr() })
    }

    /// `MAX_PHYSMEM_BITS` at run time.
    pub fn max_physmem_bits(&self) -> u32 {
        if self.paging_levels == 5 {
            52
        } else {
            46
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let names = Layout::names();
        assert!(names.contains(&"x86_64-6.1-l4".to_string()));
        assert!(names.contains(&"x86_64-6.12-l5-nokaslr".to_string()));
        assert!(names.contains(&"x86_64-2.6.32-l4".to_string()));
        for n in &names {
            assert_eq!(&Layout::parse(n).unwrap().name(), n);
        }
        for bad in
            ["x86_64-2.6.32-l5", "x86_64-2.6.32-l4-nokaslr", "x86_64-6.1-l3", "arm64-6.1-l4", "x86_64-7.0-l4", ""]
        {
            assert!(Layout::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Layout::parse("x86_64-6.1-l4").unwrap(), Layout::DEFAULT);
    }

    #[test]
    fn type_values_match_the_fixtures_vmcoreinfo() {
        let p61 = Generation::V6_1.page_struct();
        assert_eq!(p61.buddy_type().map(|v| v as i32), Some(-129));
        assert_eq!(p61.offline_type().map(|v| v as i32), Some(-257));
        let p612 = Generation::V6_12.page_struct();
        assert_eq!(p612.buddy_type().map(|v| v as i32), Some(-268435456));
        assert_eq!(p612.offline_type().map(|v| v as i32), Some(-251658240));
        assert_eq!(p612.hugetlb_type().map(|v| v as i32), Some(-201326592));
        assert_eq!(p612.slab_type().map(|v| v as i32), Some(-184549376));
    }
}
