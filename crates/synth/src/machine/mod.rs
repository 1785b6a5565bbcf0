//! Synthetic x86_64 kernel dumps of any size whose every page is known.
//!
//! [`Machine::new`] lays out a machine from a [`MachineSpec`] (a [`Layout`] name such as
//! `x86_64-6.1-l4`, a RAM size and a seed) the way a real kernel would have it at crash
//! time, and [`Machine::truth`] says what dump tools must find in it:
//!
//! * physical RAM `[0x1000, 0x9fc00)`, `[1 MiB, min(size, 3 GiB))` and above 4 GiB the rest,
//!   with the PCI hole between, and a crash-kernel reservation that, as in /proc/vmcore,
//!   is RAM but not in the dump;
//! * the kernel image (12 MiB: text, rodata with `linux_banner` and the kallsyms tables,
//!   data with the kernel's variables, bss with the log buffer) at a KASLR-shifted virtual
//!   address in `[0xffffffff80000000, +1 GiB)` and a random 2 MiB-aligned physical one, so
//!   `phys_base` is usually negative, as on real KASLR kernels;
//! * `page_offset_base`, `vmalloc_base` and `vmemmap_base` chosen by the kernel's own
//!   region randomization (arch/x86/mm/kaslr.c), stored in variables in .data;
//! * page tables (`init_top_pgt`) mapping the image with 2 MiB pages, the direct map with
//!   1 GiB, 2 MiB and (below 2 MiB) 4 KiB pages, and the vmemmap with 2 MiB pages, all in
//!   the synthetic RAM (marked reserved);
//! * SPARSEMEM_EXTREME `mem_section`: the root array (direct map, or kernel .data before
//!   4.15), one page of sections per used root, `section_mem_map` encoded as the kernel
//!   does (`mem_map - section_start_pfn` with the flag bits);
//! * a `struct page` for every pfn of every present section, describing a mix of kernel
//!   data, zero pages, slab, page cache (with and without `PG_private`, and swap cache),
//!   anonymous pages, free buddy blocks of orders 0-4, 9 and 10, hwpoison and offline
//!   pages, hugetlb folios, anonymous and file THPs and compound slabs;
//! * the kernel log in the generation's format, with wrap-around;
//! * optionally the kallsyms tables, named by VMCOREINFO as 6.0+ kernels do.
//!
//! Pages are generated from `(seed, pfn)` on demand, so the writer streams any size with
//! bounded memory, writes free and zero pages as file holes, and the truth is counted
//! from the plan, never by reading an image back.
//!
//! Layouts ([`Layout::names`]): `x86_64-{5.4,6.1,6.12}-l{4,5}[-nokaslr]` and
//! `x86_64-2.6.32-l4`; see [`Generation`] for what each imitates. Deliberate departures
//! from a real kernel: struct pages carry no zone/node bits (so the `struct page`s of free
//! memory are all zero and its vmemmap stays sparse); there is no `pglist_data`, so a
//! reader that walks the free lists instead of using page types finds nothing (the 2.6.32
//! note therefore also carries `NUMBER(PG_buddy)`, `OFFSET(page.private)` and
//! `OFFSET(page._mapcount)`, which makedumpfile otherwise learns from vmlinux); without
//! kallsyms (5.4, or `kallsyms: Some(false)`), non-standard `SYMBOL(page_offset_base)`,
//! `SYMBOL(vmalloc_base)` and `SYMBOL(vmemmap_base)` lines name the layout variables.
//!
//! The crate's tests check every layout against Debian's makedumpfile 1.7.2 (report of
//! dump levels 0-31, `--dump-dmesg`), drgn 0.3.0 (kallsyms, variables through the page
//! tables) and vmcore-kernel's layout discovery; see tests/makedumpfile.rs for what 1.7.2
//! cannot know about 6.12.

pub mod kallsyms;
pub mod layout;
pub mod pagetable;
pub mod phys;
pub mod printk;
mod truth;
mod vmcoreinfo;
mod write;

use std::collections::BTreeMap;

use vmcore_formats::codec::Codec;

pub use layout::{Generation, Layout, PrintkKind};
pub use phys::{Category, Desc};
pub use printk::Message;
pub use truth::{parse_report, LayoutTruth, LevelCounts, Truth, REPORT_LINES};

use crate::elf::{self, ElfVmcore, Load, NoteSpec};
use crate::error::{Error, Result};
use crate::kdump::{self, KdumpSpec, PfnRange};
use crate::rng::SplitMix64;
use pagetable::{PageTables, LARGE_DATA, LARGE_TEXT, PAGE_DATA};
use phys::{Blob, Kind, Model, Run, BLOCK, BLOCK_PAGES, PAGE, SECTION_PAGES};

