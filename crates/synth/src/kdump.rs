//! A small kdump-compressed writer for tests. It builds the whole file in memory, one field
//! at a time, exactly as ../shared/docs/makedumpfile.md section 1 lays it out (LP64):
//!
//! ```text
//! 0                          disk_dump_header (464 bytes), zero fill to the block size
//! bs                         kdump_sub_header (104 bytes), then the notes area
//! (1 + sub_hdr_size) * bs    1st bitmap, 2nd bitmap (each padded to whole pages)
//! ... + bitmap_blocks * bs   page_desc_t table (24 bytes each, one per dumpable pfn)
//! ... + 24 * num_dumpable    [shared zero page] page data in pfn order, [erase info]
//! ```
//!
//! It is meant to be obviously right rather than fast: the real writer lives elsewhere.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use vmcore_formats::codec::Codec;
use vmcore_formats::raw::kdump::{self as raw, header as h, sub_header as sh};

use crate::error::{Error, Result};

pub use crate::flat::{flatten, flatten_with, ChunkOrder, FlattenOptions};

/// What one page frame of the page set holds. Pfns absent from the set are holes (not
/// RAM): both of their bitmap bits are 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageSpec {
    /// RAM that is dumped, with these bytes (exactly one page).
    Dumped(Vec<u8>),
    /// RAM left out by filtering: set in the 1st bitmap, clear in the 2nd.
    Excluded,
}

/// A run of page frames `[start, end)` that are all RAM, dumped or excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PfnRange {
    /// First pfn.
    pub start: u64,
    /// End pfn (exclusive).
    pub end: u64,
    /// Whether the pages are dumped (else excluded).
    pub dumped: bool,
}

/// Everything about a kdump-compressed file except its pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdumpSpec {
    /// 1 to 6. Fields a version does not have are not written, and what only they would
    /// point to (VMCOREINFO before 3, the notes before 4, erase info before 5) is left out.
    pub header_version: i32,
    /// Page size, also the block size: a power of two, at least 512.
    pub page_size: u32,
    /// Number of page frames the bitmaps cover. The header's 32-bit field gets
    /// `min(max_mapnr, u32::MAX)`.
    pub max_mapnr: u64,
    /// sysname, nodename, release, version, machine, domainname (at most 65 bytes each).
    pub utsname: [String; 6],
    /// `timestamp.tv_sec`.
    pub crash_time: i64,
    /// Sub header `phys_base`.
    pub phys_base: u64,
    /// Sub header `dump_level` (version 1 and later).
    pub dump_level: i32,
    /// Codec of the pages and of the header status; [`Codec::Raw`] sets no status flag.
    pub codec: Codec,
    /// VMCOREINFO text (version 3 and later). When `notes` holds a VMCOREINFO note, the
    /// offset points at that note's descriptor instead and this must be `None` or equal to it.
    pub vmcoreinfo: Option<Vec<u8>>,
    /// An ELF note blob, copied verbatim after the sub header as makedumpfile copies the
    /// input PT_NOTE (version 4 and later; version 3 stores only its VMCOREINFO text).
    /// Its byte order must be the dump's. `nr_cpus` counts its CORE/NT_PRSTATUS notes.
    pub notes: Option<Vec<u8>>,
    /// Erase info text, appended after the page data (version 5 and later).
    pub eraseinfo: Option<Vec<u8>>,
    /// Write every header integer and page descriptor big-endian.
    pub big_endian: bool,
    /// With `dump_level & 1`: all-zero dumped pages point at one zero page at the start of
    /// the data area instead of being stored (makedumpfile always does this).
    pub share_zero_pages: bool,
    /// Write one file of a `--split` set holding the pages of `[start_pfn, end_pfn)`
    /// (version 2 and later).
    pub split: Option<(u64, u64)>,
    /// Cut the file at this many bytes and set `DUMP_DH_COMPRESSED_INCOMPLETE`, as a full
    /// disk would leave it. The flag is set even when the file is shorter than the cut.
    pub truncate_at: Option<u64>,
    /// With `truncate_at`: also zero the descriptors of pages whose data does not fit
    /// before the cut, as makedumpfile leaves them (it writes descriptors in batches, and
    /// the unwritten ones stay holes). Without it they point past the end of the file.
    pub zero_unwritten_descs: bool,
}

