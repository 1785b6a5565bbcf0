//! An opened dump: the container, its physical memory, and the kernel's VMCOREINFO.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vmcore_physmem::{open_container, Container, PhysMem, ReadOptions};
use vmcore_types::bytes::u32_at;
use vmcore_types::PhysAddr;

use crate::vmcoreinfo::{self, Source, Utsname, VmcoreInfo, MAX_VMCOREINFO};

/// Errors of opening a dump.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The dump file is bad or unreadable.
    #[error(transparent)]
    Phys(#[from] vmcore_physmem::Error),
    /// The VMCOREINFO is bad.
    #[error("{path}: {cause}")]
    Vmcoreinfo {
        /// Where it came from.
        path: String,
        /// What is wrong.
        cause: vmcoreinfo::Error,
    },
    /// A file next to the dump could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        cause: std::io::Error,
    },
    /// A VMCOREINFO file given for the dump is another kernel's (makedumpfile exits 2).
    #[error("{vmcoreinfo}: VMCOREINFO of kernel {given}, but {dump} is a dump of kernel {actual}")]
    WrongRelease {
        /// The file given.
        vmcoreinfo: String,
        /// Its OSRELEASE.
        given: String,
        /// The dump, and where its release was read.
        dump: String,
        /// The dump's release.
        actual: String,
    },
    /// Something the dump needs is not there.
    #[error("{0}")]
    Missing(String),
    /// A value the dump gives is impossible.
    #[error("{0}")]
    Invalid(String),
}

/// Page sizes of the architectures vmcore models: x86_64 has 4 KiB pages, arm64 4, 16 or
/// 64 KiB. Buffers are sized by pages, so a bigger claimed size is refused, not allocated.
const PAGE_SIZES: std::ops::RangeInclusive<u64> = 4096..=65536;

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// How to open a dump.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// A VMCOREINFO text file to use instead of the dump's own (`makedumpfile -i`).
    pub vmcoreinfo_file: Option<PathBuf>,
    /// For the running kernel's /proc/kcore without the note (kernels before 4.19): where
    /// the kernel says its VMCOREINFO note is. `None` disables the fallback.
    pub sys_vmcoreinfo: Option<SysVmcoreinfo>,
    /// A symbol list (System.map) of the dump's kernel, for kernels whose dumps carry no
    /// kallsyms tables (before 6.0); checked against VMCOREINFO ([`crate::symbol_list`]).
    pub system_map: Option<PathBuf>,
    /// The running kernel's symbol list, used for its /proc/kcore (as `sys_vmcoreinfo`
    /// tells it) when no `system_map` is given.
    pub live_kallsyms: Option<PathBuf>,
    /// Whether a dump that carries no VMCOREINFO (QEMU's `dump-guest-memory` without
    /// `-device vmcoreinfo`, `virsh dump`) is searched for the note the kernel keeps in
    /// its memory.
    pub scan_memory: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            vmcoreinfo_file: None,
            sys_vmcoreinfo: Some(SysVmcoreinfo { path: PathBuf::from("/sys/kernel/vmcoreinfo"), describes: on_procfs }),
            system_map: None,
            live_kallsyms: Some(PathBuf::from("/proc/kallsyms")),
            scan_memory: true,
        }
    }
}

/// A running kernel's own statement of where its VMCOREINFO note is.
#[derive(Debug, Clone)]
pub struct SysVmcoreinfo {
    /// The file (`/sys/kernel/vmcoreinfo`: address and size, in hex).
    pub path: PathBuf,
    /// Whether a kcore input is that kernel's: a saved copy of some /proc/kcore is another
    /// boot's, maybe another machine's, and this machine's file says nothing of it.
    pub describes: fn(&Path) -> bool,
}

/// Whether `path` is a procfs file: the kcore of the kernel running here (or of the
/// host, through a container's mount of its /proc).
pub fn on_procfs(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|fs| fs.f_type == rustix::fs::PROC_SUPER_MAGIC)
}

/// An opened dump.
#[derive(Debug)]
pub struct Dump {
    /// The files it was opened from.
    pub paths: Vec<PathBuf>,
    /// The container (format-level view).
    pub container: Container,
    /// Its physical memory.
    pub mem: Arc<dyn PhysMem>,
    /// The kernel's VMCOREINFO, when the dump or the user supplied one.
    pub vmcoreinfo: Option<VmcoreInfo>,
    /// Why a fallback that should have found the VMCOREINFO did not, for the error of
    /// `require_vmcoreinfo`.
    vmcoreinfo_missed: Option<String>,
    /// Where the kernel's symbols are listed, when not in the dump's kallsyms.
    pub symbol_list: Option<SymbolList>,
}

