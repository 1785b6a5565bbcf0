//! What each page frame of a synthetic machine holds: its `struct page` and its bytes,
//! computed from the seed and the memory plan alone, for any pfn, in any order, so that
//! the writer can stream a huge image and the ground truth can be counted without it.

use super::layout::{CompoundStyle, PageStruct, COMPOUND_PAGE_DTOR, HUGETLB_PAGE_DTOR, TRANSHUGE_PAGE_DTOR};

/// Page size.
pub const PAGE: u64 = 4096;
/// Pages per 2 MiB block, the unit of the memory plan.
pub const BLOCK_PAGES: u64 = 512;
/// Bytes per block.
pub const BLOCK: u64 = PAGE * BLOCK_PAGES;
/// `PAGES_PER_SECTION` (`SECTION_SIZE_BITS` 27).
pub const SECTION_PAGES: u64 = 1 << 15;
/// Pages per sub-block of a mixed block.
const SUB: u64 = 16;

/// What a run of blocks is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The first 2 MiB: BIOS data, real-mode trampoline, reserved pages.
    Low,
    /// The kernel image.
    Image,
    /// Early allocations: kernel objects, mem_section, page tables.
    Alloc,
    /// `struct page` arrays; block `b` of the run backs vmemmap chunk `first_chunk + b - start`.
    Vmemmap {
        /// Chunk index of the run's first block.
        first_chunk: u64,
    },
    /// The crash kernel's reservation: RAM, not in the dump.
    Crash,
    /// Ordinary memory, typed block by block from the seed.
    Generic,
}

/// A run of blocks `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First block.
    pub start: u64,
    /// End block (exclusive).
    pub end: u64,
    /// Use.
    pub kind: Kind,
}

/// The type of a generic block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockType {
    /// One free order-9 buddy block.
    Free9,
    /// Lower half of a free order-10 block (holds the head).
    Free10Lo,
    /// Upper half of a free order-10 block.
    Free10Hi,
    /// Sub-blocks of 16 pages of many kinds.
    Mixed,
    /// One hugetlb folio of order 9.
    Hugetlb,
    /// One anonymous transparent huge page.
    AnonThp,
    /// One page-cache huge page.
    FileThp,
}

/// Kind of a compound page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CKind {
    /// hugetlbfs.
    Hugetlb,
    /// Anonymous THP.
    AnonThp,
    /// Page-cache THP.
    FileThp,
    /// A multi-page slab.
    Slab,
}

/// What a `struct page` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desc {
    /// `PG_reserved` (kernel image, early allocations, holes, BIOS).
    Reserved,
    /// An allocated kernel page.
    Kernel,
    /// A slab page.
    Slab,
    /// Page cache.
    Cache,
    /// Page cache with `PG_private`.
    PrivCache,
    /// Swap cache (`PG_swapcache | PG_swapbacked`, not on an LRU list).
    SwapCache,
    /// Anonymous memory.
    Anon,
    /// Head of a free buddy block of this order.
    FreeHead(u8),
    /// Another page of a free buddy block (all-zero `struct page`).
    FreeTail,
    /// `PG_hwpoison`.
    HwPoison,
    /// Logically offline (balloon).
    Offline,
    /// Compound head.
    Head(CKind, u8),
    /// Compound tail with the head's pfn.
    Tail(CKind, u8, u64),
}

/// makedumpfile's exclusion classes (section 4.4), in truth-table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Never excluded by class (zero pages still are, at levels with bit 1).
    Kernel = 0,
    /// Non-private page cache (levels with bit 2 or 4).
    Cache = 1,
    /// Private page cache (bit 4).
    PrivCache = 2,
    /// User data: anonymous and hugetlbfs pages (bit 8).
    User = 3,
    /// Free buddy pages (bit 16).
    Free = 4,
    /// Hardware-poisoned (always).
    HwPoison = 5,
    /// Logically offline (always).
    Offline = 6,
}

/// Number of categories.
pub const CATEGORIES: usize = 7;

