//! Synthetic page tables: every case real dumps rarely show.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use vmcore_physmem::{PageState, PhysMem, PhysRange};
use vmcore_types::{Pfn, PhysAddr};

use crate::{Error, Mmu, Walker};

#[derive(Debug, Default)]
struct TestMem {
    pages: Mutex<HashMap<u64, Vec<u8>>>,
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
        Ok(if self.pages.lock().unwrap().contains_key(&pfn.0) { PageState::Dumped } else { PageState::Hole })
    }
    fn read_page(&self, pfn: Pfn, buf: &mut [u8]) -> vmcore_physmem::Result<PageState> {
        match self.pages.lock().unwrap().get(&pfn.0) {
            Some(p) => {
                buf.copy_from_slice(p);
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