/// A file listing the dump's kernel's symbols.
#[derive(Debug, Clone)]
pub struct SymbolList {
    /// The file.
    pub path: PathBuf,
    /// Given by the user (a list that does not fit is then an error), or found (the
    /// running kernel's /proc/kallsyms: then a note).
    pub given: bool,
}

fn read_small_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |cause| Error::Io { path: path.display().to_string(), cause };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(MAX_VMCOREINFO as u64 + 1).read_to_end(&mut buf).map_err(io)?;
    Ok(buf)
}

impl Dump {
    /// Opens `paths` (one file, or every file of a split set).
    pub fn open(paths: &[PathBuf], opts: &OpenOptions) -> Result<Dump> {
        let container = open_container(paths)?;
        let name = paths.first().map(|p| p.display().to_string()).unwrap_or_default();
        let parse = |raw: &[u8], source: Source, path: String| {
            VmcoreInfo::parse(raw, source).map_err(|cause| Error::Vmcoreinfo { path, cause })
        };
        let mut vmcoreinfo = match &opts.vmcoreinfo_file {
            Some(file) => {
                let shown = file.display().to_string();
                let given = parse(&read_small_file(file)?, Source::File(shown.clone()), shown.clone())?;
                if !given.lines().any(|(_, v)| !v.is_empty()) {
                    return Err(Error::Vmcoreinfo { path: shown, cause: crate::vmcoreinfo::Error::Empty });
                }
                // Another kernel's offsets would read the dump's struct pages wrong and
                // filter out the wrong pages, silently: only the dump's own release will do.
                let own = match container.vmcoreinfo() {
                    Ok(Some(raw)) => {
                        VmcoreInfo::parse(&raw, Source::ElfNote).ok().and_then(|v| v.osrelease().map(str::to_string))
                    }
                    _ => None,
                };
                let own = own.or_else(|| match &container {
                    Container::Kdump { mem, .. } => mem.primary().map(|k| k.header.utsname.release.clone()),
                    Container::Elf { .. } => None,
                });
                if let (Some(own), Some(theirs)) = (own.filter(|r| !r.is_empty()), given.osrelease()) {
                    if own != theirs {
                        return Err(Error::WrongRelease {
                            vmcoreinfo: shown,
                            given: crate::vmcoreinfo::shortened(theirs),
                            dump: name,
                            actual: own,
                        });
                    }
                }
                Some(given)
            }
            None => match container.vmcoreinfo()? {
                Some(raw) => {
                    let source = match container {
                        Container::Elf { .. } => Source::ElfNote,
                        Container::Kdump { .. } => Source::KdumpSubHeader,
                    };
                    Some(parse(&raw, source, name.clone())?)
                }
                None => None,
            },
        };
        let is_kcore = container.info().format.ends_with("kcore");
        // The running kernel's own /proc/kcore, which its sysfs and /proc/kallsyms describe.
        let live = is_kcore
            && paths.first().is_some_and(|path| opts.sys_vmcoreinfo.as_ref().is_some_and(|sys| (sys.describes)(path)));
        let mut vmcoreinfo_missed = None;
        if vmcoreinfo.is_none() && is_kcore {
            match &opts.sys_vmcoreinfo {
                Some(sys) if live => {
                    // Tools that need no VMCOREINFO (info, read) still work without it.
                    let found = container
                        .physmem(4096)
                        .map_err(Error::from)
                        .and_then(|mem| read_sys_vmcoreinfo(&sys.path, &*mem));
                    match found.and_then(|(paddr, raw)| {
                        parse(&raw, Source::SysKernel { paddr }, sys.path.display().to_string())
                    }) {
                        Ok(found) => vmcoreinfo = Some(found),
                        Err(e) => vmcoreinfo_missed = Some(e.to_string()),
                    }
                }
                Some(sys) => {
                    vmcoreinfo_missed = Some(format!(
                        "{} describes the running kernel only, and {name} is not its /proc/kcore",
                        sys.path.display()
                    ))
                }
                None => {}
            }
        }
        if vmcoreinfo.is_none() && !is_kcore && opts.scan_memory {
            // Read in the dump's own blocks; a note aligned to any page size is found at a
            // 4 KiB boundary in them (`MIN_PAGE_SIZE`).
            let scan_page = match &container {
                Container::Kdump { mem, .. } => mem.page_size(),
                Container::Elf { .. } => 4096,
            };
            if let Some(found) = find_vmcoreinfo_note(&*container.physmem(scan_page)?) {
                let source = Source::MemoryScan { paddr: found.paddr, others: found.others };
                vmcoreinfo = Some(parse(&found.desc, source, name.clone())?);
            }
        }
        let stated = vmcoreinfo.as_ref().and_then(|vi| vi.get("PAGESIZE"));
        let (page_size, shown, source) = match (stated, &container) {
            (Some(text), _) => {
                (text.trim().parse::<u64>().ok(), crate::vmcoreinfo::shortened(text.trim()), "VMCOREINFO PAGESIZE")
            }
            (None, Container::Kdump { mem, .. }) => {
                (Some(mem.page_size()), mem.page_size().to_string(), "the kdump header's block_size")
            }
            _ if container.info().arch.as_deref() == Some("x86_64") => (Some(4096), "4096".into(), "x86_64"),
            _ => {
                return Err(Error::Missing(format!(
                    "{name}: cannot tell the page size: no VMCOREINFO PAGESIZE (give --vmcoreinfo FILE)"
                )))
            }
        };
        let page_size = page_size.filter(|p| p.is_power_of_two() && PAGE_SIZES.contains(p)).ok_or_else(|| {
            Error::Invalid(format!(
                "{name}: page size {shown} from {source}: expected a power of two from {} to {}{}",
                PAGE_SIZES.start(),
                PAGE_SIZES.end(),
                if stated.is_some() { " (give a good VMCOREINFO with --vmcoreinfo FILE)" } else { "" }
            ))
        })?;
        // A size some architecture has, but not this one (x86_64 has only 4 KiB pages).
        if container.info().arch.as_deref() == Some("x86_64") && page_size != 4096 {
            return Err(Error::Invalid(format!(
                "{name}: page size {shown} from {source}: x86_64 pages are 4096 bytes{}",
                if stated.is_some() { " (give a good VMCOREINFO with --vmcoreinfo FILE)" } else { "" }
            )));
        }
        let mut container = container;
        if let Container::Kdump { mem, .. } = &mut container {
            if mem.block_size() > page_size {
                // QEMU's arm64 dumps: blocks of 64 KiB, whatever the kernel's pages.
                let only_owner = || Error::Invalid(format!("{name}: the kdump file is in use"));
                Arc::get_mut(mem).ok_or_else(only_owner)?.split_blocks(page_size)?;
            }
        }
        let mem = container.physmem(page_size)?;
        let symbol_list = match (&opts.system_map, &opts.live_kallsyms) {
            (Some(path), _) => Some(SymbolList { path: path.clone(), given: true }),
            (None, Some(path)) if live => Some(SymbolList { path: path.clone(), given: false }),
            _ => None,
        };
        Ok(Dump { paths: paths.to_vec(), container, mem, vmcoreinfo, vmcoreinfo_missed, symbol_list })
    }