impl Desc {
    /// The exclusion class of the page.
    pub fn category(self) -> Category {
        match self {
            Desc::Cache | Desc::SwapCache | Desc::Head(CKind::FileThp, _) | Desc::Tail(CKind::FileThp, _, _) => {
                Category::Cache
            }
            Desc::PrivCache => Category::PrivCache,
            Desc::Anon
            | Desc::Head(CKind::Hugetlb | CKind::AnonThp, _)
            | Desc::Tail(CKind::Hugetlb | CKind::AnonThp, _, _) => Category::User,
            Desc::FreeHead(_) | Desc::FreeTail => Category::Free,
            Desc::HwPoison => Category::HwPoison,
            Desc::Offline => Category::Offline,
            Desc::Reserved | Desc::Kernel | Desc::Slab | Desc::Head(CKind::Slab, _) | Desc::Tail(CKind::Slab, _, _) => {
                Category::Kernel
            }
        }
    }
}

/// Where a page's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Content {
    /// All zero.
    Zero,
    /// Random bytes.
    Random,
    /// Text (compressible).
    Text,
    /// The kernel image's bytes.
    Image,
    /// The early allocations' bytes.
    Alloc,
    /// `struct page` array.
    Vmemmap,
}

/// Bytes placed at a physical address with the zero-ness of each page.
#[derive(Debug, Clone, Default)]
pub struct Blob {
    /// Physical address of the first byte (page aligned).
    pub pa: u64,
    /// The bytes (a whole number of pages).
    pub bytes: Vec<u8>,
}

impl Blob {
    /// Whether page `i` of the blob is all zero.
    pub fn page_zero(&self, i: u64) -> bool {
        let at = (i * PAGE) as usize;
        self.bytes.get(at..at + PAGE as usize).is_none_or(|p| p.iter().all(|&b| b == 0))
    }

    /// Copies page `i` into `buf`.
    pub fn copy_page(&self, i: u64, buf: &mut [u8]) {
        let at = (i * PAGE) as usize;
        if let Some(src) = self.bytes.get(at..at + buf.len()) {
            buf.copy_from_slice(src);
        }
    }
}

/// The memory plan and everything a page's contents depend on.
#[derive(Debug, Clone)]
pub struct Model {
    pub(crate) seed: u64,
    pub(crate) ps: PageStruct,
    pub(crate) runs: Vec<Run>,
    pub(crate) used_ppm: u64,
    pub(crate) vmemmap_base: u64,
    /// vmemmap 2 MiB virtual blocks (relative to `vmemmap_base`) with backing, in order.
    pub(crate) vblocks: Vec<u64>,
    /// Present sections, sorted.
    pub(crate) present: Vec<u64>,
    /// RAM ranges in bytes.
    pub(crate) ram: Vec<(u64, u64)>,
    pub(crate) image: Blob,
    pub(crate) alloc: Blob,
    /// Zero-ness of every page of the image and of the allocations (computed once).
    pub(crate) image_zero: Vec<bool>,
    pub(crate) alloc_zero: Vec<bool>,
    /// Virtual address of the fake kernel objects `struct page`s point at.
    pub(crate) objs_va: u64,
    pub(crate) text_pool: Vec<u8>,
}

/// Hashes three words into one (SplitMix64 finalizer): a value depends on its inputs only.
pub fn mix(seed: u64, tag: u64, x: u64) -> u64 {
    let mut z = seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z = z ^ (z >> 31);
    z = (z ^ (z >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 32)
}

const T_USED: u64 = 1;
const T_BTYPE: u64 = 2;
const T_SUB: u64 = 3;
const T_CONTENT: u64 = 4;
const T_FILL: u64 = 5;

/// Sub-block types of a mixed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubType {
    KernelData,
    KernelZero,
    Slab,
    SlabCompound,
    Cache,
    PrivCache,
    SwapCache,
    Anon,
    /// Free buddy blocks tiling the 16 pages, by pattern; stale (random) or zero content.
    Free(u8, bool),
    /// One hwpoison page at this index, the others kernel data.
    HwPoison(u8),
    Offline,
}

