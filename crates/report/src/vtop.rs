//! `vmcore vtop`: a kernel virtual address through the dump's own page tables, entry by
//! entry, with the region it lies in and the symbol holding it; and makedumpfile's
//! `--vtop` block, printed the same way.

use serde::Serialize;
use vmcore_kernel::machine::{Arch, Layout, Machine};
use vmcore_translate::Step;

use crate::hex;

/// The x86_64 module area.
const X86_MODULES: u64 = 0xffff_ffff_c000_0000;
const X86_MODULES_END: u64 = 0xffff_ffff_ff00_0000;
/// Sizes of the x86_64 vmalloc area (`VMALLOC_SIZE_TB`), 4- and 5-level.
const X86_VMALLOC_4: u64 = 32 << 40;
const X86_VMALLOC_5: u64 = 12800 << 40;

/// One entry of the walk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StepReport {
    /// The kernel's name for the level (PGD, P4D, PUD, PMD, PTE).
    pub level: &'static str,
    /// Physical address of the table.
    pub table: String,
    /// Index of the entry in the table.
    pub index: u64,
    /// Physical address of the entry.
    pub entry_addr: String,
    /// The entry.
    pub entry: String,
}

/// Where one virtual address leads.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VtopReport {
    /// The address.
    pub vaddr: String,
    /// The region of the kernel's address space holding it (x86_64: direct map, vmalloc,
    /// vmemmap, kernel image, modules; arm64: kernel image, linear map), when the layout
    /// says.
    pub region: Option<String>,
    /// Offset from the region's start.
    pub offset: Option<String>,
    /// The symbol holding it (kallsyms): NAME+0xOFF/0xSIZE.
    pub symbol: Option<String>,
    /// The entries read, top level first.
    pub steps: Vec<StepReport>,
    /// The physical address, when the walk found a page.
    pub paddr: Option<String>,
    /// Size of the page that maps it.
    pub page_size: Option<u64>,
    /// Why the walk found no page.
    pub error: Option<String>,
    /// The physical address the region's fixed offset gives (direct map, kernel image),
    /// to be compared with the walk's: they differ only in a corrupt or misread layout.
    pub linear: Option<String>,
    #[serde(skip)]
    raw: Raw,
}

/// The numbers behind the strings, for makedumpfile's rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Raw {
    vaddr: u64,
    paddr: Option<u64>,
    steps: Vec<(&'static str, u64, u64)>,
}

/// Level names as Linux folds them: with fewer levels, P4D goes first, then PUD.
fn level_name(levels: usize, level: usize) -> &'static str {
    let names: &[&'static str] = match levels {
        5 => &["PTE", "PMD", "PUD", "P4D", "PGD"],
        4 => &["PTE", "PMD", "PUD", "PGD"],
        3 => &["PTE", "PMD", "PGD"],
        _ => &["PTE", "PGD"],
    };
    names.get(level.wrapping_sub(1)).copied().unwrap_or("?")
}

/// The region holding `vaddr`: (name, start), and the physical address a linear region
/// maps it to.
fn region(machine: &Machine, vaddr: u64) -> Option<(&'static str, u64, Option<u64>)> {
    // The kernel image map both architectures bootstrap from (x86_64: __START_KERNEL_map
    // and phys_base; arm64: from _text, at kimage_voffset).
    if let Some(map) = machine.kmem.image_map().filter(|m| m.translate(vaddr).is_some()) {
        return Some(("kernel image", map.vstart, map.translate(vaddr)));
    }
    match &machine.layout {
        Layout::X86_64(l) => {
            let five = l.paging_levels.value == Some(5);
            let physmem = if five { 1u64 << 52 } else { 1 << 46 };
            let vmalloc = if five { X86_VMALLOC_5 } else { X86_VMALLOC_4 };
            // A region of `size` at `base`, cut at the next region's base: with
            // RANDOMIZE_MEMORY the kernel sizes the direct map by the RAM (plus 10 TiB of
            // padding) and may start the vmalloc area well inside the 64 TiB it could span.
            let within = |base: Option<u64>, size: u64, next: Option<u64>| {
                base.filter(|&b| {
                    let end = next.filter(|&n| n > b).map_or(b.saturating_add(size), |n| n.min(b.saturating_add(size)));
                    vaddr >= b && vaddr < end
                })
            };
            let (vmalloc_base, vmemmap_base) = (l.vmalloc_base.value, l.vmemmap_base.value);
            if let Some(b) = within(l.page_offset_base.value, physmem, vmalloc_base) {
                return Some(("direct map", b, Some(vaddr - b)));
            }
            if let Some(b) = within(vmalloc_base, vmalloc, vmemmap_base) {
                return Some(("vmalloc", b, None));
            }
            // Struct pages of every possible frame, 64 bytes each.
            if let Some(b) = within(vmemmap_base, physmem >> 6, None) {
                return Some(("vmemmap", b, None));
            }
            if (X86_MODULES..X86_MODULES_END).contains(&vaddr) {
                return Some(("modules", X86_MODULES, None));
            }
            None
        }
        Layout::Aarch64(l) => {
            let (base, bits) = (l.page_offset.value?, l.va_bits_actual.value?);
            let size = 1u64.checked_shl(u32::try_from(bits.checked_sub(1)?).ok()?)?;
            if vaddr >= base && vaddr - base < size {
                let pa = l.phys_offset.value.map(|po| (vaddr - base).wrapping_add(po));
                return Some(("linear map", base, pa));
            }
            l.regions
                .iter()
                .find(|&&(_, start, end)| (start..end).contains(&vaddr))
                .map(|&(name, start, _)| (name, start, None))
        }
    }
}

