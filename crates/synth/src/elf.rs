//! ELF64 little-endian vmcores, laid out as the kernel's /proc/vmcore and `makedumpfile -E`
//! lay them out: ELF header, program headers (PT_NOTE first, then the PT_LOADs), the notes
//! at the next page boundary, then each PT_LOAD's file data starting on a page boundary.

use std::fs::File;
use std::io::{self, BufWriter, Cursor, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};

pub use vmcore_formats::elf::{EM_AARCH64, EM_X86_64};

/// Alignment of the notes and of each PT_LOAD's data in the file, and the size of the
/// pieces handed to the fill callback.
pub const PAGE: u64 = 4096;

const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const ET_CORE: u16 = 4;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// PF_R | PF_W | PF_X, what the kernel puts on every vmcore PT_LOAD.
const PF_RWX: u32 = 7;
/// `e_phnum` value that means "the count is in section header 0"; not written here.
const PN_XNUM: u64 = 0xffff;

/// Note type of `NT_PRSTATUS` (owner "CORE").
pub const NT_PRSTATUS: u32 = 1;
/// `sizeof(struct elf_prstatus)` on x86_64.
pub const PRSTATUS_SIZE_X86_64: usize = 336;

/// One ELF note: owner name (without its NUL), type, descriptor.
pub type NoteSpec = (String, u32, Vec<u8>);

/// One PT_LOAD segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Physical address of the first byte.
    pub paddr: u64,
    /// Kernel virtual address of the first byte.
    pub vaddr: u64,
    /// Bytes of memory described.
    pub memsz: u64,
    /// Bytes stored in the file (at most `memsz`; the rest reads as zeros).
    pub filesz: u64,
}

impl Load {
    /// A segment whose bytes are all in the file.
    pub fn full(paddr: u64, vaddr: u64, size: u64) -> Load {
        Load { paddr, vaddr, memsz: size, filesz: size }
    }
}

/// Description of an ELF vmcore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfVmcore {
    /// `e_machine`: [`EM_X86_64`] or [`EM_AARCH64`].
    pub machine: u16,
    /// Notes of the single PT_NOTE segment, in order.
    pub notes: Vec<NoteSpec>,
    /// PT_LOAD segments, in program-header order (also their order in the file).
    pub loads: Vec<Load>,
}

/// Where [`ElfVmcore`] puts things in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfLayout {
    /// File offset of the PT_NOTE data.
    pub note_offset: u64,
    /// Its size.
    pub note_size: u64,
    /// File offset of each PT_LOAD's data, in the order of [`ElfVmcore::loads`].
    pub load_offsets: Vec<u64>,
    /// Size of the whole file.
    pub file_size: u64,
}

fn align_up(n: u64, to: u64) -> Option<u64> {
    n.checked_add(to - 1).map(|v| v / to * to)
}

fn overflow() -> Error {
    Error::spec("ELF layout overflows 64 bits")
}