/// Orders of free blocks tiling 16 pages (each naturally aligned in sequence).
const FREE_PATTERNS: [&[u8]; 6] =
    [&[4], &[3, 3], &[3, 2, 1, 0, 0], &[2, 2, 2, 2], &[1, 1, 1, 1, 0, 0, 0, 0, 2], &[0, 0, 1, 2, 3]];

fn text_content(h: u64, zero_pct: u64, text_pct: u64) -> Content {
    let v = h % 100;
    if v < zero_pct {
        Content::Zero
    } else if v < zero_pct + text_pct {
        Content::Text
    } else {
        Content::Random
    }
}

impl Model {
    fn run_of(&self, block: u64) -> Option<&Run> {
        let i = self.runs.partition_point(|r| r.end <= block);
        self.runs.get(i).filter(|r| r.start <= block)
    }

    /// Whether section `sec` has a `struct page` array.
    pub fn section_present(&self, sec: u64) -> bool {
        self.present.binary_search(&sec).is_ok()
    }

    fn is_ram(&self, pfn: u64) -> bool {
        let pa = pfn * PAGE;
        self.ram.iter().any(|&(s, e)| pa >= s & !(PAGE - 1) && pa < e)
    }

    fn generic_free(&self, block: u64) -> bool {
        matches!(self.run_of(block), Some(r) if r.kind == Kind::Generic)
            && mix(self.seed, T_USED, block) % 1_000_000 >= self.used_ppm
    }

    fn compound_ok(&self) -> bool {
        self.ps.compound != CompoundStyle::None
    }

    /// Whether every page of `block` is a free, all-zero page (a generic free block).
    pub fn free_block(&self, block: u64) -> bool {
        self.generic_free(block)
    }

    /// The type of generic block `block`.
    pub fn block_type(&self, block: u64) -> BlockType {
        if self.generic_free(block) {
            return match (block % 2 == 0, self.generic_free(block ^ 1)) {
                (true, true) => BlockType::Free10Lo,
                (false, true) => BlockType::Free10Hi,
                _ => BlockType::Free9,
            };
        }
        if !self.compound_ok() {
            return BlockType::Mixed;
        }
        match mix(self.seed, T_BTYPE, block) % 100 {
            0..=85 => BlockType::Mixed,
            86..=90 => BlockType::Hugetlb,
            91..=96 => BlockType::AnonThp,
            _ => BlockType::FileThp,
        }
    }

    fn sub_type(&self, block: u64, sub: u64) -> SubType {
        let h = mix(self.seed, T_SUB, block * 32 + sub);
        let has_hwpoison = self.ps.pg.hwpoison.is_some();
        let has_offline = self.ps.offline_type().is_some();
        match h % 1000 {
            0..=159 => SubType::KernelData,
            160..=219 => SubType::KernelZero,
            220..=289 => SubType::Slab,
            290..=319 if self.compound_ok() => SubType::SlabCompound,
            290..=319 => SubType::Slab,
            320..=499 => SubType::Cache,
            500..=539 => SubType::PrivCache,
            540..=559 => SubType::SwapCache,
            560..=719 => SubType::Anon,
            720..=974 => SubType::Free(((h >> 20) % FREE_PATTERNS.len() as u64) as u8, (h >> 30) % 2 == 0),
            975..=989 if has_hwpoison => SubType::HwPoison(((h >> 20) % SUB) as u8),
            990..=999 if has_offline => SubType::Offline,
            _ => SubType::KernelData,
        }
    }