impl Default for KdumpSpec {
    /// Version 6, 4 KiB pages, zlib, dump level 1 with a shared zero page, x86_64 utsname,
    /// no pages (`max_mapnr` 0).
    fn default() -> KdumpSpec {
        KdumpSpec {
            header_version: 6,
            page_size: 4096,
            max_mapnr: 0,
            utsname: default_utsname(),
            crash_time: 0,
            phys_base: 0,
            dump_level: 1,
            codec: Codec::Zlib,
            vmcoreinfo: None,
            notes: None,
            eraseinfo: None,
            big_endian: false,
            share_zero_pages: true,
            split: None,
            truncate_at: None,
            zero_unwritten_descs: false,
        }
    }
}

/// The utsname of the synthetic kernel.
pub fn default_utsname() -> [String; 6] {
    ["Linux", "synthetic", "6.1.0-synthetic", "#1 SMP PREEMPT_DYNAMIC synthetic", "x86_64", "(none)"].map(String::from)
}

/// Where [`write_with_layout`] put each part of the file (offsets before any truncation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdumpLayout {
    /// Header `sub_hdr_size`, in blocks.
    pub sub_hdr_blocks: u64,
    /// File offset of the 1st bitmap.
    pub bitmap_offset: u64,
    /// Length of each bitmap.
    pub bitmap_len: u64,
    /// File offset of the page descriptor table.
    pub desc_offset: u64,
    /// Dumpable pages in the whole dump (the table's size in entries).
    pub num_dumpable: u64,
    /// Descriptors filled in this file (fewer than `num_dumpable` in a split file).
    pub descs_in_file: u64,
    /// File offset of the data area.
    pub data_offset: u64,
    /// File offset of the shared zero page, when there is one.
    pub zero_page: Option<u64>,
    /// End of the page data.
    pub data_end: u64,
    /// Offset and size of the VMCOREINFO text, as the sub header records them.
    pub vmcoreinfo: Option<(u64, u64)>,
    /// Offset and size of the copied notes, as the sub header records them.
    pub notes: Option<(u64, u64)>,
    /// Offset and size of the erase info.
    pub eraseinfo: Option<(u64, u64)>,
    /// File size before truncation.
    pub full_size: u64,
}

/// Writes a kdump-compressed file of `pages` and returns its bytes.
pub fn write(spec: &KdumpSpec, pages: &BTreeMap<u64, PageSpec>) -> Result<Vec<u8>> {
    write_with_layout(spec, pages).map(|(bytes, _)| bytes)
}

/// Like [`write()`], also telling where each part went.
pub fn write_with_layout(spec: &KdumpSpec, pages: &BTreeMap<u64, PageSpec>) -> Result<(Vec<u8>, KdumpLayout)> {
    let ps = spec.page_size as usize;
    for (pfn, p) in pages {
        if let PageSpec::Dumped(d) = p {
            if d.len() != ps {
                return Err(Error::spec(format!("page {pfn:#x} has {} bytes, expected {ps}", d.len())));
            }
        }
    }
    let entries: Vec<(u64, bool)> = pages.iter().map(|(&pfn, p)| (pfn, matches!(p, PageSpec::Dumped(_)))).collect();
    build(spec, &entries, &mut |pfn, buf| {
        if let Some(PageSpec::Dumped(d)) = pages.get(&pfn) {
            buf.copy_from_slice(d);
        }
    })
}

/// Writes a kdump-compressed file whose RAM is `ranges` (sorted, not overlapping), taking
/// each dumped page's bytes from `fill(pfn, zeroed_page)`. Needs no page set in memory.
pub fn write_ranges(
    spec: &KdumpSpec,
    ranges: &[PfnRange],
    mut fill: impl FnMut(u64, &mut [u8]),
) -> Result<(Vec<u8>, KdumpLayout)> {
    let mut entries = Vec::new();
    for r in ranges {
        if r.start > r.end {
            return Err(Error::spec(format!("pfn range {:#x}..{:#x} is reversed", r.start, r.end)));
        }
        entries.extend((r.start..r.end).map(|pfn| (pfn, r.dumped)));
    }
    build(spec, &entries, &mut fill)
}

/// [`write()`] to a new file at `path` (which must not exist), mode 0600.
pub fn write_path(spec: &KdumpSpec, pages: &BTreeMap<u64, PageSpec>, path: &Path) -> Result<u64> {
    let bytes = write(spec, pages)?;
    let mut f = crate::create_exclusive(path)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    Ok(bytes.len() as u64)
}