    /// The VMCOREINFO, or an error saying the dump has none.
    pub fn require_vmcoreinfo(&self) -> Result<&VmcoreInfo> {
        self.vmcoreinfo.as_ref().ok_or_else(|| {
            let name = self.paths.first().map(|p| p.display().to_string()).unwrap_or_default();
            let kcore = self.container.info().format.ends_with("kcore");
            Error::Missing(if kcore {
                let why = self.vmcoreinfo_missed.as_ref().map(|why| format!("; {why}")).unwrap_or_default();
                format!("{name}: the dump carries no VMCOREINFO{why} (give --vmcoreinfo FILE)")
            } else {
                format!(
                    "{name}: the dump carries no VMCOREINFO, nor does its memory hold the kernel's (give \
                     --vmcoreinfo FILE; QEMU includes it in dumps of guests run with -device vmcoreinfo)"
                )
            })
        })
    }
}

/// Reads the VMCOREINFO note at the physical address /sys/kernel/vmcoreinfo names
/// (`"%llx %x"`: address and note size).
fn read_sys_vmcoreinfo(sys: &Path, mem: &dyn PhysMem) -> Result<(u64, Vec<u8>)> {
    let text = read_small_file(sys)?;
    let text = String::from_utf8_lossy(&text);
    let bad =
        || Error::Missing(format!("{}: expected \"ADDRESS SIZE\" in hex, found {:?}", sys.display(), text.trim()));
    let mut words = text.split_whitespace();
    let hex = |w: Option<&str>| w.and_then(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok());
    let paddr = hex(words.next()).ok_or_else(bad)?;
    let size = hex(words.next()).filter(|&s| s >= 12 && s <= MAX_VMCOREINFO as u64).ok_or_else(bad)?;
    let mut note = vec![0u8; size as usize];
    mem.read(PhysAddr(paddr), &mut note, ReadOptions::default())?;
    let namesz = u32_at(&note, 0, false).unwrap_or(0) as usize;
    let descsz = u32_at(&note, 4, false).unwrap_or(0) as usize;
    let desc_start = (12 + namesz).div_ceil(4) * 4;
    let desc = note.get(desc_start..desc_start.saturating_add(descsz)).ok_or_else(|| {
        Error::Missing(format!(
            "VMCOREINFO note at physical {paddr:#x} (from {}) is malformed: descriptor of {descsz} bytes past its {size}",
            sys.display()
        ))
    })?;
    Ok((paddr, desc.to_vec()))
}

