//! Where the kernel put things: every layout value with each method that found it.
//!
//! Tools disagree about the kernel's memory layout because each finds it its own way
//! (makedumpfile from the last kcore PT_LOAD, crash from a variable through vmlinux,
//! libkdumpfile by probing page tables, drgn through `saved_command_line`). vmcore tries
//! every method, takes VMCOREINFO first, shows all answers, and reports disagreement.

pub mod aarch64;

use std::collections::BTreeMap;
use std::sync::Arc;

use vmcore_formats::elf::{ElfCore, ElfKind};
use vmcore_physmem::Container;
use vmcore_translate::{Mmu, Walker};
use vmcore_types::PhysAddr;

use crate::dump::Dump;
use crate::vmcoreinfo::{Utsname, VmcoreInfo};
use crate::vmem::{KernelMem, LinearMap};

/// x86_64 `__START_KERNEL_map`: the kernel image's virtual base before KASLR.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// Default kernel image mapping size (1 GiB with KASLR).
const DEFAULT_KERNEL_IMAGE_SIZE: u64 = 1 << 30;
/// First address of the randomized region that holds the direct map (4-level, 4.20 and
/// later, which moved it up 8 TiB to make room for the LDT remap).
const DIRECT_MAP_BASE_L4: u64 = 0xffff_8880_0000_0000;
/// The 4-level direct map of 2.6.27 to 4.19.
const DIRECT_MAP_BASE_L4_OLD: u64 = 0xffff_8800_0000_0000;
/// x86_64 KASLR came with 3.14: older kernels run where they were linked.
const FIRST_KASLR_RELEASE: (u32, u32, u32) = (3, 14, 0);
/// Randomized direct map, vmalloc and vmemmap bases came with 4.8: before, constants
/// (4-level; 2.6.31 and later).
const FIRST_RANDOMIZED_MEMORY_RELEASE: (u32, u32, u32) = (4, 8, 0);
const FIXED_VMALLOC_BASE: u64 = 0xffff_c900_0000_0000;
const FIXED_VMEMMAP_BASE: u64 = 0xffff_ea00_0000_0000;
/// Same for 5-level paging.
const DIRECT_MAP_BASE_L5: u64 = 0xff11_0000_0000_0000;
/// End of the randomized regions (the CPU entry area starts here).
const RANDOMIZED_REGION_END: u64 = 0xffff_fe00_0000_0000;
/// Size of the vmalloc area (`VMALLOC_SIZE_TB`), 4- and 5-level.
const VMALLOC_SIZE_L4: u64 = 32 << 40;
const VMALLOC_SIZE_L5: u64 = 12800 << 40;
/// The alignment of every randomized region.
const PUD_SIZE: u64 = 1 << 30;

/// One way of finding a layout value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A VMCOREINFO key.
    Vmcoreinfo,
    /// The kdump-compressed sub header.
    KdumpHeader,
    /// An ELF PT_LOAD of the vmcore or /proc/kcore.
    PtLoad,
    /// A kernel variable (or symbol address) found by name: VMCOREINFO SYMBOL() or kallsyms.
    Symbol,
    /// Probing the page tables.
    PageTables,
    /// The mem_section array of SPARSEMEM.
    MemSection,
    /// arm64 `NUMBER(TCR_EL1_T1SZ)`: the virtual address size the CPU was set up with.
    TcrT1sz,
    /// What every kernel of this release does (`OSRELEASE`).
    Release,
    /// A System.map given for the kernel: link addresses against VMCOREINFO's.
    SystemMap,
    /// A search of the dump's memory.
    MemoryScan,
}

impl Method {
    /// The key reports use.
    pub fn key(self) -> &'static str {
        match self {
            Method::Vmcoreinfo => "vmcoreinfo",
            Method::KdumpHeader => "kdump_header",
            Method::PtLoad => "pt_load",
            Method::Symbol => "symbol",
            Method::PageTables => "page_tables",
            Method::MemSection => "mem_section",
            Method::TcrT1sz => "tcr_el1_t1sz",
            Method::Release => "release",
            Method::SystemMap => "system_map",
            Method::MemoryScan => "memory_scan",
        }
    }
}

