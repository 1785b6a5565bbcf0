//! The dumped machine as a whole: architecture, layout, kernel virtual memory, symbols.

use vmcore_physmem::Container;

use crate::dump::Dump;
use crate::kallsyms::{Kallsyms, Origin};
use crate::layout::{self, X86Layout};
use crate::vmcoreinfo::Utsname;
use crate::vmem::{KernelMem, LinearMap};

/// Architecture of the dump (from ELF `e_machine` or the kdump utsname, never the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86_64.
    X86_64,
    /// arm64.
    Aarch64,
}

impl Arch {
    /// The name `uname -m` prints.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

/// Errors of building the machine view.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The dump lacks what the view needs.
    #[error("{0}")]
    Missing(String),
    /// The VMCOREINFO file given is another kernel's ([`crate::dump::Error::WrongRelease`]).
    #[error(transparent)]
    WrongRelease(crate::dump::Error),
}

/// Layout by architecture.
#[derive(Debug, Clone)]
pub enum Layout {
    /// x86_64 values with their sources.
    X86_64(Box<X86Layout>),
    /// arm64 values with their sources.
    Aarch64(Box<crate::layout::aarch64::Aarch64Layout>),
}

/// The dumped machine.
#[derive(Debug)]
pub struct Machine {
    /// Architecture.
    pub arch: Arch,
    /// Layout values.
    pub layout: Layout,
    /// Kernel virtual memory.
    pub kmem: KernelMem,
    /// The kernel's symbols: kallsyms decoded from the dump when the kernel exports its
    /// tables (6.0+), else a list (System.map, the running kernel's /proc/kallsyms).
    pub symbols: Option<Kallsyms>,
    /// Why something could not be found (kallsyms missing, ...), for the user.
    pub notes: Vec<String>,
}

impl Machine {
    /// Builds the view of `dump`: bootstrap memory through the kernel image map, kallsyms
    /// through it, then every layout method.
    pub fn new(dump: &Dump) -> Result<Machine, Error> {
        Machine::build(dump, true)
    }

    /// Like [`Machine::new`] without decoding kallsyms (tens of milliseconds): for work that
    /// needs memory but no symbol names (the kernel log, filtering, writing). Layout values
    /// then come from VMCOREINFO, the PT_LOADs and the page tables.
    pub fn without_symbols(dump: &Dump) -> Result<Machine, Error> {
        Machine::build(dump, false)
    }