/// Compresses one page as makedumpfile does: zlib level 1 (a complete zlib stream), LZO1X-1,
/// a raw snappy block, a zstd frame at level 1. `Raw` returns the page as is.
pub fn compress_page(codec: Codec, page: &[u8]) -> std::result::Result<Vec<u8>, String> {
    match codec {
        Codec::Raw => Ok(page.to_vec()),
        Codec::Zlib => {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(page).map_err(|e| e.to_string())?;
            z.finish().map_err(|e| e.to_string())
        }
        Codec::Lzo => Ok(lzo1x::compress(page, lzo1x::CompressLevel::new(3))),
        Codec::Snappy => snap::raw::Encoder::new().compress_vec(page).map_err(|e| e.to_string()),
        Codec::Zstd => zstd::bulk::compress(page, 1).map_err(|e| e.to_string()),
    }
}

/// The `status` flag of a codec (0 for raw).
pub fn codec_flag(codec: Codec) -> u32 {
    match codec {
        Codec::Raw => 0,
        Codec::Zlib => raw::DUMP_DH_COMPRESSED_ZLIB,
        Codec::Lzo => raw::DUMP_DH_COMPRESSED_LZO,
        Codec::Snappy => raw::DUMP_DH_COMPRESSED_SNAPPY,
        Codec::Zstd => raw::DUMP_DH_COMPRESSED_ZSTD,
    }
}

/// A note found in a note blob: name (without NUL), type, descriptor offset and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobNote {
    /// Owner name without its NUL.
    pub name: Vec<u8>,
    /// Note type.
    pub ntype: u32,
    /// Offset of the descriptor inside the blob.
    pub desc_offset: usize,
    /// Descriptor length.
    pub desc_len: usize,
}

/// Walks the notes of an ELF note blob in the given byte order (4-byte padding, a zero
/// header or the end of the blob stops the walk).
pub fn scan_notes(blob: &[u8], big_endian: bool) -> Vec<BlobNote> {
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = blob.get(at..at + 4)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) } as usize)
    };
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let (Some(namesz), Some(descsz), Some(ntype)) = (word(pos), word(pos + 4), word(pos + 8)) {
        if namesz == 0 && descsz == 0 && ntype == 0 {
            break;
        }
        let name_start = pos + 12;
        let desc_offset = (name_start + namesz).next_multiple_of(4);
        let Some(name) = blob.get(name_start..name_start + namesz) else {
            break;
        };
        if desc_offset + descsz > blob.len() {
            break;
        }
        let name = name.strip_suffix(&[0]).unwrap_or(name).to_vec();
        out.push(BlobNote { name, ntype: ntype as u32, desc_offset, desc_len: descsz });
        pos = (desc_offset + descsz).next_multiple_of(4);
    }
    out
}

fn put32(b: &mut [u8], off: usize, v: u32, be: bool) -> Result<()> {
    let bytes = if be { v.to_be_bytes() } else { v.to_le_bytes() };
    b.get_mut(off..off + 4).ok_or_else(|| Error::spec("field outside its structure"))?.copy_from_slice(&bytes);
    Ok(())
}

fn put64(b: &mut [u8], off: usize, v: u64, be: bool) -> Result<()> {
    let bytes = if be { v.to_be_bytes() } else { v.to_le_bytes() };
    b.get_mut(off..off + 8).ok_or_else(|| Error::spec("field outside its structure"))?.copy_from_slice(&bytes);
    Ok(())
}

fn put_bytes(b: &mut [u8], off: u64, data: &[u8]) -> Result<()> {
    let off = usize::try_from(off).map_err(|_| Error::spec("file larger than memory"))?;
    b.get_mut(off..off + data.len()).ok_or_else(|| Error::spec("part outside the file"))?.copy_from_slice(data);
    Ok(())
}

fn to_u32(v: u64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::spec(format!("{what} {v} does not fit the header's 32-bit field")))
}

/// Header fields computed from the spec and the layout.
struct HeaderFields {
    status: u32,
    sub_hdr_blocks: u32,
    bitmap_blocks: u32,
    nr_cpus: i32,
}