/// A layout value: what each method found (in the order they are preferred) and the one
/// taken: the first that answered, unless a check against the dump rules it out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Derived {
    /// The value taken.
    pub value: Option<u64>,
    /// Its method.
    pub source: Option<Method>,
    /// Every method tried, in preference order, with its answer.
    pub sources: Vec<(Method, Option<u64>)>,
    /// The check that made a later answer win over the first (which failed it).
    pub checked_by: Option<&'static str>,
}

impl Derived {
    /// Takes the first answer of `sources` (already in preference order).
    pub fn new(sources: Vec<(Method, Option<u64>)>) -> Derived {
        let first = sources.iter().find_map(|&(m, v)| v.map(|v| (m, v)));
        Derived { value: first.map(|(_, v)| v), source: first.map(|(m, _)| m), sources, checked_by: None }
    }

    /// When the methods disagree, takes the first answer that passes `check` (named by
    /// `what` in reports): a wrong VMCOREINFO value then loses to the methods whose answer
    /// the dump confirms. When none or every answer passes, the first answer stays.
    pub fn checked(mut self, what: &'static str, check: impl Fn(u64) -> bool) -> Derived {
        if self.disagreement().is_none() || self.value.is_some_and(&check) {
            return self;
        }
        if let Some((m, v)) = self.sources.iter().find_map(|&(m, v)| v.filter(|&v| check(v)).map(|v| (m, v))) {
            self.value = Some(v);
            self.source = Some(m);
            self.checked_by = Some(what);
        }
        self
    }

    /// A description of the disagreement, when two methods answered differently.
    pub fn disagreement(&self) -> Option<String> {
        let answers: Vec<(Method, u64)> = self.sources.iter().filter_map(|&(m, v)| v.map(|v| (m, v))).collect();
        let (_, first) = *answers.first()?;
        answers
            .iter()
            .any(|&(_, v)| v != first)
            .then(|| answers.iter().map(|(m, v)| format!("{}={v:#x}", m.key())).collect::<Vec<_>>().join(", "))
    }
}

/// The x86_64 layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct X86Layout {
    /// KASLR offset of the kernel image.
    pub kaslr_offset: Derived,
    /// Physical address the kernel image was loaded at, minus its link address
    /// (`phys_base`; 64-bit two's complement when negative).
    pub phys_base: Derived,
    /// 4 or 5.
    pub paging_levels: Derived,
    /// Physical address of the kernel's top-level page table.
    pub pgd: Derived,
    /// Start of the direct map of all physical memory.
    pub page_offset_base: Derived,
    /// Start of the vmalloc area.
    pub vmalloc_base: Derived,
    /// Start of the `struct page` array.
    pub vmemmap_base: Derived,
}

