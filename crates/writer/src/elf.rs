//! ELF output (`-E`, makedumpfile.md section 3): the input's ELF header and notes, then
//! one PT_LOAD per kept stretch of each input PT_LOAD.
//!
//! Each input PT_LOAD is walked page by page against the pages to keep (the filter's 2nd
//! bitmap less the zero pages with level bit 1, since the program headers must be known
//! before any page is written). A run of fewer than 256 excluded pages stays in the
//! segment with its real contents; a longer one ends the segment, whose `p_memsz` then
//! exceeds its `p_filesz` by the run, and the next kept page starts a new one. Input
//! segments are taken as they are, overlaps included: the kernel image's PT_LOAD, which
//! also lies in the direct map, gives its own output PT_LOADs (with its virtual
//! addresses), as makedumpfile writes them, so that tools that read kernel text through
//! the image mapping still find it.

use vmcore_filter::{Filtered, PfnBitmap};
use vmcore_formats::elf::{ElfCore, LoadSegment, DUMP_ELF_INCOMPLETE};
use vmcore_physmem::PhysMem;
use vmcore_types::ReadAt;

use crate::kdump::WRITE_BUFFER;
use crate::output::{fix_written_table, Output, OutputError};
use crate::{bitmaps_read_back, Error, Progress, Result, WriteOptions, WriteReport};

/// Excluded pages in a row from which a segment is split (makedumpfile's PFN_EXCLUDED).
pub const PFN_EXCLUDED: u64 = 256;
const EHDR: u64 = 64;
const PHDR: u64 = 56;
const SHDR: u64 = 64;
const PN_XNUM: u64 = 0xffff;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

/// One output PT_LOAD: a stretch of one input PT_LOAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Physical address of the first byte.
    pub paddr: u64,
    /// Virtual address of the first byte.
    pub vaddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes of memory (the excluded tail reads as zeros).
    pub memsz: u64,
}

/// The pieces of the input segment `[paddr, paddr + memsz)` (at `vaddr`), split around
/// the runs of at least [`PFN_EXCLUDED`] pages that `keep` leaves out, in order. They are
/// made as they are asked for: a fragmented machine has millions.
pub fn split_segment(paddr: u64, vaddr: u64, memsz: u64, page_size: u64, keep: &PfnBitmap) -> Pieces<'_> {
    let ps = page_size;
    let end = paddr.saturating_add(memsz);
    let head = if paddr % ps != 0 { (ps - paddr % ps).min(memsz) } else { 0 };
    let pfn_start = paddr.div_ceil(ps);
    let pfn_end = end.div_ceil(ps).max(pfn_start);
    Pieces {
        kept: keep.iter_range(pfn_start, pfn_end),
        piece: Some(Piece { paddr, vaddr, filesz: head, memsz: head }),
        next: pfn_start,
        pfn_end,
        tail: end % ps,
        ps,
    }
}

/// The pieces of one segment, see [`split_segment`].
#[derive(Debug)]
pub struct Pieces<'a> {
    kept: vmcore_filter::Iter<'a>,
    /// The piece being grown; None once the last is returned.
    piece: Option<Piece>,
    /// The first frame not yet counted.
    next: u64,
    pfn_end: u64,
    /// Bytes of the last frame inside the segment (0: all of it).
    tail: u64,
    ps: u64,
}

/// Bytes of frame `pfn` inside a segment whose frames end at `pfn_end`, the last one
/// holding `tail` bytes (0: a whole page).
fn frame_size(pfn: u64, pfn_end: u64, tail: u64, ps: u64) -> u64 {
    if pfn + 1 == pfn_end && tail != 0 {
        tail
    } else {
        ps
    }
}

