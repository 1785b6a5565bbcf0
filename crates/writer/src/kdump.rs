//! The kdump-compressed writer (header version 6), laid out as makedumpfile lays it out
//! (../shared/docs/makedumpfile.md section 1): header, sub header and notes, both bitmaps,
//! the page descriptor table, then the shared zero page and the pages in pfn order.
//! `--split` files (section 1.10) are the same file restricted to one pfn range.

use vmcore_filter::{is_zero, Filtered, PfnBitmap};
use vmcore_formats::codec::Codec;
use vmcore_formats::raw::kdump::{self as raw, header as h, sub_header as sh};
use vmcore_physmem::{PageState, PhysMem, ReadOptions};
use vmcore_types::bytes::{u32_at, u64_at};
use vmcore_types::{Pfn, PhysAddr};

use crate::compress::Compressor;
use crate::output::{fix_written_table, Output, OutputError};
use crate::pipeline::Recycler;
use crate::{bitmaps_read_back, Error, Progress, Result, WriteOptions, WriteReport};
use vmcore_types::ordered::{ordered, Flow, AHEAD_PER_THREAD};

/// What a kdump-compressed file carries besides pages.
#[derive(Debug, Clone, Default)]
pub struct KdumpMeta {
    /// sysname, nodename, release, version, machine, domainname of the dumped kernel.
    pub utsname: [String; 6],
    /// Crash time (VMCOREINFO CRASHTIME).
    pub timestamp: i64,
    /// `phys_base` (x86_64) or `PHYS_OFFSET` (arm64).
    pub phys_base: u64,
    /// The input's ELF notes, copied verbatim (PRSTATUS of each CPU, VMCOREINFO, ...).
    pub notes: Vec<u8>,
    /// Offset and size of the VMCOREINFO text inside `notes`, if it is there.
    pub vmcoreinfo_in_notes: Option<(u64, u64)>,
    /// CPUs with a PRSTATUS note.
    pub nr_cpus: i32,
}

const SUB_HEADER_END: u64 = sh::SIZE as u64;
const DESC: u64 = raw::PAGE_DESC_SIZE as u64;
/// Pages per job handed to a worker: large enough to amortize the hand-off, small enough
/// that `threads * 2` jobs in flight stay a few MiB.
const PAGES_PER_JOB: usize = 64;
/// Bytes of page data (and descriptors) gathered before a write.
pub(crate) const WRITE_BUFFER: usize = 1 << 20;

/// The file's layout, all offsets in bytes.
#[derive(Debug, Clone, Copy)]
struct Layout {
    block: u64,
    sub_hdr_blocks: u64,
    bitmap_offset: u64,
    bitmap_len: u64,
    desc_offset: u64,
    data_offset: u64,
    vmcoreinfo: (u64, u64),
    /// Bytes makedumpfile writes before the descriptors: the header structure, the sub
    /// header with the notes, and the bitmaps.
    head_bytes: u64,
}

impl Layout {
    /// makedumpfile's "Write bytes" of a file whose descriptors and data end at `end`.
    fn write_bytes(&self, end: u64) -> u64 {
        self.head_bytes + end.saturating_sub(self.desc_offset)
    }
}

fn layout(meta: &KdumpMeta, max_mapnr: u64, dumpable: u64, block: u64, whole_bitmaps: bool) -> Layout {
    let notes_len = meta.notes.len() as u64;
    let sub_hdr_bytes = SUB_HEADER_END + notes_len;
    let sub_hdr_blocks = sub_hdr_bytes.div_ceil(block);
    let bitmap_offset = (1 + sub_hdr_blocks) * block;
    let bitmap_len = max_mapnr.div_ceil(8).div_ceil(block) * block;
    let desc_offset = bitmap_offset + 2 * bitmap_len;
    let data_offset = desc_offset + dumpable * DESC;
    let notes_at = block + SUB_HEADER_END;
    let vmcoreinfo = meta.vmcoreinfo_in_notes.map_or((0, 0), |(off, size)| (notes_at + off, size));
    // A bitmap held whole is written a block at a time, else up to its last frame's byte.
    let bitmap_bytes = if whole_bitmaps { bitmap_len } else { max_mapnr.div_ceil(8) };
    let head_bytes = h::SIZE as u64 + sub_hdr_bytes + 2 * bitmap_bytes;
    Layout { block, sub_hdr_blocks, bitmap_offset, bitmap_len, desc_offset, data_offset, vmcoreinfo, head_bytes }
}

