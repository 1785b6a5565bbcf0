//! The class of a page frame from its `struct page`, rule for rule as makedumpfile 1.7.9
//! decides it (../shared/docs/makedumpfile.md section 4.4), with the VMCOREINFO keys of
//! every kernel generation: PG_* flag numbers, buddy/offline/slab/hugetlb as `_mapcount`
//! values (4.x-6.x) or page types (6.12+), PG_buddy as a flag (before 2.6.38), compound
//! head and order in the first tail page.

use vmcore_types::bytes::{u32_at, u64_at, u8_at};

use crate::vmcoreinfo::VmcoreInfo;

/// Dump-level bits.
pub mod level {
    /// Pages filled with zero.
    pub const ZERO: u32 = 1;
    /// Page cache without private data.
    pub const CACHE: u32 = 2;
    /// All page cache.
    pub const CACHE_PRIVATE: u32 = 4;
    /// User (anonymous) data and hugetlbfs pages.
    pub const USER: u32 = 8;
    /// Free pages.
    pub const FREE: u32 = 16;
}

/// Why a page is excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Page cache without private data.
    Cache,
    /// Page cache with private data.
    CachePrivate,
    /// Anonymous user memory or hugetlbfs.
    User,
    /// Free (buddy, or unaccepted memory).
    Free,
    /// Hardware-poisoned.
    Hwpoison,
    /// Logically offline (ballooned out, memory hot-unplug).
    Offline,
}

/// What to do with a page frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep it (kernel data, or a class the level does not exclude).
    Keep,
    /// A tail page of a compound page: decided with its head.
    Tail,
    /// Exclude `pages` frames starting here, all of `class`.
    Exclude {
        /// The class.
        class: Class,
        /// Number of frames (a buddy block or compound page).
        pages: u64,
    },
}

/// Where the fields of `struct page` are and what their values mean on this kernel.
#[derive(Debug, Clone)]
pub struct PageRules {
    /// `SIZE(page)`.
    pub size: usize,
    flags: usize,
    mapping: usize,
    mapcount: Option<usize>,
    private: Option<usize>,
    compound_head: Option<usize>,
    /// Offset of the compound order and destructor bytes in the first tail page (before
    /// 6.6: `compound_order` / `compound_dtor`, or `folio._folio_order` - SIZE(page)).
    order_in_tail: Option<usize>,
    dtor_in_tail: Option<usize>,
    pg_lru: u32,
    pg_private: u32,
    pg_swapcache: u32,
    pg_swapbacked: Option<u32>,
    pg_slab: Option<u32>,
    pg_buddy: Option<u32>,
    pg_hwpoison: Option<u32>,
    pg_hugetlb: Option<u32>,
    pg_head_mask: u64,
    buddy_mapcount: Option<u32>,
    offline_mapcount: Option<u32>,
    slab_mapcount: Option<u32>,
    hugetlb_mapcount: Option<u32>,
    unaccepted_mapcount: Option<u32>,
    hugetlb_dtor: Option<u64>,
    /// `LENGTH(zone.free_area)`: MAX_ORDER + 1.
    free_area_len: Option<u64>,
}

/// Errors of reading the rules.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key every generation has is missing or unusable ("no KEY", "KEY=VALUE (...)").
    #[error("VMCOREINFO has {0}, and it is needed to classify pages")]
    Missing(String),
    /// A value no kernel has.
    #[error("{0}")]
    Bad(String),
}

fn off(vi: &VmcoreInfo, name: &str) -> Option<usize> {
    vi.offset(name).and_then(|v| usize::try_from(v).ok())
}

fn num(vi: &VmcoreInfo, name: &str) -> Option<u32> {
    vi.number(name).and_then(|v| u32::try_from(v).ok())
}

/// A mapcount value as the 32-bit pattern the kernel stores (-129, or 0xf0000000 as a
/// negative int).
fn mapcount(vi: &VmcoreInfo, name: &str) -> Option<u32> {
    vi.number(name).map(|v| v as u32)
}

