//! The small deterministic x86_64 machine that `vmcore-synth` dumps: RAM in two ranges
//! like a PC's (`[0x1000, 0xa0000)` and `[1 MiB, size)`), mapped in the 4-level direct map,
//! with a VMCOREINFO note modelled on a real Debian 6.1 kernel, and page contents fixed by a
//! seed (all-zero, text-like and random pages).

use serde::Serialize;
use vmcore_formats::codec::Codec;

use crate::elf::{self, ElfVmcore, Load, NoteSpec};
use crate::error::{Error, Result};
use crate::kdump::{self, KdumpSpec, PfnRange};
use crate::rng::SplitMix64;

/// Page size of the sample machine.
pub const PAGE_SIZE: u64 = 4096;
/// `page_offset_base` without KASLR of the direct map on 4-level paging.
pub const PAGE_OFFSET_BASE: u64 = 0xffff_8880_0000_0000;
/// `uname -r` of the synthetic kernel.
pub const RELEASE: &str = "6.1.0-synthetic";
/// The low RAM range, below the legacy VGA/BIOS hole.
pub const LOW_RAM: (u64, u64) = (0x1000, 0xa0000);
/// Start of the high RAM range.
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// CPUs of the sample machine (one NT_PRSTATUS note each).
pub const NR_CPUS: usize = 2;

/// The VMCOREINFO of the sample kernel: Debian's linux-image-6.1.0-56-amd64 as dumped in
/// the x86_64-6.1-l5-kaslr fixture, with the release renamed, 4-level paging (the PT_LOADs
/// use the 4-level direct map, so `pgtable_l5_enabled` is 0 and `MAX_PHYSMEM_BITS` 46),
/// `mem_section` moved into that direct map, and the build id
/// and kallsyms tables left out because this memory does not hold that build's image.
/// The symbol addresses point at no real structure in the synthetic memory.
pub const VMCOREINFO: &str = "\
OSRELEASE=6.1.0-synthetic
PAGESIZE=4096
SYMBOL(init_uts_ns)=ffffffffa1ffb000
OFFSET(uts_namespace.name)=0
SYMBOL(node_online_map)=ffffffffa203df40
SYMBOL(swapper_pg_dir)=ffffffffa1e10000
SYMBOL(_stext)=ffffffffa0400000
SYMBOL(vmap_area_list)=ffffffffa1f5c430
SYMBOL(mem_section)=ffff88801ebb9000
LENGTH(mem_section)=262144
SIZE(mem_section)=32
OFFSET(mem_section.section_mem_map)=0
NUMBER(SECTION_SIZE_BITS)=27
NUMBER(MAX_PHYSMEM_BITS)=46
SIZE(page)=64
SIZE(pglist_data)=174208
SIZE(zone)=1536
SIZE(free_area)=88
SIZE(list_head)=16
SIZE(nodemask_t)=128
OFFSET(page.flags)=0
OFFSET(page._refcount)=52
OFFSET(page.mapping)=24
OFFSET(page.lru)=8
OFFSET(page._mapcount)=48
OFFSET(page.private)=40
OFFSET(page.compound_dtor)=16
OFFSET(page.compound_order)=17
OFFSET(page.compound_head)=8
OFFSET(pglist_data.node_zones)=0
OFFSET(pglist_data.nr_zones)=171552
OFFSET(pglist_data.node_start_pfn)=171560
OFFSET(pglist_data.node_spanned_pages)=171576
OFFSET(pglist_data.node_id)=171584
OFFSET(zone.free_area)=256
OFFSET(zone.vm_stat)=1344
OFFSET(zone.spanned_pages)=144
OFFSET(free_area.free_list)=0
OFFSET(list_head.next)=0
OFFSET(list_head.prev)=8
OFFSET(vmap_area.va_start)=0
OFFSET(vmap_area.list)=40
LENGTH(zone.free_area)=11
SYMBOL(prb)=ffffffffa1e643e0
SYMBOL(printk_rb_static)=ffffffffa1e64400
SYMBOL(clear_seq)=ffffffffa33aad20
SIZE(printk_ringbuffer)=88
OFFSET(printk_ringbuffer.desc_ring)=0
OFFSET(printk_ringbuffer.text_data_ring)=48
OFFSET(printk_ringbuffer.fail)=80
SIZE(prb_desc_ring)=48
OFFSET(prb_desc_ring.count_bits)=0
OFFSET(prb_desc_ring.descs)=8
OFFSET(prb_desc_ring.infos)=16
OFFSET(prb_desc_ring.head_id)=24
OFFSET(prb_desc_ring.tail_id)=32
SIZE(prb_desc)=24
OFFSET(prb_desc.state_var)=0
OFFSET(prb_desc.text_blk_lpos)=8
SIZE(prb_data_blk_lpos)=16
OFFSET(prb_data_blk_lpos.begin)=0
OFFSET(prb_data_blk_lpos.next)=8
SIZE(printk_info)=88
OFFSET(printk_info.seq)=0
OFFSET(printk_info.ts_nsec)=8
OFFSET(printk_info.text_len)=16
OFFSET(printk_info.caller_id)=20
OFFSET(printk_info.dev_info)=24
SIZE(dev_printk_info)=64
OFFSET(dev_printk_info.subsystem)=0
LENGTH(printk_info_subsystem)=16
OFFSET(dev_printk_info.device)=16
LENGTH(printk_info_device)=48
SIZE(prb_data_ring)=32
OFFSET(prb_data_ring.size_bits)=0
OFFSET(prb_data_ring.data)=8
OFFSET(prb_data_ring.head_lpos)=16
OFFSET(prb_data_ring.tail_lpos)=24
SIZE(atomic_long_t)=8
OFFSET(atomic_long_t.counter)=0
SIZE(latched_seq)=24
OFFSET(latched_seq.val)=8
LENGTH(free_area.free_list)=5
NUMBER(NR_FREE_PAGES)=0
NUMBER(PG_lru)=4
NUMBER(PG_private)=13
NUMBER(PG_swapcache)=10
NUMBER(PG_swapbacked)=19
NUMBER(PG_slab)=9
NUMBER(PG_hwpoison)=23
NUMBER(PG_head_mask)=65536
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129
NUMBER(HUGETLB_PAGE_DTOR)=2
NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257
NUMBER(phys_base)=-325058560
SYMBOL(init_top_pgt)=ffffffffa1e10000
NUMBER(pgtable_l5_enabled)=0
SYMBOL(node_data)=ffffffffa20393a0
LENGTH(node_data)=1024
KERNELOFFSET=1f400000
NUMBER(KERNEL_IMAGE_SIZE)=1073741824
NUMBER(sme_mask)=0
CRASHTIME=1795685165
";

