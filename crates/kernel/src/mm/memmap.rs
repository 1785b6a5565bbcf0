//! Finding `struct page` for every pfn from VMCOREINFO alone: SPARSEMEM and
//! SPARSEMEM_EXTREME through `mem_section` (with or without VMEMMAP), FLATMEM through
//! `mem_map`.

use crate::vmcoreinfo::VmcoreInfo;
use crate::vmem::KernelMem;

/// The `struct page` array of one range of pfns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// First pfn.
    pub pfn_start: u64,
    /// End pfn (exclusive).
    pub pfn_end: u64,
    /// Virtual address of the `struct page` of `pfn_start`.
    pub mem_map: u64,
}

/// Where the struct pages are.
#[derive(Debug, Clone)]
pub struct MemMap {
    /// Ranges in pfn order.
    pub sections: Vec<Section>,
    /// `SIZE(page)`.
    pub page_struct_size: u64,
    /// Which memory model VMCOREINFO described.
    pub model: &'static str,
}

/// Errors of memory-map discovery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key the memory model needs is missing or unusable ("no KEY", "KEY=VALUE (...)").
    #[error("cannot find struct page: VMCOREINFO has {0}")]
    Missing(String),
    /// The mem_section data is unreadable or inconsistent.
    #[error("mem_section: {0}")]
    Bad(String),
}

/// Flag bits the kernel keeps in the low bits of `section_mem_map`. Kernels up to 6.x use
/// 5 or 6 (SECTION_MARKED_PRESENT, HAS_MEM_MAP, IS_ONLINE, IS_EARLY, TAINT_ZONE_DEVICE,
/// IS_VMEMMAP_PREINIT); the encoded pointer is aligned far beyond that, so masking 6 bits
/// is safe where makedumpfile's 5-bit mask would leave bit 5 in the address.
const SECTION_MAP_MASK: u64 = !0x3f;
const SECTION_MARKED_PRESENT: u64 = 1;
/// Upper bound on sections scanned: 2^25 covers 52-bit physical addresses with 128 MiB
/// sections (x86_64 5-level).
const MAX_SECTIONS: u64 = 1 << 26;

/// SECTION_SIZE_BITS and MAX_PHYSMEM_BITS: from VMCOREINFO (5.x and later export them),
/// else the architecture's values of older kernels, as makedumpfile assumes them (x86_64:
/// 27 and 46, or 52 with 5-level paging; arm64: 30 and 48, or 52 with 52-bit VA).
pub fn sparsemem_bits(vi: &VmcoreInfo) -> (u64, u64) {
    let arm64 = vi.number("VA_BITS").is_some();
    let section =
        vi.number("SECTION_SIZE_BITS").and_then(|v| u64::try_from(v).ok()).unwrap_or(if arm64 { 30 } else { 27 });
    let wide =
        if arm64 { vi.number("VA_BITS") == Some(52) } else { vi.number("pgtable_l5_enabled").is_some_and(|v| v != 0) };
    let max = vi.number("MAX_PHYSMEM_BITS").and_then(|v| u64::try_from(v).ok()).unwrap_or(if wide {
        52
    } else if arm64 {
        48
    } else {
        46
    });
    (section, max)
}

fn need(vi: &VmcoreInfo, v: Option<i64>, key: &str) -> Result<u64, Error> {
    v.and_then(|v| u64::try_from(v).ok()).ok_or_else(|| Error::Missing(vi.unusable(key)))
}

impl MemMap {
    /// Discovers the struct page arrays for pfns below `max_pfn`.
    pub fn discover(vi: &VmcoreInfo, kmem: &KernelMem, max_pfn: u64, page_size: u64) -> Result<MemMap, Error> {
        let page_struct_size = super::struct_page_size(vi)
            .map_err(Error::Bad)?
            .ok_or_else(|| Error::Missing(vi.unusable("SIZE(page)")))?;
        // A key that is there but unusable is reported as such, not passed over.
        if vi.get("SYMBOL(mem_section)").is_some() {
            return sparse(vi, kmem, max_pfn, page_size, page_struct_size);
        }
        if let Some(mem_map) = vi.symbol("mem_map") {
            // FLATMEM: SYMBOL(mem_map) is the variable holding the array's address.
            let base = kmem.read_u64(mem_map).map_err(|e| Error::Bad(format!("reading mem_map: {e}")))?;
            let sections = vec![Section { pfn_start: 0, pfn_end: max_pfn, mem_map: base }];
            return Ok(MemMap { sections, page_struct_size, model: "FLATMEM" });
        }
        Err(Error::Missing(format!("{} and {}", vi.unusable("SYMBOL(mem_section)"), vi.unusable("SYMBOL(mem_map)"))))
    }