/// One note as the kernel writes it: `namesz` counts the NUL, name and descriptor are each
/// padded to 4 bytes.
pub fn encode_note(name: &str, ntype: u32, desc: &[u8]) -> Result<Vec<u8>> {
    let namesz = u32::try_from(name.len() + 1).map_err(|_| Error::spec("note name longer than 4 GiB"))?;
    let descsz = u32::try_from(desc.len()).map_err(|_| Error::spec("note descriptor longer than 4 GiB"))?;
    let mut b = Vec::with_capacity(12 + name.len() + desc.len() + 8);
    b.extend_from_slice(&namesz.to_le_bytes());
    b.extend_from_slice(&descsz.to_le_bytes());
    b.extend_from_slice(&ntype.to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b.resize(b.len().next_multiple_of(4), 0);
    b.extend_from_slice(desc);
    b.resize(b.len().next_multiple_of(4), 0);
    Ok(b)
}

/// The PT_NOTE segment of `notes`.
pub fn encode_notes(notes: &[NoteSpec]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (name, ntype, desc) in notes {
        out.extend_from_slice(&encode_note(name, *ntype, desc)?);
    }
    Ok(out)
}

/// The kernel's VMCOREINFO note (owner "VMCOREINFO", type 0) holding `text`.
pub fn vmcoreinfo_note(text: &str) -> NoteSpec {
    ("VMCOREINFO".to_string(), 0, text.as_bytes().to_vec())
}

/// A CPU's register note as x86_64 writes it (owner "CORE", NT_PRSTATUS), with all
/// registers zero.
pub fn prstatus_note() -> NoteSpec {
    ("CORE".to_string(), NT_PRSTATUS, vec![0; PRSTATUS_SIZE_X86_64])
}

impl ElfVmcore {
    /// An ELF vmcore of `machine` with no notes and no segments.
    pub fn new(machine: u16) -> ElfVmcore {
        ElfVmcore { machine, notes: Vec::new(), loads: Vec::new() }
    }

    /// The PT_NOTE segment's bytes.
    pub fn note_bytes(&self) -> Result<Vec<u8>> {
        encode_notes(&self.notes)
    }

    /// Computes where every part goes.
    pub fn layout(&self) -> Result<ElfLayout> {
        let phnum = self.loads.len() as u64 + 1;
        if phnum >= PN_XNUM {
            return Err(Error::spec(format!("{phnum} program headers need PN_XNUM, which this writer does not write")));
        }
        let note_size = self.note_bytes()?.len() as u64;
        let note_offset = align_up(EHDR_SIZE + phnum * PHDR_SIZE, PAGE).ok_or_else(overflow)?;
        let mut pos = note_offset.checked_add(note_size).ok_or_else(overflow)?;
        let mut load_offsets = Vec::with_capacity(self.loads.len());
        for (i, l) in self.loads.iter().enumerate() {
            if l.filesz > l.memsz {
                return Err(Error::spec(format!(
                    "PT_LOAD {i}: filesz {:#x} larger than memsz {:#x}",
                    l.filesz, l.memsz
                )));
            }
            if l.paddr.checked_add(l.memsz).is_none() || l.vaddr.checked_add(l.memsz).is_none() {
                return Err(Error::spec(format!("PT_LOAD {i} wraps around the address space")));
            }
            let off = align_up(pos, PAGE).ok_or_else(overflow)?;
            load_offsets.push(off);
            pos = off.checked_add(l.filesz).ok_or_else(overflow)?;
        }
        Ok(ElfLayout { note_offset, note_size, load_offsets, file_size: pos })
    }

    /// ELF header and program headers.
    pub fn header_bytes(&self, layout: &ElfLayout) -> Vec<u8> {
        let phnum = self.loads.len() as u16 + 1;
        let mut b = Vec::with_capacity((EHDR_SIZE + u64::from(phnum) * PHDR_SIZE) as usize);
        // ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE.
        b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&ET_CORE.to_le_bytes());
        b.extend_from_slice(&self.machine.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes()); // e_version
        b.extend_from_slice(&0u64.to_le_bytes()); // e_entry
        b.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // e_phoff
        b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        b.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
        b.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        b.extend_from_slice(&phnum.to_le_bytes());
        b.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
        let mut ph = |ty: u32, flags: u32, off: u64, vaddr: u64, paddr: u64, filesz: u64, memsz: u64| {
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&flags.to_le_bytes());
            for v in [off, vaddr, paddr, filesz, memsz, 0] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        };
        ph(PT_NOTE, 0, layout.note_offset, 0, 0, layout.note_size, layout.note_size);
        for (l, &off) in self.loads.iter().zip(&layout.load_offsets) {
            ph(PT_LOAD, PF_RWX, off, l.vaddr, l.paddr, l.filesz, l.memsz);
        }
        b
    }

    /// Writes the vmcore to `w`, from its current position taken as offset 0. `fill` is
    /// called once per [`PAGE`]-sized piece of each PT_LOAD's file data with the physical
    /// address of the piece and a zeroed buffer to fill (shorter for a segment's last,
    /// partial piece). Pieces left all zero are skipped with a seek, so a file becomes
    /// sparse. Returns the file size.
    pub fn write_to<W: Write + Seek>(&self, w: &mut W, mut fill: impl FnMut(u64, &mut [u8])) -> Result<u64> {
        let layout = self.layout()?;
        let base = w.stream_position()?;
        let mut out = SparseWriter { w, base, pos: 0, written_end: 0 };
        out.write_at(0, &self.header_bytes(&layout))?;
        out.write_at(layout.note_offset, &self.note_bytes()?)?;
        let mut buf = vec![0u8; PAGE as usize];
        for (l, &off) in self.loads.iter().zip(&layout.load_offsets) {
            let mut done = 0u64;
            while done < l.filesz {
                let n = (l.filesz - done).min(PAGE);
                let piece = buf.get_mut(..n as usize).ok_or_else(overflow)?;
                piece.fill(0);
                fill(l.paddr + done, piece);
                if piece.iter().any(|&b| b != 0) {
                    out.write_at(off + done, piece)?;
                }
                done += n;
            }
        }
        out.finish(layout.file_size)?;
        Ok(layout.file_size)
    }

    /// The whole vmcore in memory.
    pub fn to_vec(&self, fill: impl FnMut(u64, &mut [u8])) -> Result<Vec<u8>> {
        let mut c = Cursor::new(Vec::new());
        self.write_to(&mut c, fill)?;
        Ok(c.into_inner())
    }

    /// Writes the vmcore to a new (sparse) file at `path`, which must not exist.
    pub fn write_path(&self, path: &Path, fill: impl FnMut(u64, &mut [u8])) -> Result<u64> {
        let file = crate::create_exclusive(path)?;
        let mut w = BufWriter::new(file);
        let size = self.write_to(&mut w, fill)?;
        let file: File = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(size)
    }
}