impl Iterator for Pieces<'_> {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        let (ps, pfn_end, tail) = (self.ps, self.pfn_end, self.tail);
        let mut p = self.piece.take()?;
        // The kept frames only, so that a bitmap spilled to disk is read a chunk at a time.
        for pfn in self.kept.by_ref() {
            // Only the segment's last frame can be partial, and it is not before `pfn`.
            let excluded = pfn - self.next;
            let size = frame_size(pfn, pfn_end, tail, ps);
            self.next = pfn + 1;
            p.memsz += ps * excluded;
            if excluded == 0 {
                p.memsz += size;
                p.filesz += size;
            } else if excluded < PFN_EXCLUDED {
                // A short hole stays, with its real contents.
                p.memsz += size;
                p.filesz += ps * excluded + size;
            } else {
                let next =
                    Piece { paddr: p.paddr + p.memsz, vaddr: p.vaddr.wrapping_add(p.memsz), filesz: size, memsz: size };
                self.piece = Some(next);
                return Some(p);
            }
        }
        if self.next < pfn_end {
            p.memsz += ps * (pfn_end - 1 - self.next) + frame_size(pfn_end - 1, pfn_end, tail, ps);
            self.next = pfn_end;
        }
        Some(p)
    }
}

/// An ELF64 file's header, and where its program header table is: its offset, its
/// entry count (past 65534 it is in section header 0), and the file's byte order.
fn locate_table(src: &dyn ReadAt) -> std::io::Result<(Vec<u8>, u64, u64, bool)> {
    let context =
        |what: &'static str| move |e: std::io::Error| std::io::Error::new(e.kind(), format!("reading {what}: {e}"));
    let mut ehdr = vec![0u8; EHDR as usize];
    src.read_exact_at(&mut ehdr, 0).map_err(context("the ELF header"))?;
    let big_endian = ehdr.get(5) == Some(&2);
    let phoff = get(&ehdr, 32, 8, big_endian);
    let mut phnum = get(&ehdr, 56, 2, big_endian);
    if phnum == PN_XNUM {
        let shoff = get(&ehdr, 40, 8, big_endian);
        let mut sh = vec![0u8; SHDR as usize];
        src.read_exact_at(&mut sh, shoff).map_err(context("section header 0"))?;
        phnum = get(&sh, 44, 4, big_endian);
    }
    Ok((ehdr, phoff, phnum, big_endian))
}

/// The input's ELF header and program header table, as bytes.
struct InputHeaders {
    ehdr: Vec<u8>,
    phdrs: Vec<u8>,
    big_endian: bool,
}

impl InputHeaders {
    fn read(src: &dyn ReadAt) -> Result<InputHeaders> {
        let (ehdr, phoff, phnum, big_endian) = locate_table(src).map_err(|e| Error::Input(e.to_string()))?;
        let mut phdrs = vec![0u8; usize::try_from(phnum * PHDR).map_err(|_| Error::Input("phnum".into()))?];
        src.read_exact_at(&mut phdrs, phoff).map_err(|e| Error::Input(format!("reading the program headers: {e}")))?;
        Ok(InputHeaders { ehdr, phdrs, big_endian })
    }

    fn phdr(&self, index: usize) -> &[u8] {
        let at = index * PHDR as usize;
        self.phdrs.get(at..at + PHDR as usize).unwrap_or_default()
    }

    fn first_note(&self) -> Option<&[u8]> {
        self.phdrs.chunks(PHDR as usize).find(|p| get(p, 0, 4, self.big_endian) == u64::from(PT_NOTE))
    }
}

/// Offset of an ELF64 header's `e_flags`.
pub(crate) const E_FLAGS: usize = 48;

/// Sets makedumpfile's incomplete bit in the ELF header's `e_flags`, which hold `flags`.
/// A flattened stream gets one more chunk there, which replaces the field when the
/// stream is rearranged (later chunks overwrite earlier ones).
pub(crate) fn mark_incomplete(out: &mut dyn Output, flags: u32, big_endian: bool) -> Result<()> {
    let mut b = [0u8; 4];
    put(&mut b, 0, 4, u64::from(flags | DUMP_ELF_INCOMPLETE), big_endian);
    out.write_at(E_FLAGS as u64, &b).map_err(|e| match e {
        OutputError::Io(e) => Error::Output(e),
        OutputError::Full => Error::Output(std::io::Error::other("cannot mark the dump incomplete")),
    })
}

