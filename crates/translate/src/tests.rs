//! Synthetic page tables: every case real dumps rarely show.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use vmcore_physmem::{PageState, PhysMem, PhysRange};
use vmcore_types::{Pfn, PhysAddr};

use crate::{Error, Mmu, Walker};

/// The first 128 MiB of physical memory read as zeros unless written; above, only what
/// was written exists.
const RAM_PAGES: u64 = 0x8000;

#[derive(Debug, Default)]
struct TestMem {
    pages: Mutex<HashMap<u64, Vec<u8>>>,
    /// Pages read so far.
    reads: AtomicUsize,
    /// More reads than this fail the test at once (0: no limit), so a search that would
    /// run for hours fails in milliseconds instead.
    max_reads: usize,
}

impl TestMem {
    fn set_u64(&self, paddr: u64, v: u64) {
        let mut pages = self.pages.lock().unwrap();
        let page = pages.entry(paddr >> 12).or_insert_with(|| vec![0; 4096]);
        let off = (paddr & 4095) as usize;
        page[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
}

impl PhysMem for TestMem {
    fn page_size(&self) -> u64 {
        4096
    }
    fn max_pfn(&self) -> u64 {
        1 << 40
    }
    fn page_state(&self, pfn: Pfn) -> vmcore_physmem::Result<PageState> {
        Ok(if pfn.0 < RAM_PAGES || self.pages.lock().unwrap().contains_key(&pfn.0) {
            PageState::Dumped
        } else {
            PageState::Hole
        })
    }
    fn read_page(&self, pfn: Pfn, buf: &mut [u8]) -> vmcore_physmem::Result<PageState> {
        let reads = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
        assert!(self.max_reads == 0 || reads <= self.max_reads, "more than {} page reads", self.max_reads);
        match self.pages.lock().unwrap().get(&pfn.0) {
            Some(p) => {
                buf.copy_from_slice(p);
                Ok(PageState::Dumped)
            }
            None if pfn.0 < RAM_PAGES => {
                buf.fill(0);
                Ok(PageState::Dumped)
            }
            None => Ok(PageState::Hole),
        }
    }
    fn ranges(&self) -> Vec<PhysRange> {
        Vec::new()
    }
}

const P: u64 = 0x63; // present, rw, accessed, dirty
const PS: u64 = 1 << 7;

/// Builds tables with `levels` levels at fixed physical pages, mapping:
/// * 0xffff888000000000 (4-level) / 0xff11000000000000 (5-level) + 1 GiB → phys 0x4000_0000 (1 GiB page),
/// * + 2 MiB region at +1 GiB+... via a 2 MiB page → phys 0x20_0000,
/// * 0xffffffff81000000 → 4 KiB pages at phys 0x100_0000.
fn build(levels: usize) -> (Arc<TestMem>, Walker, u64) {
    let mem = Arc::new(TestMem::default());
    let mmu = Mmu::x86_64(levels, 0);
    let direct = if levels == 5 { 0xff11_0000_0000_0000u64 } else { 0xffff_8880_0000_0000u64 };
    let mut next_table = 0x10_0000u64;
    let mut alloc = || {
        next_table += 0x1000;
        next_table
    };
    let root = alloc();
    // Walk-and-create helper: returns the table at `level` for vaddr.
    let mut tables: HashMap<(usize, u64), u64> = HashMap::new();
    let mut table_for = |vaddr: u64, target_level: usize, mem: &TestMem| -> u64 {
        let mut table = root;
        for level in (target_level + 1..=levels).rev() {
            let key = (level, vaddr >> mmu.level_shift(level));
            let next = *tables.entry(key).or_insert_with(|| {
                let t = alloc();
                mem.set_u64(table + mmu.index(vaddr, level) * 8, t | P);
                t
            });
            table = next;
        }
        table
    };
    // 1 GiB page.
    let t = table_for(direct, 3, &mem);
    mem.set_u64(t + mmu.index(direct, 3) * 8, 0x4000_0000 | P | PS);
    // 2 MiB page right after it.
    let v2 = direct + (1 << 30);
    let t = table_for(v2, 2, &mem);
    mem.set_u64(t + mmu.index(v2, 2) * 8, 0x20_0000 | P | PS);
    // Two 4 KiB pages of kernel text.
    let text = 0xffff_ffff_8100_0000u64;
    let t = table_for(text, 1, &mem);
    mem.set_u64(t + mmu.index(text, 1) * 8, 0x100_0000 | P);
    mem.set_u64(t + mmu.index(text + 0x1000, 1) * 8, 0x200_0000 | P);
    let walker = Walker::new(mmu, PhysAddr(root), mem.clone());
    (mem, walker, direct)
}

#[test]
fn four_and_five_level_walks_with_huge_pages() {
    for levels in [4, 5] {
        let (_, w, direct) = build(levels);
        let t = w.translate(direct + 0x1234_5678).unwrap();
        assert_eq!((t.paddr, t.page_size, t.level), (0x4000_0000 + 0x1234_5678, 1 << 30, 3), "{levels}-level 1G");
        let t = w.translate(direct + (1 << 30) + 0x1_2345).unwrap();
        assert_eq!((t.paddr, t.page_size, t.level), (0x20_0000 + 0x1_2345, 2 << 20, 2), "{levels}-level 2M");
        let t = w.translate(0xffff_ffff_8100_1008).unwrap();
        assert_eq!((t.paddr, t.page_size, t.level), (0x200_0008, 4096, 1), "{levels}-level 4K");
        // Again, from the TLB.
        assert_eq!(w.translate(0xffff_ffff_8100_1010).unwrap().paddr, 0x200_0010);
        assert_eq!(w.translate(direct + 0x1234_5000).unwrap().page_size, 1 << 30);
    }
}

#[test]
fn unmapped_and_non_canonical_addresses_are_errors() {
    let (_, w, _) = build(4);
    let err = w.translate(0xffff_ffff_8100_2000).unwrap_err();
    assert!(matches!(err, Error::NotMapped { level: 1, .. }), "{err}");
    let err = w.translate(0xffff_c900_0000_0000).unwrap_err();
    assert!(matches!(err, Error::NotMapped { level: 4, .. }), "{err}");
    let err = w.translate(0xff11_0000_0000_0000).unwrap_err();
    assert!(matches!(err, Error::NonCanonical { va_bits: 48, .. }), "{err}");
    let (_, w5, _) = build(5);
    assert!(w5.translate(0xff11_0000_0000_0000).is_ok());
}

#[test]
fn self_referencing_tables_are_a_loop_error_not_a_hang() {
    let (mem, w, _) = build(4);
    let root = w.root().0;
    // PML4 entry 0 points at the PML4 itself.
    mem.set_u64(root, root | P);
    let err = w.translate(0x0000_0000_0040_0000).unwrap_err();
    assert!(matches!(err, Error::Loop { level: 4, .. }), "{err}");
    assert!(err.to_string().contains("loop"));
    assert_eq!(w.first_mapped(0, 1 << 47).unwrap(), None, "probing a looping tree terminates");
}

/// Every entry of the root's lower half but the last, and every entry below it, points to
/// one table per level, and the last-level table maps nothing: 255 * 512^(levels - 2)
/// paths lead to it (34 billion at 5 levels). The last root entry leads to a page.
#[test]
fn tables_shared_by_every_entry_are_read_once() {
    for levels in [4, 5] {
        let mmu = Mmu::x86_64(levels, 0);
        let mem = Arc::new(TestMem { max_reads: 1000, ..TestMem::default() });
        let root = 0x10_0000u64;
        // shared[k] and chain[k]: the tables at level k + 1.
        let shared: Vec<u64> = (0..levels as u64 - 1).map(|k| 0x20_0000 + k * 0x1000).collect();
        let chain: Vec<u64> = (0..levels as u64 - 1).map(|k| 0x30_0000 + k * 0x1000).collect();
        for i in 0..255 {
            mem.set_u64(root + i * 8, shared[levels - 2] | P);
        }
        mem.set_u64(root + 255 * 8, chain[levels - 2] | P);
        for k in 1..levels - 1 {
            for i in 0..512 {
                mem.set_u64(shared[k] + i * 8, shared[k - 1] | P);
            }
            mem.set_u64(chain[k], chain[k - 1] | P);
        }
        mem.set_u64(shared[0], 0);
        mem.set_u64(chain[0], 0x4000_0000 | P);
        let w = Walker::new(mmu, PhysAddr(root), mem.clone());
        let lower_half = 1u64 << (mmu.va_bits - 1);

        let (v, t) = w.first_mapped(0, lower_half).unwrap().unwrap();
        let expected = 255u64 << mmu.level_shift(levels);
        assert_eq!((v, t.paddr, t.page_size, t.level), (expected, 0x4000_0000, 4096, 1), "{levels}-level");
        // The root, each shared table once, and the chain to the page.
        assert_eq!(mem.reads.swap(0, Ordering::Relaxed), 1 + 2 * (levels - 1), "{levels}-level");

        // With no page at all the answer is None, after the same one read per table.
        mem.set_u64(root + 255 * 8, shared[levels - 2] | P);
        assert_eq!(w.first_mapped(0, lower_half).unwrap(), None, "{levels}-level");
        assert_eq!(mem.reads.swap(0, Ordering::Relaxed), levels, "{levels}-level");
    }
}

#[test]
fn huge_bit_where_no_huge_page_can_be_is_invalid() {
    let (mem, w, _) = build(4);
    mem.set_u64(w.root().0 + 8, 0x4000_0000 | P | PS);
    let err = w.translate(1 << 39).unwrap_err();
    assert!(matches!(err, Error::BadEntry { level: 4, .. }), "{err}");
}

#[test]
fn tables_outside_the_dump_are_unreadable_errors() {
    let (mem, w, _) = build(4);
    mem.set_u64(w.root().0 + 16, 0x7777_0000 | P);
    let err = w.translate(2 << 39).unwrap_err();
    assert!(matches!(err, Error::Unreadable { level: 3, .. }), "{err}");
}

#[test]
fn sme_mask_is_cleared_from_physical_addresses() {
    let mem = Arc::new(TestMem::default());
    let c_bit = 1u64 << 47;
    let mmu = Mmu::x86_64(4, c_bit);
    let (pml4, pdpt) = (0x1000u64, 0x2000u64);
    mem.set_u64(pml4, pdpt | c_bit | P);
    mem.set_u64(pdpt, 0x4000_0000 | c_bit | P | PS);
    let w = Walker::new(mmu, PhysAddr(pml4), mem);
    assert_eq!(w.translate(0x1234).unwrap().paddr, 0x4000_1234);
}

#[test]
fn first_mapped_finds_the_lowest_mapped_address() {
    for levels in [4, 5] {
        let (_, w, direct) = build(levels);
        let top = if levels == 5 { 0xff00_0000_0000_0000u64 } else { 0xffff_8000_0000_0000u64 };
        let (v, t) = w.first_mapped(top, u64::MAX).unwrap().unwrap();
        assert_eq!((v, t.paddr), (direct, 0x4000_0000), "{levels}-level");
        let (v, t) = w.first_mapped(direct + (1 << 30) + 5, u64::MAX).unwrap().unwrap();
        assert_eq!((v, t.paddr), (direct + (1 << 30) + 5, 0x20_0005));
        let (v, _) = w.first_mapped(direct + (2 << 30), u64::MAX).unwrap().unwrap();
        assert_eq!(v, 0xffff_ffff_8100_0000);
        assert_eq!(w.first_mapped(0xffff_ffff_8100_2000, u64::MAX).unwrap(), None);
    }
}

/// arm64 descriptors: a table or page is `addr | 3`, a block `addr | 1`; physical address
/// bits above 48 go where the format keeps them.
fn arm_desc(mmu: &Mmu, paddr: u64, kind: u64) -> u64 {
    use crate::Aarch64Pa;
    let high = match mmu.aarch64_pa {
        Aarch64Pa::Pa48 => 0,
        Aarch64Pa::Lpa => ((paddr >> 48) & 0xf) << 12,
        Aarch64Pa::Lpa2 => ((paddr >> 50) & 0x3) << 8,
    };
    let low_mask = match mmu.aarch64_pa {
        Aarch64Pa::Lpa2 => (1u64 << 50) - 1,
        _ => (1u64 << 48) - 1,
    };
    (paddr & low_mask & !((1u64 << mmu.page_shift) - 1)) | high | kind
}

/// Maps `vaddr` to `paddr` with a leaf at `leaf_level`, creating tables as needed.
fn arm_map(mem: &TestMem, mmu: &Mmu, root: u64, next: &mut u64, vaddr: u64, paddr: u64, leaf_level: usize) {
    let page = mmu.page_size();
    let mut table = root;
    for level in (leaf_level + 1..=mmu.levels).rev() {
        let slot = table + mmu.index(vaddr, level) * 8;
        let existing = {
            let pages = mem.pages.lock().unwrap();
            pages.get(&(slot >> 12)).map(|p| u64::from_le_bytes(p[(slot & 4095) as usize..][..8].try_into().unwrap()))
        };
        table = match existing.filter(|e| e & 3 == 3) {
            Some(e) => e & mmu.addr_mask,
            None => {
                *next += page;
                mem.set_u64(slot, arm_desc(mmu, *next, 3));
                *next
            }
        };
    }
    let kind = if leaf_level == 1 { 3 } else { 1 };
    mem.set_u64(table + mmu.index(vaddr, leaf_level) * 8, arm_desc(mmu, paddr, kind));
}

#[test]
fn arm64_every_granule_and_va_size() {
    // (page shift, VA bits, 52-bit PA, expected levels)
    let cases = [
        (12, 39, false, 3),
        (12, 48, false, 4),
        (12, 52, true, 5),
        (14, 36, false, 2),
        (14, 47, false, 3),
        (14, 48, false, 4),
        (14, 52, true, 4),
        (16, 42, false, 2),
        (16, 48, false, 3),
        (16, 52, true, 3),
    ];
    for (shift, va, pa52, levels) in cases {
        let mmu = Mmu::aarch64(shift, va, pa52).unwrap();
        assert_eq!(mmu.levels, levels, "{shift}/{va}");
        let mem = Arc::new(TestMem::default());
        let page = 1u64 << shift;
        let root = 0x10_0000u64;
        let mut next = root;
        let kernel = 0u64.wrapping_sub(1 << va) + (7 << shift) * 3;
        // A physical address above 48 bits where the format allows it.
        let high_pa = if pa52 { 0x000a_0000_0000_0000 } else { 0x0000_8000_0000_0000 };
        arm_map(&mem, &mmu, root, &mut next, kernel, high_pa + 5 * page, 1);
        let w = Walker::new(mmu, PhysAddr(root), mem.clone());
        let t = w.translate(kernel + 0x18).unwrap();
        assert_eq!((t.paddr, t.page_size, t.level), (high_pa + 5 * page + 0x18, page, 1), "{shift}/{va}");
        // A block at level 2.
        let block_va = 0u64.wrapping_sub(1 << (va - 1));
        let block = 1u64 << mmu.level_shift(2);
        arm_map(&mem, &mmu, root, &mut next, block_va, 0x4000_0000 & !(block - 1), 2);
        let t = w.translate(block_va + 0x1234).unwrap();
        assert_eq!((t.paddr, t.page_size), ((0x4000_0000 & !(block - 1)) + 0x1234, block), "{shift}/{va} block");
        // Lowest mapped from the bottom of the kernel range finds the page.
        let (v, t) = w.first_mapped(0u64.wrapping_sub(1 << va), u64::MAX).unwrap().unwrap();
        assert_eq!((v, t.paddr), (kernel, high_pa + 5 * page), "{shift}/{va} probe");
        // Addresses outside TTBR1's range, and unmapped ones.
        assert!(matches!(w.translate(0x1000), Err(Error::NonCanonical { .. })));
        assert!(matches!(w.translate(kernel + page), Err(Error::NotMapped { level: 1, .. })));
    }
}

#[test]
fn arm64_bad_tables_are_errors() {
    let mmu = Mmu::aarch64(12, 48, false).unwrap();
    let mem = Arc::new(TestMem::default());
    let root = 0x10_0000u64;
    let va = 0xffff_0000_0000_0000u64;
    // Top-level entry pointing back at the root: a loop.
    mem.set_u64(root + mmu.index(va, 4) * 8, root | 3);
    let w = Walker::new(mmu, PhysAddr(root), mem.clone());
    assert!(matches!(w.translate(va), Err(Error::Loop { .. })), "{:?}", w.translate(va));
    // A block descriptor at the top level (no 512 GiB blocks with 4K pages).
    mem.set_u64(root + mmu.index(va, 4) * 8, 0x4000_0000 | 1);
    let w = Walker::new(mmu, PhysAddr(root), mem.clone());
    assert!(matches!(w.translate(va), Err(Error::BadEntry { level: 4, .. })));
    // A block descriptor where only pages can be.
    let mut next = 0x20_0000;
    arm_map(&mem, &mmu, root, &mut next, 0xffff_8000_0000_0000, 0x5000, 1);
    let last = {
        let w = Walker::new(mmu, PhysAddr(root), mem.clone());
        w.translate(0xffff_8000_0000_0000).unwrap().paddr
    };
    assert_eq!(last, 0x5000);
    assert!(Mmu::aarch64(12, 60, false).is_none() && Mmu::aarch64(13, 48, false).is_none());
}