/// A VMCOREINFO note found in a dump's memory.
struct FoundNote {
    paddr: u64,
    desc: Vec<u8>,
    /// Where other notes are: those passed over as another kernel's, and those with a
    /// different text when the one used is not page-aligned (the search then ran through
    /// all memory).
    others: Vec<u64>,
}

/// Notes with a different text remembered besides the one used.
const MAX_OTHER_NOTES: usize = 8;

/// Searches the dumped pages for the ELF note the kernel keeps its VMCOREINFO in: name
/// "VMCOREINFO" (namesz 11), type 0, a descriptor that starts "OSRELEASE=". Since 4.15 the
/// note has pages of its own (`vmcoreinfo_note`, where /sys/kernel/vmcoreinfo points), so
/// the first page-aligned note ends the search, which passes over the pages before it
/// only (low memory: it is allocated early in boot). Older kernels keep it in .bss, 4-byte
/// aligned; then the first of those is used. Without any note, the text the kernel builds
/// it from (`vmcoreinfo_data`, a page of its own since 4.15, NUL-terminated) will do.
///
/// A note that `utsname_disagrees` (another kernel's, left from before a kexec) is passed
/// over, named among `others`, and used only when nothing else is found.
fn find_vmcoreinfo_note(mem: &dyn PhysMem) -> Option<FoundNote> {
    let page_size = mem.page_size();
    let mut page = vec![0u8; page_size as usize];
    let mut unaligned: Option<FoundNote> = None;
    let mut text: Option<FoundNote> = None;
    let mut passed_over = Vec::new();
    // The first note passed over: with no other, the machine's check says why it is wrong.
    let mut refused: Option<FoundNote> = None;
    for range in mem.ranges() {
        let mut failed_in_a_row = 0;
        let mut pfn = range.start / page_size;
        while pfn < range.end.div_ceil(page_size) {
            if let Some(end) = mem.zero_filled_until(vmcore_types::Pfn(pfn)).filter(|&e| e > pfn) {
                pfn = end;
                continue;
            }
            let state = mem.read_page(vmcore_types::Pfn(pfn), &mut page);
            let page_addr = pfn * page_size;
            pfn += 1;
            match state {
                Ok(vmcore_physmem::PageState::Dumped) => failed_in_a_row = 0,
                Ok(_) => continue,
                // A segment whose data the file does not hold (cut short, or a crafted
                // size of terabytes) fails on every page: the rest of the range is left.
                // A page or two that fail (a corrupt block) are passed over.
                Err(_) => {
                    failed_in_a_row += 1;
                    if failed_in_a_row >= MAX_FAILED_IN_A_ROW {
                        break;
                    }
                    continue;
                }
            }
            for at in (0..page.len()).step_by(MIN_PAGE_SIZE as usize) {
                let Some(rest) = page.get(at..).filter(|r| text.is_none() && r.starts_with(b"OSRELEASE=")) else {
                    continue;
                };
                let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                let desc = rest.get(..len).unwrap_or_default().to_vec();
                text = Some(FoundNote { paddr: page_addr + at as u64, desc, others: Vec::new() });
            }
            for at in (0..page.len()).step_by(4) {
                // The header and name in this page, when they fit in it, before any read.
                let head = page.get(at..at + NOTE_HEAD.len());
                let is_head = match head {
                    Some(h) => h.get(..4) == Some(&NOTE_HEAD[..4]) && h.get(8..) == Some(&NOTE_HEAD[8..]),
                    None => u32_at(&page, at, false) == Some(VMCOREINFO_NAMESZ),
                };
                if !is_head {
                    continue;
                }
                let Some(desc) = vmcoreinfo_note_at(mem, page_addr + at as u64) else { continue };
                if utsname_disagrees(&desc, mem) {
                    if passed_over.len() < MAX_OTHER_NOTES {
                        passed_over.push(page_addr + at as u64);
                    }
                    refused.get_or_insert(FoundNote { paddr: page_addr + at as u64, desc, others: Vec::new() });
                    continue;
                }
                if (page_addr + at as u64) % MIN_PAGE_SIZE == 0 {
                    let mut found = FoundNote { paddr: page_addr + at as u64, desc, others: passed_over };
                    if let Some(first) = unaligned {
                        found.others.push(first.paddr);
                    }
                    return Some(found);
                }
                match &mut unaligned {
                    None => unaligned = Some(FoundNote { paddr: page_addr + at as u64, desc, others: Vec::new() }),
                    Some(first) if first.desc != desc && first.others.len() < MAX_OTHER_NOTES => {
                        first.others.push(page_addr + at as u64)
                    }
                    Some(_) => {}
                }
            }
        }
    }
    let Some(mut found) = unaligned.or(text) else { return refused };
    found.others.splice(0..0, passed_over);
    Some(found)
}

