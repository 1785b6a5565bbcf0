//! `vmcore rearrange` (makedumpfile -R, makedumpfile.md section 2): a flattened stream,
//! read once from start to end (a pipe, stdin), turned back into the dump file it
//! describes by writing each chunk at its offset.

use std::io::{self, Read};
use std::sync::atomic::AtomicBool;

use vmcore_formats::raw::flat;
use vmcore_formats::raw::kdump::{self, header as h};
use vmcore_types::bytes::{u16_at, u32_at, u64_at};

use crate::elf::E_FLAGS;
use crate::output::{Output, OutputError};
use crate::{Error, Progress, Result};

/// What a rearrangement did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RearrangeReport {
    /// Chunks copied.
    pub chunks: u64,
    /// Payload bytes copied.
    pub bytes: u64,
    /// Size of the dump file (the end of its furthest chunk).
    pub file_size: u64,
}

/// Pieces in which a chunk's payload is copied: a chunk may be as large as the stream
/// says, memory stays this.
const PIECE: usize = 1 << 20;

fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match input.read(buf.get_mut(done..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Bytes of the rearranged file's start kept to mark it incomplete and to tell where its
/// headers end: up to the kdump header's bitmap_blocks, past its status field and the ELF
/// header's e_flags.
const HEAD: usize = h::BITMAP_BLOCKS + 4;

/// Sets the incomplete flag of the kdump or ELF header that `head` (the file's first bytes)
/// holds, in place: its block is on disk, so the full disk takes the write. Then cuts what
/// points at data past `covered` (the furthest byte received) or past the file's end (zeros
/// received last were left as holes, and the file stops before them), so that every reader
/// sees those pages as not written: kdump descriptors are zeroed, ELF PT_LOADs shortened.
/// Returns what was done, for the error message.
fn mark_incomplete(out: &mut dyn Output, head: &[u8; HEAD], covered: u64) -> Option<String> {
    let data_end = out.written().map_or(covered, |file| covered.min(file.size()));
    let (format, cut) = if head.starts_with(kdump::KDUMP_SIGNATURE) {
        let big_endian = kdump_big_endian(head)?;
        crate::kdump::mark_incomplete(out, u32_at(head, h::STATUS, big_endian)?, big_endian).ok()?;
        let cut = match kdump_heads_end(head) {
            Some(desc_offset) => crate::kdump::forget_pages_past(out, desc_offset, data_end, big_endian),
            None => Ok(()),
        };
        ("kdump", cut)
    } else if head.starts_with(b"\x7fELF") && head.get(4) == Some(&2) {
        let big_endian = head.get(5) == Some(&2);
        crate::elf::mark_incomplete(out, u32_at(head, E_FLAGS, big_endian)?, big_endian).ok()?;
        ("ELF", crate::elf::clip_loads_written(out, data_end))
    } else {
        return None;
    };
    Some(match cut {
        Ok(()) => format!("the {format} file is marked incomplete"),
        Err(e) => format!("the {format} file is marked incomplete, but {e}"),
    })
}

/// Writes a piece of the chunk at stream offset `pos` at file offset `at`; on a full disk,
/// marks the file incomplete through the header bytes `file_head`.
fn write_piece(
    out: &mut dyn Output,
    file_head: &[u8; HEAD],
    covered: u64,
    pos: u64,
    at: u64,
    piece: &[u8],
) -> Result<()> {
    out.write_at(at, piece).map_err(|e| match e {
        // A file whose headers (a kdump file's bitmaps too) did not fit is no dump.
        OutputError::Full if heads_missing(file_head, covered) => Error::NoRoomForHeaders,
        OutputError::Full => Error::Output(io::Error::other(match mark_incomplete(out, file_head, covered) {
            Some(done) => format!("no space left for the dump; {done}"),
            None => "no space left for the dump".into(),
        })),
        OutputError::Io(e) => Error::Output(io::Error::new(
            e.kind(),
            format!("writing the chunk at stream offset {pos:#x} to file offset {at:#x}: {e}"),
        )),
    })
}

/// A kdump header's byte order: its version (0 to 6) reads small only in its own.
fn kdump_big_endian(head: &[u8; HEAD]) -> Option<bool> {
    Some(u32_at(head, h::HEADER_VERSION, false)? > 0xffff)
}

/// Where a kdump file's headers and bitmaps end and its page descriptors begin.
fn kdump_heads_end(head: &[u8; HEAD]) -> Option<u64> {
    let big_endian = kdump_big_endian(head)?;
    let field = |at| u32_at(head, at, big_endian).map(u64::from);
    (1 + field(h::SUB_HDR_SIZE)? + field(h::BITMAP_BLOCKS)?).checked_mul(field(h::BLOCK_SIZE)?)
}

/// The largest file a kdump header allows: its headers and bitmaps, then for every frame
/// the bitmaps can hold a descriptor and a whole page, the shared zero page, and room for
/// erase information. None until the header is received (or for an ELF file).
fn kdump_size_bound(head: &[u8; HEAD]) -> Option<u64> {
    if !head.starts_with(kdump::KDUMP_SIGNATURE) {
        return None;
    }
    let big_endian = kdump_big_endian(head)?;
    let field = |at| u32_at(head, at, big_endian).map(u64::from);
    let block = field(h::BLOCK_SIZE)?;
    // Two bitmaps, a bit per frame each.
    let frames = field(h::BITMAP_BLOCKS)?.checked_mul(block)?.checked_mul(8)? / 2;
    let pages = frames.checked_mul(kdump::PAGE_DESC_SIZE as u64 + block)?;
    kdump_heads_end(head)?.checked_add(pages)?.checked_add(block)?.checked_add(MAX_ERASEINFO)
}

/// Erase information a kdump file may carry after its pages (makedumpfile writes a line per
/// erased symbol: far less).
const MAX_ERASEINFO: u64 = 1 << 30;

/// Where an ELF64 file's program header table ends, when its header holds the count
/// (past 65534 headers the count is in section header 0: None).
fn elf_heads_end(head: &[u8; HEAD]) -> Option<u64> {
    let big_endian = head.get(5) == Some(&2);
    let phoff = u64_at(head, 32, big_endian)?;
    let phnum = u16_at(head, 56, big_endian)?;
    (phnum != 0xffff).then(|| phoff.checked_add(u64::from(phnum) * 56)).flatten()
}

/// Whether the file's headers are not all in the first `covered` bytes received (a kdump
/// file's headers and bitmaps, an ELF file's program headers): then it is no dump, and
/// there is nothing to mark incomplete.
fn heads_missing(head: &[u8; HEAD], covered: u64) -> bool {
    if head.starts_with(kdump::KDUMP_SIGNATURE) {
        kdump_heads_end(head).is_none_or(|end| covered < end)
    } else if head.starts_with(b"\x7fELF") {
        elf_heads_end(head).is_some_and(|end| covered < end)
    } else {
        true
    }
}

/// The error of a stream that stopped early (cut short, or `stop` set): the file written
/// so far is marked incomplete when it is a dump, its headers all received (through
/// `covered`, the furthest byte); otherwise there is no dump.
fn stopped_early(out: &mut dyn Output, file_head: &[u8; HEAD], covered: u64, pos: u64, why: &str) -> Error {
    if heads_missing(file_head, covered) {
        let _ = out.finish();
        return Error::NoDump(format!("flattened stream, offset {pos:#x}: {why}, before the headers were through"));
    }
    let marked = match mark_incomplete(out, file_head, covered) {
        Some(done) => format!("; {done}"),
        None => String::new(),
    };
    let _ = out.finish();
    Error::Input(format!("flattened stream, offset {pos:#x}: {why}{marked}"))
}

/// Copies the flattened stream `input` into `out`. `progress` counts payload bytes
/// (the total is unknown). When `stop` is set (Ctrl-C), or the stream is cut short, what
/// was written is closed as an incomplete dump.
pub fn rearrange(
    input: &mut dyn Read,
    out: &mut dyn Output,
    progress: &dyn Progress,
    stop: Option<&AtomicBool>,
) -> Result<RearrangeReport> {
    let bad = |pos: u64, what: String| Error::Input(format!("flattened stream, offset {pos:#x}: {what}"));
    let mut head = vec![0u8; flat::HEADER_SIZE as usize];
    let n = read_full(input, &mut head).map_err(|e| bad(0, format!("reading the header: {e}")))?;
    if n < head.len() {
        return Err(bad(0, format!("{n} bytes, shorter than the {}-byte header", flat::HEADER_SIZE)));
    }
    // makedumpfile compares the signature as a C string and checks the type only.
    if head.get(..13) != Some(&b"makedumpfile\0"[..]) {
        return Err(bad(0, "no \"makedumpfile\" signature: not a flattened stream".into()));
    }
    let ty = head.get(16..24).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, i64::from_be_bytes);
    if ty != flat::TYPE_FLAT_HEADER {
        return Err(bad(16, format!("type {ty}, expected {}", flat::TYPE_FLAT_HEADER)));
    }
    let mut pos = flat::HEADER_SIZE;
    let mut report = RearrangeReport::default();
    let mut buf = vec![0u8; PIECE];
    // The file's first bytes as written so far: what to mark incomplete if the disk fills.
    let mut file_head = [0u8; HEAD];
    // The end of the furthest piece written to `out`.
    let mut written_end = 0u64;
    // The end of the furthest piece received, holes included.
    let mut covered_end = 0u64;
    loop {
        let mut ch = [0u8; flat::CHUNK_HEADER_SIZE as usize];
        let n = read_full(input, &mut ch).map_err(|e| bad(pos, format!("reading a chunk header: {e}")))?;
        if n < ch.len() {
            return Err(stopped_early(
                out,
                &file_head,
                covered_end,
                pos,
                "the stream ends without its end marker (cut short?)",
            ));
        }
        if crate::stopped(stop) {
            return Err(stopped_early(out, &file_head, covered_end, pos, "interrupted"));
        }
        let (o, s) = ch.split_at(8);
        let offset = <[u8; 8]>::try_from(o).map_or(0, i64::from_be_bytes);
        let size = <[u8; 8]>::try_from(s).map_or(0, i64::from_be_bytes);
        if offset == -1 && size == -1 {
            break;
        }
        if offset < 0 || size <= 0 {
            return Err(bad(pos, format!("chunk header with offset {offset} and size {size}")));
        }
        // A chunk past any file its header allows (a corrupt stream) would make a sparse
        // file of terabytes that no reader takes.
        if let Some(bound) = kdump_size_bound(&file_head).filter(|&b| (offset as u64).saturating_add(size as u64) > b) {
            let why = format!(
                "a chunk at file offset {offset:#x} (+{size:#x}) lies past the {bound:#x} bytes that the dump's \
                 header allows: not a chunk of this dump"
            );
            return Err(stopped_early(out, &file_head, covered_end, pos, &why));
        }
        pos += flat::CHUNK_HEADER_SIZE;
        let (mut at, mut left) = (offset as u64, size as u64);
        while left > 0 {
            let piece = buf.get_mut(..left.min(PIECE as u64) as usize).unwrap_or_default();
            let got = read_full(input, piece).map_err(|e| bad(pos, format!("reading chunk data: {e}")))?;
            if got < piece.len() {
                return Err(stopped_early(
                    out,
                    &file_head,
                    covered_end,
                    pos + got as u64,
                    "the stream ends inside a chunk (cut short?)",
                ));
            }
            // Zeros past everything written are left as holes, as `vmcore dump` leaves the
            // empty stretches of its bitmaps.
            let hole = at >= written_end && out.unwritten_reads_zero(at) && vmcore_filter::is_zero(piece);
            if !hole {
                write_piece(out, &file_head, covered_end, pos, at, piece)?;
                written_end = written_end.max(at + piece.len() as u64);
            }
            covered_end = covered_end.max(at + piece.len() as u64);
            if let Some(end) = usize::try_from(at).ok().filter(|&a| a < HEAD) {
                let n = (HEAD - end).min(piece.len());
                if let (Some(dst), Some(src)) = (file_head.get_mut(end..end + n), piece.get(..n)) {
                    dst.copy_from_slice(src);
                }
            }
            progress.advance(piece.len() as u64);
            at += piece.len() as u64;
            left -= piece.len() as u64;
            pos += piece.len() as u64;
        }
        report.chunks += 1;
        report.bytes += size as u64;
        report.file_size = report.file_size.max(offset as u64 + size as u64);
    }
    if report.file_size > written_end {
        // The file ends in a hole: its last byte makes it as long as the stream says.
        write_piece(out, &file_head, covered_end, pos, report.file_size - 1, &[0])?;
    }
    out.finish().map_err(Error::Output)?;
    progress.finish();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FlatOutput, NoProgress};

    /// Positioned writes into memory.
    struct Mem(Vec<u8>);

    impl Output for Mem {
        fn write_at(&mut self, offset: u64, data: &[u8]) -> std::result::Result<(), OutputError> {
            let end = offset as usize + data.len();
            if self.0.len() < end {
                self.0.resize(end, 0);
            }
            self.0[offset as usize..end].copy_from_slice(data);
            Ok(())
        }
        fn can_rewrite(&self) -> bool {
            true
        }
        fn finish(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn stream(writes: &[(u64, &[u8])]) -> Vec<u8> {
        let mut f = FlatOutput::new(Vec::new());
        for &(o, d) in writes {
            f.write_at(o, d).unwrap();
        }
        f.finish().unwrap();
        f.into_inner()
    }

    #[test]
    fn chunks_land_at_their_offsets_later_ones_win() {
        let s = stream(&[(10, b"hello"), (0, b"ab"), (12, b"XY"), (3 * PIECE as u64, &[7u8; 5])]);
        let mut out = Mem(Vec::new());
        let r = rearrange(&mut &s[..], &mut out, &NoProgress, None).unwrap();
        assert_eq!(r.chunks, 4);
        assert_eq!(r.file_size, 3 * PIECE as u64 + 5);
        assert_eq!(&out.0[..15], b"ab\0\0\0\0\0\0\0\0heXYo");
        // Data after the end marker is ignored.
        let mut s2 = s.clone();
        s2.extend_from_slice(b"garbage");
        let mut out2 = Mem(Vec::new());
        rearrange(&mut &s2[..], &mut out2, &NoProgress, None).unwrap();
        assert_eq!(out.0, out2.0);
    }

    /// A new file: what is never written reads zero. Records the writes.
    struct SparseFile {
        mem: Mem,
        writes: Vec<(u64, usize)>,
    }

    impl Output for SparseFile {
        fn write_at(&mut self, offset: u64, data: &[u8]) -> std::result::Result<(), OutputError> {
            self.writes.push((offset, data.len()));
            self.mem.write_at(offset, data)
        }
        fn can_rewrite(&self) -> bool {
            true
        }
        fn unwritten_reads_zero(&self, _: u64) -> bool {
            true
        }
        fn finish(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn zeros_past_the_written_end_become_holes() {
        let zeros = vec![0u8; PIECE + 10];
        // Zeros inside what was written are written; zeros past it are not, but for the
        // file's last byte.
        let s =
            stream(&[(0, b"abcdef"), (2, &[0, 0]), (100, &zeros), (100 + PIECE as u64 + 10, b"x"), (5000000, &[0; 9])]);
        let mut out = SparseFile { mem: Mem(Vec::new()), writes: Vec::new() };
        let r = rearrange(&mut &s[..], &mut out, &NoProgress, None).unwrap();
        assert_eq!(r.file_size, 5000009);
        assert_eq!(out.writes, [(0, 6), (2, 2), (100 + PIECE as u64 + 10, 1), (5000008, 1)]);
        let mut expected = vec![0u8; 5000009];
        expected[..6].copy_from_slice(b"ab\0\0ef");
        expected[100 + PIECE + 10] = b'x';
        assert!(out.mem.0 == expected);
    }

    #[test]
    fn large_chunks_are_copied_in_pieces() {
        let big: Vec<u8> = (0..(2 * PIECE + 17)).map(|i| (i % 251) as u8).collect();
        let s = stream(&[(5, &big)]);
        let mut out = Mem(Vec::new());
        rearrange(&mut &s[..], &mut out, &NoProgress, None).unwrap();
        assert_eq!(&out.0[5..], &big[..]);
    }

    #[test]
    fn bad_streams_say_where() {
        let s = stream(&[(0, b"abc")]);
        let mut out = Mem(Vec::new());
        for cut in [100, 4096 + 8, 4096 + 16 + 1, s.len() - 3] {
            let e = rearrange(&mut &s[..cut], &mut out, &NoProgress, None).unwrap_err().to_string();
            assert!(e.contains("flattened stream, offset"), "{cut}: {e}");
        }
        let mut bad = s.clone();
        bad[0] = b'M';
        assert!(rearrange(&mut &bad[..], &mut out, &NoProgress, None).unwrap_err().to_string().contains("signature"));
        let mut bad = s.clone();
        bad[4096..4104].copy_from_slice(&(-5i64).to_be_bytes());
        assert!(rearrange(&mut &bad[..], &mut out, &NoProgress, None).unwrap_err().to_string().contains("offset -5"));
    }
}
