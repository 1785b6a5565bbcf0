//! The VMCOREINFO text of each generation: the keys real kernels emit, in their order
//! (6.1 and 6.12 follow the fixtures' notes line by line), with this machine's values.

use super::layout::{Generation, PrintkKind};
use crate::printk::{RB_CORE, RB_DATA_RING, RB_DEV_INFO};

/// Addresses and values VMCOREINFO reports.
#[derive(Debug, Clone, Default)]
pub struct Values {
    pub(crate) release: String,
    pub(crate) build_id: String,
    pub(crate) init_uts_ns: u64,
    pub(crate) node_online_map: u64,
    pub(crate) swapper_pg_dir: u64,
    pub(crate) stext: u64,
    pub(crate) vmap_area_list: u64,
    pub(crate) mem_section: u64,
    pub(crate) nr_section_roots: u64,
    pub(crate) max_physmem_bits: u32,
    pub(crate) vmalloc_start: u64,
    pub(crate) vmemmap: u64,
    pub(crate) prb: u64,
    pub(crate) printk_rb_static: u64,
    pub(crate) clear_seq: u64,
    pub(crate) log_buf: u64,
    pub(crate) log_buf_len: u64,
    pub(crate) log_first_idx: u64,
    pub(crate) clear_idx: u64,
    pub(crate) log_next_idx: u64,
    pub(crate) log_end: u64,
    pub(crate) logged_chars: u64,
    pub(crate) vmlist: u64,
    pub(crate) phys_base: u64,
    pub(crate) phys_base_sym: u64,
    pub(crate) node_data: u64,
    pub(crate) kaslr_offset: u64,
    pub(crate) pgtable_l5: bool,
    pub(crate) crash_time: i64,
    /// `(name, address)` of the kallsyms tables, when VMCOREINFO names them.
    pub(crate) kallsyms: Vec<(&'static str, u64)>,
    /// Non-standard `SYMBOL()` lines naming layout variables (when no kallsyms do).
    pub(crate) extra_symbols: Vec<(&'static str, u64)>,
}

/// The text.
pub fn text(generation: Generation, v: &Values) -> String {
    let mut s = String::new();
    let mut l = |line: String| {
        s.push_str(&line);
        s.push('\n');
    };
    let g = generation;
    l(format!("OSRELEASE={}", v.release));
    if g >= Generation::V6_1 {
        l(format!("BUILD-ID={}", v.build_id));
    }
    l("PAGESIZE=4096".into());
    l(format!("SYMBOL(init_uts_ns)={:x}", v.init_uts_ns));
    if g >= Generation::V6_1 {
        l("OFFSET(uts_namespace.name)=0".into());
    }
    l(format!("SYMBOL(node_online_map)={:x}", v.node_online_map));
    l(format!("SYMBOL(swapper_pg_dir)={:x}", v.swapper_pg_dir));
    l(format!("SYMBOL(_stext)={:x}", v.stext));
    match g {
        Generation::V2_6_32 => l(format!("SYMBOL(vmlist)={:x}", v.vmlist)),
        Generation::V5_4 | Generation::V6_1 => l(format!("SYMBOL(vmap_area_list)={:x}", v.vmap_area_list)),
        Generation::V6_12 => {
            l(format!("NUMBER(VMALLOC_START)={:#x}", v.vmalloc_start));
            l(format!("SYMBOL(vmemmap)={:x}", v.vmemmap));
        }
    }
    l(format!("SYMBOL(mem_section)={:x}", v.mem_section));
    l(format!("LENGTH(mem_section)={}", v.nr_section_roots));
    l(format!("SIZE(mem_section)={}", g.mem_section_size()));
    l("OFFSET(mem_section.section_mem_map)=0".into());
    if g >= Generation::V6_1 {
        l("NUMBER(SECTION_SIZE_BITS)=27".into());
        l(format!("NUMBER(MAX_PHYSMEM_BITS)={}", v.max_physmem_bits));
    }
    let ps = g.page_struct();
    l(format!("SIZE(page)={}", ps.size));
    l(format!("SIZE(pglist_data)={}", if g == Generation::V6_12 { 174464 } else { 174208 }));
    l("SIZE(zone)=1536".into());
    l("SIZE(free_area)=88".into());
    l("SIZE(list_head)=16".into());
    l("SIZE(nodemask_t)=128".into());
    l("OFFSET(page.flags)=0".into());
    if g == Generation::V2_6_32 {
        l(format!("OFFSET(page._count)={}", ps.refcount));
    } else {
        l(format!("OFFSET(page._refcount)={}", ps.refcount));
    }
    l(format!("OFFSET(page.mapping)={}", ps.mapping));
    l(format!("OFFSET(page.lru)={}", ps.lru));
    if g == Generation::V2_6_32 {
        // Not in a real 2.6.32 note: the values makedumpfile learns from vmlinux (-x),
        // without which it can only find free pages by walking the free lists.
        l(format!("OFFSET(page._mapcount)={}", ps.mapcount));
        l(format!("OFFSET(page.private)={}", ps.private));
    } else {
        l(format!("OFFSET(page._mapcount)={}", ps.mapcount));
        l(format!("OFFSET(page.private)={}", ps.private));
        if matches!(g, Generation::V5_4 | Generation::V6_1) {
            l("OFFSET(page.compound_dtor)=16".into());
            l("OFFSET(page.compound_order)=17".into());
        }
        l("OFFSET(page.compound_head)=8".into());
    }
    l("OFFSET(pglist_data.node_zones)=0".into());
    l("OFFSET(pglist_data.nr_zones)=171552".into());
    l("OFFSET(pglist_data.node_start_pfn)=171560".into());
    l("OFFSET(pglist_data.node_spanned_pages)=171576".into());
    l("OFFSET(pglist_data.node_id)=171584".into());
    l("OFFSET(zone.free_area)=256".into());
    l("OFFSET(zone.vm_stat)=1344".into());
    l(format!("OFFSET(zone.spanned_pages)={}", if g == Generation::V6_12 { 160 } else { 144 }));
    l("OFFSET(free_area.free_list)=0".into());
    l("OFFSET(list_head.next)=0".into());
    l("OFFSET(list_head.prev)=8".into());
    match g {
        Generation::V2_6_32 => l("OFFSET(vm_struct.addr)=8".into()),
        Generation::V5_4 | Generation::V6_1 => {
            l("OFFSET(vmap_area.va_start)=0".into());
            l("OFFSET(vmap_area.list)=40".into());
        }
        Generation::V6_12 => {}
    }
    l("LENGTH(zone.free_area)=11".into());
    match g.printk() {
        PrintkKind::LogBuf => {
            l(format!("SYMBOL(log_buf)={:x}", v.log_buf));
            l(format!("SYMBOL(log_end)={:x}", v.log_end));
            l(format!("SYMBOL(log_buf_len)={:x}", v.log_buf_len));
            l(format!("SYMBOL(logged_chars)={:x}", v.logged_chars));
        }
        PrintkKind::PrintkLog => {
            l(format!("SYMBOL(log_buf)={:x}", v.log_buf));
            l(format!("SYMBOL(log_buf_len)={:x}", v.log_buf_len));
            l(format!("SYMBOL(log_first_idx)={:x}", v.log_first_idx));
            l(format!("SYMBOL(clear_idx)={:x}", v.clear_idx));
            l(format!("SYMBOL(log_next_idx)={:x}", v.log_next_idx));
            l("SIZE(printk_log)=16".into());
            l("OFFSET(printk_log.ts_nsec)=0".into());
            l("OFFSET(printk_log.len)=8".into());
            l("OFFSET(printk_log.text_len)=10".into());
            l("OFFSET(printk_log.dict_len)=12".into());
        }
        PrintkKind::Ringbuffer => {
            l(format!("SYMBOL(prb)={:x}", v.prb));
            l(format!("SYMBOL(printk_rb_static)={:x}", v.printk_rb_static));
            l(format!("SYMBOL(clear_seq)={:x}", v.clear_seq));
            let caller_id = ["OFFSET(printk_info.caller_id)=20"];
            let latched = ["SIZE(latched_seq)=24", "OFFSET(latched_seq.val)=8"];
            for line in [RB_CORE, &caller_id, RB_DEV_INFO, RB_DATA_RING, &latched].concat() {
                l(line.into());
            }
        }
    }
    l("LENGTH(free_area.free_list)=5".into());
    l("NUMBER(NR_FREE_PAGES)=0".into());
    let pg = ps.pg;
    l(format!("NUMBER(PG_lru)={}", pg.lru));
    l(format!("NUMBER(PG_private)={}", pg.private));
    l(format!("NUMBER(PG_swapcache)={}", pg.swapcache));
    if g == Generation::V2_6_32 {
        // Also from vmlinux, as above.
        if let Some(slab) = pg.slab {
            l(format!("NUMBER(PG_slab)={slab}"));
        }
        if let Some(b) = pg.buddy {
            l(format!("NUMBER(PG_buddy)={b}"));
        }
    } else {
        l(format!("NUMBER(PG_swapbacked)={}", pg.swapbacked));
        match (pg.slab, ps.slab_type()) {
            (Some(slab), _) => l(format!("NUMBER(PG_slab)={slab}")),
            (None, Some(t)) => l(format!("NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)={}", t as i32)),
            _ => {}
        }
        if let Some(hw) = pg.hwpoison {
            l(format!("NUMBER(PG_hwpoison)={hw}"));
        }
        l(format!("NUMBER(PG_head_mask)={}", 1u64 << pg.head));
        if let Some(t) = ps.buddy_type() {
            l(format!("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)={}", t as i32));
        }
        match ps.hugetlb_type() {
            Some(t) => l(format!("NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)={}", t as i32)),
            None => l("NUMBER(HUGETLB_PAGE_DTOR)=2".into()),
        }
        if let Some(t) = ps.offline_type() {
            l(format!("NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)={}", t as i32));
        }
    }
    for (name, addr) in &v.kallsyms {
        l(format!("SYMBOL({name})={addr:x}"));
    }
    for (name, addr) in &v.extra_symbols {
        l(format!("SYMBOL({name})={addr:x}"));
    }
    if g == Generation::V2_6_32 {
        l(format!("SYMBOL(phys_base)={:x}", v.phys_base_sym));
        l(format!("SYMBOL(init_level4_pgt)={:x}", v.swapper_pg_dir));
        l(format!("SYMBOL(node_data)={:x}", v.node_data));
        l("LENGTH(node_data)=1024".into());
    } else {
        l(format!("NUMBER(phys_base)={}", v.phys_base as i64));
        l(format!("SYMBOL(init_top_pgt)={:x}", v.swapper_pg_dir));
        l(format!("NUMBER(pgtable_l5_enabled)={}", u8::from(v.pgtable_l5)));
        l(format!("SYMBOL(node_data)={:x}", v.node_data));
        l("LENGTH(node_data)=1024".into());
        l(format!("KERNELOFFSET={:x}", v.kaslr_offset));
        l("NUMBER(KERNEL_IMAGE_SIZE)=1073741824".into());
        l("NUMBER(sme_mask)=0".into());
    }
    l(format!("CRASHTIME={}", v.crash_time));
    s
}