/// Positioned writes that seek only when they must, and that make sure the output ends
/// at the intended size even when its last bytes were skipped as zeros.
struct SparseWriter<'a, W> {
    w: &'a mut W,
    base: u64,
    pos: u64,
    written_end: u64,
}

impl<W: Write + Seek> SparseWriter<'_, W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset != self.pos {
            self.w.seek(SeekFrom::Start(self.base + offset))?;
        }
        self.w.write_all(data)?;
        self.pos = offset + data.len() as u64;
        self.written_end = self.written_end.max(self.pos);
        Ok(())
    }

    fn finish(&mut self, size: u64) -> io::Result<()> {
        if size > self.written_end {
            self.write_at(size - 1, &[0])?;
        }
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmcore_formats::elf::{ElfCore, ElfKind};

    fn pattern(paddr: u64, buf: &mut [u8]) {
        // Every other page stays zero, to exercise the sparse path.
        if (paddr / PAGE) % 2 == 0 {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = ((paddr as usize + i) % 251) as u8 | 1;
            }
        }
    }

    fn sample(machine: u16) -> ElfVmcore {
        ElfVmcore {
            machine,
            notes: vec![prstatus_note(), prstatus_note(), vmcoreinfo_note("OSRELEASE=6.1.0\nPAGESIZE=4096\n")],
            loads: vec![
                Load::full(0x1000, 0xffff888000001000, 0x9f000),
                Load { paddr: 0x100000, vaddr: 0xffff888000100000, memsz: 0x10000, filesz: 0x8800 },
                Load { paddr: 0x200000, vaddr: 0xffff888000200000, memsz: 0x3000, filesz: 0 },
            ],
        }
    }

    #[test]
    fn notes_are_padded_like_the_kernel_pads_them() {
        let n = encode_note("CORE", 1, &[9; 5]).unwrap();
        assert_eq!(n.len(), 12 + 8 + 8);
        assert_eq!(&n[0..12], &[5, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&n[12..20], b"CORE\0\0\0\0");
        assert_eq!(&n[20..], &[9, 9, 9, 9, 9, 0, 0, 0]);
        let v = encode_note("VMCOREINFO", 0, b"A=1\n").unwrap();
        assert_eq!(v.len(), 12 + 12 + 4);
        assert_eq!(prstatus_note().2.len(), 336);
    }

    #[test]
    fn the_reader_sees_segments_notes_and_data() {
        for machine in [EM_X86_64, EM_AARCH64] {
            let core = sample(machine);
            let file = core.to_vec(pattern).unwrap();
            let layout = core.layout().unwrap();
            assert_eq!(file.len() as u64, layout.file_size);
            assert_eq!(layout.note_offset, 0x1000);
            let parsed = ElfCore::parse(&file).unwrap();
            assert_eq!(parsed.machine, machine);
            assert_eq!(parsed.kind, ElfKind::Vmcore);
            assert!(!parsed.is_incomplete());
            assert_eq!(parsed.note_segments, vec![(0x1000, layout.note_size)]);
            assert_eq!(parsed.notes.len(), 3);
            assert_eq!(parsed.notes.iter().filter(|n| n.name == b"CORE" && n.ntype == 1).count(), 2);
            let vi = parsed.note(b"VMCOREINFO", 0).unwrap();
            assert_eq!(vi.desc, b"OSRELEASE=6.1.0\nPAGESIZE=4096\n");
            assert_eq!(&file[vi.desc_offset as usize..][..vi.desc.len()], vi.desc.as_slice());
            assert_eq!(parsed.loads.len(), 3);
            for (seg, l) in parsed.loads.iter().zip(&core.loads) {
                assert_eq!((seg.paddr, seg.vaddr, seg.filesz, seg.memsz), (l.paddr, l.vaddr, l.filesz, l.memsz));
                assert_eq!(seg.offset % PAGE, 0);
                let mut expect = vec![0u8; l.filesz as usize];
                for (i, chunk) in expect.chunks_mut(PAGE as usize).enumerate() {
                    pattern(l.paddr + i as u64 * PAGE, chunk);
                }
                assert_eq!(&file[seg.offset as usize..][..l.filesz as usize], expect.as_slice());
            }
            assert!(parsed.loads[0].offset >= 0x1000 + layout.note_size);
            assert!(parsed.loads[1].offset >= parsed.loads[0].offset + 0x9f000);
        }
    }

    #[test]
    fn a_file_on_disk_is_sparse_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmcore");
        let core = ElfVmcore {
            machine: EM_X86_64,
            notes: vec![vmcoreinfo_note("X=1\n")],
            loads: vec![Load::full(0, 0, 64 << 20)],
        };
        // Only the first page has data: the rest must be holes, and the file must still
        // end where the segment ends.
        let size = core
            .write_path(&path, |pa, b| {
                if pa == 0 {
                    b.fill(0xab)
                }
            })
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), size);
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert!(meta.blocks() * 512 < 8 << 20, "{} blocks", meta.blocks());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes,
            core.to_vec(|pa, b| if pa == 0 {
                b.fill(0xab)
            })
            .unwrap()
        );
        let parsed = ElfCore::parse(&bytes).unwrap();
        assert_eq!(bytes[parsed.loads[0].offset as usize], 0xab);
        assert!(core.write_path(&path, |_, _| {}).is_err(), "an existing file was overwritten");
    }

    #[test]
    fn inconsistent_segments_are_refused() {
        let mut core = sample(EM_X86_64);
        core.loads[0].filesz = core.loads[0].memsz + 1;
        assert!(core.to_vec(|_, _| {}).is_err());
        let core = ElfVmcore { machine: EM_X86_64, notes: vec![], loads: vec![Load::full(u64::MAX - 10, 0, 0x1000)] };
        assert!(core.layout().is_err());
    }
}