impl PageRules {
    /// Reads the rules from VMCOREINFO, with makedumpfile's fallbacks for keys old kernels
    /// did not export. `pg_slab_bug_compat`: when `NUMBER(PG_slab)` is absent (6.10+),
    /// makedumpfile 1.7.9 still tests flag bit 7 as "slab"; pass `true` for identical
    /// counts, `false` to test slab only by page type.
    pub fn from_vmcoreinfo(vi: &VmcoreInfo, pg_slab_bug_compat: bool) -> Result<PageRules, Error> {
        let size = super::struct_page_size(vi)
            .map_err(Error::Bad)?
            .ok_or_else(|| Error::Missing(vi.unusable("SIZE(page)")))? as usize;
        let flags = off(vi, "page.flags").ok_or_else(|| Error::Missing(vi.unusable("OFFSET(page.flags)")))?;
        let mapping = off(vi, "page.mapping").ok_or_else(|| Error::Missing(vi.unusable("OFFSET(page.mapping)")))?;
        let pg_private = num(vi, "PG_private").unwrap_or(11);
        let pg_swapcache = num(vi, "PG_swapcache").unwrap_or(15);
        let pg_swapbacked = num(vi, "PG_swapbacked").or((pg_swapcache < pg_private).then_some(pg_private + 6));
        let slab_mapcount = mapcount(vi, "PAGE_SLAB_MAPCOUNT_VALUE");
        let pg_slab = num(vi, "PG_slab").or((pg_slab_bug_compat || slab_mapcount.is_none()).then_some(7));
        let compound_head = off(vi, "page.compound_head").or_else(|| off(vi, "page.compound_info"));
        let (order_in_tail, dtor_in_tail) = match (off(vi, "folio._folio_order"), off(vi, "folio._folio_dtor")) {
            (Some(o), d) => (o.checked_sub(size), d.and_then(|d| d.checked_sub(size))),
            (None, _) => (off(vi, "page.compound_order"), off(vi, "page.compound_dtor")),
        };
        Ok(PageRules {
            size,
            flags,
            mapping,
            mapcount: off(vi, "page._mapcount"),
            private: off(vi, "page.private"),
            compound_head,
            order_in_tail,
            dtor_in_tail,
            pg_lru: num(vi, "PG_lru").unwrap_or(5),
            pg_private,
            pg_swapcache,
            pg_swapbacked,
            pg_slab,
            pg_buddy: num(vi, "PG_buddy"),
            pg_hwpoison: num(vi, "PG_hwpoison"),
            pg_hugetlb: num(vi, "PG_hugetlb"),
            pg_head_mask: vi.number_u64("PG_head_mask").unwrap_or(1 << 14),
            buddy_mapcount: mapcount(vi, "PAGE_BUDDY_MAPCOUNT_VALUE"),
            offline_mapcount: mapcount(vi, "PAGE_OFFLINE_MAPCOUNT_VALUE"),
            slab_mapcount,
            hugetlb_mapcount: mapcount(vi, "PAGE_HUGETLB_MAPCOUNT_VALUE"),
            unaccepted_mapcount: mapcount(vi, "PAGE_UNACCEPTED_MAPCOUNT_VALUE"),
            hugetlb_dtor: vi.number_u64("HUGETLB_PAGE_DTOR"),
            free_area_len: vi.length("zone.free_area").and_then(|v| u64::try_from(v).ok()),
        })
    }

    /// Whether free pages can be told from `struct page` alone (else a free-list walk is
    /// needed).
    pub fn can_see_buddy(&self) -> bool {
        self.private.is_some()
            && ((self.buddy_mapcount.is_some() && self.mapcount.is_some()) || self.pg_buddy.is_some())
    }