/// The output's PT_LOAD headers: the pieces of `loads` against `keep`, their data laid
/// out in order from `data_start`.
struct LoadTable<'a> {
    input: &'a InputHeaders,
    loads: &'a [&'a LoadSegment],
    keep: &'a PfnBitmap,
    page_size: u64,
    data_start: u64,
}

impl LoadTable<'_> {
    /// Writes the program header table after the ELF header, `first` (the PT_NOTE) then
    /// the PT_LOADs, a buffer at a time: a fragmented machine has millions. Each is cut at
    /// `data_end`, where the data written stops (`u64::MAX`: all of it is written).
    fn write(&self, out: &mut dyn Output, first: &[u8], data_end: u64) -> Result<()> {
        let be = self.input.big_endian;
        let mut table: Vec<u8> = Vec::with_capacity(WRITE_BUFFER);
        table.extend_from_slice(first);
        let mut table_at = EHDR;
        let mut offset = self.data_start;
        for s in self.loads {
            let template = self.input.phdr(s.index);
            let mut pieces = split_segment(s.paddr, s.vaddr, s.memsz, self.page_size, self.keep).peekable();
            while let Some(p) = pieces.next() {
                // As makedumpfile: a piece without data has offset 0, except a segment's
                // last, which has the running offset (an input segment with no memory
                // included).
                let off = if p.filesz != 0 || pieces.peek().is_none() { offset } else { 0 };
                offset += p.filesz;
                let mut ph = phdr(template, off, &p, be);
                let _ = clip_load(&mut ph, data_end, be);
                table.extend_from_slice(&ph);
                if table.len() >= WRITE_BUFFER {
                    out.write_at(table_at, &table)?;
                    table_at += table.len() as u64;
                    table.clear();
                }
            }
        }
        out.write_at(table_at, &table)?;
        Ok(())
    }
}

/// Cuts the PT_LOAD header `ph` of an incomplete dump, whose data stops at file offset
/// `data_end`, to the data it holds: a segment whose data lies past it keeps no memory,
/// one across it keeps what comes before. The memory the dump lacks is then absent in
/// every reader; left as it was, libkdumpfile read it as zeros and a mapping reader would
/// fault past the file's end. Segments with no data in the file (memory filtered out,
/// which reads as zeros in a complete dump too) are left as they are. Only the sizes
/// change: a rewrite the disk takes only in part leaves no header pointing elsewhere.
/// Returns whether `ph` changed.
pub(crate) fn clip_load(ph: &mut [u8], data_end: u64, be: bool) -> bool {
    let (offset, filesz) = (get(ph, 8, 8, be), get(ph, 32, 8, be));
    if get(ph, 0, 4, be) != u64::from(PT_LOAD) || filesz == 0 || offset.saturating_add(filesz) <= data_end {
        return false;
    }
    let kept = data_end.saturating_sub(offset);
    put(ph, 32, 8, kept, be);
    put(ph, 40, 8, kept, be);
    true
}

/// [`clip_load`] for every PT_LOAD of the ELF dump being written to `out` (rearranged
/// from a stream that stopped early), read back from it: only the stretches of the table
/// that were written (so the work is bounded by what the stream delivered, whatever its
/// header claims), and only the headers that change are rewritten, in place.
pub(crate) fn clip_loads_written(out: &mut dyn Output, data_end: u64) -> Result<()> {
    let what = "cutting the program headers";
    let Some(located) = out.written().map(|file| locate_table(&*file)) else { return Ok(()) };
    let (_, phoff, phnum, be) = located.map_err(|e| Error::Output(std::io::Error::other(format!("{what}: {e}"))))?;
    let table_end = phoff.saturating_add(phnum.saturating_mul(PHDR));
    // Only headers all in the file: one cut across a hole would be judged by zeros.
    fix_written_table(out, phoff, table_end, PHDR, what, |ph, whole, _| whole && clip_load(ph, data_end, be))
}

