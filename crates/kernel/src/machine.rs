//! The dumped machine as a whole: architecture, layout, kernel virtual memory, symbols.

use crate::dump::Dump;
use crate::kallsyms::Kallsyms;
use crate::layout::{self, X86Layout};
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
    /// kallsyms decoded from the dump, when the kernel exports its tables (6.0+).
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
        let vi = dump
            .vmcoreinfo
            .as_ref()
            .ok_or_else(|| Error::Missing("the dump carries no VMCOREINFO (give --vmcoreinfo FILE)".into()))?;
        let arch = match dump.container.info().arch.as_deref() {
            Some("x86_64") => Arch::X86_64,
            Some("aarch64") => Arch::Aarch64,
            other => return Err(Error::Missing(format!("unsupported architecture {other:?}"))),
        };
        let boot = match arch {
            Arch::X86_64 => layout::bootstrap_x86_64(dump, vi),
            Arch::Aarch64 => KernelMem::new(dump.mem.clone(), aarch64_image_map(vi)),
        };
        let mut notes = Vec::new();
        let read = |addr: u64, buf: &mut [u8]| boot.read(addr, buf).map_err(|e| e.to_string());
        let symbols = if !decode_symbols {
            None
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
            notes.push(if old {
                "kallsyms: this kernel does not export its tables in VMCOREINFO (before 6.0)".into()
            } else {
                "kallsyms: VMCOREINFO has no SYMBOL(kallsyms_names) (a kernel built without CONFIG_KALLSYMS?)".into()
            });
            None
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
        if let crate::vmcoreinfo::Source::File(file) = vi.source() {
            // A dump with no release of its own (an ELF vmcore without its note): the
            // kernel's utsname, read with the file's own offsets, must agree with it.
            match (utsname_release(vi, &kmem), vi.osrelease()) {
                (Some(actual), Some(given)) if actual != given => {
                    let shown = dump.paths.first().map(|p| p.display().to_string()).unwrap_or_default();
                    return Err(Error::WrongRelease(crate::dump::Error::WrongRelease {
                        vmcoreinfo: file.clone(),
                        given: given.to_string(),
                        dump: format!("{shown} (its utsname)"),
                        actual,
                    }));
                }
                (None, _) => notes.push(format!(
                    "{file}: the kernel's utsname cannot be read with this VMCOREINFO: it may be another kernel's or another boot's"
                )),
                _ => {}
            }
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

/// The release in the kernel's `struct new_utsname` (its third 65-byte field, after
/// sysname and nodename), at the first place VMCOREINFO points to whose sysname reads
/// "Linux".
fn utsname_release(vi: &crate::vmcoreinfo::VmcoreInfo, kmem: &KernelMem) -> Option<String> {
    const FIELD: usize = 65;
    vi.utsname_candidates().into_iter().find_map(|addr| {
        let mut uts = [0u8; 3 * FIELD];
        kmem.read(addr, &mut uts).ok()?;
        if !uts.starts_with(b"Linux\0") {
            return None;
        }
        let release = uts.get(2 * FIELD..)?;
        let len = release.iter().position(|&b| b == 0).unwrap_or(FIELD);
        Some(String::from_utf8_lossy(release.get(..len)?).into_owned())
    })
}

/// arm64's kernel image map, `vaddr - kimage_voffset`, around `_stext`. (The full arm64
/// layout is its own piece of work; this is what symbols need.)
fn aarch64_image_map(vi: &crate::vmcoreinfo::VmcoreInfo) -> Option<LinearMap> {
    let voffset = vi.number_u64("kimage_voffset")?;
    let stext = vi.symbol("_stext")?;
    let vstart = (stext & !0x1f_ffff).checked_sub(0x20_0000)?;
    Some(LinearMap { vstart, size: 512 << 20, pstart: vstart.wrapping_sub(voffset) })
}
