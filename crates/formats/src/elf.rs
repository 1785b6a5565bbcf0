//! ELF64 cores: /proc/vmcore, ELF vmcores written by makedumpfile or `cp`, and /proc/kcore.

use object::elf::{FileHeader64, NoteHeader32, ProgramHeader64, SectionHeader64};
use object::endian::Endianness;
use object::pod;
use vmcore_types::ReadAt;

use crate::error::{read_exact, read_vec, Error, Result};

/// ELF machine numbers vmcore knows by name.
pub const EM_X86_64: u16 = 62;
/// arm64.
pub const EM_AARCH64: u16 = 183;
const PN_XNUM: u16 = 0xffff;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// The note type of the kernel's task_struct copy, present only in /proc/kcore.
const NT_TASKSTRUCT: u32 = 4;
/// `e_flags` bit makedumpfile sets on an ELF dump it could not finish.
pub const DUMP_ELF_INCOMPLETE: u32 = 0x1;
/// Upper bound on the bytes of program headers and notes we read: far beyond any real
/// machine (a million segments, thousands of CPUs), small enough to never exhaust memory.
const MAX_METADATA: u64 = 256 << 20;
/// Upper bound on the notes kept: a machine's notes are one or two per CPU and a few more
/// (the kernel allows 8192 CPUs). Each costs some 100 bytes of bookkeeping beside its
/// bytes, so 12-byte notes in the PT_NOTE segments (which may all overlap) would otherwise
/// take ten times the metadata limit.
const MAX_NOTES: usize = 1 << 16;

/// One PT_LOAD segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// Index among the program headers.
    pub index: usize,
    /// Kernel virtual address of the first byte.
    pub vaddr: u64,
    /// Physical address of the first byte (`u64::MAX` for kcore's vmalloc and module
    /// segments, which have none).
    pub paddr: u64,
    /// File offset of the data.
    pub offset: u64,
    /// Bytes present in the file.
    pub filesz: u64,
    /// Bytes of memory described; bytes past `filesz` read as zeros.
    pub memsz: u64,
}

/// One ELF note, located by its descriptor's position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Owner name without the terminating NUL.
    pub name: Vec<u8>,
    /// Note type.
    pub ntype: u32,
    /// File offset of the descriptor.
    pub desc_offset: u64,
    /// The descriptor bytes.
    pub desc: Vec<u8>,
}

/// What kind of ELF core this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfKind {
    /// A crash dump (/proc/vmcore or a file made from it).
    Vmcore,
    /// /proc/kcore of a running kernel (it carries an NT_TASKSTRUCT note).
    Kcore,
}

/// A parsed ELF64 core: segments and notes. Page data stays in the file.
#[derive(Debug, Clone)]
pub struct ElfCore {
    /// `e_machine`.
    pub machine: u16,
    /// Byte order of the file.
    pub endian: Endianness,
    /// `e_flags` (makedumpfile marks incomplete dumps here).
    pub flags: u32,
    /// Vmcore or kcore.
    pub kind: ElfKind,
    /// PT_LOAD segments in program-header order, less the folded views.
    pub loads: Vec<LoadSegment>,
    /// PT_LOADs left out of `loads` as views of bytes another segment holds (QEMU's
    /// `dump-guest-memory -p` writes one per virtual mapping).
    pub folded_views: usize,
    /// All notes of all PT_NOTE segments, in file order.
    pub notes: Vec<Note>,
    /// File offset and size of each PT_NOTE segment, for writers that copy them verbatim.
    pub note_segments: Vec<(u64, u64)>,
}