    /// The `struct page` description and content source of `pfn`.
    pub fn info(&self, pfn: u64) -> (Desc, Content) {
        let block = pfn / BLOCK_PAGES;
        let Some(run) = self.run_of(block) else {
            return (Desc::Reserved, Content::Zero);
        };
        let h = mix(self.seed, T_CONTENT, pfn);
        match run.kind {
            Kind::Low => {
                if self.ram.iter().any(|&(_, e)| e % PAGE != 0 && pfn == e / PAGE) {
                    // The page RAM ends inside (0x9f000, the EBDA): makedumpfile counts it
                    // but never as a zero page, so it always holds data here.
                    (Desc::Reserved, Content::Text)
                } else if self.is_ram(pfn) {
                    (Desc::Reserved, text_content(h, 35, 30))
                } else {
                    (Desc::Reserved, Content::Zero)
                }
            }
            Kind::Image => (Desc::Reserved, Content::Image),
            Kind::Alloc => (Desc::Reserved, Content::Alloc),
            Kind::Vmemmap { .. } => (Desc::Reserved, Content::Vmemmap),
            Kind::Crash => (Desc::Reserved, Content::Random),
            Kind::Generic => self.generic_info(block, pfn, h),
        }
    }

    fn generic_info(&self, block: u64, pfn: u64, h: u64) -> (Desc, Content) {
        let base = block * BLOCK_PAGES;
        match self.block_type(block) {
            BlockType::Free9 => (if pfn == base { Desc::FreeHead(9) } else { Desc::FreeTail }, Content::Zero),
            BlockType::Free10Lo => (if pfn == base { Desc::FreeHead(10) } else { Desc::FreeTail }, Content::Zero),
            BlockType::Free10Hi => (Desc::FreeTail, Content::Zero),
            BlockType::Hugetlb => (compound(CKind::Hugetlb, 9, base, pfn), text_content(h, 10, 0)),
            BlockType::AnonThp => (compound(CKind::AnonThp, 9, base, pfn), text_content(h, 20, 0)),
            BlockType::FileThp => (compound(CKind::FileThp, 9, base, pfn), Content::Text),
            BlockType::Mixed => {
                let sub = (pfn - base) / SUB;
                let idx = (pfn - base) % SUB;
                let sub_base = base + sub * SUB;
                match self.sub_type(block, sub) {
                    SubType::KernelData => (Desc::Kernel, text_content(h, 8, 46)),
                    SubType::KernelZero => (Desc::Kernel, Content::Zero),
                    SubType::Slab => (Desc::Slab, text_content(h, 3, 50)),
                    SubType::SlabCompound => {
                        (compound(CKind::Slab, 2, sub_base + idx / 4 * 4, pfn), text_content(h, 3, 50))
                    }
                    SubType::Cache => (Desc::Cache, text_content(h, 10, 90)),
                    SubType::PrivCache => (Desc::PrivCache, text_content(h, 10, 90)),
                    SubType::SwapCache => (Desc::SwapCache, Content::Random),
                    SubType::Anon => (Desc::Anon, text_content(h, 15, 0)),
                    SubType::Free(pattern, stale) => {
                        let content = if stale { Content::Random } else { Content::Zero };
                        let mut at = 0u64;
                        for &order in FREE_PATTERNS.get(pattern as usize).copied().unwrap_or(&[4]) {
                            let n = 1u64 << order;
                            if idx == at {
                                return (Desc::FreeHead(order), content);
                            }
                            if idx < at + n {
                                return (Desc::FreeTail, content);
                            }
                            at += n;
                        }
                        (Desc::FreeTail, content)
                    }
                    SubType::HwPoison(at) if idx == u64::from(at) => (Desc::HwPoison, Content::Random),
                    SubType::HwPoison(_) => (Desc::Kernel, text_content(h, 8, 46)),
                    SubType::Offline => (Desc::Offline, Content::Zero),
                }
            }
        }
    }

    /// Whether page `pfn` is all zero (from the plan, without generating it).
    pub fn page_is_zero(&self, pfn: u64) -> bool {
        match self.info(pfn).1 {
            Content::Zero => true,
            Content::Random | Content::Text => false,
            Content::Image => {
                self.image_zero.get(((pfn * PAGE - self.image.pa) / PAGE) as usize).copied().unwrap_or(true)
            }
            Content::Alloc => {
                self.alloc_zero.get(((pfn * PAGE - self.alloc.pa) / PAGE) as usize).copied().unwrap_or(true)
            }
            Content::Vmemmap => self.vmemmap_page_zero(pfn),
        }
    }