    /// Decides page `page` (its struct page bytes); `next` is the following struct page
    /// when it is in the same batch (the first tail page of a compound head). `pfn` is
    /// needed for the compound-order alignment check.
    pub fn decide(&self, pfn: u64, page: &[u8], next: Option<&[u8]>, dump_level: u32) -> Decision {
        let flags = u64_at(page, self.flags, false).unwrap_or(0);
        let mapping = u64_at(page, self.mapping, false).unwrap_or(0);
        let mapcount = self.mapcount.and_then(|o| u32_at(page, o, false)).unwrap_or(0);
        let private = self.private.and_then(|o| u64_at(page, o, false)).unwrap_or(0);
        let compound_head = self.compound_head.and_then(|o| u64_at(page, o, false)).unwrap_or(0);
        // makedumpfile's test_bit takes the bit number modulo 32.
        let test = |nr: u32| flags & (1u64 << (nr & 0x1f)) != 0;

        let (order, hugetlb) = match next.filter(|_| flags & self.pg_head_mask != 0) {
            Some(tail) => self.compound(tail, mapcount),
            None => (0, false),
        };
        let order = if order >= 64 || pfn & ((1u64 << order.min(63)) - 1) != 0 { 0 } else { order };
        let nr_pages = 1u64 << order;

        let is_lru = test(self.pg_lru);
        let is_private = test(self.pg_private);
        let is_swapcache = test(self.pg_swapcache);
        let is_swapbacked = self.pg_swapbacked.is_none_or(test);
        let is_cache = is_lru || (is_swapcache && is_swapbacked);
        let is_slab = self.slab_mapcount.is_some_and(|v| mapcount == v) || self.pg_slab.is_some_and(test);
        let is_anon = mapping & 1 != 0 && !is_slab;
        let is_buddy = match (self.buddy_mapcount, self.mapcount, self.pg_buddy) {
            (Some(v), Some(_), _) => !is_slab && mapcount == v,
            (_, _, Some(nr)) => test(nr),
            _ => false,
        } && self.private.is_some();
        let is_unaccepted = self.unaccepted_mapcount.is_some_and(|v| mapcount == v);
        let is_hwpoison = self.pg_hwpoison.is_some_and(test);
        let is_offline = self.offline_mapcount.is_some_and(|v| !is_slab && mapcount == v);

        if compound_head & 1 != 0 {
            return Decision::Tail;
        }
        let exclude = |class, pages| Decision::Exclude { class, pages };
        if dump_level & level::FREE != 0 && is_buddy {
            if self.free_area_len.is_some_and(|len| private >= len) {
                return Decision::Keep; // "Invalid free page order": left in the dump
            }
            return exclude(Class::Free, 1u64 << private.min(63));
        }
        if dump_level & level::FREE != 0 && is_unaccepted {
            let max_order = self.free_area_len.unwrap_or(11).saturating_sub(1).min(63);
            return exclude(Class::Free, 1u64 << max_order);
        }
        if dump_level & level::CACHE != 0 && is_cache && !is_private && !is_anon {
            return exclude(Class::Cache, nr_pages);
        }
        if dump_level & level::CACHE_PRIVATE != 0 && is_cache && !is_anon {
            return exclude(if is_private { Class::CachePrivate } else { Class::Cache }, nr_pages);
        }
        if dump_level & level::USER != 0 && (is_anon || hugetlb) {
            return exclude(Class::User, nr_pages);
        }
        if is_hwpoison {
            return exclude(Class::Hwpoison, nr_pages);
        }
        if is_offline {
            return exclude(Class::Offline, nr_pages);
        }
        Decision::Keep
    }

    /// Order and hugetlb-ness of a compound head, from its first tail page.
    fn compound(&self, tail: &[u8], head_mapcount: u32) -> (u64, bool) {
        let tail_flags = u64_at(tail, self.flags, false).unwrap_or(0);
        if let Some(v) = self.hugetlb_mapcount {
            // 6.9+: order in the low byte of the tail's flags, hugetlb a page type.
            return (tail_flags & 0xff, head_mapcount == v);
        }
        if let Some(nr) = self.pg_hugetlb {
            // 6.6-6.8.
            return (tail_flags & 0xff, tail_flags & (1u64 << (nr & 0x3f)) != 0);
        }
        let order = self.order_in_tail.and_then(|o| u8_at(tail, o)).map_or(0, u64::from);
        let dtor = self.dtor_in_tail.and_then(|o| u8_at(tail, o)).map(u64::from);
        (order, dtor.is_some() && dtor == self.hugetlb_dtor)
    }
}

#[cfg(test)]
mod tests {
    use super::level::*;
    use super::*;
    use crate::vmcoreinfo::Source;

    /// struct page layout shared by the generations below (x86_64 6.x offsets).
    const COMMON: &str = "SIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page._refcount)=52\nOFFSET(page.mapping)=24\n\
OFFSET(page.lru)=8\nOFFSET(page._mapcount)=48\nOFFSET(page.private)=40\nOFFSET(page.compound_head)=8\n\
LENGTH(zone.free_area)=11\n";

