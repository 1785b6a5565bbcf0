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
    /// A key every generation has is missing.
    #[error("VMCOREINFO lacks {0}, needed to classify pages")]
    Missing(&'static str),
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
        let size = vi.size("page").and_then(|v| usize::try_from(v).ok()).ok_or(Error::Missing("SIZE(page)"))?;
        let flags = off(vi, "page.flags").ok_or(Error::Missing("OFFSET(page.flags)"))?;
        let mapping = off(vi, "page.mapping").ok_or(Error::Missing("OFFSET(page.mapping)"))?;
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
        self.private.is_some() && ((self.buddy_mapcount.is_some() && self.mapcount.is_some()) || self.pg_buddy.is_some())
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
            Some(tail) => self.compound(page, tail, mapcount),
            None => (0, false),
        };
        let order = if order >= 64 || pfn & ((1u64 << order.min(63)) - 1) != 0 { 0 } else { order };
        let nr_pages = 1u64 << order;

        let is_lru = test(self.pg_lru);
        let is_private = test(self.pg_private);
        let is_swapcache = test(self.pg_swapcache);
        let is_swapbacked = self.pg_swapbacked.is_none_or(test);
        let is_cache = is_lru || (is_swapcache && is_swapbacked);
        let is_slab = self.slab_mapcount.is_some_and(|v| mapcount == v) || self.pg_slab.is_some_and(|nr| flags & (1u64 << nr) != 0);
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
    fn compound(&self, head: &[u8], tail: &[u8], head_mapcount: u32) -> (u64, bool) {
        let tail_flags = u64_at(tail, self.flags, false).unwrap_or(0);
        if let Some(v) = self.hugetlb_mapcount {
            // 6.9+: order in the low byte of the tail's flags, hugetlb a page type.
            return (tail_flags & 0xff, head_mapcount == v);
        }
        if let Some(nr) = self.pg_hugetlb {
            // 6.6-6.8.
            return (tail_flags & 0xff, tail_flags & (1u64 << (nr & 0x3f)) != 0);
        }
        let _ = head;
        let order = self.order_in_tail.and_then(|o| u8_at(tail, o)).map_or(0, u64::from);
        let dtor = self.dtor_in_tail.and_then(|o| u8_at(tail, o)).map(u64::from);
        (order, dtor.is_some() && dtor == self.hugetlb_dtor)
    }
}