/// `__START_KERNEL_map`.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// `LOAD_PHYSICAL_ADDR` (and the image's link offset from `__START_KERNEL_map`).
const LOAD_PHYSICAL_ADDR: u64 = 0x100_0000;
/// Size of the synthetic kernel image.
pub const IMAGE_SIZE: u64 = 12 << 20;
const TEXT_SIZE: u64 = 4 << 20;
const RODATA_OFF: u64 = 4 << 20;
const DATA_OFF: u64 = 6 << 20;
const BSS_OFF: u64 = 8 << 20;
const PGD_OFF: u64 = DATA_OFF;
const VARS_OFF: u64 = DATA_OFF + 0x1000;
const UTS_OFF: u64 = DATA_OFF + 0x2000;
const NODE_DATA_OFF: u64 = DATA_OFF + 0x3000;
const STATIC_MEMSEC_OFF: u64 = DATA_OFF + 0x5000;
const PRB_DESCS_OFF: u64 = DATA_OFF + 0x1_0000;
const PRB_INFOS_OFF: u64 = DATA_OFF + 0x2_8000;
const DATA_FILL_OFF: u64 = DATA_OFF + 0x8_0000;
const LOG_BUF_OFF: u64 = BSS_OFF;
const KALLSYMS_OFF: u64 = RODATA_OFF + 0x1000;
const RODATA_FILL_OFF: u64 = RODATA_OFF + 0x10_0000;
// Variables, relative to VARS_OFF.
const V_POB: u64 = 0x000;
const V_VMALLOC: u64 = 0x008;
const V_VMEMMAP: u64 = 0x010;
const V_PHYS_BASE: u64 = 0x018;
const V_PRB: u64 = 0x020;
const V_RB_STATIC: u64 = 0x040;
const V_CLEAR_SEQ: u64 = 0x0a0;
const V_NODE_ONLINE: u64 = 0x0c0;
const V_VMAP_AREA_LIST: u64 = 0x140;
const V_MEM_SECTION: u64 = 0x150;
const V_MAX_PFN: u64 = 0x158;
const V_LOG_BUF: u64 = 0x160;
const V_LOG_BUF_LEN: u64 = 0x168;
const V_LOG_FIRST_IDX: u64 = 0x16c;
const V_LOG_NEXT_IDX: u64 = 0x170;
const V_CLEAR_IDX: u64 = 0x174;
const V_LOG_END: u64 = 0x178;
const V_LOGGED_CHARS: u64 = 0x17c;
const V_LOG_FIRST_SEQ: u64 = 0x180;
const V_LOG_NEXT_SEQ: u64 = 0x188;
const V_VMLIST: u64 = 0x190;
/// Log buffer size (`CONFIG_LOG_BUF_SHIFT` 17) and descriptor count bits (17 - 5).
const LOG_BUF_SHIFT: u32 = 17;
const DESC_COUNT_BITS: u32 = 12;
/// Smallest machine: room for the image, the crash kernel, allocations and some RAM.
pub const MIN_SIZE: u64 = 64 << 20;
const GIB: u64 = 1 << 30;
/// CRASHTIME of every synthetic dump.
pub const CRASH_TIME: i64 = 1_795_685_165;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// Kernel generation, paging levels, KASLR.
    pub layout: Layout,
    /// RAM in bytes (rounded down to 2 MiB; at least [`MIN_SIZE`]). Below 3 GiB it ends
    /// at `size`; the rest is above 4 GiB.
    pub size: u64,
    /// Everything random derives from it.
    pub seed: u64,
    /// Bytes of ordinary RAM holding something else than free buddy blocks (default: 60%
    /// of it, at most 16 GiB, so that huge machines are mostly free memory and the image
    /// mostly holes).
    pub used: Option<u64>,
    /// Number of printk messages written (default 2500, enough to wrap every log format).
    pub messages: Option<usize>,
    /// Include kallsyms tables named by VMCOREINFO (default: for 6.x, as those kernels
    /// export them). Without them the layout variables are named by non-standard
    /// `SYMBOL(page_offset_base)` lines instead, so that they can still be found.
    pub kallsyms: Option<bool>,
    /// CPUs (one NT_PRSTATUS note each).
    pub cpus: u32,
}

impl MachineSpec {
    /// A spec with the defaults.
    pub fn new(layout: Layout, size: u64, seed: u64) -> MachineSpec {
        MachineSpec { layout, size, seed, used: None, messages: None, kallsyms: None, cpus: 2 }
    }
}

/// What a page of the machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFacts {
    /// Its `struct page` says this.
    pub desc: Desc,
    /// makedumpfile's class for it.
    pub category: Category,
    /// All zero bytes.
    pub zero: bool,
    /// In the dump's RAM segments (a segment's partial last page counts, as makedumpfile
    /// counts it).
    pub dumped: bool,
}

/// A synthetic machine: its memory plan, notes and segments, and its ground truth.
#[derive(Debug, Clone)]
pub struct Machine {
    spec: MachineSpec,
    model: Model,
    vmcoreinfo: String,
    loads: Vec<Load>,
    /// RAM ranges (bytes), crash-kernel region included.
    ram: Vec<(u64, u64)>,
    /// RAM ranges in the dump (bytes).
    dumped: Vec<(u64, u64)>,
    messages: Vec<Message>,
    dmesg: String,
    layout_truth: LayoutTruth,
    symbols: BTreeMap<String, u64>,
    kallsyms_count: Option<usize>,
    crash_region: (u64, u64),
}

/// A first-fit-from-the-top allocator of 2 MiB blocks, like memblock's top-down mode.
struct Blocks {
    free: Vec<(u64, u64)>,
}

impl Blocks {
    fn remove(&mut self, s: u64, e: u64) {
        let mut out = Vec::with_capacity(self.free.len() + 1);
        for &(a, b) in &self.free {
            if b <= s || a >= e {
                out.push((a, b));
            } else {
                if a < s {
                    out.push((a, s));
                }
                if b > e {
                    out.push((e, b));
                }
            }
        }
        self.free = out;
    }

    /// `n` contiguous blocks ending as high as possible below `limit`.
    fn top_contiguous(&mut self, n: u64, limit: u64) -> Option<u64> {
        let start = self.free.iter().rev().find_map(|&(a, b)| {
            let e = b.min(limit);
            (e >= a + n).then(|| e - n)
        })?;
        self.remove(start, start + n);
        Some(start)
    }