    /// The vmemmap byte offset (from `vmemmap_base`) that page `pfn` of a vmemmap run backs.
    fn vmemmap_offset(&self, pfn: u64) -> Option<u64> {
        let block = pfn / BLOCK_PAGES;
        let run = self.run_of(block)?;
        let Kind::Vmemmap { first_chunk } = run.kind else {
            return None;
        };
        let vblock = *self.vblocks.get((first_chunk + block - run.start) as usize)?;
        Some(vblock * BLOCK + (pfn % BLOCK_PAGES) * PAGE)
    }

    fn vmemmap_page_zero(&self, pfn: u64) -> bool {
        let Some(off) = self.vmemmap_offset(pfn) else {
            return true;
        };
        let sz = self.ps.size as u64;
        self.struct_pages_zero(off / sz, (off + PAGE).div_ceil(sz))
    }

    /// Whether every `struct page` of pfns `[a, b)` is all zero.
    pub fn struct_pages_zero(&self, a: u64, b: u64) -> bool {
        let mut p = a;
        while p < b {
            let block = p / BLOCK_PAGES;
            let end = b.min((block + 1) * BLOCK_PAGES);
            if self.section_present(p / SECTION_PAGES) {
                match self.run_of(block) {
                    Some(r) if r.kind == Kind::Generic => match self.block_type(block) {
                        BlockType::Free9 | BlockType::Free10Lo => {
                            if (p..end).contains(&(block * BLOCK_PAGES)) {
                                return false;
                            }
                        }
                        BlockType::Free10Hi => {}
                        BlockType::Mixed => {
                            if (p..end).any(|q| self.info(q).0 != Desc::FreeTail) {
                                return false;
                            }
                        }
                        _ => return false,
                    },
                    _ => return false,
                }
            }
            p = end;
        }
        true
    }

    /// Virtual address of `pfn`'s `struct page`.
    fn page_va(&self, pfn: u64) -> u64 {
        self.vmemmap_base.wrapping_add(pfn * self.ps.size as u64)
    }