fn get(b: &[u8], off: usize, len: usize, big_endian: bool) -> u64 {
    let Some(s) = b.get(off..off + len) else { return 0 };
    let mut v = 0u64;
    if big_endian {
        for &x in s {
            v = (v << 8) | u64::from(x);
        }
    } else {
        for &x in s.iter().rev() {
            v = (v << 8) | u64::from(x);
        }
    }
    v
}

fn put(b: &mut [u8], off: usize, len: usize, v: u64, big_endian: bool) {
    let Some(d) = b.get_mut(off..off + len) else { return };
    for (i, x) in d.iter_mut().enumerate() {
        let shift = if big_endian { 8 * (len - 1 - i) } else { 8 * i };
        *x = (v >> shift) as u8;
    }
}

/// What an ELF dump of `core` keeping `filtered`'s dumpable frames less its zero pages
/// holds, without writing it: the pages of data (makedumpfile's remaining pages "in ELF
/// format") and makedumpfile's "Write bytes" (its dry run prints it too).
pub fn elf_plan(core: &ElfCore, filtered: &Filtered, page_size: u64, vmcoreinfo: Option<&[u8]>) -> (u64, u64) {
    let mut keep = filtered.dumpable.clone();
    if filtered.level & 1 != 0 {
        for pfn in filtered.zero_pages.iter() {
            keep.clear(pfn);
        }
    }
    let (mut phnum, mut data) = (1u64, 0u64);
    for s in core.loads.iter().filter(|s| s.paddr != u64::MAX) {
        for p in split_segment(s.paddr, s.vaddr, s.memsz, page_size, &keep) {
            phnum += 1;
            data += p.filesz;
        }
    }
    let notes: u64 = core.note_segments.iter().map(|&(_, size)| size).sum::<u64>()
        + added_note(core, vmcoreinfo).map_or(0, |n| n.len() as u64);
    let shdr = if phnum >= PN_XNUM { SHDR } else { 0 };
    let data_start = EHDR + phnum * PHDR + shdr + notes;
    (data.div_ceil(page_size), data_start + data + phnum * PHDR)
}

/// The VMCOREINFO note the output adds when the input's notes lack it (the text was given
/// with --vmcoreinfo or found in memory), so that the dump describes itself.
fn added_note(core: &ElfCore, vmcoreinfo: Option<&[u8]>) -> Option<Vec<u8>> {
    let big_endian = core.is_big_endian();
    vmcoreinfo.filter(|_| core.note(b"VMCOREINFO", 0).is_none()).map(|v| crate::meta::vmcoreinfo_note(v, big_endian))
}

/// A program header: `template` (the input's) with new addresses, sizes and offset.
fn phdr(template: &[u8], offset: u64, piece: &Piece, be: bool) -> Vec<u8> {
    let mut p = template.to_vec();
    p.resize(PHDR as usize, 0);
    put(&mut p, 8, 8, offset, be);
    put(&mut p, 16, 8, piece.vaddr, be);
    put(&mut p, 24, 8, piece.paddr, be);
    put(&mut p, 32, 8, piece.filesz, be);
    put(&mut p, 40, 8, piece.memsz, be);
    p
}