    /// `n` blocks from the top, in as few runs as the free space allows (ascending).
    fn top(&mut self, n: u64) -> Option<Vec<(u64, u64)>> {
        let mut left = n;
        let mut runs = Vec::new();
        for &(a, b) in self.free.iter().rev() {
            if left == 0 {
                break;
            }
            let take = left.min(b - a);
            runs.push((b - take, b));
            left -= take;
        }
        if left > 0 {
            return None;
        }
        for &(s, e) in &runs {
            self.remove(s, e);
        }
        runs.reverse();
        Some(runs)
    }
}

fn put(buf: &mut [u8], at: u64, bytes: &[u8]) -> Result<()> {
    let at = at as usize;
    buf.get_mut(at..at + bytes.len())
        .ok_or_else(|| Error::spec(format!("internal: write of {} bytes at {at:#x} outside its buffer", bytes.len())))?
        .copy_from_slice(bytes);
    Ok(())
}

/// The kernel's memory-region randomization (arch/x86/mm/kaslr.c): direct map, vmalloc and
/// vmemmap bases, each PUD-aligned, with the remaining entropy split between them.
fn randomize_regions(layout: &Layout, ram_end: u64, rng: &mut SplitMix64) -> (u64, u64, u64) {
    let l5 = layout.paging_levels == 5;
    if layout.generation == Generation::V2_6_32 {
        return (0xffff_8800_0000_0000, 0xffff_c900_0000_0000, 0xffff_ea00_0000_0000);
    }
    if !layout.kaslr {
        return if l5 {
            (0xff11_0000_0000_0000, 0xffa0_0000_0000_0000, 0xffd4_0000_0000_0000)
        } else {
            (0xffff_8880_0000_0000, 0xffff_c900_0000_0000, 0xffff_ea00_0000_0000)
        };
    }
    let tb = 40u32;
    let start: u64 = if l5 { 0xff11_0000_0000_0000 } else { 0xffff_8880_0000_0000 };
    let end: u64 = 0xffff_fe00_0000_0000;
    let max_tb = 1u64 << (layout.max_physmem_bits() - tb);
    let dm_tb = (ram_end.div_ceil(1 << tb) + 10).min(max_tb);
    let vmalloc_tb: u64 = if l5 { 12800 } else { 32 };
    let vmemmap_tb = ((dm_tb << (tb - 12)) * 64).div_ceil(1 << tb);
    let sizes = [dm_tb, vmalloc_tb, vmemmap_tb];
    let mut remain = end - start - sizes.iter().sum::<u64>() * (1 << tb);
    let mut vaddr = start;
    let mut bases = [0u64; 3];
    for (i, (size, base)) in sizes.iter().zip(bases.iter_mut()).enumerate() {
        let entropy = remain / (3 - i as u64);
        let prandom = (rng.next_u64() % (entropy + 1)) & !(GIB - 1);
        vaddr += prandom;
        *base = vaddr;
        vaddr += size << tb;
        vaddr = (vaddr + 1).next_multiple_of(GIB);
        remain -= entropy;
    }
    (bases[0], bases[1], bases[2])
}

