//! arm64: VA_BITS, PAGE_OFFSET, kimage_voffset, PHYS_OFFSET and the kernel's tables, each
//! with the methods that found it.

use std::sync::Arc;

use vmcore_formats::elf::ElfCore;
use vmcore_physmem::Container;
use vmcore_translate::{Mmu, Walker};
use vmcore_types::PhysAddr;

use super::{Derived, Method, SymbolLookup};
use crate::dump::Dump;
use crate::vmcoreinfo::VmcoreInfo;
use crate::vmem::{KernelMem, LinearMap};

/// The arm64 layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aarch64Layout {
    /// Configured virtual address bits (`CONFIG_ARM64_VA_BITS`).
    pub va_bits: Derived,
    /// Virtual address bits in use (`64 - TCR_EL1.T1SZ`; smaller than `va_bits` when a
    /// 52-bit kernel runs on a CPU without 52-bit support).
    pub va_bits_actual: Derived,
    /// Page size.
    pub page_size: Derived,
    /// Start of the linear map of RAM.
    pub page_offset: Derived,
    /// Kernel image virtual minus physical address.
    pub kimage_voffset: Derived,
    /// Physical address the linear map starts at (memstart_addr).
    pub phys_offset: Derived,
    /// KASLR offset of the kernel image.
    pub kaslr_offset: Derived,
    /// Physical address of swapper_pg_dir.
    pub pgd: Derived,
    /// The virtual regions VMCOREINFO bounds (modules, vmalloc, vmemmap; 6.0+): name,
    /// start, end (exclusive). `vtop` names the region of an address with them.
    pub regions: Vec<(&'static str, u64, u64)>,
}

impl Aarch64Layout {
    /// Every value with its report name.
    pub fn values(&self) -> [(&'static str, &Derived); 8] {
        [
            ("va_bits", &self.va_bits),
            ("va_bits_actual", &self.va_bits_actual),
            ("page_size", &self.page_size),
            ("page_offset", &self.page_offset),
            ("kimage_voffset", &self.kimage_voffset),
            ("phys_offset", &self.phys_offset),
            ("kaslr_offset", &self.kaslr_offset),
            ("pgd", &self.pgd),
        ]
    }
}

/// The regions whose bounds VMCOREINFO holds, those with a sane pair.
fn exported_regions(vi: &VmcoreInfo) -> Vec<(&'static str, u64, u64)> {
    [
        ("modules", "MODULES_VADDR", "MODULES_END"),
        ("vmalloc", "VMALLOC_START", "VMALLOC_END"),
        ("vmemmap", "VMEMMAP_START", "VMEMMAP_END"),
    ]
    .into_iter()
    .filter_map(|(name, start, end)| {
        let (start, end) = (vi.number_u64(start)?, vi.number_u64(end)?);
        (start < end).then_some((name, start, end))
    })
    .collect()
}

/// PAGE_OFFSET for `va_bits_actual`: the "flipped" layout of 5.4+ (linear map in the lower
/// half of the kernel range) when `_stext` is in the upper half, else the older one.
pub fn page_offset(va_bits: u32, va_bits_actual: u32, stext: u64) -> u64 {
    let page_end = 0u64.wrapping_sub(1u64 << (va_bits.min(48) - 1));
    if stext > page_end {
        0u64.wrapping_sub(1 << va_bits_actual)
    } else {
        0u64.wrapping_sub(1 << (va_bits_actual - 1))
    }
}

/// VMCOREINFO's PHYS_OFFSET (memstart_addr) in the linear map the kernel runs with. A
/// kernel built for more VA bits than the CPU has (VA_BITS 52 running with 48) keeps
/// PAGE_OFFSET at -(1 << VA_BITS) and lowers memstart_addr by the distance between the
/// two linear-map bases instead (arm64_memblock_init); with the base actually in use,
/// -(1 << va_bits_actual), PHYS_OFFSET is that much higher: the first RAM address again.
fn phys_offset_in_use(vi: &VmcoreInfo, va_bits: Option<u32>, actual: Option<u32>) -> Option<u64> {
    let stated = vi.number_u64("PHYS_OFFSET")?;
    Some(match (va_bits, actual) {
        (Some(v), Some(a)) if v > a && v < 64 => stated.wrapping_add((1u64 << v).wrapping_sub(1u64 << a)),
        _ => stated,
    })
}

/// Linear-map PT_LOADs are those below the kernel image half of the address space.
fn linear_loads(core: &ElfCore, va_bits_actual: u32) -> impl Iterator<Item = &vmcore_formats::elf::LoadSegment> {
    let half = 0u64.wrapping_sub(1u64 << (va_bits_actual - 1));
    core.loads
        .iter()
        .filter(move |s| s.paddr != u64::MAX && s.memsz > 0 && s.vaddr < half && s.vaddr >= 0x8000_0000_0000_0000)
}

fn image_load(core: &ElfCore, va_bits_actual: u32) -> Option<&vmcore_formats::elf::LoadSegment> {
    let half = 0u64.wrapping_sub(1u64 << (va_bits_actual - 1));
    core.loads.iter().filter(|s| s.paddr != u64::MAX && s.vaddr >= half).max_by_key(|s| s.memsz)
}

/// The arm64 kernel image map, `vaddr - kimage_voffset`, from the image's start.
pub fn image_map(vi: &VmcoreInfo, symbols: SymbolLookup<'_>, kimage_voffset: u64) -> Option<LinearMap> {
    let start = symbols("_text").or_else(|| vi.symbol("_stext").map(|s| s & !0x1f_ffff))?;
    let end = symbols("_end").unwrap_or(start + (256 << 20));
    Some(LinearMap {
        vstart: start,
        size: end.saturating_sub(start).max(1 << 21),
        pstart: start.wrapping_sub(kimage_voffset),
    })
}

/// The result of discovery.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The values.
    pub layout: Aarch64Layout,
    /// Kernel virtual memory.
    pub kmem: KernelMem,
}