impl ElfCore {
    /// Parses the ELF header, program headers and notes of `src`.
    pub fn parse(src: &dyn ReadAt) -> Result<ElfCore> {
        let mut ehdr_buf = [0u8; 64];
        read_exact(src, &mut ehdr_buf, 0, "ELF header")?;
        let (ehdr, _) = pod::from_bytes::<FileHeader64<Endianness>>(&ehdr_buf)
            .map_err(|()| Error::invalid("ELF header", 0, "too short"))?;
        if ehdr.e_ident.magic != object::elf::ELFMAG {
            return Err(Error::invalid("ELF header", 0, "no ELF magic"));
        }
        if ehdr.e_ident.class != object::elf::ELFCLASS64 {
            return Err(Error::Unsupported(format!("ELF class {} (only ELF64 cores are read)", ehdr.e_ident.class)));
        }
        let endian = match ehdr.e_ident.data {
            object::elf::ELFDATA2LSB => Endianness::Little,
            object::elf::ELFDATA2MSB => Endianness::Big,
            d => return Err(Error::invalid("ELF header", 5, format!("byte order {d}, expected 1 or 2"))),
        };
        let e_type = ehdr.e_type.get(endian);
        if e_type != object::elf::ET_CORE {
            let why = if e_type.0.swap_bytes() == object::elf::ET_CORE.0 {
                // A core whose EI_DATA says the other byte order: name that, not the type.
                format!("e_type reads {e_type} in the byte order EI_DATA (byte 5) gives, and ET_CORE (4) in the other: a wrong EI_DATA")
            } else {
                format!("e_type {e_type}, expected ET_CORE (4)")
            };
            return Err(Error::invalid("ELF header", 16, why));
        }
        let machine = ehdr.e_machine.get(endian).0;
        let phoff = ehdr.e_phoff.get(endian);
        let phentsize = u64::from(ehdr.e_phentsize.get(endian));
        if phentsize != 56 {
            return Err(Error::invalid("ELF header", 54, format!("e_phentsize {phentsize}, expected 56")));
        }
        let mut phnum = u64::from(ehdr.e_phnum.get(endian));
        if ehdr.e_phnum.get(endian) == PN_XNUM {
            // More program headers than e_phnum can hold: the count is in sh_info of
            // section header 0.
            let shoff = ehdr.e_shoff.get(endian);
            if shoff == 0 {
                return Err(Error::invalid(
                    "ELF header",
                    40,
                    "e_phnum is PN_XNUM but e_shoff is 0 (no section header holds the count)",
                ));
            }
            let mut sh = [0u8; 64];
            read_exact(src, &mut sh, shoff, "section header 0 (PN_XNUM program header count)")?;
            let (sh, _) = pod::from_bytes::<SectionHeader64<Endianness>>(&sh)
                .map_err(|()| Error::invalid("section header 0", shoff, "too short"))?;
            phnum = u64::from(sh.sh_info.get(endian));
        }
        let ph_bytes = phnum.checked_mul(phentsize).filter(|&n| n <= MAX_METADATA).ok_or_else(|| {
            Error::invalid("program header table", phoff, format!("{phnum} entries is more than any machine has"))
        })?;
        let table = read_vec(src, phoff, ph_bytes, "program header table")?;
        let count =
            usize::try_from(phnum).map_err(|_| Error::invalid("program header table", phoff, "too many entries"))?;
        let (phdrs, _) = pod::slice_from_bytes::<ProgramHeader64<Endianness>>(&table, count)
            .map_err(|()| Error::invalid("program header table", phoff, "shorter than e_phnum entries"))?;

        let mut loads = Vec::new();
        let mut note_segments = Vec::new();
        for (index, ph) in phdrs.iter().enumerate() {
            let seg = LoadSegment {
                index,
                vaddr: ph.p_vaddr.get(endian),
                paddr: ph.p_paddr.get(endian),
                offset: ph.p_offset.get(endian),
                filesz: ph.p_filesz.get(endian),
                memsz: ph.p_memsz.get(endian),
            };
            let ph_off = phoff + index as u64 * phentsize;
            match ph.p_type.get(endian).0 {
                PT_LOAD => {
                    if seg.filesz > seg.memsz {
                        return Err(Error::invalid(
                            "PT_LOAD",
                            ph_off,
                            format!("p_filesz {:#x} larger than p_memsz {:#x}", seg.filesz, seg.memsz),
                        ));
                    }
                    if seg.offset.checked_add(seg.filesz).is_none()
                        || seg.paddr.checked_add(seg.memsz).is_none() && seg.paddr != u64::MAX
                    {
                        return Err(Error::invalid("PT_LOAD", ph_off, "segment wraps around the address space"));
                    }
                    loads.push(seg);
                }
                PT_NOTE => note_segments.push((seg.offset, seg.filesz)),
                _ => {}
            }
        }
        let (loads, folded_views) = fold_file_views(loads, phoff, phentsize)?;

        let mut notes = Vec::new();
        let mut note_bytes = 0u64;
        for &(offset, size) in &note_segments {
            note_bytes = note_bytes.saturating_add(size);
            if note_bytes > MAX_METADATA {
                return Err(Error::invalid("PT_NOTE", offset, "notes larger than 256 MiB"));
            }
            let data = read_vec(src, offset, size, "PT_NOTE segment")?;
            parse_notes(&data, offset, endian, &mut notes)?;
        }
        let kind = if notes.iter().any(|n| n.name == b"CORE" && n.ntype == NT_TASKSTRUCT) {
            ElfKind::Kcore
        } else {
            ElfKind::Vmcore
        };
        Ok(ElfCore {
            machine,
            endian,
            flags: ehdr.e_flags.get(endian).0,
            kind,
            loads,
            folded_views,
            notes,
            note_segments,
        })
    }