    /// 4.x-6.5: buddy/offline as _mapcount values, PG_slab a flag, hugetlb by destructor.
    const GEN_6_1: &str = "NUMBER(PG_lru)=4\nNUMBER(PG_private)=13\nNUMBER(PG_swapcache)=10\n\
NUMBER(PG_swapbacked)=19\nNUMBER(PG_slab)=9\nNUMBER(PG_hwpoison)=23\nNUMBER(PG_head_mask)=65536\n\
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\nNUMBER(HUGETLB_PAGE_DTOR)=2\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\n\
OFFSET(page.compound_dtor)=16\nOFFSET(page.compound_order)=17\n";

    /// 6.12+: one page type per page in the top byte of _mapcount, no PG_slab.
    const GEN_6_12: &str = "NUMBER(PG_lru)=5\nNUMBER(PG_private)=14\nNUMBER(PG_swapcache)=10\n\
NUMBER(PG_swapbacked)=17\nNUMBER(PAGE_SLAB_MAPCOUNT_VALUE)=-184549376\nNUMBER(PG_hwpoison)=20\n\
NUMBER(PG_head_mask)=64\nNUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-268435456\n\
NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)=-201326592\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-251658240\n";

    /// 6.6-6.8: hugetlb a flag of the first tail page, order in its low byte.
    const GEN_6_6: &str = "NUMBER(PG_lru)=4\nNUMBER(PG_private)=13\nNUMBER(PG_swapcache)=10\n\
NUMBER(PG_swapbacked)=19\nNUMBER(PG_slab)=9\nNUMBER(PG_head_mask)=65536\nNUMBER(PG_hugetlb)=23\n\
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\n";

    /// 2.6.17-2.6.37: PG_buddy a flag, no _mapcount value.
    const GEN_2_6: &str = "NUMBER(PG_lru)=5\nNUMBER(PG_private)=11\nNUMBER(PG_swapcache)=15\n\
NUMBER(PG_slab)=7\nNUMBER(PG_buddy)=19\nNUMBER(PG_head_mask)=16384\n";

    fn rules(gen: &str) -> PageRules {
        let vi = VmcoreInfo::parse(format!("{COMMON}{gen}").as_bytes(), Source::ElfNote).unwrap();
        PageRules::from_vmcoreinfo(&vi, true).unwrap()
    }

    #[derive(Default, Clone, Copy)]
    struct P {
        flags: u64,
        mapping: u64,
        mapcount: u32,
        private: u64,
        compound_head: u64,
        b16: u8,
        b17: u8,
    }