impl Machine {
    /// Lays out the machine. Fails on a size below [`MIN_SIZE`] or beyond what the
    /// layout's physical address width holds.
    pub fn new(spec: &MachineSpec) -> Result<Machine> {
        let layout = spec.layout;
        let generation = layout.generation;
        let ps = generation.page_struct();
        let size = spec.size / BLOCK * BLOCK;
        if size < MIN_SIZE {
            return Err(Error::spec(format!("size {:#x}: a synthetic machine needs at least 64 MiB", spec.size)));
        }
        let max_phys = 1u64 << layout.max_physmem_bits();
        let ram_end = if size > 3 * GIB { size.saturating_add(GIB) } else { size };
        if ram_end > max_phys / 2 {
            return Err(Error::spec(format!(
                "size {size:#x} is too large for {} physical address bits",
                layout.max_physmem_bits()
            )));
        }
        let mut rng = SplitMix64::new(spec.seed ^ 0x006b_6173_6c72);
        // RAM: low memory below the VGA hole, then up to 3 GiB, then above 4 GiB.
        let mut ram = vec![(0x1000u64, 0x9fc00u64), (0x10_0000, size.min(3 * GIB))];
        if size > 3 * GIB {
            ram.push((4 * GIB, size + GIB));
        }
        let (pob, vmalloc_base, vmemmap_base) = randomize_regions(&layout, ram_end, &mut rng);
        let kaslr_offset =
            if layout.kaslr { BLOCK * (rng.next_u64() % ((GIB - LOAD_PHYSICAL_ADDR - IMAGE_SIZE) / BLOCK)) } else { 0 };
        let text_va = START_KERNEL_MAP + LOAD_PHYSICAL_ADDR + kaslr_offset;

        // Sections with memory, and the vmemmap blocks their struct pages need.
        let mut present = std::collections::BTreeSet::new();
        for &(s, e) in &ram {
            for sec in (s / PAGE / SECTION_PAGES)..=((e - 1) / PAGE / SECTION_PAGES) {
                present.insert(sec);
            }
        }
        let present: Vec<u64> = present.into_iter().collect();
        let sz = ps.size as u64;
        let mut vb = std::collections::BTreeSet::new();
        for &sec in &present {
            let (a, b) = (sec * SECTION_PAGES * sz, (sec + 1) * SECTION_PAGES * sz);
            for blk in a / BLOCK..b.div_ceil(BLOCK) {
                vb.insert(blk);
            }
        }
        let vblocks: Vec<u64> = vb.into_iter().collect();

        // mem_section geometry.
        let per_root = PAGE / generation.mem_section_size();
        let nr_roots = (1u64 << (layout.max_physmem_bits() - 27)) / per_root;
        let mut roots: Vec<u64> = present.iter().map(|s| s / per_root).collect();
        roots.dedup();
        let root_array_pages = if generation.mem_section_allocated() { (nr_roots * 8).div_ceil(PAGE) } else { 0 };

        // Page tables: a dry run counts them before memory is laid out.
        let tables_for = |kernel_pa: u64, chunk_pa: &dyn Fn(usize) -> u64| -> Result<PageTables> {
            let mut pt = PageTables::new(layout.paging_levels);
            for b in 0..IMAGE_SIZE / BLOCK {
                let flags = if b * BLOCK < TEXT_SIZE { LARGE_TEXT } else { LARGE_DATA };
                pt.map(text_va + b * BLOCK, kernel_pa + b * BLOCK, 21, flags)?;
            }
            for &(s, e) in &ram {
                let (s, e) = (s & !(PAGE - 1), e.next_multiple_of(PAGE));
                pt.map_range(pob + s, s, e - s, true, LARGE_DATA, PAGE_DATA)?;
            }
            for (k, &blk) in vblocks.iter().enumerate() {
                pt.map(vmemmap_base + blk * BLOCK, chunk_pa(k), 21, LARGE_DATA)?;
            }
            Ok(pt)
        };
        let n_tables = tables_for(0, &|_| 0)?.len() as u64;
        let alloc_pages = 1 + root_array_pages + roots.len() as u64 + (n_tables - 1);
        let alloc_blocks = (alloc_pages * PAGE).div_ceil(BLOCK);

        // Lay out memory from the top, as memblock does.
        let mut free = Blocks {
            free: ram.iter().skip(1).map(|&(s, e)| ((s / BLOCK).max(1), e / BLOCK)).filter(|(a, b)| a < b).collect(),
        };
        let too_small = || Error::spec(format!("size {size:#x}: not enough RAM for the kernel's allocations"));
        let alloc_block = free.top_contiguous(alloc_blocks, u64::MAX).ok_or_else(too_small)?;
        let vm_runs = free.top(vblocks.len() as u64).ok_or_else(too_small)?;
        let crash_blocks = (size / 16).clamp(8 << 20, 256 << 20) / BLOCK;
        let main_end = size.min(3 * GIB) / BLOCK;
        let crash_block = free.top_contiguous(crash_blocks, main_end).ok_or_else(too_small)?;
        let image_blocks = IMAGE_SIZE / BLOCK;
        let lowest = LOAD_PHYSICAL_ADDR / BLOCK;
        let mut candidates = Vec::new();
        for &(a, b) in &free.free {
            let first = a.max(lowest);
            let last = b.min(GIB / BLOCK);
            if last >= first + image_blocks {
                candidates.push((first, last - image_blocks));
            }
        }
        let n_cand: u64 = candidates.iter().map(|(f, l)| l - f + 1).sum();
        if n_cand == 0 {
            return Err(too_small());
        }
        let mut pick = if layout.kaslr { rng.next_u64() % n_cand } else { 0 };
        let mut image_block = 0;
        for (f, l) in &candidates {
            if pick <= l - f {
                image_block = f + pick;
                break;
            }
            pick -= l - f + 1;
        }
        free.remove(image_block, image_block + image_blocks);

        let mut runs = vec![
            Run { start: 0, end: 1, kind: Kind::Low },
            Run { start: image_block, end: image_block + image_blocks, kind: Kind::Image },
            Run { start: alloc_block, end: alloc_block + alloc_blocks, kind: Kind::Alloc },
            Run { start: crash_block, end: crash_block + crash_blocks, kind: Kind::Crash },
        ];
        let mut chunk_block = Vec::with_capacity(vblocks.len());
        for &(s, e) in &vm_runs {
            runs.push(Run { start: s, end: e, kind: Kind::Vmemmap { first_chunk: chunk_block.len() as u64 } });
            chunk_block.extend(s..e);
        }
        runs.extend(free.free.iter().map(|&(s, e)| Run { start: s, end: e, kind: Kind::Generic }));
        runs.sort_by_key(|r| r.start);

        let kernel_pa = image_block * BLOCK;
        let alloc_pa = alloc_block * BLOCK;
        let phys_base = kernel_pa.wrapping_sub(text_va - START_KERNEL_MAP);
        let va_of = |off: u64| text_va + off;
        let objs_va = pob + alloc_pa;

        // Early allocations: objects, mem_section roots and sections, page tables.
        let mut alloc = vec![0u8; (alloc_blocks * BLOCK) as usize];
        let pool = phys::text_pool(spec.seed);
        put(&mut alloc, 0, pool.get(..PAGE as usize).unwrap_or_default())?;
        let root_array_pa = alloc_pa + PAGE;
        let sections_pa = root_array_pa + root_array_pages * PAGE;
        let tables_pa = sections_pa + roots.len() as u64 * PAGE;
        let mut image = vec![0u8; IMAGE_SIZE as usize];
        let (root_buf, root_base): (&mut [u8], u64) = if generation.mem_section_allocated() {
            (&mut alloc, root_array_pa - alloc_pa)
        } else {
            (&mut image, STATIC_MEMSEC_OFF)
        };
        for (i, &r) in roots.iter().enumerate() {
            put(root_buf, root_base + r * 8, &(pob + sections_pa + i as u64 * PAGE).to_le_bytes())?;
        }
        let msz = generation.mem_section_size();
        for &sec in &present {
            let ri = roots.iter().position(|&r| r == sec / per_root).unwrap_or(0) as u64;
            let at = sections_pa - alloc_pa + ri * PAGE + (sec % per_root) * msz;
            put(&mut alloc, at, &(vmemmap_base | generation.section_flags()).to_le_bytes())?;
            put(&mut alloc, at + 8, &(objs_va + 0x600).to_le_bytes())?;
        }
        let pt = tables_for(kernel_pa, &|k| chunk_block.get(k).copied().unwrap_or(0) * BLOCK)?;
        if pt.len() as u64 != n_tables {
            return Err(Error::spec("internal: page table count changed"));
        }
        for (pa, bytes) in pt.serialize(kernel_pa + PGD_OFF, tables_pa) {
            if pa == kernel_pa + PGD_OFF {
                put(&mut image, PGD_OFF, &bytes)?;
            } else {
                put(&mut alloc, pa - alloc_pa, &bytes)?;
            }
        }

        // The kernel image.
        let mut s = spec.seed | 1;
        for chunk in image.get_mut(..TEXT_SIZE as usize).unwrap_or_default().chunks_exact_mut(8) {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            chunk.copy_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let release = generation.release();
        let banner = format!(
            "Linux version {release} (synth@vmcore-synth) (gcc (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC synthetic\n"
        );
        put(&mut image, RODATA_OFF, banner.as_bytes())?;
        put(&mut image, RODATA_FILL_OFF, pool.get(..(DATA_OFF - RODATA_FILL_OFF) as usize).unwrap_or_default())?;
        for (i, page) in (DATA_FILL_OFF..BSS_OFF).step_by(PAGE as usize).enumerate() {
            if i % 3 != 2 {
                let off = (i * 997) % (pool.len() - PAGE as usize);
                put(&mut image, page, pool.get(off..off + PAGE as usize).unwrap_or_default())?;
            }
        }
        let vars = |off: u64| VARS_OFF + off;
        let w64 = |image: &mut Vec<u8>, off: u64, v: u64| put(image, off, &v.to_le_bytes());
        let w32 = |image: &mut Vec<u8>, off: u64, v: u32| put(image, off, &v.to_le_bytes());
        w64(&mut image, vars(V_POB), pob)?;
        w64(&mut image, vars(V_VMALLOC), vmalloc_base)?;
        w64(&mut image, vars(V_VMEMMAP), vmemmap_base)?;
        w64(&mut image, vars(V_PHYS_BASE), phys_base)?;
        w64(&mut image, vars(V_NODE_ONLINE), 1)?;
        w64(&mut image, vars(V_VMAP_AREA_LIST), va_of(vars(V_VMAP_AREA_LIST)))?;
        w64(&mut image, vars(V_VMAP_AREA_LIST) + 8, va_of(vars(V_VMAP_AREA_LIST)))?;
        let mem_section_sym =
            if generation.mem_section_allocated() { pob + root_array_pa } else { va_of(STATIC_MEMSEC_OFF) };
        w64(&mut image, vars(V_MEM_SECTION), mem_section_sym)?;
        w64(&mut image, vars(V_MAX_PFN), ram_end / PAGE)?;
        // init_uts_ns: the name follows a 4-byte kref before 6.0.
        let uts_name = if generation >= Generation::V6_1 { UTS_OFF } else { UTS_OFF + 4 };
        if generation < Generation::V6_1 {
            w32(&mut image, UTS_OFF, 1)?;
        }
        let uts = ["Linux", "synthetic", release, "#1 SMP PREEMPT_DYNAMIC synthetic", "x86_64", "(none)"];
        for (i, f) in uts.iter().enumerate() {
            put(&mut image, uts_name + 65 * i as u64, f.as_bytes())?;
        }

        // The log.
        let mut messages = printk::messages(spec.seed, spec.messages.unwrap_or(2500), release, &ram, spec.cpus.max(1));
        let log_len = 1usize << LOG_BUF_SHIFT;
        let log_va = va_of(LOG_BUF_OFF);
        let dmesg = match generation.printk() {
            PrintkKind::Ringbuffer => {
                let r = printk::ringbuffer(&messages, DESC_COUNT_BITS, LOG_BUF_SHIFT);
                put(&mut image, PRB_DESCS_OFF, &r.descs)?;
                put(&mut image, PRB_INFOS_OFF, &r.infos)?;
                put(&mut image, LOG_BUF_OFF, &r.data)?;
                let rb = vars(V_RB_STATIC);
                w64(&mut image, vars(V_PRB), va_of(rb))?;
                w32(&mut image, rb, DESC_COUNT_BITS)?;
                w64(&mut image, rb + 8, va_of(PRB_DESCS_OFF))?;
                w64(&mut image, rb + 16, va_of(PRB_INFOS_OFF))?;
                w64(&mut image, rb + 24, r.head_id)?;
                w64(&mut image, rb + 32, r.tail_id)?;
                w64(&mut image, rb + 40, r.head_id)?;
                w32(&mut image, rb + 48, LOG_BUF_SHIFT)?;
                w64(&mut image, rb + 56, log_va)?;
                w64(&mut image, rb + 64, r.head_lpos)?;
                w64(&mut image, rb + 72, r.tail_lpos)?;
                printk::format_records(r.survivors.iter().filter_map(|&i| messages.get(i)), true)
            }
            PrintkKind::PrintkLog => {
                let p = printk::printk_log(&messages, log_len, false);
                put(&mut image, LOG_BUF_OFF, &p.buf)?;
                w64(&mut image, vars(V_LOG_BUF), log_va)?;
                w32(&mut image, vars(V_LOG_BUF_LEN), log_len as u32)?;
                w32(&mut image, vars(V_LOG_FIRST_IDX), p.first_idx)?;
                w32(&mut image, vars(V_LOG_NEXT_IDX), p.next_idx)?;
                w32(&mut image, vars(V_CLEAR_IDX), p.first_idx)?;
                w64(&mut image, vars(V_LOG_FIRST_SEQ), p.first_seq)?;
                w64(&mut image, vars(V_LOG_NEXT_SEQ), p.next_seq)?;
                printk::format_records(p.survivors.iter().filter_map(|&i| messages.get(i)), false)
            }
            PrintkKind::LogBuf => {
                // The old ring is raw bytes that may be cut anywhere: keep them ASCII so
                // that the truth is a string whatever the cut.
                for m in &mut messages {
                    for b in &mut m.text {
                        if *b >= 0x80 {
                            *b = b'?';
                        }
                    }
                }
                let l = printk::log_buf(&messages, log_len);
                put(&mut image, LOG_BUF_OFF, &l.buf)?;
                w64(&mut image, vars(V_LOG_BUF), log_va)?;
                w32(&mut image, vars(V_LOG_BUF_LEN), log_len as u32)?;
                w32(&mut image, vars(V_LOG_END), l.log_end)?;
                w32(&mut image, vars(V_LOGGED_CHARS), l.logged_chars)?;
                String::from_utf8(l.text).map_err(|_| Error::spec("internal: log text is not ASCII"))?
            }
        };

        // Symbols, and kallsyms.
        let mut symbols: BTreeMap<String, u64> = BTreeMap::new();
        let data_syms: Vec<(&str, u64, char)> = vec![
            ("_text", va_of(0), 'T'),
            ("startup_64", va_of(0), 'T'),
            ("_stext", va_of(0), 'T'),
            ("_etext", va_of(TEXT_SIZE), 'T'),
            ("linux_banner", va_of(RODATA_OFF), 'R'),
            ("_sdata", va_of(DATA_OFF), 'D'),
            ("init_top_pgt", va_of(PGD_OFF), 'D'),
            ("page_offset_base", va_of(vars(V_POB)), 'D'),
            ("vmalloc_base", va_of(vars(V_VMALLOC)), 'D'),
            ("vmemmap_base", va_of(vars(V_VMEMMAP)), 'D'),
            ("phys_base", va_of(vars(V_PHYS_BASE)), 'D'),
            ("prb", va_of(vars(V_PRB)), 'd'),
            ("printk_rb_static", va_of(vars(V_RB_STATIC)), 'd'),
            ("clear_seq", va_of(vars(V_CLEAR_SEQ)), 'd'),
            ("node_states", va_of(vars(V_NODE_ONLINE)), 'D'),
            ("vmap_area_list", va_of(vars(V_VMAP_AREA_LIST)), 'd'),
            ("mem_section", va_of(vars(V_MEM_SECTION)), 'D'),
            ("max_pfn", va_of(vars(V_MAX_PFN)), 'D'),
            ("init_uts_ns", va_of(UTS_OFF), 'D'),
            ("node_data", va_of(NODE_DATA_OFF), 'D'),
            ("_printk_rb_static_descs", va_of(PRB_DESCS_OFF), 'd'),
            ("_printk_rb_static_infos", va_of(PRB_INFOS_OFF), 'd'),
            ("_edata", va_of(BSS_OFF), 'D'),
            ("__bss_start", va_of(BSS_OFF), 'B'),
            ("__log_buf", va_of(LOG_BUF_OFF), 'b'),
            ("_end", va_of(IMAGE_SIZE), 'B'),
        ];
        for (n, a, _) in &data_syms {
            symbols.insert((*n).to_string(), *a);
        }
        let want_kallsyms = spec.kallsyms.unwrap_or(generation.kallsyms_in_vmcoreinfo());
        let mut vi_kallsyms = Vec::new();
        let mut kallsyms_count = None;
        if want_kallsyms {
            let mut syms: Vec<kallsyms::Sym> =
                data_syms.iter().map(|&(n, a, k)| kallsyms::Sym { addr: a, kind: k, name: n.to_string() }).collect();
            for (n, a) in [
                ("fixed_percpu_data", 0u64),
                ("cpu_number", 0x1f00),
                ("runqueues", 0x2ec40),
                ("__per_cpu_end", 0x3a000),
            ] {
                syms.push(kallsyms::Sym { addr: a, kind: 'D', name: n.to_string() });
            }
            let mut frng = SplitMix64::new(spec.seed ^ 0x6b73_796d);
            let mut addr = va_of(0x1000);
            const PREFIX: &[&str] = &[
                "synth", "mm", "page", "kmem", "vfs", "ext4", "tcp", "sched", "irq", "printk", "crash", "kexec", "dump",
            ];
            const VERB: &[&str] =
                &["alloc", "free", "init", "read", "write", "lookup", "insert", "remove", "flush", "map"];
            const NOUN: &[&str] =
                &["page", "node", "zone", "range", "entry", "buffer", "cache", "table", "queue", "lock"];
            let pickw = |r: &mut SplitMix64, l: &[&'static str]| {
                l.get(r.below(l.len() as u64) as usize).copied().unwrap_or("x")
            };
            while addr < va_of(TEXT_SIZE - 0x1000) {
                let name =
                    format!("{}_{}_{}", pickw(&mut frng, PREFIX), pickw(&mut frng, VERB), pickw(&mut frng, NOUN));
                let kind = if frng.below(3) == 0 { 't' } else { 'T' };
                syms.push(kallsyms::Sym { addr, kind, name });
                addr += 16 * (1 + frng.below(80));
            }
            let (tables, sorted) = kallsyms::encode(&syms, 0x10_0000)?;
            put(&mut image, KALLSYMS_OFF, &tables.blob)?;
            if KALLSYMS_OFF + tables.blob.len() as u64 > RODATA_FILL_OFF {
                return Err(Error::spec("internal: kallsyms tables do not fit in rodata"));
            }
            for &(n, off) in &tables.offsets {
                symbols.insert(n.to_string(), va_of(KALLSYMS_OFF + off as u64));
            }
            for n in [
                "kallsyms_names",
                "kallsyms_num_syms",
                "kallsyms_token_table",
                "kallsyms_token_index",
                "kallsyms_offsets",
                "kallsyms_relative_base",
            ] {
                if let Some(&a) = symbols.get(n) {
                    vi_kallsyms.push((n, a));
                }
            }
            kallsyms_count = Some(sorted.len());
        }
        let extra_symbols = if !want_kallsyms && generation.has_kaslr() {
            vec![
                ("page_offset_base", va_of(vars(V_POB))),
                ("vmalloc_base", va_of(vars(V_VMALLOC))),
                ("vmemmap_base", va_of(vars(V_VMEMMAP))),
            ]
        } else {
            Vec::new()
        };

        let values = vmcoreinfo::Values {
            release: release.to_string(),
            build_id: format!(
                "{:016x}{:016x}{:08x}",
                mix_id(spec.seed, 1),
                mix_id(spec.seed, 2),
                mix_id(spec.seed, 3) as u32
            ),
            init_uts_ns: va_of(UTS_OFF),
            node_online_map: va_of(vars(V_NODE_ONLINE)),
            swapper_pg_dir: va_of(PGD_OFF),
            stext: va_of(0),
            vmap_area_list: va_of(vars(V_VMAP_AREA_LIST)),
            mem_section: mem_section_sym,
            nr_section_roots: nr_roots,
            max_physmem_bits: layout.max_physmem_bits(),
            vmalloc_start: vmalloc_base,
            vmemmap: vmemmap_base,
            prb: va_of(vars(V_PRB)),
            printk_rb_static: va_of(vars(V_RB_STATIC)),
            clear_seq: va_of(vars(V_CLEAR_SEQ)),
            log_buf: va_of(vars(V_LOG_BUF)),
            log_buf_len: va_of(vars(V_LOG_BUF_LEN)),
            log_first_idx: va_of(vars(V_LOG_FIRST_IDX)),
            clear_idx: va_of(vars(V_CLEAR_IDX)),
            log_next_idx: va_of(vars(V_LOG_NEXT_IDX)),
            log_end: va_of(vars(V_LOG_END)),
            logged_chars: va_of(vars(V_LOGGED_CHARS)),
            vmlist: va_of(vars(V_VMLIST)),
            phys_base,
            phys_base_sym: va_of(vars(V_PHYS_BASE)),
            node_data: va_of(NODE_DATA_OFF),
            kaslr_offset,
            pgtable_l5: layout.paging_levels == 5,
            crash_time: CRASH_TIME,
            kallsyms: vi_kallsyms,
            extra_symbols,
        };
        let vmcoreinfo = vmcoreinfo::text(generation, &values);

        let image_blob = Blob { pa: kernel_pa, bytes: image };
        let alloc_blob = Blob { pa: alloc_pa, bytes: alloc };
        let image_zero = (0..IMAGE_SIZE / PAGE).map(|i| image_blob.page_zero(i)).collect();
        let alloc_zero = (0..alloc_blocks * BLOCK_PAGES).map(|i| alloc_blob.page_zero(i)).collect();
        let total_generic: u64 =
            runs.iter().filter(|r| r.kind == Kind::Generic).map(|r| (r.end - r.start) * BLOCK).sum();
        let used = spec.used.unwrap_or((total_generic / 10 * 6).min(16 * GIB));
        let used_ppm = if total_generic == 0 {
            0
        } else {
            (u128::from(used) * 1_000_000 / u128::from(total_generic)).min(1_000_000) as u64
        };
        let model = Model {
            seed: spec.seed,
            ps,
            runs,
            used_ppm,
            vmemmap_base,
            vblocks,
            present,
            ram: ram.clone(),
            image: image_blob,
            alloc: alloc_blob,
            image_zero,
            alloc_zero,
            objs_va,
            text_pool: pool,
        };

        let crash = (crash_block * BLOCK, (crash_block + crash_blocks) * BLOCK);
        let mut dumped = Vec::new();
        for &(s, e) in &ram {
            if crash.0 >= s && crash.1 <= e {
                dumped.push((s, crash.0));
                dumped.push((crash.1, e));
            } else {
                dumped.push((s, e));
            }
        }
        let mut loads = vec![Load::full(kernel_pa, text_va, IMAGE_SIZE)];
        loads.extend(dumped.iter().map(|&(s, e)| Load::full(s, pob + s, e - s)));

        let layout_truth = LayoutTruth {
            kaslr_offset: hex(kaslr_offset),
            phys_base: hex(phys_base),
            paging_levels: hex(u64::from(layout.paging_levels)),
            pgd: hex(kernel_pa + PGD_OFF),
            page_offset_base: hex(pob),
            vmalloc_base: hex(vmalloc_base),
            vmemmap_base: hex(vmemmap_base),
        };
        Ok(Machine {
            spec: spec.clone(),
            model,
            vmcoreinfo,
            loads,
            ram,
            dumped,
            messages,
            dmesg,
            layout_truth,
            symbols,
            kallsyms_count,
            crash_region: crash,
        })
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &MachineSpec {
        &self.spec
    }

    /// The VMCOREINFO text.
    pub fn vmcoreinfo(&self) -> &str {
        &self.vmcoreinfo
    }

    /// RAM ranges `[start, end)` in bytes, the crash-kernel reservation included.
    pub fn ram(&self) -> &[(u64, u64)] {
        &self.ram
    }

    /// RAM ranges the dump holds (the crash-kernel reservation left out).
    pub fn dumped_ram(&self) -> &[(u64, u64)] {
        &self.dumped
    }

    /// The crash kernel's reservation `[start, end)`.
    pub fn crash_region(&self) -> (u64, u64) {
        self.crash_region
    }

    /// One past the highest pfn (`max_mapnr`).
    pub fn max_pfn(&self) -> u64 {
        self.ram.iter().map(|r| r.1).max().unwrap_or(0).div_ceil(PAGE)
    }

    /// Every printk message written, oldest first (older ones may have been overwritten).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// What `makedumpfile --dump-dmesg` (1.7.9) writes for this machine.
    pub fn dmesg(&self) -> &str {
        &self.dmesg
    }

    /// Addresses of kernel symbols the machine defines (variables, tables, image bounds).
    pub fn symbols(&self) -> &BTreeMap<String, u64> {
        &self.symbols
    }

    /// The layout values.
    pub fn layout_truth(&self) -> &LayoutTruth {
        &self.layout_truth
    }

    /// What page `pfn` is.
    pub fn page(&self, pfn: u64) -> PageFacts {
        let (desc, _) = self.model.info(pfn);
        let pa = pfn * PAGE;
        PageFacts {
            desc,
            category: desc.category(),
            zero: self.model.page_is_zero(pfn),
            dumped: self.dumped.iter().any(|&(s, e)| pa + PAGE > s && pa < e),
        }
    }

    /// Fills `page` (one page) with the bytes of `pfn`.
    pub fn fill_page(&self, pfn: u64, page: &mut [u8]) {
        page.fill(0);
        self.model.fill_page(pfn, page);
    }

    /// Fills `buf` with the bytes at `paddr` (at most one page, not crossing a page
    /// boundary), as [`ElfVmcore::write_to`] asks.
    pub fn fill(&self, paddr: u64, buf: &mut [u8]) {
        let mut page = [0u8; PAGE as usize];
        self.fill_page(paddr / PAGE, &mut page);
        let start = (paddr % PAGE) as usize;
        if let Some(src) = page.get(start..start + buf.len()) {
            buf.copy_from_slice(src);
        }
    }

    /// NT_PRSTATUS per CPU, then VMCOREINFO, as /proc/vmcore has them.
    pub fn notes(&self) -> Vec<NoteSpec> {
        let mut notes: Vec<NoteSpec> = (0..self.spec.cpus.max(1)).map(|_| elf::prstatus_note()).collect();
        notes.push(elf::vmcoreinfo_note(&self.vmcoreinfo));
        notes
    }

    /// The ELF vmcore description: the kernel-image PT_LOAD first (overlapping the direct
    /// map, as kexec-tools writes it), then one per dumped RAM range at direct-map addresses.
    pub fn elf(&self) -> ElfVmcore {
        ElfVmcore { machine: elf::EM_X86_64, notes: self.notes(), loads: self.loads.clone() }
    }

    /// Writes the ELF vmcore to a new file (mode 0600, must not exist), sparse: free and
    /// zero pages are holes. Returns the file size.
    pub fn write_elf(&self, path: &std::path::Path) -> Result<u64> {
        let file = crate::create_exclusive(path)?;
        let size = write::write_elf(self, &file)?;
        file.sync_all()?;
        Ok(size)
    }

    /// Writes the ELF vmcore into `file` (from offset 0).
    pub fn write_elf_file(&self, file: &std::fs::File) -> Result<u64> {
        write::write_elf(self, file)
    }

    /// The kdump-compressed file (header version 6, dump level 1 with a shared zero page,
    /// every dumped RAM page), built in memory by the test writer: meant for machines of
    /// a few GiB at most.
    pub fn kdump(&self, codec: Codec) -> Result<Vec<u8>> {
        let mut utsname = kdump::default_utsname();
        utsname[2] = self.spec.layout.generation.release().to_string();
        let spec = KdumpSpec {
            max_mapnr: self.max_pfn(),
            crash_time: CRASH_TIME,
            phys_base: u64::from_str_radix(self.layout_truth.phys_base.trim_start_matches("0x"), 16).unwrap_or(0),
            dump_level: 1,
            codec,
            utsname,
            notes: Some(elf::encode_notes(&self.notes())?),
            share_zero_pages: true,
            ..KdumpSpec::default()
        };
        let ranges: Vec<PfnRange> = self
            .dumped
            .iter()
            .map(|&(s, e)| PfnRange { start: s / PAGE, end: e.div_ceil(PAGE), dumped: true })
            .collect();
        kdump::write_ranges(&spec, &ranges, |pfn, page| self.model.fill_page(pfn, page)).map(|(b, _)| b)
    }

    /// The ground truth for dump levels `levels` (all 32 when empty).
    pub fn truth(&self, levels: &[u8]) -> Truth {
        truth::compute(self, levels)
    }

    pub(crate) fn model(&self) -> &Model {
        &self.model
    }

    pub(crate) fn loads(&self) -> &[Load] {
        &self.loads
    }

    pub(crate) fn kallsyms_count(&self) -> Option<usize> {
        self.kallsyms_count
    }
}

fn mix_id(seed: u64, i: u64) -> u64 {
    phys::mix(seed, 0x0062_7569_6c64, i)
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

#[cfg(test)]
mod tests;
