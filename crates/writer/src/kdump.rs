//! The kdump-compressed writer (header version 6), laid out as makedumpfile lays it out
//! (../shared/docs/makedumpfile.md section 1): header, sub header and notes, both bitmaps,
//! the page descriptor table, then the shared zero page and the pages in pfn order.

use vmcore_filter::Filtered;
use vmcore_formats::codec::Codec;
use vmcore_formats::raw::kdump::{self as raw, header as h, sub_header as sh};
use vmcore_physmem::{PageState, PhysMem};
use vmcore_types::Pfn;

use crate::compress::Compressor;
use crate::output::{Output, OutputError};
use crate::pipeline::{ordered, Flow};
use crate::{Error, Progress, Result, WriteOptions, WriteReport};

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
    /// The VMCOREINFO text when it is not inside `notes` (it is then stored after them).
    pub vmcoreinfo: Option<Vec<u8>>,
    /// CPUs with a PRSTATUS note.
    pub nr_cpus: i32,
}

const SUB_HEADER_END: u64 = sh::SIZE as u64;
/// Pages per job handed to a worker: large enough to amortize the hand-off, small enough
/// that `threads * 2` jobs in flight stay a few MiB.
const PAGES_PER_JOB: usize = 64;
/// Bytes of page data (and descriptors) gathered before a write.
const WRITE_BUFFER: usize = 1 << 20;

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
}