impl X86Layout {
    /// Every value with its report name, in report order.
    pub fn values(&self) -> [(&'static str, &Derived); 7] {
        [
            ("kaslr_offset", &self.kaslr_offset),
            ("phys_base", &self.phys_base),
            ("paging_levels", &self.paging_levels),
            ("pgd", &self.pgd),
            ("page_offset_base", &self.page_offset_base),
            ("vmalloc_base", &self.vmalloc_base),
            ("vmemmap_base", &self.vmemmap_base),
        ]
    }
}

/// Name lookup used by discovery: kallsyms when decoded, else nothing.
pub type SymbolLookup<'a> = &'a dyn Fn(&str) -> Option<u64>;

/// The kernel image map of x86_64: `[START_KERNEL_MAP, + KERNEL_IMAGE_SIZE)` at `phys_base`.
pub fn x86_64_image_map(vi: &VmcoreInfo, phys_base: u64) -> LinearMap {
    let size = vi.number("KERNEL_IMAGE_SIZE").and_then(|v| u64::try_from(v).ok()).unwrap_or(DEFAULT_KERNEL_IMAGE_SIZE);
    LinearMap { vstart: START_KERNEL_MAP, size, pstart: phys_base }
}

fn elf_core(dump: &Dump) -> Option<&ElfCore> {
    match &dump.container {
        Container::Elf { core, .. } => Some(core),
        Container::Kdump { .. } => None,
    }
}

/// phys_base from the kernel-image PT_LOAD (its virtual address is in the image map).
fn phys_base_from_pt_load(core: &ElfCore) -> Option<u64> {
    core.loads
        .iter()
        .filter(|s| s.paddr != u64::MAX && s.vaddr >= START_KERNEL_MAP && s.vaddr < START_KERNEL_MAP + (1 << 30))
        .max_by_key(|s| s.memsz)
        .map(|s| s.paddr.wrapping_sub(s.vaddr - START_KERNEL_MAP))
}

/// page_offset_base from the direct-map PT_LOADs: `vaddr - paddr` of the RAM segments,
/// the answer covering the most bytes. kcore's text, module, vmalloc, vmemmap and remap
/// segments either have no physical address or a different offset, and lose the vote.
fn page_offset_from_pt_load(core: &ElfCore) -> Option<u64> {
    // A map: a corrupt core can have hundreds of thousands of segments, each its own delta.
    let mut votes: BTreeMap<u64, u64> = BTreeMap::new();
    for s in core.loads.iter().filter(|s| {
        s.paddr != u64::MAX && s.vaddr >= 0xff00_0000_0000_0000 && s.vaddr < START_KERNEL_MAP && s.memsz > 0
    }) {
        if core.kind == ElfKind::Kcore && s.paddr == 0 {
            continue;
        }
        let bytes = votes.entry(s.vaddr.wrapping_sub(s.paddr)).or_default();
        *bytes = bytes.saturating_add(s.memsz);
    }
    // A tie goes to the lowest delta (max_by_key keeps the last maximum), whatever the
    // order of the segments.
    votes.into_iter().rev().max_by_key(|&(_, bytes)| bytes).map(|(d, _)| d)
}

/// Paging levels from the direct-map PT_LOAD: an address that is not canonical for 48
/// bits needs 5 levels.
fn levels_from_pt_load(core: &ElfCore) -> Option<u64> {
    page_offset_from_pt_load(core).map(|pob| if Mmu::x86_64(4, 0).is_canonical(pob) { 4 } else { 5 })
}

/// The result of discovery: the layout and the virtual memory it makes readable.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The values.
    pub layout: X86Layout,
    /// Kernel virtual memory.
    pub kmem: KernelMem,
}