/// Writes `filtered` pages of the ELF core `core` (read from `src`, and through `mem` for
/// the zero-page scan) as an ELF dump to `out`. With level bit 1, the zero pages are
/// `filtered.zero_pages` when the filter looked for them, else found here. `vmcoreinfo`
/// becomes a note when the input has none.
#[allow(clippy::too_many_arguments)]
pub fn write_elf(
    out: &mut dyn Output,
    core: &ElfCore,
    src: &dyn ReadAt,
    mem: &dyn PhysMem,
    filtered: &Filtered,
    vmcoreinfo: Option<&[u8]>,
    opts: &WriteOptions,
    progress: &dyn Progress,
) -> Result<WriteReport> {
    let ps = mem.page_size();
    let input = InputHeaders::read(src)?;
    let be = input.big_endian;

    let mut keep = filtered.dumpable.clone();
    let mut zero_pages = 0u64;
    if filtered.level & 1 != 0 {
        let zero = if filtered.zero_pages_scanned {
            filtered.zero_pages.clone()
        } else {
            let unit = vmcore_filter::Options::default().unit_pfns;
            // A stop here leaves the rest counted as not zero; the pages then stop at once.
            // A page that cannot be read is not zero: the copy meets it in order.
            vmcore_filter::zero_pages(mem, &filtered.dumpable, opts.threads, unit, true, opts.stop.as_deref())?
        };
        for pfn in zero.iter() {
            if keep.clear(pfn) {
                zero_pages += 1;
            }
        }
        bitmaps_read_back(&[&zero])?;
    }

    let loads: Vec<&LoadSegment> = core.loads.iter().filter(|s| s.paddr != u64::MAX).collect();
    let mut count = 0u64;
    let mut file_bytes = 0u64;
    for s in &loads {
        for p in split_segment(s.paddr, s.vaddr, s.memsz, ps, &keep) {
            count += 1;
            file_bytes += p.filesz;
        }
    }
    let notes: Vec<u8> = {
        let mut n = Vec::new();
        for &(offset, size) in &core.note_segments {
            let mut seg = vec![0u8; usize::try_from(size).map_err(|_| Error::Input("PT_NOTE size".into()))?];
            src.read_exact_at(&mut seg, offset)
                .map_err(|e| Error::Input(format!("reading PT_NOTE at {offset:#x}: {e}")))?;
            n.extend_from_slice(&seg);
        }
        n.extend(added_note(core, vmcoreinfo).unwrap_or_default());
        n
    };
    let phnum = 1 + count;
    let xnum = phnum >= PN_XNUM;
    let shdr_at = EHDR + phnum * PHDR;
    let note_at = shdr_at + if xnum { SHDR } else { 0 };
    let data_start = note_at + notes.len() as u64;
    let pages = file_bytes.div_ceil(ps);
    progress.set_total(pages);

    // ELF header: the input's, with the new program header count, and no section
    // headers but the one that holds a count past 65534 (QEMU's section headers, or the
    // input's own count holder, are not copied: nothing would be where they point).
    let mut ehdr = input.ehdr.clone();
    put(&mut ehdr, 32, 8, EHDR, be);
    put(&mut ehdr, 52, 2, EHDR, be);
    put(&mut ehdr, 54, 2, PHDR, be);
    if xnum {
        put(&mut ehdr, 56, 2, PN_XNUM, be);
        put(&mut ehdr, 40, 8, shdr_at, be);
        put(&mut ehdr, 58, 2, SHDR, be);
        put(&mut ehdr, 60, 2, 1, be);
        put(&mut ehdr, 62, 2, 0, be);
    } else {
        put(&mut ehdr, 56, 2, phnum, be);
        put(&mut ehdr, 40, 8, 0, be);
        put(&mut ehdr, 60, 2, 0, be);
        put(&mut ehdr, 62, 2, 0, be);
        if get(&input.ehdr, 56, 2, be) == PN_XNUM {
            put(&mut ehdr, 58, 2, 0, be);
        }
    }
    out.write_at(0, &ehdr)?;

    // Program headers, streamed: PT_NOTE, then the PT_LOADs.
    let note_template = input.first_note().map(<[u8]>::to_vec).unwrap_or_else(|| {
        let mut t = vec![0u8; PHDR as usize];
        put(&mut t, 0, 4, u64::from(PT_NOTE), be);
        t
    });
    let mut note_ph = note_template;
    note_ph.resize(PHDR as usize, 0);
    put(&mut note_ph, 8, 8, note_at, be);
    put(&mut note_ph, 32, 8, notes.len() as u64, be);
    put(&mut note_ph, 40, 8, notes.len() as u64, be);
    let table = LoadTable { input: &input, loads: &loads, keep: &keep, page_size: ps, data_start };
    table.write(out, &note_ph, u64::MAX)?;
    if xnum {
        let mut sh = vec![0u8; SHDR as usize];
        put(&mut sh, 32, 8, 1, be); // sh_size
        put(&mut sh, 44, 4, phnum, be); // sh_info: the real program header count
        out.write_at(shdr_at, &sh)?;
    }
    out.write_at(note_at, &notes)?;

    // The data, in the order of the program headers.
    let mut report = WriteReport { pages, zero_pages, ..WriteReport::default() };
    let mut buf = vec![0u8; WRITE_BUFFER];
    let mut pos = data_start;
    let mut full = false;
    let mut failure = None;
    'segments: for s in &loads {
        for p in split_segment(s.paddr, s.vaddr, s.memsz, ps, &keep) {
            let mut done = 0u64;
            while done < p.filesz {
                let n = (p.filesz - done).min(WRITE_BUFFER as u64);
                let chunk = buf.get_mut(..n as usize).unwrap_or_default();
                let at = p.paddr - s.paddr + done;
                if read_segment(src, s, at, chunk).is_err() {
                    // Page by page: the chunk's pages before the one that fails are
                    // written, and the error names that page.
                    let retried = retry_by_page(src, s, at, chunk, ps, out, pos)?;
                    pos += retried.bytes;
                    report.pages_written += retried.bytes / ps;
                    progress.advance(retried.bytes / ps);
                    match retried.end {
                        RetryEnd::AllRead => {
                            done += n;
                            continue;
                        }
                        RetryEnd::InputFailed(e) => failure = Some(e),
                        // A full disk ends the dump as it does anywhere else.
                        RetryEnd::DiskFull => {}
                    }
                    full = true;
                    break 'segments;
                }
                match out.write_at(pos, chunk) {
                    Ok(()) => {}
                    Err(OutputError::Full) => {
                        // Part of the chunk may be on disk: count its pages that are, by
                        // writing them again one by one (into space already taken) until
                        // one does not fit.
                        let pages_in = chunk
                            .chunks(ps as usize)
                            .enumerate()
                            .take_while(|(k, page)| out.write_at(pos + *k as u64 * ps, page).is_ok())
                            .count() as u64;
                        report.pages_written += pages_in;
                        pos += pages_in * ps;
                        full = true;
                        break 'segments;
                    }
                    Err(OutputError::Io(e)) => return Err(Error::Output(e)),
                }
                pos += n;
                done += n;
                report.pages_written += n / ps;
                progress.advance(n / ps);
                if pos < data_start + file_bytes && opts.stopped() {
                    full = true;
                    break 'segments;
                }
            }
        }
    }
    report.bytes = pos;
    report.write_bytes = pos + phnum * PHDR;
    let closed = if full {
        report.incomplete = true;
        mark_incomplete(out, get(&ehdr, E_FLAGS, 4, be) as u32, be).and_then(|()| {
            table.write(out, &note_ph, pos).map_err(|e| match e {
                Error::NoRoomForHeaders => Error::Output(std::io::Error::other(
                    "the dump is marked incomplete, but its program headers could not be cut to the data written",
                )),
                e => e,
            })
        })
    } else {
        report.pages_written = pages;
        Ok(())
    };
    if let Some(cause) = failure {
        // The input's failure is the story; one in closing the file is added to it.
        let written = report.pages_written;
        return Err(match closed.and_then(|()| out.finish().map_err(Error::Output)) {
            Ok(()) => Error::Incomplete { cause: Box::new(cause), written, pages },
            Err(e) => Error::Output(std::io::Error::other(format!("{cause}; closing the dump failed too: {e}"))),
        });
    }
    closed?;
    bitmaps_read_back(&[&filtered.present, &filtered.dumpable, &filtered.zero_pages, &keep])?;
    out.finish().map_err(Error::Output)?;
    progress.finish();
    Ok(report)
}