    /// The descriptor of the first note named `name` with type `ntype`.
    pub fn note(&self, name: &[u8], ntype: u32) -> Option<&Note> {
        self.notes.iter().find(|n| n.name == name && n.ntype == ntype)
    }

    /// Whether the file is big-endian.
    pub fn is_big_endian(&self) -> bool {
        self.endian == Endianness::Big
    }

    /// Whether makedumpfile marked this ELF dump incomplete.
    pub fn is_incomplete(&self) -> bool {
        self.flags & DUMP_ELF_INCOMPLETE != 0
    }
}

/// Two PT_LOADs may describe the same physical memory (the kernel image is also in the
/// direct map), but claim the same bytes of the file only as views: QEMU's
/// `dump-guest-memory -p` writes a PT_LOAD per virtual mapping, pointing into the guest's
/// RAM as laid out in the file, each byte at the same physical address whichever segment
/// names it (a mapping that runs past a RAM block keeps its p_memsz but ends its p_filesz
/// there). A view is folded into the segments before it: left out where they hold its
/// bytes, cut to the bytes past them otherwise (and then claims no memory past its data).
/// Any other sharing of file bytes is corrupt. Returns the segments kept, in program
/// header order, and the number left out whole.
fn fold_file_views(loads: Vec<LoadSegment>, phoff: u64, phentsize: u64) -> Result<(Vec<LoadSegment>, usize)> {
    let mut by_offset: Vec<LoadSegment> = loads.iter().filter(|s| s.filesz > 0).copied().collect();
    // Largest first at one offset: the widest view holds the others' bytes.
    by_offset.sort_by_key(|s| (s.offset, std::cmp::Reverse(s.filesz)));
    // By program header index, which counts the headers of every type: None to leave out.
    let mut kept: Vec<Option<LoadSegment>> = vec![None; loads.iter().map(|s| s.index + 1).max().unwrap_or(0)];
    for s in loads.iter().filter(|s| s.filesz == 0) {
        if let Some(k) = kept.get_mut(s.index) {
            *k = Some(*s);
        }
    }
    // The segment kept last: kept segments never share bytes, so it reaches furthest.
    let mut holder: Option<LoadSegment> = None;
    for b in by_offset {
        let mut keep = b;
        if let Some(a) = holder.filter(|a| b.offset < a.offset + a.filesz) {
            // Sorted by offset, `b` may start before `a` when `a` was itself cut.
            let same_addresses = a.paddr != u64::MAX
                && b.paddr != u64::MAX
                && a.offset.wrapping_sub(a.paddr) == b.offset.wrapping_sub(b.paddr);
            if !same_addresses {
                return Err(Error::invalid(
                    "PT_LOAD",
                    phoff + b.index as u64 * phentsize,
                    format!(
                        "file range {:#x}+{:#x} overlaps segment {} at {:#x}+{:#x}, for other physical addresses",
                        b.offset, b.filesz, a.index, a.offset, a.filesz
                    ),
                ));
            }
            let held = a.offset + a.filesz - b.offset;
            if held >= b.filesz {
                continue;
            }
            keep = LoadSegment {
                offset: b.offset + held,
                paddr: b.paddr + held,
                vaddr: b.vaddr.wrapping_add(held),
                filesz: b.filesz - held,
                memsz: b.filesz - held,
                ..b
            };
        }
        if let Some(k) = kept.get_mut(keep.index) {
            *k = Some(keep);
        }
        holder = Some(keep);
    }
    let left_out = loads.len() - kept.iter().flatten().count();
    Ok((kept.into_iter().flatten().collect(), left_out))
}

fn align4(n: u64) -> Option<u64> {
    n.checked_add(3).map(|v| v & !3)
}