/// `NUMBER(phys_base)` of [`VMCOREINFO`], as the kdump sub header stores it.
pub const PHYS_BASE: u64 = -325_058_560i64 as u64;
/// `CRASHTIME` of [`VMCOREINFO`].
pub const CRASH_TIME: i64 = 1_795_685_165;

/// What a sample page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// All zeros.
    Zero,
    /// Lines of words: compresses well.
    Text,
    /// Random bytes: does not compress.
    Random,
}

/// The expected facts about a sample dump, written next to it for the tests above.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Truth {
    /// `uname -r`.
    pub release: String,
    /// Page size.
    pub page_size: u64,
    /// One past the highest pfn of RAM.
    pub max_pfn: u64,
}

/// The sample machine: `size` bytes of physical address space, contents fixed by `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleMachine {
    size: u64,
    seed: u64,
}

const WORDS: &[&str] = &[
    "kernel", "page", "memory", "crash", "dump", "the", "of", "and", "to", "in", "task", "struct", "list", "head",
    "slab", "zone", "node", "cpu", "irq", "sched", "mutex", "spin", "lock", "unlock", "return", "error", "0x0", "NULL",
    "vmcore", "kdump", "buddy", "free", "lru", "anon", "file", "cache",
];

impl SampleMachine {
    /// A machine whose RAM ends at `size` (rounded down to a page), which must be above
    /// 1 MiB so that the high range is not empty.
    pub fn new(size: u64, seed: u64) -> Result<SampleMachine> {
        let size = size / PAGE_SIZE * PAGE_SIZE;
        if size <= HIGH_RAM_START {
            return Err(Error::spec(format!("size {size:#x}: the sample machine needs more than 1 MiB")));
        }
        if size > (1 << 46) {
            return Err(Error::spec(format!("size {size:#x} is beyond MAX_PHYSMEM_BITS (46)")));
        }
        Ok(SampleMachine { size, seed })
    }

    /// End of RAM in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// One past the highest pfn.
    pub fn max_pfn(&self) -> u64 {
        self.size / PAGE_SIZE
    }

    /// Physical address ranges `[start, end)` of RAM.
    pub fn ram_ranges(&self) -> [(u64, u64); 2] {
        [LOW_RAM, (HIGH_RAM_START, self.size)]
    }