/// `struct disk_dump_header`, `header::SIZE` bytes.
fn encode_header(spec: &KdumpSpec, f: &HeaderFields) -> Result<Vec<u8>> {
    let be = spec.big_endian;
    let mut b = vec![0u8; h::SIZE];
    put_bytes(&mut b, h::SIGNATURE as u64, raw::KDUMP_SIGNATURE)?;
    put32(&mut b, h::HEADER_VERSION, spec.header_version as u32, be)?;
    for (i, s) in spec.utsname.iter().enumerate() {
        if s.len() > raw::UTS_LEN {
            return Err(Error::spec(format!("utsname field {i} is {} bytes, at most {}", s.len(), raw::UTS_LEN)));
        }
        put_bytes(&mut b, (h::UTSNAME + i * raw::UTS_LEN) as u64, s.as_bytes())?;
    }
    put64(&mut b, h::TIMESTAMP, spec.crash_time as u64, be)?;
    put64(&mut b, h::TIMESTAMP + 8, 0, be)?;
    put32(&mut b, h::STATUS, f.status, be)?;
    put32(&mut b, h::BLOCK_SIZE, spec.page_size, be)?;
    put32(&mut b, h::SUB_HDR_SIZE, f.sub_hdr_blocks, be)?;
    put32(&mut b, h::BITMAP_BLOCKS, f.bitmap_blocks, be)?;
    put32(&mut b, h::MAX_MAPNR, spec.max_mapnr.min(u64::from(u32::MAX)) as u32, be)?;
    // total_ram_blocks, device_blocks, written_blocks, current_cpu stay 0.
    put32(&mut b, h::NR_CPUS, f.nr_cpus as u32, be)?;
    Ok(b)
}

/// `struct kdump_sub_header` with only the fields `spec.header_version` has.
fn encode_sub_header(
    spec: &KdumpSpec,
    vmcoreinfo: Option<(u64, u64)>,
    notes: Option<(u64, u64)>,
    eraseinfo: Option<(u64, u64)>,
) -> Result<Vec<u8>> {
    let be = spec.big_endian;
    let v = spec.header_version;
    let mut b = vec![0u8; sh::SIZE];
    put64(&mut b, sh::PHYS_BASE, spec.phys_base, be)?;
    if v >= 1 {
        put32(&mut b, sh::DUMP_LEVEL, spec.dump_level as u32, be)?;
    }
    if v >= 2 {
        if let Some((start, end)) = spec.split {
            put32(&mut b, sh::SPLIT, 1, be)?;
            // Version 6 moved the pfns to 64-bit fields and clamps the old ones (which are
            // `unsigned long`, 64-bit on LP64, so earlier versions hold the full value).
            let clamp = |p: u64| if v >= 6 { p.min(u64::from(u32::MAX)) } else { p };
            put64(&mut b, sh::START_PFN, clamp(start), be)?;
            put64(&mut b, sh::END_PFN, clamp(end), be)?;
            if v >= 6 {
                put64(&mut b, sh::START_PFN_64, start, be)?;
                put64(&mut b, sh::END_PFN_64, end, be)?;
            }
        }
    }
    if v >= 3 {
        if let Some((off, size)) = vmcoreinfo {
            put64(&mut b, sh::OFFSET_VMCOREINFO, off, be)?;
            put64(&mut b, sh::SIZE_VMCOREINFO, size, be)?;
        }
    }
    if v >= 4 {
        if let Some((off, size)) = notes {
            put64(&mut b, sh::OFFSET_NOTE, off, be)?;
            put64(&mut b, sh::SIZE_NOTE, size, be)?;
        }
    }
    if v >= 5 {
        if let Some((off, size)) = eraseinfo {
            put64(&mut b, sh::OFFSET_ERASEINFO, off, be)?;
            put64(&mut b, sh::SIZE_ERASEINFO, size, be)?;
        }
    }
    if v >= 6 {
        put64(&mut b, sh::MAX_MAPNR_64, spec.max_mapnr, be)?;
    }
    Ok(b)
}

/// The bytes after the sub header and where the sub header's offsets point.
struct NotesArea {
    bytes: Vec<u8>,
    vmcoreinfo: Option<(u64, u64)>,
    notes: Option<(u64, u64)>,
}