    fn build(dump: &Dump, decode_symbols: bool) -> Result<Machine, Error> {
        let vi = dump.require_vmcoreinfo().map_err(|e| Error::Missing(e.to_string()))?;
        let stated = dump.container.info().arch;
        // QEMU's arm64 kdump files name the machine "Unknown": VMCOREINFO tells.
        let inferred = match &dump.container {
            Container::Kdump { .. } if !matches!(stated.as_deref(), Some("x86_64" | "aarch64")) => {
                arch_from_vmcoreinfo(vi)
            }
            _ => None,
        };
        let arch = match inferred.map(|(arch, _)| arch).or(stated.as_deref()) {
            Some("x86_64") => Arch::X86_64,
            Some("aarch64") => Arch::Aarch64,
            Some(other) => {
                return Err(Error::Missing(format!("architecture {other}: vmcore reads x86_64 and aarch64 dumps")))
            }
            None => {
                return Err(Error::Missing(
                    "the dump names no architecture vmcore reads (ELF e_machine, or the kdump header's machine): \
                     x86_64 and aarch64 are read"
                        .into(),
                ))
            }
        };
        let boot = match arch {
            Arch::X86_64 => layout::bootstrap_x86_64(dump, vi),
            Arch::Aarch64 => KernelMem::new(dump.mem.clone(), aarch64_image_map(vi)),
        };
        let mut notes = Vec::new();
        if let Container::Kdump { mem, .. } = &dump.container {
            let page = dump.mem.page_size();
            if mem.block_size() > page {
                notes.push(format!(
                    "kdump: its blocks of {} bytes hold {} pages of {page} each (QEMU writes arm64 guests in 64 KiB \
                     blocks whatever their page size)",
                    mem.block_size(),
                    mem.block_size() / page
                ));
            }
        }
        if let Some((arch, key)) = inferred {
            notes.push(format!(
                "arch: the kdump header names the machine {:?}; {arch} from VMCOREINFO's {key}",
                stated.unwrap_or_default()
            ));
        }
        let read = |addr: u64, buf: &mut [u8]| boot.read(addr, buf).map_err(|e| e.to_string());
        let list = dump.symbol_list.as_ref();
        let symbols = if !decode_symbols {
            None
        } else if let Some(given) = list.filter(|l| l.given) {
            // Asked for: one that does not fit leaves no symbols, said (the layout does not
            // need them).
            match crate::symbol_list::read(&given.path, vi, false) {
                Ok(k) => Some(k),
                Err(e) => {
                    notes.push(format!("symbols: {e}"));
                    None
                }
            }
        } else if vi.symbol("kallsyms_names").is_some() {
            match Kallsyms::from_vmcoreinfo(vi, &read) {
                Ok(k) => Some(k),
                Err(e) => {
                    notes.push(format!("kallsyms: {e}"));
                    None
                }
            }
        } else {
            let old = crate::vmcoreinfo::release_before(vi.osrelease(), (6, 0, 0)) == Some(true);
            let why = if old {
                "kallsyms: this kernel does not export its tables in VMCOREINFO (before 6.0)"
            } else {
                "kallsyms: VMCOREINFO has no SYMBOL(kallsyms_names) (a kernel built without CONFIG_KALLSYMS?)"
            };
            match list.map(|found| crate::symbol_list::read(&found.path, vi, true)) {
                Some(Ok(k)) => Some(k),
                Some(Err(e)) => {
                    notes.push(format!("{why}, and {e} (give its System.map with --system-map FILE)"));
                    None
                }
                None => {
                    notes.push(format!("{why} (give its System.map with --system-map FILE)"));
                    None
                }
            }
        };
        let lookup = |name: &str| symbols.as_ref().and_then(|s| s.lookup(name));
        let (layout, kmem) = match arch {
            Arch::X86_64 => {
                let found = layout::discover_x86_64(dump, vi, &lookup);
                (Layout::X86_64(Box::new(found.layout)), found.kmem)
            }
            Arch::Aarch64 => {
                let found = layout::aarch64::discover(dump, vi, &lookup);
                (Layout::Aarch64(Box::new(found.layout)), found.kmem)
            }
        };
        let outside = match vi.source() {
            crate::vmcoreinfo::Source::File(file) => Some(file.clone()),
            crate::vmcoreinfo::Source::MemoryScan { paddr, .. } => {
                Some(format!("the VMCOREINFO found in memory at physical {paddr:#x}"))
            }
            _ => None,
        };
        if let Some(file) = outside {
            // The kernel's utsname, read with the file's own offsets, must say the file's
            // release, as makedumpfile checks: the only check there is for a dump with no
            // release of its own (an ELF vmcore without its note), and the one that finds
            // a file of another boot (offsets that lead nowhere). A note found in memory
            // may be a kernel's that ran before a kexec.
            let shown = dump.paths.first().map(|p| p.display().to_string()).unwrap_or_default();
            let wrong = |actual: String| {
                Error::WrongRelease(crate::dump::Error::WrongRelease {
                    vmcoreinfo: file.clone(),
                    given: vi.osrelease().map_or_else(|| "(none)".into(), crate::vmcoreinfo::shortened),
                    dump: format!("{shown} (its utsname)"),
                    actual,
                })
            };
            match vi.utsname_release(|addr, buf| kmem.read(addr, buf).map_err(|e| e.to_string())) {
                Utsname::Release(actual) if Some(actual.as_str()) != vi.osrelease() => return Err(wrong(actual)),
                Utsname::Release(_) => {}
                Utsname::NotThere => return Err(wrong("unknown (no utsname where the file's offsets point)".into())),
                Utsname::Unreadable(why) => {
                    return Err(Error::Missing(format!(
                        "{file}: the kernel's utsname cannot be read with this VMCOREINFO ({why}): it is another \
                         kernel's or another boot's, or one of its values (an address, the page-table root) is wrong"
                    )))
                }
            }
        }
        if let crate::vmcoreinfo::Source::MemoryScan { paddr, others } = vi.source() {
            notes.push(format!(
                "vmcoreinfo: the dump carries none; the kernel's own was found in its memory at physical \
                 {paddr:#x}, and its utsname agrees"
            ));
            if !others.is_empty() {
                let at: Vec<String> = others.iter().map(|a| format!("{a:#x}")).collect();
                notes.push(format!(
                    "vmcoreinfo: notes with other texts are in memory at {} (give one with --vmcoreinfo FILE to use it)",
                    at.join(", ")
                ));
            }
        }
        let mut layout = layout;
        if let Some(Origin::List { offset, measured: true, .. }) = symbols.as_ref().map(Kallsyms::origin) {
            // A second method for the KASLR offset, which VMCOREINFO alone states.
            let kaslr = match &mut layout {
                Layout::X86_64(l) => &mut l.kaslr_offset,
                Layout::Aarch64(l) => &mut l.kaslr_offset,
            };
            let mut sources = std::mem::take(&mut kaslr.sources);
            sources.push((crate::layout::Method::SystemMap, Some(*offset)));
            *kaslr = crate::layout::Derived::new(sources);
        }
        Ok(Machine { arch, layout, kmem, symbols, notes })
    }

    /// The address of a symbol: kallsyms, else VMCOREINFO `SYMBOL()`.
    pub fn symbol(&self, dump: &Dump, name: &str) -> Option<u64> {
        self.symbols
            .as_ref()
            .and_then(|s| s.lookup(name))
            .or_else(|| dump.vmcoreinfo.as_ref().and_then(|v| v.symbol(name)))
    }
}

/// The architecture VMCOREINFO implies, and the key that says it: keys only arm64's or
/// only x86_64's kernels export.
fn arch_from_vmcoreinfo(vi: &crate::vmcoreinfo::VmcoreInfo) -> Option<(&'static str, &'static str)> {
    const KEYS: [(&str, &str); 4] = [
        ("aarch64", "NUMBER(kimage_voffset)"),
        ("aarch64", "NUMBER(TCR_EL1_T1SZ)"),
        ("x86_64", "SYMBOL(init_top_pgt)"),
        ("x86_64", "NUMBER(pgtable_l5_enabled)"),
    ];
    KEYS.into_iter().find(|(_, key)| vi.get(key).is_some())
}

/// arm64's kernel image map, `vaddr - kimage_voffset`, around `_stext`. (The full arm64
/// layout is its own piece of work; this is what symbols need.)
fn aarch64_image_map(vi: &crate::vmcoreinfo::VmcoreInfo) -> Option<LinearMap> {
    let voffset = vi.number_u64("kimage_voffset")?;
    let stext = vi.symbol("_stext")?;
    let vstart = (stext & !0x1f_ffff).checked_sub(0x20_0000)?;
    Some(LinearMap { vstart, size: 512 << 20, pstart: vstart.wrapping_sub(voffset) })
}