/// Finds the x86_64 layout of `dump`. `symbols` resolves names through kallsyms when the
/// caller has decoded them (they are decoded through [`bootstrap_x86_64`]'s memory).
pub fn discover_x86_64(dump: &Dump, vi: &VmcoreInfo, symbols: SymbolLookup<'_>) -> Discovered {
    let elf = elf_core(dump);
    let mut layout = X86Layout {
        kaslr_offset: Derived::new(vec![
            (Method::Vmcoreinfo, vi.kernel_offset()),
            (
                Method::Release,
                (crate::vmcoreinfo::release_before(vi.osrelease(), FIRST_KASLR_RELEASE) == Some(true)).then_some(0),
            ),
        ]),
        phys_base: phys_base(dump, vi),
        ..X86Layout::default()
    };
    let boot = bootstrap_x86_64(dump, vi);
    let image = boot.image_map();

    // The top-level table: a symbol in the image map.
    let pgd_of = |v: Option<u64>| v.and_then(|a| image.and_then(|m| m.translate(a)));
    let pgd_vi = pgd_of(vi.symbol("init_top_pgt").or_else(|| vi.symbol("swapper_pg_dir")));
    // VMCOREINFO names it swapper_pg_dir before 4.13, where the symbol is init_level4_pgt.
    let pgd_sym =
        pgd_of(symbols("init_top_pgt").or_else(|| symbols("swapper_pg_dir")).or_else(|| symbols("init_level4_pgt")));
    // The check of a table and a level count: a walk of a known text address agrees with
    // the image map.
    let sme_mask = vi.number_u64("sme_mask").unwrap_or(0);
    let text = vi.symbol("_stext").or_else(|| symbols("_stext"));
    let walks_text = |root: u64, levels: usize| {
        let (Some(text), Some(expected)) = (text, text.and_then(|t| image?.translate(t))) else { return false };
        let w = Walker::new(Mmu::x86_64(levels, sme_mask), PhysAddr(root), boot.phys().clone());
        w.translate(text).is_ok_and(|t| t.paddr == expected)
    };
    const WALK_CHECK: &str = "a page-table walk of _stext lands where the image map puts it";
    layout.pgd = Derived::new(vec![(Method::Vmcoreinfo, pgd_vi), (Method::Symbol, pgd_sym)])
        .checked(WALK_CHECK, |root| walks_text(root, 4) || walks_text(root, 5));

    // Paging levels: VMCOREINFO, then which walk of a known text address agrees with the
    // image map, then the direct-map PT_LOAD.
    let levels_vi = vi.number("pgtable_l5_enabled").map(|v| if v != 0 { 5 } else { 4 });
    let probe_levels = layout.pgd.value.and_then(|root| [4usize, 5].into_iter().find(|&l| walks_text(root, l)));
    layout.paging_levels = Derived::new(vec![
        (Method::Vmcoreinfo, levels_vi),
        (Method::PageTables, probe_levels.map(|l| l as u64)),
        (Method::PtLoad, elf.and_then(levels_from_pt_load)),
    ])
    .checked(WALK_CHECK, |levels| layout.pgd.value.is_some_and(|root| walks_text(root, levels as usize)));

    let walker = match (layout.pgd.value, layout.paging_levels.value) {
        (Some(root), Some(levels)) => {
            Some(Arc::new(Walker::new(Mmu::x86_64(levels as usize, sme_mask), PhysAddr(root), boot.phys().clone())))
        }
        _ => None,
    };
    let mut kmem = match &walker {
        Some(w) => boot.clone().with_walker(w.clone()),
        None => boot.clone(),
    };
    if let (Some(start), Some(end)) = (symbols("_text"), symbols("_end")) {
        kmem = kmem.with_image_extent(start, end);
    }

    // A kernel variable: its address from VMCOREINFO or kallsyms, its value read
    // through the image map.
    let variable = |name: &str| {
        let addr = vi.symbol(name).or_else(|| symbols(name))?;
        kmem.read_u64(addr).ok()
    };
    let (pob_var, vmalloc_var, vmemmap_var) =
        (variable("page_offset_base"), variable("vmalloc_base"), variable("vmemmap_base"));

    let pob_probe = walker.as_ref().and_then(|w| {
        let old = crate::vmcoreinfo::release_before(vi.osrelease(), (4, 20, 0)) == Some(true);
        let start = match (w.mmu().levels, old) {
            (5, _) => DIRECT_MAP_BASE_L5,
            (_, true) => DIRECT_MAP_BASE_L4_OLD,
            _ => DIRECT_MAP_BASE_L4,
        };
        let (v, t) = w.first_mapped(start, RANDOMIZED_REGION_END).ok()??;
        Some(v.wrapping_sub(t.paddr))
    });
    layout.page_offset_base = Derived::new(vec![
        (Method::Vmcoreinfo, vi.number_u64("page_offset_base")),
        (Method::Symbol, pob_var),
        (Method::PtLoad, elf.and_then(page_offset_from_pt_load)),
        (Method::PageTables, pob_probe),
    ]);
    let fixed = |v: u64| {
        let old = crate::vmcoreinfo::release_before(vi.osrelease(), FIRST_RANDOMIZED_MEMORY_RELEASE) == Some(true);
        (old && walker.as_ref().is_some_and(|w| w.mmu().levels == 4)).then_some(v)
    };
    layout.vmalloc_base = Derived::new(vec![
        (Method::Vmcoreinfo, vi.number_u64("VMALLOC_START")),
        (Method::Symbol, vmalloc_var),
        (Method::Release, fixed(FIXED_VMALLOC_BASE)),
    ]);
    if let Some(pob) = layout.page_offset_base.value {
        let end = dump.mem.max_pfn().saturating_mul(dump.mem.page_size());
        kmem = kmem.with_direct_map(LinearMap { vstart: pob, size: end, pstart: 0 });
    }
    // The vmemmap is the region after the vmalloc area, and the struct page of frame 0
    // (section 0 always has memory on x86_64) is its first byte.
    let vmemmap_probe = |vmalloc_base: Option<u64>| {
        walker.as_ref().and_then(|w| {
            let vmalloc_size = if w.mmu().levels == 5 { VMALLOC_SIZE_L5 } else { VMALLOC_SIZE_L4 };
            region_start(w, vmalloc_base?.checked_add(vmalloc_size)?, RANDOMIZED_REGION_END)
        })
    };
    let from_mem_section = vmemmap_from_mem_section(vi, &kmem, dump.mem.page_size());
    let vmemmap_sources = |probe: Option<u64>| {
        vec![
            (Method::Vmcoreinfo, vi.number_u64("VMEMMAP_START")),
            (Method::Symbol, vmemmap_var),
            (Method::MemSection, from_mem_section),
            (Method::PageTables, probe),
            (Method::Release, fixed(FIXED_VMEMMAP_BASE)),
        ]
    };
    let first_vmemmap_probe = vmemmap_probe(layout.vmalloc_base.value);
    layout.vmemmap_base = Derived::new(vmemmap_sources(first_vmemmap_probe));
    // The vmalloc area is the first region past the direct map's RAM (vmap'd stacks and
    // early vmallocs sit at its start from boot). Known only with the vmemmap's start to
    // bound the search, so it comes last.
    let vmalloc_probe = walker.as_ref().and_then(|w| {
        let ram = dump.mem.max_pfn().checked_mul(dump.mem.page_size())?.checked_next_multiple_of(PUD_SIZE)?;
        region_start(w, layout.page_offset_base.value?.checked_add(ram)?, layout.vmemmap_base.value?)
    });
    let mut sources = std::mem::take(&mut layout.vmalloc_base.sources);
    let at = sources.iter().position(|(m, _)| *m == Method::Release).unwrap_or(sources.len());
    sources.insert(at, (Method::PageTables, vmalloc_probe));
    layout.vmalloc_base = Derived::new(sources);
    // Without VMALLOC_START or the variable (kernels before 6.0 have no kallsyms in
    // VMCOREINFO), the vmemmap probe had no vmalloc base to start from: now it has one,
    // so that mem_section's answer is still checked by a second method.
    if first_vmemmap_probe.is_none() && layout.vmalloc_base.value.is_some() {
        layout.vmemmap_base = Derived::new(vmemmap_sources(vmemmap_probe(layout.vmalloc_base.value)));
    }
    Discovered { layout, kmem }
}