/// Walks the notes of one PT_NOTE segment. Names and descriptors are padded to 4 bytes, as
/// the kernel writes them. A header of zeros ends the walk (padding after the last note).
fn parse_notes(data: &[u8], seg_offset: u64, endian: Endianness, out: &mut Vec<Note>) -> Result<()> {
    let mut pos = 0u64;
    let len = data.len() as u64;
    while pos + 12 <= len {
        let at = seg_offset + pos;
        let rest = data.get(pos as usize..).unwrap_or_default();
        let (nh, _) = pod::from_bytes::<NoteHeader32<Endianness>>(rest)
            .map_err(|()| Error::invalid("note header", at, "truncated"))?;
        let namesz = u64::from(nh.n_namesz.get(endian));
        let descsz = u64::from(nh.n_descsz.get(endian));
        let ntype = nh.n_type.get(endian).0;
        if namesz == 0 && descsz == 0 && ntype == 0 {
            break;
        }
        let name_start = pos + 12;
        let desc_start = align4(name_start + namesz).unwrap_or(u64::MAX);
        let next = desc_start.checked_add(descsz).and_then(align4).unwrap_or(u64::MAX);
        let desc_end = desc_start.saturating_add(descsz);
        if desc_end > len {
            return Err(Error::invalid("note", at, format!(
                "name of {namesz} and descriptor of {descsz} bytes run past the end of the PT_NOTE segment ({len} bytes)")));
        }
        let name = data.get(name_start as usize..(name_start + namesz) as usize).unwrap_or_default();
        let name = name.strip_suffix(&[0]).unwrap_or(name).to_vec();
        if out.len() >= MAX_NOTES {
            return Err(Error::invalid("note", at, format!("more than {MAX_NOTES} notes, more than any machine has")));
        }
        let desc = data.get(desc_start as usize..desc_end as usize).unwrap_or_default().to_vec();
        out.push(Note { name, ntype, desc_offset: seg_offset + desc_start, desc });
        pos = next;
    }
    Ok(())
}

