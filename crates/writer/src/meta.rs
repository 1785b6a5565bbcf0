//! What a new dump copies from its input: the dumped kernel's utsname, crash time,
//! phys_base, ELF notes and VMCOREINFO.

use vmcore_formats::elf::ElfCore;
use vmcore_kernel::machine::{Arch, Layout, Machine};
use vmcore_kernel::Dump;
use vmcore_physmem::Container;
use vmcore_types::bytes::u32_at;
use vmcore_types::ReadAt;

use crate::{Error, KdumpMeta, Result};

const NT_PRSTATUS: u32 = 1;
const UTS_LEN: usize = 65;

/// Counts CORE/NT_PRSTATUS notes in a little-endian note blob.
fn count_prstatus(notes: &[u8]) -> i32 {
    let mut pos = 0usize;
    let mut n = 0;
    while let (Some(namesz), Some(descsz), Some(ntype)) =
        (u32_at(notes, pos, false), u32_at(notes, pos + 4, false), u32_at(notes, pos + 8, false))
    {
        if namesz == 0 && descsz == 0 && ntype == 0 {
            break;
        }
        let name = notes.get(pos + 12..pos + 12 + namesz as usize).unwrap_or_default();
        if name.strip_suffix(&[0]).unwrap_or(name) == b"CORE" && ntype == NT_PRSTATUS {
            n += 1;
        }
        pos = pos + 12 + (namesz as usize).div_ceil(4) * 4 + (descsz as usize).div_ceil(4) * 4;
    }
    n
}

/// The notes blob and where VMCOREINFO's text is inside it.
type Notes = (Vec<u8>, Option<(u64, u64)>);

fn elf_notes(core: &ElfCore, src: &dyn ReadAt) -> Result<Notes> {
    let mut blob = Vec::new();
    let mut vmcoreinfo = None;
    let vi_note = core.note(b"VMCOREINFO", 0);
    for &(offset, size) in &core.note_segments {
        let start = blob.len() as u64;
        let mut seg = vec![0u8; usize::try_from(size).map_err(|_| Error::Input("PT_NOTE size".into()))?];
        src.read_exact_at(&mut seg, offset)
            .map_err(|e| Error::Input(format!("reading PT_NOTE at {offset:#x}: {e}")))?;
        if let Some(n) = vi_note.filter(|n| n.desc_offset >= offset && n.desc_offset < offset + size) {
            vmcoreinfo = Some((start + (n.desc_offset - offset), n.desc.len() as u64));
        }
        blob.extend_from_slice(&seg);
    }
    Ok((blob, vmcoreinfo))
}

/// An ELF note as the kernel writes its VMCOREINFO: name "VMCOREINFO", type 0, `text`, in
/// the file's byte order.
pub fn vmcoreinfo_note(text: &[u8], big_endian: bool) -> Vec<u8> {
    let word = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut note = Vec::with_capacity(24 + text.len().next_multiple_of(4));
    note.extend_from_slice(&word(11));
    note.extend_from_slice(&word(text.len() as u32));
    note.extend_from_slice(&word(0));
    note.extend_from_slice(b"VMCOREINFO\0\0");
    note.extend_from_slice(text);
    note.resize(24 + text.len().next_multiple_of(4), 0);
    note
}

/// Offset of a VMCOREINFO note's text from the note's start.
const VMCOREINFO_DESC: u64 = 24;