/// Whether the utsname a VMCOREINFO text points to, reached without page tables (through
/// the kernel image's fixed offset from its physical load address, as `__pa_symbol`
/// does: `__START_KERNEL_map` and phys_base on x86_64, kimage_voffset on arm64), is
/// readable and says another release than the text's. Where it cannot tell, false: the
/// machine's own check, through the page tables, follows.
fn utsname_disagrees(desc: &[u8], mem: &dyn PhysMem) -> bool {
    use crate::layout::START_KERNEL_MAP;
    let Ok(vi) = VmcoreInfo::parse(desc, Source::ElfNote) else { return false };
    let Some(release) = vi.osrelease() else { return false };
    let to_phys = |va: u64| match (vi.number_u64("kimage_voffset"), vi.number_u64("phys_base")) {
        (Some(voffset), _) => va.checked_sub(voffset),
        (None, Some(phys_base)) => va.checked_sub(START_KERNEL_MAP).map(|o| o.wrapping_add(phys_base)),
        (None, None) => None,
    };
    let read = |va: u64, buf: &mut [u8]| {
        let pa = to_phys(va).ok_or_else(|| format!("{va:#x} is outside the kernel image"))?;
        mem.read(PhysAddr(pa), buf, ReadOptions::default()).map_err(|e| e.to_string())
    };
    match vi.utsname_release(read) {
        Utsname::Release(actual) => actual != release,
        // Memory where the utsname should be, and no utsname in it.
        Utsname::NotThere => true,
        Utsname::Unreadable(_) => false,
    }
}

/// Pages in a row whose reads fail that end the search of a range.
const MAX_FAILED_IN_A_ROW: u32 = 64;

/// The smallest page size: QEMU's arm64 kdump files have blocks of 64 KiB, in which a
/// 4 KiB page of its own lies at any 4 KiB boundary.
const MIN_PAGE_SIZE: u64 = 4096;

/// "VMCOREINFO" and its NUL.
const VMCOREINFO_NAMESZ: u32 = 11;

/// A VMCOREINFO note's first 24 bytes but its descriptor size (bytes 4-7): namesz 11,
/// type 0, the name padded to 12 bytes (little-endian, as x86_64 and arm64 write it).
const NOTE_HEAD: [u8; 24] = *b"\x0b\0\0\0\0\0\0\0\0\0\0\0VMCOREINFO\0\0";