fn notes_area(spec: &KdumpSpec) -> Result<NotesArea> {
    let v = spec.header_version;
    let start = u64::from(spec.page_size) + sh::SIZE as u64;
    let blob = spec.notes.as_deref();
    let in_blob =
        blob.and_then(|b| scan_notes(b, spec.big_endian).into_iter().find(|n| n.name == b"VMCOREINFO").map(|n| (b, n)));
    if let (Some((b, n)), Some(text)) = (&in_blob, &spec.vmcoreinfo) {
        if b.get(n.desc_offset..n.desc_offset + n.desc_len) != Some(text.as_slice()) {
            return Err(Error::spec("vmcoreinfo differs from the VMCOREINFO note of the notes blob"));
        }
    }
    let mut area = NotesArea { bytes: Vec::new(), vmcoreinfo: None, notes: None };
    if v < 3 {
        return Ok(area);
    }
    if v >= 4 {
        if let Some(b) = blob {
            area.bytes.extend_from_slice(b);
            area.notes = Some((start, b.len() as u64));
            if let Some((_, n)) = &in_blob {
                area.vmcoreinfo = Some((start + n.desc_offset as u64, n.desc_len as u64));
                return Ok(area);
            }
        }
    }
    // Version 3 kept only the VMCOREINFO text; later versions keep it after the notes
    // when the notes have none.
    let text = match (&spec.vmcoreinfo, &in_blob) {
        (Some(t), _) => Some(t.as_slice()),
        (None, Some((b, n))) => b.get(n.desc_offset..n.desc_offset + n.desc_len),
        (None, None) => None,
    };
    if let Some(t) = text {
        area.vmcoreinfo = Some((start + area.bytes.len() as u64, t.len() as u64));
        area.bytes.extend_from_slice(t);
    }
    Ok(area)
}

fn check_spec(spec: &KdumpSpec, entries: &[(u64, bool)]) -> Result<()> {
    if !(1..=6).contains(&spec.header_version) {
        return Err(Error::spec(format!("header_version {}, expected 1 to 6", spec.header_version)));
    }
    if !spec.page_size.is_power_of_two() || !(512..=1 << 30).contains(&spec.page_size) {
        return Err(Error::spec(format!("page size {}, expected a power of two from 512", spec.page_size)));
    }
    let mut prev: Option<u64> = None;
    for &(pfn, _) in entries {
        if pfn >= spec.max_mapnr {
            return Err(Error::spec(format!("pfn {pfn:#x} is not below max_mapnr {:#x}", spec.max_mapnr)));
        }
        if prev.is_some_and(|p| p >= pfn) {
            return Err(Error::spec(format!("pfn {pfn:#x} is out of order or repeated")));
        }
        prev = Some(pfn);
    }
    if let Some((start, end)) = spec.split {
        if spec.header_version < 2 {
            return Err(Error::spec("split files need header version 2 or later"));
        }
        if start > end || end > spec.max_mapnr {
            return Err(Error::spec(format!(
                "split range {start:#x}..{end:#x} is not inside max_mapnr {:#x}",
                spec.max_mapnr
            )));
        }
    }
    Ok(())
}