    /// Writes `pfn`'s `struct page` into `out` (`SIZE(page)` bytes, zeroed by the caller).
    pub fn struct_page(&self, pfn: u64, out: &mut [u8]) {
        let ps = &self.ps;
        let pg = &ps.pg;
        let bit = |n: u32| 1u64 << n;
        let mut put = |at: usize, bytes: &[u8]| {
            if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        };
        let desc = self.info(pfn).0;
        if desc == Desc::FreeTail {
            return;
        }
        let va = self.page_va(pfn);
        let self_list = va + ps.lru as u64;
        let h = mix(self.seed, T_FILL, pfn);
        let file_mapping = self.objs_va + 0x100 + 0x80 * (h % 8);
        let anon_vma = (self.objs_va + 0x800 + 0x40 * (h % 16)) | 1;
        let kmem_cache = self.objs_va + 0xc00 + 0x40 * (h % 8);
        let (mut flags, mut refcount, mut mapcount) = (0u64, 1u32, u32::MAX);
        let (mut mapping, mut private, mut index, mut lru) = (0u64, 0u64, 0u64, (self_list, self_list));
        let mut extra: Option<(usize, u8, usize, u8)> = None;
        match desc {
            Desc::Reserved => flags = bit(pg.reserved),
            Desc::Kernel => flags = bit(pg.referenced),
            Desc::Slab => match (pg.slab, ps.slab_type()) {
                (Some(b), _) => {
                    flags = bit(b);
                    mapping = kmem_cache;
                }
                (None, t) => {
                    mapcount = t.unwrap_or(u32::MAX);
                    lru = (kmem_cache, 0);
                    mapping = self.objs_va + 0x400;
                }
            },
            Desc::Cache | Desc::PrivCache => {
                flags = bit(pg.lru) | bit(pg.uptodate) | bit(pg.referenced);
                mapping = file_mapping;
                index = h >> 44;
                lru = (self.page_va(pfn ^ 1) + ps.lru as u64, self.page_va(pfn ^ 2) + ps.lru as u64);
                if desc == Desc::PrivCache {
                    flags |= bit(pg.private);
                    private = self.objs_va + 0xf00;
                    refcount = 2;
                }
            }
            Desc::SwapCache => {
                flags = bit(pg.swapcache) | bit(pg.swapbacked) | bit(pg.uptodate);
                private = 0x3_0000 + (h >> 48);
            }
            Desc::Anon => {
                flags = bit(pg.lru) | bit(pg.swapbacked) | bit(pg.uptodate) | bit(pg.active);
                mapping = anon_vma;
                index = h >> 40;
                mapcount = 0;
                lru = (self.page_va(pfn ^ 1) + ps.lru as u64, self.page_va(pfn ^ 4) + ps.lru as u64);
            }
            Desc::FreeHead(order) => {
                refcount = 0;
                private = u64::from(order);
                let other = self.page_va(pfn ^ (1 << (order + 1))) + ps.lru as u64;
                lru = (other, other);
                match (pg.buddy, ps.buddy_type()) {
                    (Some(b), _) => flags = bit(b),
                    (None, t) => mapcount = t.unwrap_or(u32::MAX),
                }
            }
            Desc::FreeTail => {}
            Desc::HwPoison => flags = pg.hwpoison.map(bit).unwrap_or(0),
            Desc::Offline => mapcount = ps.offline_type().unwrap_or(u32::MAX),
            Desc::Head(kind, _) => {
                flags = bit(pg.head);
                match kind {
                    CKind::Hugetlb => {
                        flags |= bit(pg.uptodate);
                        mapping = self.objs_va + 0xe00;
                        if let Some(t) = ps.hugetlb_type() {
                            mapcount = t;
                        }
                    }
                    CKind::AnonThp => {
                        flags |= bit(pg.lru) | bit(pg.swapbacked) | bit(pg.uptodate) | bit(pg.active);
                        mapping = anon_vma;
                    }
                    CKind::FileThp => {
                        flags |= bit(pg.lru) | bit(pg.uptodate);
                        mapping = file_mapping;
                    }
                    CKind::Slab => match (pg.slab, ps.slab_type()) {
                        (Some(b), _) => {
                            flags |= bit(b);
                            mapping = kmem_cache;
                        }
                        (None, t) => mapcount = t.unwrap_or(u32::MAX),
                    },
                }
            }
            Desc::Tail(kind, order, head) => {
                refcount = 0;
                lru = (self.page_va(head) | 1, 0);
                mapping = 0xdead_0000_0000_0400;
                if pfn == head + 1 {
                    match ps.compound {
                        CompoundStyle::DtorOrder { dtor, order: order_at } => {
                            let d = match kind {
                                CKind::Hugetlb => HUGETLB_PAGE_DTOR,
                                CKind::AnonThp | CKind::FileThp => TRANSHUGE_PAGE_DTOR,
                                CKind::Slab => COMPOUND_PAGE_DTOR,
                            };
                            // 4.16-6.2 first tail: compound_head, then dtor and order
                            // bytes, compound_mapcount (-1), compound_pincount and
                            // compound_nr over what is lru.prev and mapping elsewhere.
                            lru.1 = 0xffff_ffff << 32;
                            mapping = 1u64 << (order as u64 + 32);
                            extra = Some((dtor, d, order_at, order));
                        }
                        CompoundStyle::Flags1 => flags = u64::from(order),
                        CompoundStyle::None => {}
                    }
                }
            }
        }
        put(0, &flags.to_le_bytes());
        put(ps.lru, &lru.0.to_le_bytes());
        put(ps.lru + 8, &lru.1.to_le_bytes());
        put(ps.mapping, &mapping.to_le_bytes());
        put(ps.index, &index.to_le_bytes());
        put(ps.private, &private.to_le_bytes());
        put(ps.mapcount, &mapcount.to_le_bytes());
        put(ps.refcount, &refcount.to_le_bytes());
        if let Some((dtor_at, dtor, order_at, order)) = extra {
            put(dtor_at, &[dtor]);
            put(order_at, &[order]);
        }
    }