/// How a chunk that failed to read whole went when read and written page by page.
enum RetryEnd {
    /// Every page read this time: the dump goes on.
    AllRead,
    /// This page could not be read.
    InputFailed(Error),
    /// The output filled up.
    DiskFull,
}

/// Bytes of a retried chunk written (whole pages but for a segment's partial last page),
/// and why the retry stopped.
struct Retried {
    bytes: u64,
    end: RetryEnd,
}

/// Reads `chunk` (segment `s` from offset `at`) page by page, writing each page read at
/// `pos` onwards, until a page fails to read or the output fills up.
fn retry_by_page(
    src: &dyn ReadAt,
    s: &LoadSegment,
    at: u64,
    chunk: &mut [u8],
    ps: u64,
    out: &mut dyn Output,
    pos: u64,
) -> Result<Retried> {
    let mut bytes = 0u64;
    for page in chunk.chunks_mut(ps as usize) {
        if let Err(e) = read_segment(src, s, at + bytes, page) {
            return Ok(Retried { bytes, end: RetryEnd::InputFailed(e) });
        }
        match out.write_at(pos + bytes, page) {
            Ok(()) => bytes += page.len() as u64,
            Err(OutputError::Full) => return Ok(Retried { bytes, end: RetryEnd::DiskFull }),
            Err(OutputError::Io(e)) => return Err(Error::Output(e)),
        }
    }
    Ok(Retried { bytes, end: RetryEnd::AllRead })
}