    /// The section holding `pfn`.
    pub fn section_of(&self, pfn: u64) -> Option<&Section> {
        let i = self.sections.partition_point(|s| s.pfn_start <= pfn).checked_sub(1)?;
        self.sections.get(i).filter(|s| pfn < s.pfn_end)
    }

    /// Virtual address of the struct page of `pfn`.
    pub fn page_struct(&self, pfn: u64) -> Option<u64> {
        let s = self.section_of(pfn)?;
        s.mem_map.checked_add((pfn - s.pfn_start) * self.page_struct_size)
    }
}

fn sparse(vi: &VmcoreInfo, kmem: &KernelMem, max_pfn: u64, page_size: u64, page_struct: u64) -> Result<MemMap, Error> {
    let root_addr = vi.symbol("mem_section").ok_or_else(|| Error::Missing(vi.unusable("SYMBOL(mem_section)")))?;
    let ms_size = need(vi, vi.size("mem_section"), "SIZE(mem_section)")?;
    let map_off = need(vi, vi.offset("mem_section.section_mem_map"), "OFFSET(mem_section.section_mem_map)")?;
    let (section_bits, max_physmem_bits) = sparsemem_bits(vi);
    let page_shift = u64::from(page_size.trailing_zeros());
    let pfn_shift = section_bits.checked_sub(page_shift).filter(|&s| s < 40).ok_or_else(|| {
        Error::Bad(format!(
            "SECTION_SIZE_BITS {section_bits}: expected from the page shift ({page_shift}) to {}",
            page_shift + 39
        ))
    })?;
    let pages_per_section = 1u64 << pfn_shift;
    let num_sections = max_pfn.div_ceil(pages_per_section);
    if num_sections > MAX_SECTIONS || ms_size == 0 || ms_size > page_size {
        return Err(Error::Bad(format!("{num_sections} sections of {ms_size} bytes is not a real machine")));
    }
    let per_root = page_size / ms_size;
    let nr_mem_sections = max_physmem_bits.checked_sub(section_bits).filter(|&b| b < 63).map(|b| 1u64 << b);
    // SPARSEMEM_EXTREME: an array of pointers to pages of mem_sections; its length is
    // NR_SECTION_ROOTS. Otherwise mem_section is the array of sections itself.
    let extreme = match (vi.length("mem_section").and_then(|l| u64::try_from(l).ok()), nr_mem_sections) {
        (None, _) => true,
        (Some(len), Some(nr)) => len == nr.div_ceil(per_root),
        (Some(_), None) => true,
    };
    let read = |addr: u64, what: &str| {
        kmem.read_u64(addr).map_err(|e| Error::Bad(format!("reading {what} at {addr:#x}: {e}")))
    };
    // No more sections than the kernel has (NR_MEM_SECTIONS, and the roots mem_section's
    // LENGTH gives): past them, the root array's neighbours would be read as roots.
    let mut kernel_sections = nr_mem_sections.unwrap_or(u64::MAX);
    if extreme {
        if let Some(len) = vi.length("mem_section").and_then(|l| u64::try_from(l).ok()) {
            kernel_sections = kernel_sections.min(len.saturating_mul(per_root));
        }
    }
    let num_sections = num_sections.min(kernel_sections);
    // Addresses read from a corrupt dump can be anywhere: sums wrap, and the read of a
    // wrapped address fails like that of any other address nothing maps.
    let mut sections = Vec::new();
    let mut roots_cache: Option<(u64, u64)> = None;
    for nr in 0..num_sections {
        let ms = if extreme {
            let root_index = nr / per_root;
            let root = match roots_cache {
                Some((i, r)) if i == root_index => r,
                _ => {
                    let r = read(root_addr.wrapping_add(root_index * 8), "the mem_section root array")?;
                    roots_cache = Some((root_index, r));
                    r
                }
            };
            if root == 0 {
                continue;
            }
            root.wrapping_add((nr % per_root) * ms_size)
        } else {
            root_addr.wrapping_add(nr * ms_size)
        };
        let coded = read(ms.wrapping_add(map_off), "section_mem_map")?;
        if coded & SECTION_MARKED_PRESENT == 0 {
            continue;
        }
        let pfn_start = nr * pages_per_section;
        // The kernel stores mem_map minus the section's first pfn (in struct pages).
        let mem_map = (coded & SECTION_MAP_MASK).wrapping_add(pfn_start.wrapping_mul(page_struct));
        let pfn_end = (pfn_start + pages_per_section).min(max_pfn);
        sections.push(Section { pfn_start, pfn_end, mem_map });
    }
    if sections.is_empty() {
        return Err(Error::Bad("no present section: SYMBOL(mem_section) does not point at a valid array".into()));
    }
    let model = if extreme { "SPARSEMEM_EXTREME" } else { "SPARSEMEM" };
    Ok(MemMap { sections, page_struct_size: page_struct, model })
}