    /// The kind of page frame `pfn`.
    pub fn page_kind(&self, pfn: u64) -> PageKind {
        match SplitMix64::for_item(self.seed, pfn).below(10) {
            0..=3 => PageKind::Zero,
            4..=6 => PageKind::Text,
            _ => PageKind::Random,
        }
    }

    /// Fills one whole page frame's contents.
    pub fn page(&self, pfn: u64, page: &mut [u8]) {
        page.fill(0);
        let mut rng = SplitMix64::for_item(self.seed, pfn);
        rng.next_u64(); // the draw that chose the kind
        match self.page_kind(pfn) {
            PageKind::Zero => {}
            PageKind::Random => rng.fill(page),
            PageKind::Text => {
                let mut pos = 0usize;
                let mut line = 0u64;
                while pos < page.len() {
                    let word = WORDS.get(rng.below(WORDS.len() as u64) as usize).copied().unwrap_or("x");
                    line += 1;
                    let sep: &[u8] = if line % 12 == 0 { b"\n" } else { b" " };
                    for &b in word.as_bytes().iter().chain(sep) {
                        if let Some(slot) = page.get_mut(pos) {
                            *slot = b;
                        }
                        pos += 1;
                    }
                }
            }
        }
    }

    /// Fills `buf` with the bytes at physical address `paddr` (a piece of at most one
    /// page that does not cross a page boundary, as [`ElfVmcore::write_to`] asks for).
    pub fn fill(&self, paddr: u64, buf: &mut [u8]) {
        let mut page = [0u8; PAGE_SIZE as usize];
        self.page(paddr / PAGE_SIZE, &mut page);
        let start = (paddr % PAGE_SIZE) as usize;
        if let Some(src) = page.get(start..start + buf.len()) {
            buf.copy_from_slice(src);
        }
    }

    /// NT_PRSTATUS notes for each CPU, then VMCOREINFO, as /proc/vmcore has them.
    pub fn notes(&self) -> Vec<NoteSpec> {
        let mut notes: Vec<NoteSpec> = (0..NR_CPUS).map(|_| elf::prstatus_note()).collect();
        notes.push(elf::vmcoreinfo_note(VMCOREINFO));
        notes
    }

    /// The machine as an ELF vmcore: one PT_LOAD per RAM range, direct-map addresses.
    pub fn elf(&self) -> ElfVmcore {
        let loads = self
            .ram_ranges()
            .iter()
            .map(|&(start, end)| Load::full(start, PAGE_OFFSET_BASE + start, end - start))
            .collect();
        ElfVmcore { machine: elf::EM_X86_64, notes: self.notes(), loads }
    }

    /// The kdump-compressed description makedumpfile would write with `-d 1`: header
    /// version 6, every RAM page dumped, zero pages sharing one stored page, and the
    /// vmcore's notes copied.
    pub fn kdump_spec(&self, codec: Codec) -> Result<KdumpSpec> {
        Ok(KdumpSpec {
            max_mapnr: self.max_pfn(),
            crash_time: CRASH_TIME,
            phys_base: PHYS_BASE,
            dump_level: 1,
            codec,
            notes: Some(elf::encode_notes(&self.notes())?),
            share_zero_pages: true,
            ..KdumpSpec::default()
        })
    }

    /// The RAM ranges in pfns, all dumped.
    pub fn pfn_ranges(&self) -> Vec<PfnRange> {
        self.ram_ranges()
            .iter()
            .map(|&(s, e)| PfnRange { start: s / PAGE_SIZE, end: e / PAGE_SIZE, dumped: true })
            .collect()
    }

    /// The kdump-compressed file's bytes.
    pub fn kdump(&self, codec: Codec) -> Result<Vec<u8>> {
        let spec = self.kdump_spec(codec)?;
        kdump::write_ranges(&spec, &self.pfn_ranges(), |pfn, page| self.page(pfn, page)).map(|(b, _)| b)
    }

    /// The facts a reader of this dump must find.
    pub fn truth(&self) -> Truth {
        Truth { release: RELEASE.to_string(), page_size: PAGE_SIZE, max_pfn: self.max_pfn() }
    }
}