/// The start of the randomized region whose first mapping is the lowest in `[from, to)`:
/// that mapping's PUD boundary, on which every layout puts its regions. Only a search in
/// the kernel's half: a corrupt base must not start one in the lower half.
fn region_start(w: &Walker, from: u64, to: u64) -> Option<u64> {
    if !w.mmu().is_canonical(from) || from >> 63 == 0 || from >= to {
        return None;
    }
    let (v, _) = w.first_mapped(from, to).ok()??;
    Some(v & !(PUD_SIZE - 1))
}

fn phys_base(dump: &Dump, vi: &VmcoreInfo) -> Derived {
    let kdump = match &dump.container {
        Container::Kdump { mem, .. } => mem.primary().map(|p| p.sub.phys_base),
        Container::Elf { .. } => None,
    };
    let mut sources = vec![
        (Method::Vmcoreinfo, vi.number_u64("phys_base")),
        (Method::KdumpHeader, kdump),
        (Method::PtLoad, elf_core(dump).and_then(phys_base_from_pt_load)),
    ];
    let check = |pb| utsname_reads_linux(dump, vi, pb);
    if !sources.iter().any(|&(_, v)| v.is_some_and(check)) {
        sources.push((Method::MemoryScan, phys_base_by_utsname(dump, vi)));
    }
    Derived::new(sources).checked("the utsname reads \"Linux\" through the image map", check)
}

/// Where the kernel loaded itself is a multiple of this (CONFIG_PHYSICAL_ALIGN), and so
/// is phys_base, the load address less CONFIG_PHYSICAL_START.
const PHYSICAL_ALIGN: u64 = 2 << 20;