/// The descriptor of the VMCOREINFO note at `paddr`, if one is there. Its first bytes are
/// read, and checked, before the rest.
fn vmcoreinfo_note_at(mem: &dyn PhysMem, paddr: u64) -> Option<Vec<u8>> {
    const START: &[u8] = b"OSRELEASE=";
    let mut head = [0u8; 24 + START.len()];
    mem.read(PhysAddr(paddr), &mut head, ReadOptions::default()).ok()?;
    let descsz = u32_at(&head, 4, false)? as usize;
    let is_note =
        head.get(..4) == NOTE_HEAD.get(..4) && head.get(8..24) == NOTE_HEAD.get(8..) && head.get(24..) == Some(START);
    if !is_note || !(START.len()..=MAX_VMCOREINFO).contains(&descsz) {
        return None;
    }
    let mut desc = vec![0u8; descsz];
    mem.read(PhysAddr(paddr + 24), &mut desc, ReadOptions::default()).ok()?;
    Some(desc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmcore_formats::elf::test_support::{header, note};

    const VMCOREINFO: &[u8] = b"OSRELEASE=4.18.0-live\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff8200a000\n";

    /// A /proc/kcore of a kernel before 4.19: no VMCOREINFO note, only the task_struct
    /// note; RAM at physical 0x100000 holds the VMCOREINFO note the kernel keeps.
    fn old_kcore(dir: &Path) -> PathBuf {
        let notes = note("CORE", 4, &[0u8; 64]);
        let ram_off = 0x2000u64;
        let mut f = header(&[(0x100000, 0xffff888000100000, ram_off, 0x2000, 0x2000)], (0x1000, notes.len() as u64));
        f.resize(0x1000, 0);
        f.extend_from_slice(&notes);
        f.resize(ram_off as usize + 0x234, 0);
        f.extend_from_slice(&note("VMCOREINFO", 0, VMCOREINFO));
        f.resize(ram_off as usize + 0x2000, 0);
        let path = dir.join("kcore");
        std::fs::write(&path, f).unwrap();
        path
    }

    fn sysfs(path: &Path, describes: fn(&Path) -> bool) -> OpenOptions {
        let sys_vmcoreinfo = Some(SysVmcoreinfo { path: path.to_path_buf(), describes });
        OpenOptions { vmcoreinfo_file: None, sys_vmcoreinfo, scan_memory: true, ..OpenOptions::default() }
    }

    #[test]
    fn kcore_without_the_note_reads_vmcoreinfo_where_sysfs_says() {
        let dir = tempfile::tempdir().unwrap();
        let kcore = old_kcore(dir.path());
        let sys = dir.path().join("vmcoreinfo");
        std::fs::write(&sys, "0x0000000000100234 1024\n").unwrap();
        let opts = sysfs(&sys, |_| true);
        let dump = Dump::open(std::slice::from_ref(&kcore), &opts).unwrap();
        let vi = dump.require_vmcoreinfo().unwrap();
        assert_eq!(vi.raw(), VMCOREINFO);
        assert_eq!(vi.source(), &Source::SysKernel { paddr: 0x100234 });
        assert_eq!(dump.container.info().format, "kcore");

        // What needs no VMCOREINFO still works; what needs it says why it is missing.
        std::fs::write(&sys, "garbage\n").unwrap();
        let dump = Dump::open(std::slice::from_ref(&kcore), &opts).unwrap();
        let err = dump.require_vmcoreinfo().unwrap_err().to_string();
        assert!(err.contains("no VMCOREINFO") && err.contains("expected \"ADDRESS SIZE\""), "{err}");
        std::fs::write(&sys, "0x0000000000900000 1024\n").unwrap();
        let err =
            Dump::open(std::slice::from_ref(&kcore), &opts).unwrap().require_vmcoreinfo().unwrap_err().to_string();
        assert!(err.contains("0x900000"), "{err}");

        let none =
            OpenOptions { vmcoreinfo_file: None, sys_vmcoreinfo: None, scan_memory: false, ..OpenOptions::default() };
        let dump = Dump::open(&[kcore], &none).unwrap();
        assert!(dump.require_vmcoreinfo().unwrap_err().to_string().contains("no VMCOREINFO"));
    }

    /// This machine's sysfs says where this machine's kernel keeps its note: a saved copy
    /// of another kernel's /proc/kcore may hold anything there.
    #[test]
    fn a_saved_kcore_is_not_read_with_this_machines_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let kcore = old_kcore(dir.path());
        let sys = dir.path().join("vmcoreinfo");
        std::fs::write(&sys, "0x0000000000100234 1024\n").unwrap();
        assert!(!on_procfs(&kcore));
        let dump = Dump::open(std::slice::from_ref(&kcore), &sysfs(&sys, on_procfs)).unwrap();
        assert!(dump.vmcoreinfo.is_none());
        let err = dump.require_vmcoreinfo().unwrap_err().to_string();
        assert!(err.contains("is not its /proc/kcore") && err.contains(&*sys.to_string_lossy()), "{err}");
    }

    #[test]
    fn proc_files_are_told_from_others() {
        assert!(on_procfs(Path::new("/proc/self/status")));
        assert!(!on_procfs(Path::new("/")));
        assert!(!on_procfs(Path::new("/nonexistent/kcore")));
    }

    #[test]
    fn a_vmcoreinfo_file_overrides_the_dump() {
        let dir = tempfile::tempdir().unwrap();
        let kcore = old_kcore(dir.path());
        let file = dir.path().join("vmcoreinfo.txt");
        std::fs::write(&file, "OSRELEASE=given\nPAGESIZE=4096\n").unwrap();
        let opts = OpenOptions {
            vmcoreinfo_file: Some(file),
            sys_vmcoreinfo: None,
            scan_memory: false,
            ..OpenOptions::default()
        };
        let dump = Dump::open(&[kcore], &opts).unwrap();
        assert_eq!(dump.require_vmcoreinfo().unwrap().osrelease(), Some("given"));
        assert!(matches!(dump.require_vmcoreinfo().unwrap().source(), Source::File(_)));
    }

    /// An ELF vmcore without a VMCOREINFO note (QEMU's `dump-guest-memory` without
    /// `-device vmcoreinfo`) whose RAM holds notes at the physical addresses `notes` gives.
    fn noteless_elf(dir: &Path, notes: &[(u64, &str)]) -> PathBuf {
        let path = dir.join("qemu.elf");
        let mut spec = vmcore_synth::elf::ElfVmcore::new(vmcore_synth::elf::EM_X86_64);
        spec.notes.push(vmcore_synth::elf::prstatus_note());
        spec.loads.push(vmcore_synth::elf::Load::full(0, 0, 0x10000));
        let bytes: Vec<(u64, Vec<u8>)> =
            notes.iter().map(|&(paddr, text)| (paddr, note("VMCOREINFO", 0, text.as_bytes()))).collect();
        let image = spec
            .to_vec(|paddr, buf| {
                buf.fill(0xcc);
                for (at, note) in &bytes {
                    for (i, b) in note.iter().enumerate() {
                        if let Some(dst) = (at + i as u64).checked_sub(paddr).and_then(|o| buf.get_mut(o as usize)) {
                            *dst = *b;
                        }
                    }
                }
            })
            .unwrap();
        std::fs::write(&path, image).unwrap();
        path
    }

    #[test]
    fn a_dump_without_vmcoreinfo_has_it_found_in_its_memory() {
        let dir = tempfile::tempdir().unwrap();
        let open = |notes: &[(u64, &str)], scan_memory: bool| {
            let path = noteless_elf(dir.path(), notes);
            let opts =
                OpenOptions { vmcoreinfo_file: None, sys_vmcoreinfo: None, scan_memory, ..OpenOptions::default() };
            let dump = Dump::open(std::slice::from_ref(&path), &opts).unwrap();
            std::fs::remove_file(&path).unwrap();
            dump.vmcoreinfo.map(|vi| (vi.source().clone(), vi.osrelease().map(str::to_string)))
        };
        let found = |paddr, others: Vec<u64>, release: &str| {
            Some((Source::MemoryScan { paddr, others }, Some(release.to_string())))
        };
        // The page-aligned note (4.15+: pages of its own) is preferred to one found before
        // it (a copy in .bss, or text that happens to look like a note).
        let notes = [(0x2344, "OSRELEASE=old\n"), (0x5000, "OSRELEASE=new\nPAGESIZE=4096\n")];
        assert_eq!(open(&notes, true), found(0x5000, vec![0x2344], "new"));
        assert_eq!(open(&notes, false), None);
        // Without one, the first 4-byte-aligned note, the others with another text named.
        let notes = [(0x2344, "OSRELEASE=a\n"), (0x3ffc, "OSRELEASE=b\n"), (0x8008, "OSRELEASE=a\n")];
        assert_eq!(open(&notes, true), found(0x2344, vec![0x3ffc], "a"));
        // Without a note, the page of text the kernel builds it from.
        let path = noteless_elf(dir.path(), &[(0x3000, "OSRELEASE=b\n")]);
        let mut image = std::fs::read(&path).unwrap();
        let ram = image.len() - 0x10000;
        image[ram + 0x6000..ram + 0x600c].copy_from_slice(b"OSRELEASE=t\n");
        image[ram + 0x600c] = 0;
        std::fs::write(&path, &image).unwrap();
        let opts =
            OpenOptions { vmcoreinfo_file: None, sys_vmcoreinfo: None, scan_memory: true, ..OpenOptions::default() };
        let vi = Dump::open(std::slice::from_ref(&path), &opts).unwrap().vmcoreinfo.unwrap();
        assert_eq!((vi.source(), vi.osrelease()), (&Source::MemoryScan { paddr: 0x3000, others: vec![] }, Some("b")));
        image[ram + 0x3000 + 8] = 1;
        std::fs::write(&path, &image).unwrap();
        let vi = Dump::open(&[path], &opts).unwrap().vmcoreinfo.unwrap();
        assert_eq!(
            (vi.source(), vi.raw()),
            (&Source::MemoryScan { paddr: 0x6000, others: vec![] }, &b"OSRELEASE=t\n"[..])
        );
        // A note whose text is not VMCOREINFO's, or of the wrong type, is none.
        assert_eq!(open(&[(0x1000, "PAGESIZE=4096\n")], true), None);
        let path = noteless_elf(dir.path(), &[(0x1000, "OSRELEASE=x\n")]);
        let opts =
            OpenOptions { vmcoreinfo_file: None, sys_vmcoreinfo: None, scan_memory: true, ..OpenOptions::default() };
        assert!(Dump::open(std::slice::from_ref(&path), &opts).unwrap().vmcoreinfo.is_some());
        let mut image = std::fs::read(&path).unwrap();
        let n_type = image.len() - 0x10000 + 0x1000 + 8;
        image[n_type] = 1;
        std::fs::write(&path, image).unwrap();
        assert!(Dump::open(&[path], &opts).unwrap().vmcoreinfo.is_none());
    }

    /// Memory of 2^32 pages whose reads all fail (a segment claiming 16 TiB of a file
    /// that holds none of it), counting the reads.
    #[derive(Debug, Default)]
    struct Unreadable(std::sync::atomic::AtomicU64);

    impl PhysMem for Unreadable {
        fn page_size(&self) -> u64 {
            4096
        }
        fn max_pfn(&self) -> u64 {
            1 << 32
        }
        fn page_state(&self, _: vmcore_types::Pfn) -> vmcore_physmem::Result<vmcore_physmem::PageState> {
            Ok(vmcore_physmem::PageState::Dumped)
        }
        fn read_page(&self, pfn: vmcore_types::Pfn, _: &mut [u8]) -> vmcore_physmem::Result<vmcore_physmem::PageState> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(vmcore_physmem::Error::Hole { addr: PhysAddr(pfn.0 << 12) })
        }
        fn ranges(&self) -> Vec<vmcore_physmem::PhysRange> {
            vec![vmcore_physmem::PhysRange { start: 0, end: 1 << 44 }]
        }
    }

    #[test]
    fn the_memory_search_stops_at_a_range_the_file_does_not_hold() {
        let mem = Unreadable::default();
        assert!(find_vmcoreinfo_note(&mem).is_none());
        assert_eq!(mem.0.load(std::sync::atomic::Ordering::Relaxed), u64::from(MAX_FAILED_IN_A_ROW));
    }

    #[test]
    fn a_vmcoreinfo_file_of_another_release_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmcore");
        let mut spec = vmcore_synth::elf::ElfVmcore::new(vmcore_synth::elf::EM_X86_64);
        spec.notes.push(vmcore_synth::elf::vmcoreinfo_note("OSRELEASE=6.1.0-dump\nPAGESIZE=4096\n"));
        spec.loads.push(vmcore_synth::elf::Load::full(0, 0xffff_8880_0000_0000, 0x2000));
        std::fs::write(&path, spec.to_vec(|_, buf| buf.fill(0)).unwrap()).unwrap();
        let file = dir.path().join("vmcoreinfo.txt");
        let with = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Dump::open(
                std::slice::from_ref(&path),
                &OpenOptions {
                    vmcoreinfo_file: Some(file.clone()),
                    sys_vmcoreinfo: None,
                    scan_memory: false,
                    ..OpenOptions::default()
                },
            )
        };
        let err = with("OSRELEASE=5.10.0-other\nPAGESIZE=4096\n").err().unwrap().to_string();
        assert!(err.contains("VMCOREINFO of kernel 5.10.0-other, but") && err.contains("kernel 6.1.0-dump"), "{err}");
        let dump = with("OSRELEASE=6.1.0-dump\nPAGESIZE=4096\nSYMBOL(x)=1\n").unwrap();
        assert_eq!(dump.require_vmcoreinfo().unwrap().get("SYMBOL(x)"), Some("1"));
    }
}