fn build(
    spec: &KdumpSpec,
    entries: &[(u64, bool)],
    fill: &mut dyn FnMut(u64, &mut [u8]),
) -> Result<(Vec<u8>, KdumpLayout)> {
    check_spec(spec, entries)?;
    let be = spec.big_endian;
    let bs = u64::from(spec.page_size);
    let ps = spec.page_size as usize;

    // Each bitmap is padded to whole pages (prepare_bitmap2_buffer()).
    let bitmap_len = spec.max_mapnr.div_ceil(8).div_ceil(bs) * bs;
    let bitmap_usize = usize::try_from(bitmap_len).map_err(|_| Error::spec("bitmaps larger than memory"))?;
    let mut present = vec![0u8; bitmap_usize];
    let mut dumpable = vec![0u8; bitmap_usize];
    let set = |bm: &mut [u8], pfn: u64| {
        if let Some(byte) = bm.get_mut((pfn / 8) as usize) {
            *byte |= 1 << (pfn % 8);
        }
    };
    for &(pfn, dumped) in entries {
        set(&mut present, pfn);
        if dumped {
            set(&mut dumpable, pfn);
        }
    }
    let num_dumpable = entries.iter().filter(|e| e.1).count() as u64;

    let area = notes_area(spec)?;
    let sub_hdr_blocks = (sh::SIZE as u64 + area.bytes.len() as u64).div_ceil(bs);
    let bitmap_offset = (1 + sub_hdr_blocks) * bs;
    let desc_offset = bitmap_offset + 2 * bitmap_len;
    let data_offset = desc_offset + num_dumpable * raw::PAGE_DESC_SIZE as u64;

    let (lo, hi) = spec.split.unwrap_or((0, spec.max_mapnr));
    let share_zero = spec.share_zero_pages && spec.dump_level & 1 != 0;
    let mut data = Vec::new();
    let zero_page = share_zero.then_some(data_offset);
    if share_zero {
        data.resize(ps, 0);
    }
    // (offset, size, flags) of each descriptor this file fills, in pfn order.
    let mut descs: Vec<(u64, u32, u32)> = Vec::new();
    let mut page = vec![0u8; ps];
    for &(pfn, _) in entries.iter().filter(|e| e.1 && (lo..hi).contains(&e.0)) {
        page.fill(0);
        fill(pfn, &mut page);
        if let (Some(zero), true) = (zero_page, page.iter().all(|&b| b == 0)) {
            descs.push((zero, spec.page_size, 0));
            continue;
        }
        let packed = compress_page(spec.codec, &page).map_err(|detail| Error::Compress {
            codec: spec.codec.name(),
            pfn,
            detail,
        })?;
        let offset = data_offset + data.len() as u64;
        // Compressed data is kept only when it is smaller than the page.
        if spec.codec != Codec::Raw && packed.len() < ps {
            descs.push((offset, packed.len() as u32, codec_flag(spec.codec)));
            data.extend_from_slice(&packed);
        } else {
            descs.push((offset, spec.page_size, 0));
            data.extend_from_slice(&page);
        }
    }
    let data_end = data_offset + data.len() as u64;
    let eraseinfo = match &spec.eraseinfo {
        Some(e) if spec.header_version >= 5 => {
            data.extend_from_slice(e);
            Some((data_end, e.len() as u64))
        }
        _ => None,
    };
    let full_size = data_offset + data.len() as u64;

    let nr_cpus = spec
        .notes
        .as_deref()
        .map(|b| scan_notes(b, be).iter().filter(|n| n.name == b"CORE" && n.ntype == 1).count())
        .unwrap_or(0);
    let mut status = codec_flag(spec.codec);
    if spec.truncate_at.is_some() {
        status |= raw::DUMP_DH_COMPRESSED_INCOMPLETE;
    }
    let fields = HeaderFields {
        status,
        sub_hdr_blocks: to_u32(sub_hdr_blocks, "sub_hdr_size")?,
        bitmap_blocks: to_u32(2 * bitmap_len / bs, "bitmap_blocks")?,
        nr_cpus: i32::try_from(nr_cpus).map_err(|_| Error::spec("too many CPUs"))?,
    };

    let mut file = vec![0u8; usize::try_from(data_offset).map_err(|_| Error::spec("file larger than memory"))?];
    put_bytes(&mut file, 0, &encode_header(spec, &fields)?)?;
    put_bytes(&mut file, bs, &encode_sub_header(spec, area.vmcoreinfo, area.notes, eraseinfo)?)?;
    put_bytes(&mut file, bs + sh::SIZE as u64, &area.bytes)?;
    put_bytes(&mut file, bitmap_offset, &present)?;
    put_bytes(&mut file, bitmap_offset + bitmap_len, &dumpable)?;
    for (i, &(offset, size, flags)) in descs.iter().enumerate() {
        let written = spec.truncate_at.is_none_or(|cut| offset + u64::from(size) <= cut);
        if !written && spec.zero_unwritten_descs {
            continue;
        }
        let mut d = [0u8; raw::PAGE_DESC_SIZE];
        put64(&mut d, 0, offset, be)?;
        put32(&mut d, 8, size, be)?;
        put32(&mut d, 12, flags, be)?;
        // page_flags stays 0.
        put_bytes(&mut file, desc_offset + (i * raw::PAGE_DESC_SIZE) as u64, &d)?;
    }
    file.extend_from_slice(&data);
    if let Some(cut) = spec.truncate_at {
        file.truncate(usize::try_from(cut).unwrap_or(usize::MAX));
    }
    let layout = KdumpLayout {
        sub_hdr_blocks,
        bitmap_offset,
        bitmap_len,
        desc_offset,
        num_dumpable,
        descs_in_file: descs.len() as u64,
        data_offset,
        zero_page,
        data_end,
        vmcoreinfo: area.vmcoreinfo.filter(|_| spec.header_version >= 3),
        notes: area.notes,
        eraseinfo,
        full_size,
    };
    Ok((file, layout))
}

#[cfg(test)]
mod tests;