/// Finds the arm64 layout of `dump`.
pub fn discover(dump: &Dump, vi: &VmcoreInfo, symbols: SymbolLookup<'_>) -> Discovered {
    let elf = match &dump.container {
        Container::Elf { core, .. } => Some(core),
        Container::Kdump { .. } => None,
    };
    let va_bits = vi.number("VA_BITS").and_then(|v| u32::try_from(v).ok()).filter(|v| (36..=52).contains(v));
    let t1sz = vi.number_u64("TCR_EL1_T1SZ").filter(|t| (12..=28).contains(t)).map(|t| 64 - t as u32);
    let mut l = Aarch64Layout {
        va_bits: Derived::new(vec![(Method::Vmcoreinfo, va_bits.map(u64::from))]),
        // VA_BITS is what the kernel was built for, an upper bound: a 52-bit build runs
        // with 48 bits on a CPU without LVA/LPA2, which is no disagreement. It stands in
        // only when TCR_EL1.T1SZ is not exported (before 5.12).
        va_bits_actual: Derived::new(vec![
            (Method::TcrT1sz, t1sz.map(u64::from)),
            (Method::Vmcoreinfo, va_bits.filter(|_| t1sz.is_none()).map(u64::from)),
        ]),
        kaslr_offset: Derived::new(vec![(Method::Vmcoreinfo, vi.kernel_offset())]),
        regions: exported_regions(vi),
        ..Aarch64Layout::default()
    };
    // The pages the file's blocks are served as: its block_size, but where QEMU's 64 KiB
    // blocks hold several pages of VMCOREINFO's size (`SplitMem::split_blocks`).
    let kdump_block = match &dump.container {
        Container::Kdump { .. } => Some(dump.mem.page_size()),
        Container::Elf { .. } => None,
    };
    l.page_size = Derived::new(vec![(Method::Vmcoreinfo, vi.page_size()), (Method::KdumpHeader, kdump_block)]);
    let actual = l.va_bits_actual.value.and_then(|v| u32::try_from(v).ok());

    let image_pt = elf.zip(actual).and_then(|(c, a)| image_load(c, a)).map(|s| s.vaddr.wrapping_sub(s.paddr));
    // The check of a kimage_voffset: walked from swapper_pg_dir at `swapper - voffset`,
    // `_stext` lands at `_stext - voffset`.
    let page_shift = l.page_size.value.map(|p| p.trailing_zeros());
    // 64K pages with 52-bit physical addresses keep PA[51:48] in descriptor bits 15:12
    // (LPA) whatever the CPU. With 4K/16K pages, bits 9:8 hold PA[51:50] only under LPA2,
    // which the kernel turns on together with 52-bit virtual addresses: a 52-bit build on
    // a CPU without LPA2 runs with 48-bit ones, and bits 9:8 are then the shareability
    // field (0b11 in every kernel mapping).
    let pa52 = actual == Some(52) || (page_shift == Some(16) && vi.number("MAX_PHYSMEM_BITS") == Some(52));
    // A 64K-page kernel built for 52-bit VAs sizes swapper_pg_dir for them; on a CPU without
    // LVA it runs with 48, and TTBR1 points TTBR1_BADDR_4852_OFFSET bytes into the table,
    // where the 48-bit range's entries are. Walked from its start, the table is indexed
    // with the 52 bits it was built for (kernel addresses extend their sign to bit 63, so
    // they land on the same entries). 4K and 16K builds (LPA2) fold a level instead.
    // 4.20-5.3 built the same table for 52-bit user addresses alone (MAX_USER_VA_BITS).
    let built_for_52 = va_bits == Some(52) || vi.number("MAX_USER_VA_BITS") == Some(52);
    let walk_bits = match (page_shift, actual) {
        (Some(16), Some(a)) if a < 52 && built_for_52 => Some(52),
        _ => actual,
    };
    let mmu = page_shift.zip(walk_bits).and_then(|(s, a)| Mmu::aarch64(s, a, pa52));
    let (swapper, stext) = (vi.symbol("swapper_pg_dir").or_else(|| symbols("swapper_pg_dir")), vi.symbol("_stext"));
    let walks_text = |voffset: u64| {
        let (Some(mmu), Some(swapper), Some(stext)) = (mmu, swapper, stext) else { return false };
        let w = Walker::new(mmu, PhysAddr(swapper.wrapping_sub(voffset)), dump.mem.clone());
        w.translate(stext).is_ok_and(|t| t.paddr == stext.wrapping_sub(voffset))
    };
    l.kimage_voffset =
        Derived::new(vec![(Method::Vmcoreinfo, vi.number_u64("kimage_voffset")), (Method::PtLoad, image_pt)])
            .checked("a page-table walk of _stext lands at _stext - kimage_voffset", walks_text);
    let po_vi = match (va_bits, actual, vi.symbol("_stext")) {
        (Some(v), Some(a), Some(s)) => Some(page_offset(v, a, s)),
        _ => None,
    };
    // A linear-map PT_LOAD maps `paddr` at `PAGE_OFFSET + paddr - PHYS_OFFSET`. Its lowest
    // RAM is PHYS_OFFSET only where KASLR left the linear map alone: it also moves RAM up
    // the linear map by lowering memstart_addr (5.10, and later kernels on CPUs without
    // LVA: tens of TiB on real machines).
    let linear_pt = elf
        .zip(actual)
        .zip(po_vi)
        .and_then(|((c, a), po)| linear_loads(c, a).next().map(|s| s.paddr.wrapping_sub(s.vaddr.wrapping_sub(po))));
    l.phys_offset =
        Derived::new(vec![(Method::Vmcoreinfo, phys_offset_in_use(vi, va_bits, actual)), (Method::PtLoad, linear_pt)]);
    let po_pt = match (elf, actual, l.phys_offset.value) {
        (Some(c), Some(a), Some(po)) => {
            linear_loads(c, a).next().map(|s| s.vaddr.wrapping_sub(s.paddr).wrapping_add(po))
        }
        _ => None,
    };

    let voffset = l.kimage_voffset.value;
    let pgd_of = |addr: Option<u64>| addr.zip(voffset).map(|(a, v)| a.wrapping_sub(v));
    l.pgd = Derived::new(vec![
        (Method::Vmcoreinfo, pgd_of(vi.symbol("swapper_pg_dir"))),
        (Method::Symbol, pgd_of(symbols("swapper_pg_dir"))),
    ]);

    let walker = match (mmu, l.pgd.value) {
        (Some(mmu), Some(root)) => Some(Arc::new(Walker::new(mmu, PhysAddr(root), dump.mem.clone()))),
        _ => None,
    };
    // The linear map spans the lower half of the kernel's addresses, and randomized, RAM
    // may start anywhere in it (45.7 TiB up in a real 5.10 dump).
    let linear_span = actual.map(|a| 1u64 << (a - 1));
    let po_probe = walker.as_ref().zip(po_vi.or(po_pt)).zip(l.phys_offset.value).and_then(|((w, start), phys)| {
        let (v, t) = w.first_mapped(start, start.wrapping_add(linear_span?)).ok()??;
        Some(v.wrapping_sub(t.paddr).wrapping_add(phys))
    });
    l.page_offset =
        Derived::new(vec![(Method::Vmcoreinfo, po_vi), (Method::PtLoad, po_pt), (Method::PageTables, po_probe)]);

    let image = voffset.and_then(|v| image_map(vi, symbols, v));
    let mut kmem = KernelMem::new(dump.mem.clone(), image);
    if let Some(w) = walker {
        kmem = kmem.with_walker(w);
    }
    if let (Some(start), Some(end)) = (symbols("_text"), symbols("_end")) {
        kmem = kmem.with_image_extent(start, end);
    }
    if let (Some(po), Some(phys)) = (l.page_offset.value, l.phys_offset.value) {
        let end = dump.mem.max_pfn().saturating_mul(dump.mem.page_size());
        kmem = kmem.with_direct_map(LinearMap { vstart: po, size: end.saturating_sub(phys), pstart: phys });
    }
    Discovered { layout: l, kmem }
}