/// Parses a size: a decimal or `0x` hexadecimal number with an optional `K`, `M` or `G`
/// suffix (powers of 1024; `KiB`, `MB` and lower case are accepted too).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
    let (digits, shift) = match body.chars().last() {
        Some('k') => (body.get(..body.len() - 1).unwrap_or_default(), 10),
        Some('m') => (body.get(..body.len() - 1).unwrap_or_default(), 20),
        Some('g') => (body.get(..body.len() - 1).unwrap_or_default(), 30),
        _ => (body, 0),
    };
    let n = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse::<u64>(),
    }
    .map_err(|e| format!("{s:?} is not a size ({e}); expected e.g. 512M, 1G, 65536"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} does not fit 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmcore_formats::elf::ElfCore;
    use vmcore_formats::kdump::{KdumpFile, PageRead};

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("0x200000"), Ok(0x200000));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn vmcoreinfo_is_the_fixture_with_the_documented_changes() {
        let fixture = "../../../shared/fixtures/x86_64-6.1-l5-kaslr/expected/vmcoreinfo.txt";
        let dir = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
        let Ok(real) = std::fs::read_to_string(dir.join(fixture)) else {
            return; // shared/ is absent in some checkouts
        };
        let real: std::collections::BTreeMap<&str, &str> = real.lines().filter_map(|l| l.split_once('=')).collect();
        let changed = ["OSRELEASE", "SYMBOL(mem_section)", "NUMBER(pgtable_l5_enabled)", "NUMBER(MAX_PHYSMEM_BITS)"];
        for line in VMCOREINFO.lines() {
            let (k, v) = line.split_once('=').unwrap();
            if !changed.contains(&k) {
                assert_eq!(real.get(k), Some(&v), "{k}");
            }
        }
        assert!(VMCOREINFO.starts_with("OSRELEASE=6.1.0-synthetic\n"));
        assert!(VMCOREINFO.contains(&format!("CRASHTIME={CRASH_TIME}\n")));
        assert!(VMCOREINFO.contains(&format!("NUMBER(phys_base)={}\n", PHYS_BASE as i64)));
    }

    #[test]
    fn pages_are_deterministic_and_mixed() {
        let m = SampleMachine::new(4 << 20, 42).unwrap();
        let mut kinds = [0usize; 3];
        for pfn in 0..m.max_pfn() {
            kinds[m.page_kind(pfn) as usize] += 1;
        }
        assert!(kinds.iter().all(|&k| k > 100), "{kinds:?}");
        let (mut a, mut b) = ([0u8; 4096], [0u8; 4096]);
        for pfn in [1, 2, 3, 700] {
            m.page(pfn, &mut a);
            m.page(pfn, &mut b);
            assert_eq!(a, b);
            assert_eq!(a.iter().all(|&x| x == 0), m.page_kind(pfn) == PageKind::Zero);
        }
        let other = SampleMachine::new(4 << 20, 43).unwrap();
        assert!((0..64).any(|pfn| m.page_kind(pfn) != other.page_kind(pfn)));
        assert!(SampleMachine::new(1 << 20, 0).is_err());
    }

    #[test]
    fn elf_and_kdump_hold_the_same_memory() {
        let m = SampleMachine::new(3 << 20, 7).unwrap();
        let elf = m.elf().to_vec(|pa, b| m.fill(pa, b)).unwrap();
        let core = ElfCore::parse(&elf).unwrap();
        assert_eq!(core.loads.len(), 2);
        assert_eq!(core.loads[1].vaddr, 0xffff888000100000);
        assert_eq!(core.loads[1].paddr + core.loads[1].memsz, 3 << 20);
        let vi = core.note(b"VMCOREINFO", 0).unwrap();
        assert_eq!(vi.desc, VMCOREINFO.as_bytes());

        let k = KdumpFile::parse(m.kdump(Codec::Zstd).unwrap()).unwrap();
        assert_eq!(k.max_mapnr(), m.max_pfn());
        assert_eq!(k.header.nr_cpus, NR_CPUS as i32);
        assert_eq!(k.header.utsname.release, RELEASE);
        assert_eq!(k.header.timestamp_sec, CRASH_TIME);
        assert_eq!(k.sub.phys_base, PHYS_BASE);
        assert_eq!(k.vmcoreinfo().unwrap().unwrap(), VMCOREINFO.as_bytes());
        let mut page = vec![0u8; 4096];
        for seg in &core.loads {
            for i in 0..seg.filesz / PAGE_SIZE {
                let pfn = seg.paddr / PAGE_SIZE + i;
                assert_eq!(k.read_page(pfn, &mut page).unwrap(), PageRead::Data);
                let at = (seg.offset + i * PAGE_SIZE) as usize;
                assert_eq!(page.as_slice(), &elf[at..at + 4096], "pfn {pfn:#x}");
            }
        }
        assert_eq!(k.read_page(0, &mut page).unwrap(), PageRead::Hole);
        assert_eq!(k.read_page(0xa0, &mut page).unwrap(), PageRead::Hole);
    }
}
