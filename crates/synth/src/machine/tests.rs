//! The plan agrees with the bytes: every page's analytic zero-ness with its generated
//! bytes, page tables with the plan, mem_section and struct pages with the page facts,
//! and the truth's histogram with a page-by-page count.

use super::phys::{Category, Content, Desc, BLOCK_PAGES, PAGE, SECTION_PAGES};
use super::*;

fn machine(name: &str, size: u64, seed: u64) -> Machine {
    Machine::new(&MachineSpec::new(Layout::parse(name).unwrap(), size, seed)).unwrap()
}

fn read_phys(m: &Machine, pa: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut page = vec![0u8; PAGE as usize];
    let mut at = pa;
    while out.len() < len {
        m.fill_page(at / PAGE, &mut page);
        let off = (at % PAGE) as usize;
        let n = (PAGE as usize - off).min(len - out.len());
        out.extend_from_slice(&page[off..off + n]);
        at += n as u64;
    }
    out
}

fn u64_at(m: &Machine, pa: u64) -> u64 {
    u64::from_le_bytes(read_phys(m, pa, 8).try_into().unwrap())
}

fn hexv(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// Walks the machine's own page tables.
fn translate(m: &Machine, va: u64) -> Option<u64> {
    let t = m.layout_truth();
    let shifts: &[u32] = if t.paging_levels == "0x5" { &[48, 39, 30, 21, 12] } else { &[39, 30, 21, 12] };
    let mut table = hexv(&t.pgd);
    for &s in shifts {
        let e = u64_at(m, table + ((va >> s) & 511) * 8);
        if e & 1 == 0 {
            return None;
        }
        let addr = e & 0x000f_ffff_ffff_f000;
        if s == 12 || e & 0x80 != 0 {
            let mask = (1u64 << s) - 1;
            return Some((addr & !mask) + (va & mask));
        }
        table = addr;
    }
    None
}

#[test]
fn zero_pages_are_known_without_generating_them() {
    for (name, seed) in [("x86_64-6.1-l4", 1), ("x86_64-6.12-l5", 2), ("x86_64-2.6.32-l4", 3), ("x86_64-5.4-l4", 4)] {
        let m = machine(name, 128 << 20, seed);
        let mut page = vec![0u8; PAGE as usize];
        let mut kinds = std::collections::HashMap::new();
        for pfn in 0..m.max_pfn() {
            m.fill_page(pfn, &mut page);
            let zero = page.iter().all(|&b| b == 0);
            assert_eq!(zero, m.model().page_is_zero(pfn), "{name} pfn {pfn:#x} {:?}", m.model().info(pfn));
            *kinds.entry(m.model().info(pfn).1).or_insert(0) += 1;
        }
        assert!(kinds.len() >= 5, "{name}: {kinds:?}");
    }
}

#[test]
fn struct_pages_encode_the_page_facts() {
    for (name, seed) in [("x86_64-6.1-l5", 5), ("x86_64-6.12-l4", 6), ("x86_64-2.6.32-l4", 7)] {
        let m = machine(name, 128 << 20, seed);
        let g = m.spec().layout.generation;
        let ps = g.page_struct();
        let vmemmap = hexv(&m.layout_truth().vmemmap_base);
        let vi = m.vmcoreinfo();
        let sym = |k: &str| {
            let line = vi.lines().find(|l| l.starts_with(&format!("SYMBOL({k})="))).unwrap();
            u64::from_str_radix(line.split('=').nth(1).unwrap(), 16).unwrap()
        };
        // mem_section: root array -> section -> encoded mem_map, as makedumpfile decodes it.
        let root_va = sym("mem_section");
        let per_root = PAGE / g.mem_section_size();
        let mut seen = std::collections::BTreeMap::new();
        for pfn in (0..m.max_pfn()).step_by(97) {
            let sec = pfn / SECTION_PAGES;
            let root = u64_at(&m, translate(&m, root_va + (sec / per_root) * 8).unwrap());
            let coded = u64_at(&m, translate(&m, root + (sec % per_root) * g.mem_section_size()).unwrap());
            assert_eq!(coded & 1, 1, "present");
            let mem_map = (coded & !0x1f) + sec * SECTION_PAGES * ps.size as u64;
            let sp_va = mem_map + (pfn - sec * SECTION_PAGES) * ps.size as u64;
            assert_eq!(sp_va, vmemmap + pfn * ps.size as u64);
            let sp = {
                let pa = translate(&m, sp_va).unwrap();
                read_phys(&m, pa, ps.size)
            };
            let word = |at: usize| u64::from_le_bytes(sp[at..at + 8].try_into().unwrap());
            let word32 = |at: usize| u32::from_le_bytes(sp[at..at + 4].try_into().unwrap());
            let f = m.page(pfn);
            *seen.entry(format!("{:?}", f.category)).or_insert(0) += 1;
            let flags = word(0);
            match f.desc {
                Desc::FreeHead(order) => {
                    assert_eq!(word(ps.private), u64::from(order));
                    match ps.buddy_type() {
                        Some(t) => assert_eq!(word32(ps.mapcount), t),
                        None => assert_ne!(flags & (1 << ps.pg.buddy.unwrap()), 0),
                    }
                }
                Desc::FreeTail => assert!(sp.iter().all(|&b| b == 0)),
                Desc::Cache => assert_ne!(flags & (1 << ps.pg.lru), 0),
                Desc::PrivCache => assert_ne!(flags & (1 << ps.pg.private), 0),
                Desc::Anon => assert_eq!(word(ps.mapping) & 1, 1),
                Desc::HwPoison => assert_ne!(flags & (1 << ps.pg.hwpoison.unwrap()), 0),
                Desc::Offline => assert_eq!(Some(word32(ps.mapcount)), ps.offline_type()),
                Desc::Tail(_, _, head) => assert_eq!(word(ps.lru), (vmemmap + head * ps.size as u64) | 1),
                Desc::Head(_, _) => assert_ne!(flags & (1 << ps.pg.head), 0),
                Desc::Reserved => assert_ne!(flags & (1 << ps.pg.reserved), 0),
                Desc::Kernel | Desc::Slab | Desc::SwapCache => assert!(sp.iter().any(|&b| b != 0)),
            }
        }
        assert!(seen.len() >= 5, "{name}: {seen:?}");
    }
}

#[test]
fn page_tables_map_image_direct_map_and_vmemmap() {
    for name in ["x86_64-6.1-l4", "x86_64-6.1-l5", "x86_64-6.12-l5-nokaslr", "x86_64-2.6.32-l4"] {
        let m = machine(name, 3 * GIB + 256 * 1024 * 1024, 11);
        let t = m.layout_truth();
        let pob = hexv(&t.page_offset_base);
        for &(s, e) in m.ram() {
            for pa in [s, s + 0x1000, ((s + e) / 2) & !0xfff, e - 1] {
                assert_eq!(translate(&m, pob + pa), Some(pa), "{name} {pa:#x}");
            }
        }
        assert_eq!(translate(&m, pob + 3 * GIB + 0x1000), None, "the PCI hole is not mapped");
        assert_eq!(translate(&m, pob), None, "pfn 0 is not RAM");
        let text = m.symbols()["_text"];
        let phys_base = hexv(&t.phys_base);
        for off in [0u64, 0x12345, IMAGE_SIZE - 8] {
            assert_eq!(translate(&m, text + off), Some((text + off - START_KERNEL_MAP).wrapping_add(phys_base)));
        }
        // Variables hold the layout.
        let var = |n: &str| u64_at(&m, translate(&m, m.symbols()[n]).unwrap());
        if m.spec().layout.generation != Generation::V2_6_32 {
            assert_eq!(var("page_offset_base"), pob);
            assert_eq!(format!("{:#x}", var("vmalloc_base")), t.vmalloc_base);
            assert_eq!(format!("{:#x}", var("vmemmap_base")), t.vmemmap_base);
        }
        assert_eq!(format!("{:#x}", var("phys_base")), t.phys_base);
        let banner = read_phys(&m, translate(&m, m.symbols()["linux_banner"]).unwrap(), 64);
        assert!(banner.starts_with(format!("Linux version {}", m.spec().layout.generation.release()).as_bytes()));
    }
}

#[test]
fn truth_histogram_matches_a_page_by_page_count() {
    for (name, seed) in [("x86_64-6.1-l4", 21), ("x86_64-6.12-l4", 22), ("x86_64-2.6.32-l4", 23)] {
        let m = machine(name, 192 << 20, seed);
        let truth = m.truth(&[]);
        assert_eq!(truth.levels.len(), 32);
        let mut by = std::collections::BTreeMap::new();
        for &(s, e) in m.dumped_ram() {
            for pfn in s / PAGE..e.div_ceil(PAGE) {
                let f = m.page(pfn);
                assert!(f.dumped);
                *by.entry((f.category, f.zero)).or_insert(0u64) += 1;
            }
        }
        for level in 0..32u32 {
            let mut c = LevelCounts::default();
            for (&(cat, zero), &n) in &by {
                match cat {
                    Category::Cache if level & 6 != 0 => c.non_pri_cache += n,
                    Category::PrivCache if level & 4 != 0 => c.pri_cache += n,
                    Category::User if level & 8 != 0 => c.user += n,
                    Category::Free if level & 16 != 0 => c.free += n,
                    Category::HwPoison => c.hwpoison += n,
                    Category::Offline => c.offline += n,
                    _ if zero && level & 1 != 0 => c.zero += n,
                    _ => {}
                }
            }
            let t = truth.levels[&(level as u8)];
            assert_eq!(
                (c.zero, c.non_pri_cache, c.pri_cache, c.user, c.free, c.hwpoison, c.offline),
                (t.zero, t.non_pri_cache, t.pri_cache, t.user, t.free, t.hwpoison, t.offline),
                "{name} level {level}"
            );
            assert_eq!(t.original_pages.wrapping_sub(t.excluded_pages), t.remaining_pages);
            assert_eq!(t.total_pages.wrapping_sub(t.original_pages), t.memory_hole);
        }
        // Every class is there.
        let t31 = truth.levels[&31];
        assert!(t31.zero > 0 && t31.non_pri_cache > 0 && t31.pri_cache > 0 && t31.user > 0 && t31.free > 0, "{t31:?}");
        if m.spec().layout.generation != Generation::V2_6_32 {
            assert!(t31.hwpoison > 0 && t31.offline > 0, "{t31:?}");
        }
    }
}

#[test]
fn same_seed_same_machine_other_seed_other_machine() {
    let a = machine("x86_64-6.1-l4", 96 << 20, 3);
    let b = machine("x86_64-6.1-l4", 96 << 20, 3);
    let c = machine("x86_64-6.1-l4", 96 << 20, 4);
    assert_eq!(a.vmcoreinfo(), b.vmcoreinfo());
    assert_eq!(a.truth(&[31]), b.truth(&[31]));
    assert_ne!(a.layout_truth(), c.layout_truth());
    let (mut p, mut q) = (vec![0u8; 4096], vec![0u8; 4096]);
    let differs = (0..a.max_pfn()).any(|pfn| {
        a.fill_page(pfn, &mut p);
        c.fill_page(pfn, &mut q);
        p != q
    });
    assert!(differs);
}

#[test]
fn bad_specs_are_errors() {
    assert!(Machine::new(&MachineSpec::new(Layout::DEFAULT, 32 << 20, 0)).is_err());
    assert!(Machine::new(&MachineSpec::new(Layout::DEFAULT, 1 << 46, 0)).is_err());
    // The l5 address width takes what l4 cannot.
    let l5 = Layout::parse("x86_64-6.1-l5").unwrap();
    let spec = MachineSpec { used: Some(64 << 20), ..MachineSpec::new(l5, 1 << 46, 0) };
    assert!(Machine::new(&spec).is_ok());
}

#[test]
fn a_huge_machine_is_mostly_free_and_cheap_to_plan() {
    let start = std::time::Instant::now();
    let spec = MachineSpec { used: Some(1 << 30), ..MachineSpec::new(Layout::DEFAULT, 1 << 40, 9) };
    let m = Machine::new(&spec).unwrap();
    let t = m.truth(&[0, 31]);
    let d31 = t.levels[&31];
    assert!(d31.free > d31.original_pages / 10 * 9, "{d31:?}");
    assert_eq!(t.max_pfn, ((1u64 << 40) + GIB) / PAGE);
    assert!(start.elapsed().as_secs() < 30, "{:?}", start.elapsed());
    let _ = (Content::Zero, BLOCK_PAGES);
}