    /// Fills `buf` (one page) with the vmemmap bytes backed by page `pfn`.
    fn fill_vmemmap(&self, pfn: u64, buf: &mut [u8]) {
        let Some(off) = self.vmemmap_offset(pfn) else {
            return;
        };
        let sz = self.ps.size as u64;
        let mut sp = [0u8; 64];
        for q in off / sz..(off + PAGE).div_ceil(sz) {
            if !self.section_present(q / SECTION_PAGES) {
                continue;
            }
            let spb = sp.get_mut(..sz as usize).unwrap_or_default();
            spb.fill(0);
            self.struct_page(q, spb);
            // Copy the part of struct page q inside [off, off + PAGE).
            let q_start = q * sz;
            let from = q_start.max(off);
            let to = (q_start + sz).min(off + PAGE);
            if let (Some(src), Some(dst)) = (
                spb.get((from - q_start) as usize..(to - q_start) as usize),
                buf.get_mut((from - off) as usize..(to - off) as usize),
            ) {
                dst.copy_from_slice(src);
            }
        }
    }

    /// Fills `buf` (one page, zeroed by the caller) with the bytes of page `pfn`.
    pub fn fill_page(&self, pfn: u64, buf: &mut [u8]) {
        match self.info(pfn).1 {
            Content::Zero => {}
            Content::Random => {
                let mut s = mix(self.seed, T_FILL + 10, pfn) | 1;
                for chunk in buf.chunks_exact_mut(8) {
                    // xorshift64*: fast and good enough for incompressible test data.
                    s ^= s >> 12;
                    s ^= s << 25;
                    s ^= s >> 27;
                    chunk.copy_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
                }
            }
            Content::Text => {
                let pool = &self.text_pool;
                let n = buf.len();
                let start = (mix(self.seed, T_FILL + 11, pfn) % (pool.len().saturating_sub(n).max(1)) as u64) as usize;
                if let Some(src) = pool.get(start..start + n) {
                    buf.copy_from_slice(src);
                }
            }
            Content::Image => self.image.copy_page((pfn * PAGE - self.image.pa) / PAGE, buf),
            Content::Alloc => self.alloc.copy_page((pfn * PAGE - self.alloc.pa) / PAGE, buf),
            Content::Vmemmap => self.fill_vmemmap(pfn, buf),
        }
    }
}

fn compound(kind: CKind, order: u8, head: u64, pfn: u64) -> Desc {
    if pfn == head {
        Desc::Head(kind, order)
    } else {
        Desc::Tail(kind, order, head)
    }
}

/// A pool of text to copy compressible pages from.
pub fn text_pool(seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "kernel",
        "page",
        "memory",
        "crash",
        "dump",
        "the",
        "of",
        "and",
        "to",
        "in",
        "task",
        "struct",
        "list",
        "head",
        "slab",
        "zone",
        "node",
        "cpu",
        "irq",
        "sched",
        "mutex",
        "spin",
        "lock",
        "unlock",
        "return",
        "error",
        "0x0",
        "NULL",
        "vmcore",
        "kdump",
        "buddy",
        "free",
        "lru",
        "anon",
        "file",
        "cache",
        "#include",
        "<linux/mm.h>",
        "int",
        "static",
        "void",
        "{",
        "}",
        ";",
        "if",
        "else",
        "for",
        "while",
    ];
    let mut rng = crate::rng::SplitMix64::new(seed ^ 0x7465_7874);
    let mut out = Vec::with_capacity(1 << 17);
    let mut line = 0;
    while out.len() < (1 << 17) {
        let w = WORDS.get(rng.below(WORDS.len() as u64) as usize).copied().unwrap_or("x");
        out.extend_from_slice(w.as_bytes());
        line += 1;
        out.push(if line % 11 == 0 { b'\n' } else { b' ' });
        if rng.below(7) == 0 {
            out.extend_from_slice(format!("{}", rng.below(100_000)).as_bytes());
            out.push(b' ');
        }
    }
    out
}