impl KdumpMeta {
    /// Gathers the metadata of `dump`.
    pub fn from_dump(dump: &Dump, machine: &Machine) -> Result<KdumpMeta> {
        let vi = dump.require_vmcoreinfo().map_err(|e| Error::Input(e.to_string()))?;
        // VMCOREINFO's number as stated, as makedumpfile writes it (on arm64 not the
        // PHYS_OFFSET in use, which differs for a 52-bit kernel on 48 bits), before a
        // kdump input's header: QEMU's states NUMBER(phys_base) read as hex, or 0. Only
        // without the number does the layout's answer stand in.
        let stated = match machine.arch {
            Arch::X86_64 => vi.number_u64("phys_base"),
            Arch::Aarch64 => vi.number_u64("PHYS_OFFSET"),
        };
        let derived = match &machine.layout {
            Layout::X86_64(l) => l.phys_base.value,
            Layout::Aarch64(l) => l.phys_offset.value,
        };
        let mut meta = KdumpMeta {
            timestamp: vi.crash_time().unwrap_or(0),
            phys_base: stated.or(derived).unwrap_or(0),
            ..KdumpMeta::default()
        };
        match &dump.container {
            Container::Elf { core, src, .. } => {
                let (notes, vi_at) = elf_notes(core, &**src)?;
                meta.nr_cpus = count_prstatus(&notes);
                meta.notes = notes;
                meta.vmcoreinfo_in_notes = vi_at;
            }
            Container::Kdump { mem, .. } => {
                if let Some(p) = mem.primary() {
                    let u = &p.header.utsname;
                    meta.utsname =
                        [&u.sysname, &u.nodename, &u.release, &u.version, &u.machine, &u.domainname].map(|s| s.clone());
                    meta.timestamp = p.header.timestamp_sec;
                    meta.phys_base = stated.unwrap_or(p.sub.phys_base);
                    meta.nr_cpus = p.header.nr_cpus;
                    let notes = p.notes().map_err(|e| Error::Input(e.to_string()))?;
                    match (notes, p.sub.note, p.sub.vmcoreinfo) {
                        (Some(notes), Some((note_off, note_size)), Some((vi_off, vi_size)))
                            if vi_off >= note_off && vi_off + vi_size <= note_off + note_size =>
                        {
                            meta.notes = notes;
                            meta.vmcoreinfo_in_notes = Some((vi_off - note_off, vi_size));
                        }
                        (notes, _, _) => meta.notes = notes.unwrap_or_default(),
                    }
                }
            }
        }
        if meta.vmcoreinfo_in_notes.is_none() {
            // A VMCOREINFO the input's notes lack (given with --vmcoreinfo, found in memory,
            // or beside the notes of a kdump file) becomes a note of its own: libkdumpfile
            // and drgn look for it among the notes only.
            let at = meta.notes.len() as u64 + VMCOREINFO_DESC;
            // Notes in a kdump file are the machine's byte order: x86_64's and arm64's.
            meta.notes.extend_from_slice(&vmcoreinfo_note(vi.raw(), false));
            meta.vmcoreinfo_in_notes = Some((at, vi.raw().len() as u64));
        }
        // The kernel's own, where a header is empty (QEMU fills in the machine only).
        if meta.utsname[2].is_empty() {
            if let Some(utsname) = read_utsname(vi, machine) {
                meta.utsname = utsname;
            }
        }
        Ok(meta)
    }
}

/// The dumped kernel's utsname: the first of the places it may be whose sysname reads
/// "Linux", else the first readable (as makedumpfile, which reads only that one).
fn read_utsname(vi: &vmcore_kernel::VmcoreInfo, machine: &Machine) -> Option<[String; 6]> {
    let mut found: Option<[u8; UTS_LEN * 6]> = None;
    for addr in vi.utsname_candidates() {
        let mut raw = [0u8; UTS_LEN * 6];
        if machine.kmem.read(addr, &mut raw).is_err() {
            continue;
        }
        let linux = raw.starts_with(b"Linux\0");
        if found.is_none() || linux {
            found = Some(raw);
        }
        if linux {
            break;
        }
    }
    let raw = found?;
    let field = |i: usize| {
        let b = raw.get(i * UTS_LEN..(i + 1) * UTS_LEN).unwrap_or_default();
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(b.get(..end).unwrap_or_default()).into_owned()
    };
    Some([field(0), field(1), field(2), field(3), field(4), field(5)])
}