pub(crate) fn put32(b: &mut [u8], off: usize, v: u32) {
    if let Some(d) = b.get_mut(off..off + 4) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

pub(crate) fn put64(b: &mut [u8], off: usize, v: u64) {
    if let Some(d) = b.get_mut(off..off + 8) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

fn header_block(meta: &KdumpMeta, l: &Layout, max_mapnr: u64, status: u32) -> Vec<u8> {
    let mut b = vec![0u8; h::SIZE];
    if let Some(s) = b.get_mut(..8) {
        s.copy_from_slice(raw::KDUMP_SIGNATURE);
    }
    put32(&mut b, h::HEADER_VERSION, 6);
    for (i, field) in meta.utsname.iter().enumerate() {
        let at = h::UTSNAME + i * raw::UTS_LEN;
        let bytes = field.as_bytes();
        let n = bytes.len().min(raw::UTS_LEN - 1);
        if let (Some(d), Some(s)) = (b.get_mut(at..at + n), bytes.get(..n)) {
            d.copy_from_slice(s);
        }
    }
    put64(&mut b, h::TIMESTAMP, meta.timestamp as u64);
    put32(&mut b, h::STATUS, status);
    put32(&mut b, h::BLOCK_SIZE, l.block as u32);
    put32(&mut b, h::SUB_HDR_SIZE, l.sub_hdr_blocks as u32);
    put32(&mut b, h::BITMAP_BLOCKS, (2 * l.bitmap_len / l.block) as u32);
    put32(&mut b, h::MAX_MAPNR, max_mapnr.min(u64::from(u32::MAX)) as u32);
    put32(&mut b, h::NR_CPUS, meta.nr_cpus as u32);
    b
}

fn sub_header(meta: &KdumpMeta, l: &Layout, max_mapnr: u64, dump_level: u32, split: Option<(u64, u64)>) -> Vec<u8> {
    let mut b = vec![0u8; sh::SIZE];
    put64(&mut b, sh::PHYS_BASE, meta.phys_base);
    put32(&mut b, sh::DUMP_LEVEL, dump_level);
    if let Some((start, end)) = split {
        let clamp = |v: u64| v.min(u64::from(u32::MAX));
        put32(&mut b, sh::SPLIT, 1);
        put64(&mut b, sh::START_PFN, clamp(start));
        put64(&mut b, sh::END_PFN, clamp(end));
        put64(&mut b, sh::START_PFN_64, start);
        put64(&mut b, sh::END_PFN_64, end);
    }
    put64(&mut b, sh::OFFSET_VMCOREINFO, l.vmcoreinfo.0);
    put64(&mut b, sh::SIZE_VMCOREINFO, l.vmcoreinfo.1);
    if !meta.notes.is_empty() {
        put64(&mut b, sh::OFFSET_NOTE, l.block + SUB_HEADER_END);
        put64(&mut b, sh::SIZE_NOTE, meta.notes.len() as u64);
    }
    put64(&mut b, sh::MAX_MAPNR_64, max_mapnr);
    b
}

/// One page as a worker prepared it.
enum Stored {
    Zero,
    Raw,
    Compressed(u32),
}

struct JobOut {
    pages: Vec<(Stored, usize)>,
    data: Vec<u8>,
    /// The read that failed after `pages`: the job's pages before it are still written.
    failed: Option<Error>,
}

pub(crate) fn codec_flag(codec: Codec) -> u32 {
    match codec {
        Codec::Raw => 0,
        Codec::Zlib => raw::DUMP_DH_COMPRESSED_ZLIB,
        Codec::Lzo => raw::DUMP_DH_COMPRESSED_LZO,
        Codec::Snappy => raw::DUMP_DH_COMPRESSED_SNAPPY,
        Codec::Zstd => raw::DUMP_DH_COMPRESSED_ZSTD,
    }
}

/// The pfns of `bitmap` in `[start, end)`, in jobs of at most `per_job`, made as they are
/// needed (never the whole list: its size would follow the dump's).
fn pfn_jobs(bitmap: &PfnBitmap, start: u64, end: u64, per_job: usize) -> impl Iterator<Item = Vec<u64>> + '_ {
    let mut pfns = bitmap.iter_range(start, end).peekable();
    std::iter::from_fn(move || {
        pfns.peek()?;
        Some(pfns.by_ref().take(per_job).collect())
    })
}

/// Reads the pages `pfns` (ascending) into `buf` (one page each, in order), one read per
/// run of consecutive frames where the input allows, and checks that each is in the
/// input. A failure comes with the number of pages read before it.
fn read_pages(
    mem: &dyn PhysMem,
    pfns: &[u64],
    buf: &mut [u8],
    page_size: usize,
) -> std::result::Result<(), (usize, Error)> {
    let shift = (page_size as u64).trailing_zeros();
    let mut i = 0usize;
    while i < pfns.len() {
        let first = pfns.get(i).copied().unwrap_or(0);
        let mut n = 1usize;
        while pfns.get(i + n).is_some_and(|&p| p == first + n as u64) {
            n += 1;
        }
        let dst = buf.get_mut(i * page_size..(i + n) * page_size).unwrap_or_default();
        let whole =
            first.checked_shl(shift).is_some_and(|addr| mem.read(PhysAddr(addr), dst, ReadOptions::default()).is_ok());
        if !whole {
            // A frame partly outside the input's segments, or a read error: page by page,
            // which zero-fills the first and names the second.
            for (k, page) in dst.chunks_mut(page_size).enumerate() {
                let pfn = first + k as u64;
                match mem.read_page(Pfn(pfn), page) {
                    Ok(PageState::Dumped | PageState::ZeroFilled) => {}
                    Ok(state) => {
                        let e = Error::Input(format!("pfn {pfn:#x} is to be dumped but the input has it {state:?}"));
                        return Err((i + k, e));
                    }
                    Err(e) => return Err((i + k, e.into())),
                }
            }
        }
        i += n;
    }
    Ok(())
}

/// The consumer side of a kdump file: page data and descriptors gathered in buffers and
/// written data first, so that a dump cut short never has a descriptor pointing past its
/// end (descriptors never written stay zero, which readers take as "not written"). On a
/// file, the descriptors' blocks are allocated (with zeros) before the data that could
/// fill the disk, and data that only partly fits is kept as far as it goes.
pub(crate) struct Sink<'a> {
    pub(crate) out: &'a mut dyn Output,
    block: u64,
    pub(crate) data_pos: u64,
    data_buf: Vec<u8>,
    desc_pos: u64,
    desc_buf: Vec<u8>,
    /// Descriptors on disk (or in the stream).
    pub(crate) descs_written: u64,
    big_endian: bool,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(out: &'a mut dyn Output, block: u64, desc_pos: u64, data_pos: u64, big_endian: bool) -> Sink<'a> {
        Sink {
            out,
            block,
            data_pos,
            data_buf: Vec::with_capacity(WRITE_BUFFER + block as usize),
            desc_pos,
            desc_buf: Vec::with_capacity(WRITE_BUFFER / 8),
            descs_written: 0,
            big_endian,
        }
    }

    /// Where the next page's data goes.
    pub(crate) fn next_data_offset(&self) -> u64 {
        self.data_pos + self.data_buf.len() as u64
    }

    pub(crate) fn push_data(&mut self, data: &[u8]) {
        self.data_buf.extend_from_slice(data);
    }

    pub(crate) fn push_desc(&mut self, offset: u64, size: u32, flags: u32) {
        if self.big_endian {
            self.desc_buf.extend_from_slice(&offset.to_be_bytes());
            self.desc_buf.extend_from_slice(&size.to_be_bytes());
            self.desc_buf.extend_from_slice(&flags.to_be_bytes());
        } else {
            self.desc_buf.extend_from_slice(&offset.to_le_bytes());
            self.desc_buf.extend_from_slice(&size.to_le_bytes());
            self.desc_buf.extend_from_slice(&flags.to_le_bytes());
        }
        self.desc_buf.extend_from_slice(&[0u8; 8]);
    }

    /// The error for a write that `cause` stopped: the pages in the buffers go to disk
    /// with their descriptors and the file is marked incomplete (header `status`), so that
    /// what it holds is a dump every reader takes, unless the output itself failed (then
    /// nothing more can be written to it). `not_pages` of the descriptors written stand
    /// for no page (a zero one for a page an incomplete input lacked); `pages` is what the
    /// file was to hold.
    pub(crate) fn close_incomplete(mut self, status: u32, cause: Error, not_pages: u64, pages: u64) -> Error {
        if matches!(cause, Error::Output(_)) {
            return cause;
        }
        let _ = self.flush();
        let written = self.descs_written.saturating_sub(not_pages);
        let Sink { out, big_endian, .. } = self;
        match mark_incomplete(out, status, big_endian).and_then(|()| out.finish().map_err(Error::Output)) {
            Ok(()) => Error::Incomplete { cause: Box::new(cause), written, pages },
            Err(e) => Error::Output(std::io::Error::other(format!(
                "{cause}; after {written} of {pages} pages the dump could not be marked incomplete ({e}): \
                 readers find the pages past them not written"
            ))),
        }
    }

    pub(crate) fn wants_flush(&self) -> bool {
        self.data_buf.len() >= WRITE_BUFFER || self.desc_buf.len() >= WRITE_BUFFER
    }

    /// Writes the buffers: data, then the descriptors. On `Full`, `descs_written` counts
    /// the descriptors that are whole on disk.
    pub(crate) fn flush(&mut self) -> std::result::Result<(), OutputError> {
        if self.out.can_rewrite() && !self.desc_buf.is_empty() {
            // Allocate the descriptors' blocks first (zeros read as "not written"), so
            // that data filling the disk leaves room to describe what it holds.
            let zeros = vec![0u8; self.desc_buf.len()];
            self.out.write_at(self.desc_pos, &zeros)?;
        }
        if !self.data_buf.is_empty() {
            match self.out.write_at(self.data_pos, &self.data_buf) {
                Ok(()) => {}
                Err(OutputError::Full) if self.out.can_rewrite() => {
                    self.salvage();
                    return Err(OutputError::Full);
                }
                Err(e) => return Err(e),
            }
            self.data_pos += self.data_buf.len() as u64;
            self.data_buf.clear();
        }
        self.write_descs()
    }

    /// After the data buffer did not fit: finds, block by block, how much of it is on
    /// disk, and writes the descriptors of the pages whose data is, so that the dump
    /// holds every page it can.
    fn salvage(&mut self) {
        let (done, _) = write_by_block(&mut *self.out, self.block, self.data_pos, &self.data_buf);
        let on_disk = self.data_pos + done;
        let be = self.big_endian;
        let field = |d: &[u8], off: usize, len: usize| {
            let b = d.get(off..off + len).unwrap_or_default();
            b.iter().enumerate().fold(0u64, |v, (i, &x)| {
                let shift = if be { 8 * (len - 1 - i) } else { 8 * i };
                v | (u64::from(x) << shift)
            })
        };
        let keep = self
            .desc_buf
            .chunks(DESC as usize)
            .take_while(|d| {
                let (offset, size) = (field(d, 0, 8), field(d, 8, 4));
                // The shared zero page lies before this buffer's data: on disk.
                offset < self.data_pos || offset + size <= on_disk
            })
            .count();
        self.desc_buf.truncate(keep * DESC as usize);
        self.data_buf.clear();
        let _ = self.write_descs();
    }

    fn write_descs(&mut self) -> std::result::Result<(), OutputError> {
        if self.desc_buf.is_empty() {
            return Ok(());
        }
        if !self.out.can_rewrite() {
            // A stream: no disk to fill block by block.
            self.out.write_at(self.desc_pos, &self.desc_buf)?;
        } else {
            // The table is a hole until written: each new block of it may find the disk
            // full. Written block by block, a failure leaves at most one descriptor torn
            // across the block boundary, which is then cleared (its first bytes are in a
            // block already allocated), so that it reads as "not written".
            let (done, failure) = write_by_block(&mut *self.out, self.block, self.desc_pos, &self.desc_buf);
            if let Some(e) = failure {
                let whole = done / DESC * DESC;
                if whole < done {
                    let zeros = vec![0u8; (done - whole) as usize];
                    let _ = self.out.write_at(self.desc_pos + whole, &zeros);
                }
                self.descs_written += whole / DESC;
                self.desc_pos += whole;
                self.desc_buf.clear();
                return Err(e);
            }
        }
        self.descs_written += self.desc_buf.len() as u64 / DESC;
        self.desc_pos += self.desc_buf.len() as u64;
        self.desc_buf.clear();
        Ok(())
    }
}

/// Writes `bitmap`'s bytes, zero-padded to `len`, at `offset`, 1 MiB at a time: a TiB of
/// RAM has 32 MiB bitmaps, which are never copied whole.
fn write_bitmap(out: &mut dyn Output, offset: u64, len: u64, bitmap: &PfnBitmap) -> Result<()> {
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0;
    while done < len {
        // Where the file reads zero unwritten, runs of clear chunks are left as holes: a
        // machine with RAM at 2^46 has terabytes of empty frames below it. The last byte
        // is always written, so that the file reaches the bitmap's end.
        if out.unwritten_reads_zero(offset + done) {
            done = bitmap.next_nonzero_byte(done).min(len - 1);
        }
        let block = buf.get_mut(..(len - done).min(1 << 20) as usize).unwrap_or_default();
        bitmap.fill_bytes(done, block);
        out.write_at(offset + done, block)?;
        done += block.len() as u64;
    }
    Ok(())
}

/// Writes `buf` at `pos` one block at a time, so that a disk filling up keeps every whole
/// block that fitted. Returns the bytes written before the first failure, and the failure.
fn write_by_block(out: &mut dyn Output, block: u64, pos: u64, buf: &[u8]) -> (u64, Option<OutputError>) {
    let len = buf.len() as u64;
    let mut done = 0u64;
    while done < len {
        let at = pos + done;
        let n = ((at / block + 1) * block - at).min(len - done);
        let piece = buf.get(done as usize..(done + n) as usize).unwrap_or_default();
        if let Err(e) = out.write_at(at, piece) {
            return (done, Some(e));
        }
        done += n;
    }
    (done, None)
}

/// Sets the INCOMPLETE bit of the header's status. A flattened stream gets one more chunk
/// there, which replaces the header's field when the stream is rearranged (later chunks
/// overwrite earlier ones, in makedumpfile -R as in `vmcore rearrange`).
pub(crate) fn mark_incomplete(out: &mut dyn Output, status: u32, big_endian: bool) -> Result<()> {
    let v = status | raw::DUMP_DH_COMPRESSED_INCOMPLETE;
    let bytes = if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    out.write_at(h::STATUS as u64, &bytes).map_err(|e| match e {
        OutputError::Io(e) => Error::Output(e),
        OutputError::Full => Error::Output(std::io::Error::other("cannot mark the dump incomplete")),
    })
}

/// Zeroes the page descriptors of the kdump file being written to `out` (rearranged from
/// a stream that stopped early) whose data does not lie wholly before `data_end`. A zero
/// descriptor is how every reader tells a page that was never written (makedumpfile.md
/// 1.9); one left pointing past the file's end, or into bytes never written, reads as a
/// broken page or as zeros (libkdumpfile died of SIGBUS on them).
///
/// The table starts at `desc_offset` and ends where the first page's data begins; only
/// the stretches of it that were written are read (the rest is holes, which read as
/// "not written" already), so the work is bounded by what the stream delivered, whatever
/// its header claims. Runs of descriptors to clear are rewritten, nothing else: the rest
/// of the table may be holes, which a full disk would not take.
pub(crate) fn forget_pages_past(out: &mut dyn Output, desc_offset: u64, data_end: u64, be: bool) -> Result<()> {
    // The table ends before the first page's data, which only its descriptors tell.
    let what = "clearing the descriptors of pages not written";
    fix_written_table(out, desc_offset, data_end, DESC, what, |d, _, table_end| {
        let offset = u64_at(d, 0, be).unwrap_or(0);
        let size = u32_at(d, 8, be).unwrap_or(0);
        if offset >= desc_offset {
            *table_end = (*table_end).min(offset);
        }
        // A size of 0 is a descriptor the disk took only part of.
        let clear = offset != 0 && (size == 0 || offset.saturating_add(u64::from(size)) > data_end);
        if clear {
            d.fill(0);
        }
        clear
    })
}

/// One file to write: all pages, or one `--split` range.
#[derive(Debug, Clone, Copy)]
struct Part {
    start: u64,
    end: u64,
    split: bool,
}

/// Writes the kdump-compressed file of `filtered` pages of `mem` to `out`.
pub fn write_kdump(
    out: &mut dyn Output,
    mem: &dyn PhysMem,
    filtered: &Filtered,
    meta: &KdumpMeta,
    opts: &WriteOptions,
    progress: &dyn Progress,
) -> Result<WriteReport> {
    let job = Job { mem, filtered, meta, opts };
    progress.set_total(filtered.dumpable.count());
    let part = Part { start: 0, end: filtered.present.len(), split: false };
    job.write_heads(out, part)?;
    let report = job.write_pages(out, progress, part)?;
    progress.finish();
    Ok(report)
}

/// Writes a `--split` set: `outs.len()` files, file `i` holding the pages of
/// `ranges[i]` (from [`split_ranges`](crate::split_ranges)) and both full bitmaps. A file
/// that runs out of space is closed as incomplete and the others are still written.
pub fn write_kdump_split(
    outs: &mut [&mut dyn Output],
    ranges: &[(u64, u64)],
    mem: &dyn PhysMem,
    filtered: &Filtered,
    meta: &KdumpMeta,
    opts: &WriteOptions,
    progress: &dyn Progress,
) -> Result<Vec<WriteReport>> {
    if outs.len() != ranges.len() {
        return Err(Error::Input(format!("{} split files for {} ranges", outs.len(), ranges.len())));
    }
    let job = Job { mem, filtered, meta, opts };
    progress.set_total(filtered.dumpable.count());
    // Every file's headers and bitmaps first: whatever stops the pages (Ctrl-C, a full
    // disk) then leaves a set whose every file is a dump, the later ones incomplete.
    for (out, &(start, end)) in outs.iter_mut().zip(ranges) {
        job.write_heads(&mut **out, Part { start, end, split: true })?;
    }
    let mut reports = Vec::with_capacity(outs.len());
    // An input failing in one file's pages leaves that file and the later ones incomplete.
    let mut failure = None;
    for (index, (out, &(start, end))) in outs.iter_mut().zip(ranges).enumerate() {
        let part = Part { start, end, split: true };
        let report = if opts.stopped() || failure.is_some() {
            job.close_unwritten(&mut **out, part)?
        } else {
            match job.write_pages(&mut **out, progress, part) {
                Ok(report) => report,
                Err(e @ Error::Incomplete { .. }) => {
                    failure = Some(Error::SplitFile { index, cause: Box::new(e) });
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        reports.push(report);
    }
    progress.finish();
    match failure {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}

/// What every file of one dump is written from.
#[derive(Clone, Copy)]
struct Job<'a> {
    mem: &'a dyn PhysMem,
    filtered: &'a Filtered,
    meta: &'a KdumpMeta,
    opts: &'a WriteOptions,
}

impl Job<'_> {
    /// The layout and header status of a file.
    fn plan(&self) -> (Layout, u32) {
        let f = self.filtered;
        // -e runs on makedumpfile's non-cyclic path.
        let whole_bitmaps = f.whole_bitmaps || f.vmemmap.is_some();
        let l = layout(self.meta, f.present.len(), f.dumpable.count(), self.mem.page_size(), whole_bitmaps);
        let vmemmap = if self.filtered.vmemmap.is_some() { raw::DUMP_DH_EXCLUDED_VMEMMAP } else { 0 };
        (l, codec_flag(self.opts.codec) | vmemmap)
    }

    /// Writes the header, the sub header with the notes, and both bitmaps.
    fn write_heads(&self, out: &mut dyn Output, part: Part) -> Result<()> {
        let Job { mem, filtered, meta, .. } = *self;
        let block = mem.page_size();
        let page_size = usize::try_from(block).map_err(|_| Error::Input("page size".into()))?;
        let max_mapnr = filtered.present.len();
        let (l, status) = self.plan();
        let mut head = header_block(meta, &l, max_mapnr, status);
        head.resize(page_size, 0);
        out.write_at(0, &head)?;
        let mut sub = sub_header(meta, &l, max_mapnr, filtered.level, part.split.then_some((part.start, part.end)));
        sub.extend_from_slice(&meta.notes);
        out.write_at(block, &sub)?;
        write_bitmap(out, l.bitmap_offset, l.bitmap_len, &filtered.present)?;
        write_bitmap(out, l.bitmap_offset + l.bitmap_len, l.bitmap_len, &filtered.dumpable)?;
        Ok(())
    }

    /// Closes a file after its headers without any page (writing was stopped before
    /// it, or not even the shared zero page fit): every descriptor says "not written".
    fn close_unwritten(&self, out: &mut dyn Output, part: Part) -> Result<WriteReport> {
        let (l, status) = self.plan();
        bitmaps_read_back(&[&self.filtered.present, &self.filtered.dumpable])?;
        mark_incomplete(out, status, false)?;
        out.finish().map_err(Error::Output)?;
        Ok(WriteReport {
            pages: count_range(&self.filtered.dumpable, part.start, part.end),
            bytes: l.data_offset,
            write_bytes: l.write_bytes(l.data_offset),
            incomplete: true,
            ..WriteReport::default()
        })
    }

    /// Writes the pages of `part` after its headers: the shared zero page, the
    /// descriptors and the data; a full disk or a stop closes the file as incomplete.
    fn write_pages(&self, out: &mut dyn Output, progress: &dyn Progress, part: Part) -> Result<WriteReport> {
        let Job { mem, filtered, opts, .. } = *self;
        let block = mem.page_size();
        let page_size = usize::try_from(block).map_err(|_| Error::Input("page size".into()))?;
        let (l, status) = self.plan();
        let share_zero = filtered.level & 1 != 0;

        let zero_offset = l.data_offset;
        let mut data_pos = l.data_offset;
        let in_range = count_range(&filtered.dumpable, part.start, part.end);
        if share_zero {
            match out.write_at(zero_offset, &vec![0u8; page_size]) {
                Ok(()) => {}
                // Not even the zero page: a dump of headers and bitmaps, every page lost.
                Err(OutputError::Full) => return self.close_unwritten(out, part),
                Err(OutputError::Io(e)) => return Err(Error::Output(e)),
            }
            data_pos += block;
        }

        let codec = opts.codec;
        let flag = codec_flag(codec);
        let mut report = WriteReport::default();
        let mut sink = Sink::new(out, block, l.desc_offset, data_pos, false);
        let mut full = false;

        // Jobs queued, being worked on and waiting for the consumer, with room to spare.
        let spare = Recycler::new((AHEAD_PER_THREAD + 2) * opts.threads + 2);
        let result = ordered(
            pfn_jobs(&filtered.dumpable, part.start, part.end, PAGES_PER_JOB),
            opts.threads,
            || (Compressor::new(codec), vec![0u8; page_size * PAGES_PER_JOB]),
            |(comp, pages), job: Vec<u64>| -> Result<JobOut> {
                let comp = comp.as_mut().map_err(|e| Error::Input(e.clone()))?;
                let (read, failed) = match read_pages(mem, &job, pages, page_size) {
                    Ok(()) => (job.len(), None),
                    Err((read, e)) => (read, Some(e)),
                };
                let mut outp = spare.take(|| JobOut {
                    pages: Vec::with_capacity(PAGES_PER_JOB),
                    // Room for a compressor's working margin past the last page, too.
                    data: Vec::with_capacity(page_size * (PAGES_PER_JOB + 1)),
                    failed: None,
                });
                outp.pages.clear();
                outp.data.clear();
                outp.failed = failed;
                for page in pages.chunks(page_size).take(read) {
                    if share_zero && is_zero(page) {
                        outp.pages.push((Stored::Zero, 0));
                        continue;
                    }
                    let before = outp.data.len();
                    if comp.compress(page, &mut outp.data).map_err(Error::Input)? {
                        outp.pages.push((Stored::Compressed(flag), outp.data.len() - before));
                    } else {
                        outp.data.extend_from_slice(page);
                        outp.pages.push((Stored::Raw, page.len()));
                    }
                }
                Ok(outp)
            },
            |job: Result<JobOut>| -> Result<Flow> {
                let mut job = job?;
                let mut at = 0usize;
                for (stored, len) in &job.pages {
                    match stored {
                        Stored::Zero => {
                            report.zero_pages += 1;
                            sink.push_desc(zero_offset, block as u32, 0);
                        }
                        Stored::Raw | Stored::Compressed(_) => {
                            let f = if let Stored::Compressed(f) = stored { *f } else { 0 };
                            sink.push_desc(sink.next_data_offset(), *len as u32, f);
                            sink.push_data(job.data.get(at..at + len).unwrap_or_default());
                            at += len;
                        }
                    }
                }
                if let Some(e) = job.failed.take() {
                    // Its pages before the failure are in the sink, written with the rest.
                    progress.advance(job.pages.len() as u64);
                    return Err(e);
                }
                if sink.wants_flush() {
                    match sink.flush() {
                        Ok(()) => {}
                        Err(OutputError::Full) => {
                            full = true;
                            return Ok(Flow::Stop);
                        }
                        Err(OutputError::Io(e)) => return Err(Error::Output(e)),
                    }
                }
                progress.advance(job.pages.len() as u64);
                spare.give(job);
                if opts.stopped() {
                    // The buffered pages are still written below; the pages never reached
                    // make the dump incomplete.
                    return Ok(Flow::Stop);
                }
                Ok(Flow::Continue)
            },
        );
        if let Err(cause) = result {
            return Err(sink.close_incomplete(status, cause, 0, in_range));
        }
        if !full {
            match sink.flush() {
                Ok(()) => {}
                Err(OutputError::Full) => full = true,
                Err(OutputError::Io(e)) => return Err(Error::Output(e)),
            }
        }
        report.pages = in_range;
        report.pages_written = sink.descs_written;
        report.bytes = sink.data_pos;
        report.write_bytes = l.write_bytes(sink.data_pos);
        drop(sink);
        if full || report.pages_written < in_range {
            report.incomplete = true;
            mark_incomplete(out, status, false)?;
        }
        bitmaps_read_back(&[&filtered.present, &filtered.dumpable])?;
        out.finish().map_err(Error::Output)?;
        Ok(report)
    }
}

/// Set bits of `bitmap` in `[start, end)`.
pub(crate) fn count_range(bitmap: &PfnBitmap, start: u64, end: u64) -> u64 {
    if start == 0 && end >= bitmap.len() {
        return bitmap.count();
    }
    bitmap.iter_range(start, end).count() as u64
}