/// Builds a minimal ELF64 core in memory: for tests of this crate and the layers above.
#[doc(hidden)]
pub mod test_support {
    /// A little-endian x86_64 ELF core header with the given PT_LOADs
    /// `(paddr, vaddr, offset, filesz, memsz)` and one PT_NOTE.
    pub fn header(loads: &[(u64, u64, u64, u64, u64)], note: (u64, u64)) -> Vec<u8> {
        let phnum = loads.len() + 1;
        let mut b = Vec::new();
        b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
        b.extend_from_slice(&62u16.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&64u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&64u16.to_le_bytes());
        b.extend_from_slice(&56u16.to_le_bytes());
        b.extend_from_slice(&(phnum as u16).to_le_bytes());
        b.extend_from_slice(&[0; 6]);
        let mut ph = |t: u32, off: u64, va: u64, pa: u64, fs: u64, ms: u64| {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&7u32.to_le_bytes());
            for v in [off, va, pa, fs, ms, 0] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        };
        ph(4, note.0, 0, 0, note.1, note.1);
        for &(pa, va, off, fs, ms) in loads {
            ph(1, off, va, pa, fs, ms);
        }
        b
    }

    /// One note, padded as the kernel pads it.
    pub fn note(name: &str, ntype: u32, desc: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        b.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        b.extend_from_slice(&ntype.to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b.extend_from_slice(desc);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    fn sample() -> Vec<u8> {
        let notes = [note("CORE", 1, &[1; 0x150]), note("VMCOREINFO", 0, b"OSRELEASE=6.1.0\nPAGESIZE=4096\n")].concat();
        let note_off = 0x1000u64;
        let data_off = 0x2000u64;
        let mut f = header(&[(0x1000, 0xffff888000001000, data_off, 0x1000, 0x3000)], (note_off, notes.len() as u64));
        f.resize(note_off as usize, 0);
        f.extend_from_slice(&notes);
        f.resize(data_off as usize + 0x1000, 0xaa);
        f
    }

    #[test]
    fn parses_segments_and_notes() {
        let core = ElfCore::parse(&sample()).unwrap();
        assert_eq!(core.machine, EM_X86_64);
        assert_eq!(core.kind, ElfKind::Vmcore);
        assert_eq!(core.loads.len(), 1);
        assert_eq!(core.loads[0].paddr, 0x1000);
        assert_eq!(core.loads[0].memsz, 0x3000);
        assert_eq!(core.notes.len(), 2);
        let vi = core.note(b"VMCOREINFO", 0).unwrap();
        assert_eq!(vi.desc, b"OSRELEASE=6.1.0\nPAGESIZE=4096\n");
        assert_eq!(vi.desc_offset, 0x1000 + 12 + 8 + 0x150 + 12 + 12);
    }

    #[test]
    fn more_notes_than_any_machine_has_is_an_error_naming_the_note() {
        let file = |count: usize| {
            let notes = note("CORE", 1, &[]).repeat(count);
            let mut f = header(&[], (0x1000, notes.len() as u64));
            f.resize(0x1000, 0);
            f.extend_from_slice(&notes);
            f
        };
        assert_eq!(ElfCore::parse(&file(MAX_NOTES)).unwrap().notes.len(), MAX_NOTES);
        let err = ElfCore::parse(&file(MAX_NOTES + 1)).unwrap_err().to_string();
        // Each note is 12 bytes of header and 8 of name ("CORE\0" padded).
        let at = 0x1000 + 20 * MAX_NOTES;
        assert!(err.contains("more than 65536 notes") && err.contains(&format!("{at:#x}")), "{err}");
    }

    #[test]
    fn truncated_and_bad_headers_name_the_offset() {
        let f = sample();
        let err = ElfCore::parse(&f[..40].to_vec()).unwrap_err().to_string();
        assert!(err.contains("ELF header") && err.contains("offset 0x0"), "{err}");
        let mut bad = f.clone();
        bad[0] = 0;
        assert!(ElfCore::parse(&bad).unwrap_err().to_string().contains("no ELF magic"));
        let err = ElfCore::parse(&f[..0x1010].to_vec()).unwrap_err().to_string();
        assert!(err.contains("PT_NOTE") && err.contains("0x1000"), "{err}");
        let mut huge = f.clone();
        huge[56..58].copy_from_slice(&0xffffu16.to_le_bytes()); // PN_XNUM with no section header
        assert!(ElfCore::parse(&huge).is_err());
    }

    /// A file whose PT_LOADs are `loads` (paddr, vaddr, offset, filesz, memsz).
    fn with_loads(loads: &[(u64, u64, u64, u64, u64)]) -> Result<ElfCore> {
        let notes = note("VMCOREINFO", 0, b"X=1\n");
        let mut f = header(loads, (0x800, notes.len() as u64));
        f.resize(0x800, 0);
        f.extend_from_slice(&notes);
        f.resize(0x8000, 0);
        ElfCore::parse(&f)
    }

    #[test]
    fn overlapping_file_ranges_are_rejected() {
        let err = with_loads(&[(0, 0, 0x1000, 0x2000, 0x2000), (0x10000, 0, 0x2000, 0x1000, 0x1000)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("overlaps segment 1"), "{err}");
        // Inside it, but for other physical addresses than the segment's.
        let err =
            with_loads(&[(0, 0, 0x1000, 0x2000, 0x2000), (0x5000, 0, 0x2000, 0x1000, 0x1000)]).unwrap_err().to_string();
        assert!(err.contains("for other physical addresses"), "{err}");
    }

    /// QEMU's `dump-guest-memory -p`: a PT_LOAD per virtual mapping, into the bytes of the
    /// physical segments, each byte at its own physical address.
    #[test]
    fn views_of_a_segments_bytes_are_folded_into_it() {
        let core = with_loads(&[
            (0x100000, 0xffff_8880_0010_0000, 0x1000, 0x3000, 0x3000),
            (0x101000, 0xffff_ffff_8100_0000, 0x2000, 0x1000, 0x1000),
            (0x100000, 0xffff_ffff_8200_0000, 0x1000, 0x3000, 0x3000),
            (0x200000, 0, 0x4000, 0x1000, 0x1000),
        ])
        .unwrap();
        assert_eq!(core.folded_views, 2);
        let kept: Vec<(usize, u64)> = core.loads.iter().map(|s| (s.index, s.paddr)).collect();
        assert_eq!(kept, [(1, 0x100000), (4, 0x200000)]);
        // A mapping past the end of a RAM block (p_memsz beyond p_filesz) is a view too;
        // one that runs on past the segment it starts in keeps the bytes past it, cut.
        let core = with_loads(&[
            (0x100000, 0xffff_8880_0010_0000, 0x1000, 0x3000, 0x3000),
            (0x102000, 0xffff_ffff_8100_0000, 0x3000, 0x1000, 0x8000),
            (0x102000, 0xffff_ffff_8200_0000, 0x3000, 0x2000, 0x2000),
        ])
        .unwrap();
        assert_eq!(core.folded_views, 1);
        let kept: Vec<(usize, u64, u64, u64, u64)> =
            core.loads.iter().map(|s| (s.index, s.paddr, s.offset, s.filesz, s.memsz)).collect();
        assert_eq!(kept, [(1, 0x100000, 0x1000, 0x3000, 0x3000), (3, 0x103000, 0x4000, 0x1000, 0x1000)]);
        assert_eq!(core.loads[1].vaddr, 0xffff_ffff_8200_1000);
    }

    #[test]
    fn note_running_past_its_segment_is_an_error() {
        let mut n = note("VMCOREINFO", 0, b"OSRELEASE=1\n");
        n[4..8].copy_from_slice(&0x10000u32.to_le_bytes());
        let mut f = header(&[], (0x100, n.len() as u64));
        f.resize(0x100, 0);
        f.extend_from_slice(&n);
        let err = ElfCore::parse(&f).unwrap_err().to_string();
        assert!(err.contains("run past the end"), "{err}");
    }
}