    fn bytes(p: P) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[0..8].copy_from_slice(&p.flags.to_le_bytes());
        b[8..16].copy_from_slice(&p.compound_head.to_le_bytes());
        b[16] = p.b16;
        b[17] = p.b17;
        b[24..32].copy_from_slice(&p.mapping.to_le_bytes());
        b[40..48].copy_from_slice(&p.private.to_le_bytes());
        b[48..52].copy_from_slice(&p.mapcount.to_le_bytes());
        b
    }

    fn decide(r: &PageRules, pfn: u64, p: P, tail: Option<P>, lvl: u32) -> Decision {
        let tail = tail.map(bytes);
        r.decide(pfn, &bytes(p), tail.as_deref(), lvl)
    }

    fn ex(class: Class, pages: u64) -> Decision {
        Decision::Exclude { class, pages }
    }

    const ALL: u32 = ZERO | CACHE | CACHE_PRIVATE | USER | FREE;

    #[test]
    fn buddy_blocks_of_every_generation() {
        let free_6_1 = P { mapcount: (-129i32) as u32, private: 3, ..P::default() };
        assert_eq!(decide(&rules(GEN_6_1), 8, free_6_1, None, ALL), ex(Class::Free, 8));
        assert_eq!(decide(&rules(GEN_6_1), 8, free_6_1, None, ALL & !FREE), Decision::Keep);
        let free_6_12 = P { mapcount: 0xf000_0000, private: 10, ..P::default() };
        assert_eq!(decide(&rules(GEN_6_12), 1024, free_6_12, None, FREE), ex(Class::Free, 1024));
        // The same value means nothing on 6.1, and -129 nothing on 6.12.
        assert_eq!(decide(&rules(GEN_6_1), 1024, free_6_12, None, FREE), Decision::Keep);
        assert_eq!(decide(&rules(GEN_6_12), 8, free_6_1, None, FREE), Decision::Keep);
        let free_2_6 = P { flags: 1 << 19, private: 2, ..P::default() };
        assert_eq!(decide(&rules(GEN_2_6), 4, free_2_6, None, FREE), ex(Class::Free, 4));
        // An order beyond MAX_ORDER is corrupt: the page stays.
        let bad = P { private: 11, ..free_6_1 };
        assert_eq!(decide(&rules(GEN_6_1), 0, bad, None, FREE), Decision::Keep);
    }

    #[test]
    fn slab_as_flag_or_page_type_is_never_user_or_free() {
        // 6.1: PG_slab (bit 9) with an odd mapping (slab's own pointers) is kernel data.
        let slab_bit_9 = P { flags: 1 << 9, mapping: 0xffff_8880_0000_0001, ..P::default() };
        assert_eq!(decide(&rules(GEN_6_1), 0, slab_bit_9, None, ALL), Decision::Keep);
        // 6.12: slab is a page type.
        let slab = P { mapcount: 0xf500_0000, mapping: 0xffff_8880_0000_0001, ..P::default() };
        assert_eq!(decide(&rules(GEN_6_12), 0, slab, None, ALL), Decision::Keep);
        // Bug-compatible: without NUMBER(PG_slab), flag bit 7 counts as slab too.
        let waiters_anon = P { flags: 1 << 7, mapping: 0xffff_8880_0000_0001, ..P::default() };
        assert_eq!(decide(&rules(GEN_6_12), 0, waiters_anon, None, ALL), Decision::Keep);
        let vi = VmcoreInfo::parse(format!("{COMMON}{GEN_6_12}").as_bytes(), Source::ElfNote).unwrap();
        let strict = PageRules::from_vmcoreinfo(&vi, false).unwrap();
        assert_eq!(strict.decide(0, &bytes(waiters_anon), None, ALL), ex(Class::User, 1));
        // A PG_slab beyond the flags word is read modulo 32, as makedumpfile's test_bit
        // does, instead of overflowing the shift (a panic in debug builds).
        let vi = format!("{COMMON}{GEN_6_1}").replace("NUMBER(PG_slab)=9", "NUMBER(PG_slab)=73");
        let odd =
            PageRules::from_vmcoreinfo(&VmcoreInfo::parse(vi.as_bytes(), Source::ElfNote).unwrap(), false).unwrap();
        assert_eq!(odd.decide(0, &bytes(slab_bit_9), None, ALL), Decision::Keep);
    }

    #[test]
    fn cache_private_cache_and_user_by_level() {
        let r = rules(GEN_6_1);
        let cache = P { flags: 1 << 4, mapping: 0xffff_8880_1234_5000, ..P::default() };
        let private = P { flags: (1 << 4) | (1 << 13), ..cache };
        let anon = P { flags: 1 << 4, mapping: 0xffff_8880_1234_5001, ..P::default() };
        let swapcache = P { flags: (1 << 10) | (1 << 19), ..P::default() };
        assert_eq!(decide(&r, 0, cache, None, CACHE), ex(Class::Cache, 1));
        assert_eq!(decide(&r, 0, private, None, CACHE), Decision::Keep);
        assert_eq!(decide(&r, 0, private, None, CACHE_PRIVATE), ex(Class::CachePrivate, 1));
        assert_eq!(decide(&r, 0, cache, None, CACHE_PRIVATE), ex(Class::Cache, 1));
        assert_eq!(decide(&r, 0, swapcache, None, CACHE), ex(Class::Cache, 1));
        // Anonymous LRU pages are user data, not cache.
        assert_eq!(decide(&r, 0, anon, None, CACHE | CACHE_PRIVATE), Decision::Keep);
        assert_eq!(decide(&r, 0, anon, None, USER), ex(Class::User, 1));
        assert_eq!(decide(&r, 0, anon, None, ZERO), Decision::Keep);
    }

    #[test]
    fn compound_pages_are_decided_whole_and_tails_skipped() {
        let r = rules(GEN_6_1);
        let head = P { flags: (1 << 16) | (1 << 4), mapping: 0xffff_8880_0000_1001, ..P::default() };
        let tail = P { compound_head: 0xffff_ea00_0000_0001, b16: 1, b17: 9, ..P::default() };
        assert_eq!(decide(&r, 512, head, Some(tail), USER), ex(Class::User, 512));
        assert_eq!(decide(&r, 513, tail, None, USER), Decision::Tail);
        // Misaligned order: treated as a single page.
        assert_eq!(decide(&r, 256, head, Some(tail), USER), ex(Class::User, 1));
        // Head at the end of a batch: no tail to read, order 0.
        assert_eq!(decide(&r, 512, head, None, USER), ex(Class::User, 1));
    }

    /// 7.1 renamed OFFSET(page.compound_head) to compound_info. A first tail page's
    /// mapping word holds -1 counters (bit 0 set, as an anonymous mapping's): a tool that
    /// knows only the old name takes slab tails for user data (makedumpfile 1.7.8 on a 7.2
    /// dump dropped 354 pages so).
    #[test]
    fn tails_are_found_by_the_7_1_name_of_compound_head() {
        let common = COMMON.replace("OFFSET(page.compound_head)", "OFFSET(page.compound_info)");
        let vi = VmcoreInfo::parse(format!("{common}{GEN_6_12}").as_bytes(), Source::ElfNote).unwrap();
        let r = PageRules::from_vmcoreinfo(&vi, true).unwrap();
        let tail = P { compound_head: 0xffff_ea00_0000_0001, mapping: 0xffff_ffff, ..P::default() };
        assert_eq!(decide(&r, 513, tail, None, ALL), Decision::Tail);
    }

    #[test]
    fn hugetlb_in_each_generation_is_user_data() {
        let head = P { flags: 1 << 16, ..P::default() };
        // 6.1: destructor HUGETLB_PAGE_DTOR in the first tail page.
        let tail = P { compound_head: 1, b16: 2, b17: 9, ..P::default() };
        assert_eq!(decide(&rules(GEN_6_1), 0, head, Some(tail), USER), ex(Class::User, 512));
        let other_dtor = P { b16: 1, ..tail };
        assert_eq!(decide(&rules(GEN_6_1), 0, head, Some(other_dtor), USER), Decision::Keep);
        // 6.6: PG_hugetlb in the tail's flags, order in their low byte.
        let tail = P { compound_head: 1, flags: (1 << 23) | 9, ..P::default() };
        assert_eq!(decide(&rules(GEN_6_6), 0, head, Some(tail), USER), ex(Class::User, 512));
        // 6.12: hugetlb is the head's page type; PG_head is bit 6.
        let head = P { flags: 1 << 6, mapcount: 0xf400_0000, ..P::default() };
        let tail = P { compound_head: 1, flags: 9, ..P::default() };
        assert_eq!(decide(&rules(GEN_6_12), 0, head, Some(tail), USER), ex(Class::User, 512));
        assert_eq!(decide(&rules(GEN_6_12), 0, head, Some(tail), ALL & !USER), Decision::Keep);
    }

    #[test]
    fn hwpoison_and_offline_go_at_every_level() {
        let poisoned = P { flags: 1 << 23, ..P::default() };
        assert_eq!(decide(&rules(GEN_6_1), 0, poisoned, None, 0), ex(Class::Hwpoison, 1));
        let offline = P { mapcount: (-257i32) as u32, ..P::default() };
        assert_eq!(decide(&rules(GEN_6_1), 0, offline, None, 0), ex(Class::Offline, 1));
        let offline = P { mapcount: 0xf100_0000, ..P::default() };
        assert_eq!(decide(&rules(GEN_6_12), 0, offline, None, 1), ex(Class::Offline, 1));
        // Kernels without these keys have no such pages.
        assert_eq!(decide(&rules(GEN_2_6), 0, P { flags: 1 << 23, ..P::default() }, None, 0), Decision::Keep);
    }

    /// A SIZE(page) no kernel has is an error naming it, not the size of every batch
    /// buffer of struct pages (2^40 would ask for a 512 TiB buffer).
    #[test]
    fn a_struct_page_size_no_kernel_has_is_refused() {
        for (size, ok) in
            [("64", true), ("1024", true), ("1025", false), ("0", false), ("-64", false), ("1099511627776", false)]
        {
            let text = COMMON.replace("SIZE(page)=64", &format!("SIZE(page)={size}")) + GEN_6_1;
            let vi = VmcoreInfo::parse(text.as_bytes(), Source::ElfNote).unwrap();
            match PageRules::from_vmcoreinfo(&vi, true) {
                Ok(r) => assert!(ok && r.size.to_string() == size, "SIZE(page)={size}"),
                Err(e) => assert!(!ok && e.to_string().contains(&format!("SIZE(page)={size} is not")), "{e}"),
            }
        }
    }
}