/// Reads `buf.len()` bytes of input segment `s` from `off` bytes into it: from the file
/// up to its `p_filesz`, zeros past it.
fn read_segment(src: &dyn ReadAt, s: &LoadSegment, off: u64, buf: &mut [u8]) -> Result<()> {
    let in_file = usize::try_from(s.filesz.saturating_sub(off)).unwrap_or(usize::MAX).min(buf.len());
    let (file_part, zero_part) = buf.split_at_mut(in_file);
    if !file_part.is_empty() {
        let at = s.offset + off;
        src.read_exact_at(file_part, at).map_err(|e| {
            Error::Input(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format!(
                    "the input is truncated: it ends before PT_LOAD data at offset {at:#x} ({} bytes)",
                    file_part.len()
                )
            } else {
                format!("reading PT_LOAD data at offset {at:#x}: {e}")
            })
        })?;
    }
    zero_part.fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(paddr: u64, memsz: u64, keep: &PfnBitmap) -> Vec<Piece> {
        let mut v = Vec::new();
        v.extend(split_segment(paddr, 0xffff_0000_0000_0000 + paddr, memsz, 4096, keep));
        v
    }

    #[test]
    fn short_holes_stay_long_runs_split() {
        let mut keep = PfnBitmap::new(2000);
        keep.set_range(0, 10);
        keep.set_range(20, 30); // hole of 10: kept
        keep.set_range(300, 310); // hole of 270: split
        let p = pieces(0, 1000 * 4096, &keep);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], Piece { paddr: 0, vaddr: 0xffff_0000_0000_0000, filesz: 30 * 4096, memsz: 300 * 4096 });
        assert_eq!(p[1].paddr, 300 * 4096);
        assert_eq!(p[1].filesz, 10 * 4096);
        assert_eq!(p[1].memsz, 700 * 4096);
    }

    #[test]
    fn exactly_256_excluded_split_255_do_not() {
        let mut keep = PfnBitmap::new(1000);
        keep.set(0);
        keep.set(256); // 255 excluded between
        keep.set(513); // 256 excluded between
        let p = pieces(0, 600 * 4096, &keep);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].filesz, 257 * 4096);
        assert_eq!(p[0].memsz, 513 * 4096);
        assert_eq!(
            p[1],
            Piece { paddr: 513 * 4096, vaddr: 0xffff_0000_0000_0000 + 513 * 4096, filesz: 4096, memsz: 87 * 4096 }
        );
    }

    #[test]
    fn a_leading_excluded_run_gives_an_empty_piece() {
        let mut keep = PfnBitmap::new(1000);
        keep.set_range(500, 600);
        let p = pieces(0, 600 * 4096, &keep);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].filesz, 0);
        assert_eq!(p[0].memsz, 500 * 4096);
        assert_eq!(p[1].filesz, 100 * 4096);
    }

    #[test]
    fn unaligned_ends_count_their_fragments() {
        let mut keep = PfnBitmap::new(200);
        keep.set_range(0, 200);
        // [0x1800, 0x9fc00): a head fragment of 0x800, pfns 2..0x9f, a tail of 0xc00.
        let p = pieces(0x1800, 0x9fc00 - 0x1800, &keep);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].filesz, 0x9fc00 - 0x1800);
        assert_eq!(p[0].memsz, 0x9fc00 - 0x1800);
        // The tail frame not kept: memory but not file.
        keep.clear(0x9f);
        let p = pieces(0x1800, 0x9fc00 - 0x1800, &keep);
        assert_eq!(p[0].filesz, 0x9f000 - 0x1800);
        assert_eq!(p[0].memsz, 0x9fc00 - 0x1800);
    }

    /// The pieces by their definition, the oracle of the walk above: a piece starts at a
    /// kept frame after 256 or more excluded ones, its memory runs to the next piece, its
    /// file data to its last kept frame (the first piece also holds the head fragment).
    fn pieces_by_definition(paddr: u64, memsz: u64, keep: &PfnBitmap) -> Vec<Piece> {
        let ps = 4096;
        let end = paddr + memsz;
        let first = paddr.div_ceil(ps);
        let frames: Vec<(u64, u64, bool)> = (first..end.div_ceil(ps).max(first))
            .map(|pfn| (pfn * ps, (pfn * ps + ps).min(end) - pfn * ps, keep.get(pfn)))
            .collect();
        let mut starts = vec![paddr];
        let mut excluded = 0;
        for &(at, _, kept) in &frames {
            if kept && excluded >= PFN_EXCLUDED {
                starts.push(at);
            }
            excluded = if kept { 0 } else { excluded + 1 };
        }
        let bounds: Vec<u64> = starts.iter().skip(1).copied().chain([end]).collect();
        starts
            .iter()
            .zip(bounds)
            .map(|(&from, to)| {
                let data_end = frames.iter().filter(|f| f.2 && f.0 >= from && f.0 < to).map(|f| f.0 + f.1).max();
                let filesz =
                    data_end.map_or(if from == paddr { paddr.div_ceil(ps) * ps - paddr } else { 0 }, |e| e - from);
                Piece { paddr: from, vaddr: 0xffff_0000_0000_0000 + from, filesz: filesz.min(memsz), memsz: to - from }
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn pieces_follow_their_definition(
            runs in proptest::collection::vec((0u64..600, 0u64..300), 0..12),
            start in 0u64..20_000,
            len in 1u64..2_000_000,
            frames in 0u64..1000,
        ) {
            // Bitmaps shorter than the segment too: frames past them are excluded.
            let mut keep = PfnBitmap::new(frames);
            for (at, n) in runs {
                keep.set_range(at, at + n);
            }
            proptest::prop_assert_eq!(pieces(start, len, &keep), pieces_by_definition(start, len, &keep));
        }
    }

    #[test]
    fn nothing_kept_is_one_piece_without_data() {
        let keep = PfnBitmap::new(100);
        let p = pieces(4096, 50 * 4096, &keep);
        assert_eq!(p, vec![Piece { paddr: 4096, vaddr: 0xffff_0000_0000_1000, filesz: 0, memsz: 50 * 4096 }]);
    }
}