fn layout(meta: &KdumpMeta, max_mapnr: u64, dumpable: u64, block: u64) -> Layout {
    let notes_len = meta.notes.len() as u64;
    let extra_vi = meta.vmcoreinfo.as_ref().map_or(0, |v| v.len() as u64);
    let sub_hdr_blocks = (SUB_HEADER_END + notes_len + extra_vi).div_ceil(block);
    let bitmap_offset = (1 + sub_hdr_blocks) * block;
    let bitmap_len = max_mapnr.div_ceil(8).div_ceil(block) * block;
    let desc_offset = bitmap_offset + 2 * bitmap_len;
    let data_offset = desc_offset + dumpable * raw::PAGE_DESC_SIZE as u64;
    let notes_at = block + SUB_HEADER_END;
    let vmcoreinfo = match (&meta.vmcoreinfo_in_notes, &meta.vmcoreinfo) {
        (Some((off, size)), _) => (notes_at + off, *size),
        (None, Some(v)) => (notes_at + notes_len, v.len() as u64),
        (None, None) => (0, 0),
    };
    Layout { block, sub_hdr_blocks, bitmap_offset, bitmap_len, desc_offset, data_offset, vmcoreinfo }
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    if let Some(d) = b.get_mut(off..off + 4) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

fn put64(b: &mut [u8], off: usize, v: u64) {
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

fn sub_header(meta: &KdumpMeta, l: &Layout, max_mapnr: u64, dump_level: u32) -> Vec<u8> {
    let mut b = vec![0u8; sh::SIZE];
    put64(&mut b, sh::PHYS_BASE, meta.phys_base);
    put32(&mut b, sh::DUMP_LEVEL, dump_level);
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
}

fn codec_flag(codec: Codec) -> u32 {
    match codec {
        Codec::Raw => 0,
        Codec::Zlib => raw::DUMP_DH_COMPRESSED_ZLIB,
        Codec::Lzo => raw::DUMP_DH_COMPRESSED_LZO,
        Codec::Snappy => raw::DUMP_DH_COMPRESSED_SNAPPY,
        Codec::Zstd => raw::DUMP_DH_COMPRESSED_ZSTD,
    }
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
    let block = mem.page_size();
    let page_size = usize::try_from(block).map_err(|_| Error::Input("page size".into()))?;
    let max_mapnr = filtered.present.len();
    let dumpable = filtered.dumpable.count();
    let l = layout(meta, max_mapnr, dumpable, block);
    let status = codec_flag(opts.codec);
    let share_zero = filtered.level & 1 != 0;

    let mut head = header_block(meta, &l, max_mapnr, status);
    head.resize(block as usize, 0);
    out.write_at(0, &head)?;
    let mut sub = sub_header(meta, &l, max_mapnr, filtered.level);
    sub.extend_from_slice(&meta.notes);
    if meta.vmcoreinfo_in_notes.is_none() {
        if let Some(v) = &meta.vmcoreinfo {
            sub.extend_from_slice(v);
        }
    }
    out.write_at(block, &sub)?;
    let mut present = filtered.present.to_bytes();
    present.resize(l.bitmap_len as usize, 0);
    out.write_at(l.bitmap_offset, &present)?;
    let mut second = filtered.dumpable.to_bytes();
    second.resize(l.bitmap_len as usize, 0);
    out.write_at(l.bitmap_offset + l.bitmap_len, &second)?;
    drop((present, second));

    let zero_offset = l.data_offset;
    let mut data_pos = l.data_offset;
    if share_zero {
        out.write_at(zero_offset, &vec![0u8; page_size])?;
        data_pos += block;
    }
    progress.set_total(dumpable);

    let pfns: Vec<u64> = filtered.dumpable.iter().collect();
    let jobs = pfns.chunks(PAGES_PER_JOB);
    let codec = opts.codec;
    let mut report = WriteReport { pages: dumpable, ..WriteReport::default() };
    let mut data_buf: Vec<u8> = Vec::with_capacity(WRITE_BUFFER + page_size);
    let mut desc_buf: Vec<u8> = Vec::with_capacity(WRITE_BUFFER / 8);
    let mut desc_pos = l.desc_offset;
    let mut written_pages = 0u64;
    let mut full = false;

    // Page data is written before the descriptors that point at it, so that a dump cut
    // short never has a descriptor pointing past its end (unwritten ones stay zero).
    let flush = |out: &mut dyn Output,
                 data_buf: &mut Vec<u8>,
                 data_pos: &mut u64,
                 desc_buf: &mut Vec<u8>,
                 desc_pos: &mut u64|
     -> std::result::Result<(), OutputError> {
        out.write_at(*data_pos, data_buf)?;
        *data_pos += data_buf.len() as u64;
        data_buf.clear();
        out.write_at(*desc_pos, desc_buf)?;
        *desc_pos += desc_buf.len() as u64;
        desc_buf.clear();
        Ok(())
    };

    let result = ordered(
        jobs,
        opts.threads,
        || (Compressor::new(codec), vec![0u8; page_size], Vec::with_capacity(page_size * 2)),
        |(comp, page, scratch), job: &[u64]| -> Result<JobOut> {
            let comp = comp.as_mut().map_err(|e| Error::Input(e.clone()))?;
            let mut outp = JobOut { pages: Vec::with_capacity(job.len()), data: Vec::new() };
            for &pfn in job {
                match mem.read_page(Pfn(pfn), page)? {
                    PageState::Dumped | PageState::ZeroFilled => {}
                    state => {
                        return Err(Error::Input(format!(
                            "pfn {pfn:#x} is to be dumped but the input has it {state:?}"
                        )))
                    }
                }
                if share_zero && page.iter().all(|&b| b == 0) {
                    outp.pages.push((Stored::Zero, 0));
                    continue;
                }
                if comp.compress(page, scratch).map_err(Error::Input)? {
                    outp.data.extend_from_slice(scratch);
                    outp.pages.push((Stored::Compressed(codec_flag(codec)), scratch.len()));
                } else {
                    outp.data.extend_from_slice(page);
                    outp.pages.push((Stored::Raw, page.len()));
                }
            }
            Ok(outp)
        },
        |job: Result<JobOut>| -> Result<Flow> {
            let job = job?;
            let mut at = 0usize;
            for (stored, len) in &job.pages {
                let (offset, size, flags) = match stored {
                    Stored::Zero => {
                        report.zero_pages += 1;
                        (zero_offset, block as u32, 0)
                    }
                    Stored::Raw => (data_pos + data_buf.len() as u64, *len as u32, 0),
                    Stored::Compressed(f) => (data_pos + data_buf.len() as u64, *len as u32, *f),
                };
                if !matches!(stored, Stored::Zero) {
                    data_buf.extend_from_slice(job.data.get(at..at + len).unwrap_or_default());
                    at += len;
                }
                desc_buf.extend_from_slice(&offset.to_le_bytes());
                desc_buf.extend_from_slice(&size.to_le_bytes());
                desc_buf.extend_from_slice(&flags.to_le_bytes());
                desc_buf.extend_from_slice(&0u64.to_le_bytes());
            }
            if data_buf.len() >= WRITE_BUFFER {
                match flush(out, &mut data_buf, &mut data_pos, &mut desc_buf, &mut desc_pos) {
                    Ok(()) => {}
                    Err(OutputError::Full) => {
                        full = true;
                        return Ok(Flow::Stop);
                    }
                    Err(OutputError::Io(e)) => return Err(Error::Output(e)),
                }
            }
            written_pages += job.pages.len() as u64;
            progress.advance(job.pages.len() as u64);
            if opts.stop.as_ref().is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                full = true;
                return Ok(Flow::Stop);
            }
            Ok(Flow::Continue)
        },
    );
    result?;
    if !full {
        match flush(out, &mut data_buf, &mut data_pos, &mut desc_buf, &mut desc_pos) {
            Ok(()) => {}
            Err(OutputError::Full) => full = true,
            Err(OutputError::Io(e)) => return Err(Error::Output(e)),
        }
    }
    if full {
        report.incomplete = true;
        report.pages_written = written_pages.saturating_sub(desc_buf.len() as u64 / raw::PAGE_DESC_SIZE as u64);
        if out.can_rewrite() {
            let mut status_bytes = [0u8; 4];
            status_bytes.copy_from_slice(&(status | raw::DUMP_DH_COMPRESSED_INCOMPLETE).to_le_bytes());
            out.write_at(h::STATUS as u64, &status_bytes).map_err(|e| match e {
                OutputError::Io(e) => Error::Output(e),
                OutputError::Full => Error::Output(std::io::Error::other("cannot mark the dump incomplete")),
            })?;
        }
    } else {
        report.pages_written = dumpable;
    }
    report.bytes = data_pos;
    out.finish().map_err(Error::Output)?;
    progress.finish();
    Ok(report)
}