/// phys_base where nothing states it (kernels before 4.10 export no NUMBER(phys_base), and
/// QEMU's dumps have no kernel-image PT_LOAD): the one multiple of 2 MiB at which the
/// image map puts, at the kernel's utsname, "Linux" and VMCOREINFO's OSRELEASE. One small
/// read per 2 MiB of memory; several answers (an old image of the same release left in
/// memory) give none.
fn phys_base_by_utsname(dump: &Dump, vi: &VmcoreInfo) -> Option<u64> {
    let release = vi.osrelease()?;
    let top = dump.mem.max_pfn().checked_mul(dump.mem.page_size())?;
    // The lowest place VMCOREINFO puts the utsname; phys_base + its offset in the image is
    // a physical address of the dump, from 0 up.
    let in_image = vi.utsname_candidates().into_iter().filter_map(|a| a.checked_sub(START_KERNEL_MAP)).min()?;
    let mut pb = (in_image / PHYSICAL_ALIGN * PHYSICAL_ALIGN).wrapping_neg();
    let mut found = None;
    while pb.wrapping_add(in_image) < top {
        let image = x86_64_image_map(vi, pb);
        let read = |va: u64, buf: &mut [u8]| {
            let pa = image.translate(va).ok_or_else(|| format!("{va:#x} is outside the kernel image"))?;
            dump.mem.read(PhysAddr(pa), buf, vmcore_physmem::ReadOptions::default()).map_err(|e| e.to_string())
        };
        if matches!(vi.utsname_release(read), Utsname::Release(r) if r == release) {
            if found.is_some() {
                return None;
            }
            found = Some(pb);
        }
        pb = pb.wrapping_add(PHYSICAL_ALIGN);
    }
    found
}

/// Whether the kernel's utsname sysname, read through the image map at `phys_base`, is
/// "Linux".
fn utsname_reads_linux(dump: &Dump, vi: &VmcoreInfo, phys_base: u64) -> bool {
    let image = x86_64_image_map(vi, phys_base);
    vi.utsname_candidates().into_iter().filter_map(|addr| image.translate(addr)).any(|paddr| {
        let mut sysname = [0u8; 6];
        dump.mem.read(PhysAddr(paddr), &mut sysname, vmcore_physmem::ReadOptions::default()).is_ok()
            && &sysname == b"Linux\0"
    })
}

/// Kernel memory through the image map alone, from the first phys_base any method found.
pub fn bootstrap_x86_64(dump: &Dump, vi: &VmcoreInfo) -> KernelMem {
    let image = phys_base(dump, vi).value.map(|pb| x86_64_image_map(vi, pb));
    KernelMem::new(dump.mem.clone(), image)
}

/// vmemmap_base as the `struct page` address of pfn 0, decoded from section 0 of
/// SPARSEMEM's mem_section (the kernel stores `mem_map - section_start_pfn` there, so
/// for section 0 it is the array's base).
fn vmemmap_from_mem_section(vi: &VmcoreInfo, kmem: &KernelMem, page_size: u64) -> Option<u64> {
    let root = vi.symbol("mem_section")?;
    let size = u64::try_from(vi.size("mem_section")?).ok()?;
    let off = u64::try_from(vi.offset("mem_section.section_mem_map")?).ok()?;
    let per_root = page_size.checked_div(size)?;
    let (sec, max) = crate::mm::memmap::sparsemem_bits(vi);
    let extreme = match vi.length("mem_section") {
        Some(len) if max > sec && max - sec < 63 => {
            u64::try_from(len).ok() == Some((1u64 << (max - sec)).div_ceil(per_root))
        }
        None => true,
        _ => false,
    };
    let first = if extreme { kmem.read_u64(root).ok().filter(|&p| p != 0)? } else { root };
    let coded = kmem.read_u64(first + off).ok()?;
    // Bit 0: SECTION_MARKED_PRESENT; the low 6 bits are flags on current kernels.
    (coded & 1 != 0).then_some(coded & !0x3f)
}