/// Walks `vaddr` through the dump's page tables.
pub fn vtop(machine: &Machine, vaddr: u64) -> VtopReport {
    let region = region(machine, vaddr);
    // Only in the kernel's half: kallsyms also holds the per-CPU variables at small
    // offsets, which a user-space address would otherwise be named after.
    let symbol = machine
        .symbols
        .as_ref()
        .filter(|_| vaddr >> 63 == 1)
        .and_then(|s| s.addr2sym(vaddr))
        .map(|(sym, off, size)| format!("{}+{off:#x}/{size:#x}", sym.name));
    let (levels, steps, result) = match machine.kmem.walker() {
        Some(w) => {
            let (steps, result) = w.trace(vaddr);
            (w.mmu().levels, steps, result.map_err(|e| e.to_string()))
        }
        None => (0, Vec::new(), Err("the kernel's page tables are not known".to_string())),
    };
    let named: Vec<(&'static str, Step)> = steps.iter().map(|s| (level_name(levels, s.level), *s)).collect();
    let (paddr, page_size, error) = match result {
        Ok(t) => (Some(t.paddr), Some(t.page_size), None),
        Err(e) => (None, None, Some(e)),
    };
    VtopReport {
        vaddr: hex(vaddr),
        region: region.map(|(name, _, _)| name.to_string()),
        offset: region.map(|(_, start, _)| hex(vaddr - start)),
        symbol,
        steps: named
            .iter()
            .map(|(name, s)| StepReport {
                level: name,
                table: hex(s.table.0),
                index: s.index,
                entry_addr: hex(s.entry_addr()),
                entry: format!("{:#018x}", s.entry),
            })
            .collect(),
        paddr: paddr.map(hex),
        page_size,
        error,
        linear: region.and_then(|(_, _, pa)| pa).map(hex),
        raw: Raw {
            vaddr,
            paddr,
            // makedumpfile prints the entries of its x86_64 walks only (its arm64 one prints
            // the result alone, Debian's arm64 build shows).
            steps: match machine.arch {
                Arch::X86_64 => named.iter().map(|(n, s)| (*n, s.entry_addr(), s.entry)).collect(),
                Arch::Aarch64 => Vec::new(),
            },
        },
    }
}

/// The human rendering.
pub fn render(r: &VtopReport, out: &mut String) {
    use std::fmt::Write;
    let place = match (&r.region, &r.offset) {
        (Some(region), Some(off)) => format!("  {region} + {off}"),
        _ => String::new(),
    };
    let _ = writeln!(out, "virtual   {}{place}", r.vaddr);
    if let Some(sym) = &r.symbol {
        let _ = writeln!(out, "symbol    {sym}");
    }
    for s in &r.steps {
        let _ = writeln!(
            out,
            "  {:<4} table {:>12} [{:>3}]  {:>12} => {}",
            s.level, s.table, s.index, s.entry_addr, s.entry
        );
    }
    match (&r.paddr, r.page_size, &r.error) {
        (Some(pa), Some(size), _) => {
            let _ = write!(out, "physical  {pa}  ({} KiB page", size / 1024);
            match &r.linear {
                Some(lin) if lin == pa => {
                    let _ = write!(out, "; the {} offset agrees", r.region.as_deref().unwrap_or("region's"));
                }
                Some(lin) => {
                    let _ = write!(
                        out,
                        "; the {} offset says {lin}: they DIFFER",
                        r.region.as_deref().unwrap_or("region's")
                    );
                }
                None => {}
            }
            let _ = writeln!(out, ")");
        }
        (_, _, Some(e)) => {
            let _ = writeln!(out, "not mapped: {e}");
        }
        _ => {}
    }
}

/// makedumpfile's `--vtop` block: each entry as `  PGD : ADDR => ENTRY`, then the
/// address and its translation (all ones where there is none).
pub fn render_makedumpfile(r: &VtopReport, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(out, "\nTranslating virtual address {:x} to physical address.", r.raw.vaddr);
    for (name, addr, entry) in &r.raw.steps {
        let _ = writeln!(out, "  {name} : {addr:>16x} => {entry:>16x}");
    }
    let _ = writeln!(out, "VIRTUAL           PHYSICAL");
    let _ = writeln!(out, "{:16x}  {:x}\n", r.raw.vaddr, r.raw.paddr.unwrap_or(u64::MAX));
}

#[cfg(test)]
mod tests {
    use super::level_name;

    #[test]
    fn levels_fold_as_linux_folds_them() {
        assert_eq!((1..=5).map(|l| level_name(5, l)).collect::<Vec<_>>(), ["PTE", "PMD", "PUD", "P4D", "PGD"]);
        assert_eq!((1..=4).map(|l| level_name(4, l)).collect::<Vec<_>>(), ["PTE", "PMD", "PUD", "PGD"]);
        assert_eq!((1..=3).map(|l| level_name(3, l)).collect::<Vec<_>>(), ["PTE", "PMD", "PGD"]);
        assert_eq!((1..=2).map(|l| level_name(2, l)).collect::<Vec<_>>(), ["PTE", "PGD"]);
    }
}
