//! Reader of the kdump-compressed format ("KDUMP   " and the older "DISKDUMP"), header
//! versions 0 to 6 (a later version is read by the fields of 6), LP64 layout in either
//! byte order.

use std::cell::RefCell;

use vmcore_types::bytes::{u32_at, u64_at};
use vmcore_types::ReadAt;

use crate::bitmap::FileBitmap;
use crate::codec::Codec;
use crate::error::{read_exact, read_vec, Error, Result};
use crate::raw::kdump::{self as raw, header as h, sub_header as sh};

/// The six fields of `struct new_utsname`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Utsname {
    /// `sysname` ("Linux").
    pub sysname: String,
    /// `nodename`.
    pub nodename: String,
    /// `release` (`uname -r`).
    pub release: String,
    /// `version`.
    pub version: String,
    /// `machine` ("x86_64", "aarch64").
    pub machine: String,
    /// `domainname`.
    pub domainname: String,
}

/// `struct disk_dump_header`.
#[derive(Debug, Clone)]
pub struct KdumpHeader {
    /// "KDUMP   " or "DISKDUMP".
    pub signature: [u8; 8],
    /// 0 to 6 (makedumpfile writes 6).
    pub header_version: i32,
    /// The crashed kernel's utsname.
    pub utsname: Utsname,
    /// Crash time, seconds since the epoch.
    pub timestamp_sec: i64,
    /// Crash time, microseconds.
    pub timestamp_usec: i64,
    /// Codec flag and the INCOMPLETE / EXCLUDED_VMEMMAP bits.
    pub status: u32,
    /// Block size, equal to the page size.
    pub block_size: u32,
    /// Blocks taken by the sub header and the notes after it.
    pub sub_hdr_size: u32,
    /// Blocks taken by both bitmaps.
    pub bitmap_blocks: u32,
    /// 32-bit `max_mapnr` (clamped; see `KdumpFile::max_mapnr`).
    pub max_mapnr_32: u32,
    /// CPUs that had a PRSTATUS note.
    pub nr_cpus: i32,
    /// Whether the dump's integers are big-endian.
    pub big_endian: bool,
}

/// `struct kdump_sub_header`; fields a header version does not have are `None`.
#[derive(Debug, Clone, Default)]
pub struct KdumpSubHeader {
    /// `phys_base` (x86_64) or `PHYS_OFFSET` (arm64).
    pub phys_base: u64,
    /// Dump level used (v1+).
    pub dump_level: Option<i32>,
    /// Whether this file is one of a `--split` set (v2+).
    pub split: Option<bool>,
    /// First pfn this split file holds (v2+; 64-bit field from v6).
    pub start_pfn: Option<u64>,
    /// End pfn (exclusive) of this split file.
    pub end_pfn: Option<u64>,
    /// File offset and size of the VMCOREINFO text (v3+).
    pub vmcoreinfo: Option<(u64, u64)>,
    /// File offset and size of the copied ELF notes (v4+).
    pub note: Option<(u64, u64)>,
    /// File offset and size of the erase info (v5+).
    pub eraseinfo: Option<(u64, u64)>,
    /// Full 64-bit `max_mapnr` (v6+).
    pub max_mapnr_64: Option<u64>,
}

/// `page_desc_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageDesc {
    /// File offset of the stored data (0: never written, in an incomplete dump).
    pub offset: u64,
    /// Stored length.
    pub size: u32,
    /// Codec flags.
    pub flags: u32,
    /// Unused by makedumpfile (0).
    pub page_flags: u64,
}

/// What reading one page frame found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageRead {
    /// The page's bytes are in the buffer.
    Data,
    /// Not RAM in the dumped machine (1st bitmap clear).
    Hole,
    /// RAM that filtering left out of the dump (2nd bitmap clear).
    Excluded,
    /// Meant to be dumped, but the dump was cut short before it was written.
    NotWritten,
}

/// An opened kdump-compressed file.
#[derive(Debug)]
pub struct KdumpFile<R> {
    src: R,
    /// Main header.
    pub header: KdumpHeader,
    /// Sub header.
    pub sub: KdumpSubHeader,
    max_mapnr: u64,
    present: FileBitmap,
    dumpable: FileBitmap,
    desc_offset: u64,
    /// First pfn whose descriptor is in this file (non-zero only in split files).
    start_pfn: u64,
    end_pfn: u64,
    rank_base: u64,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or_default()).into_owned()
}

/// Checks the 8-byte signature.
pub fn is_kdump_signature(magic: &[u8]) -> bool {
    magic.starts_with(raw::KDUMP_SIGNATURE) || magic.starts_with(raw::DISKDUMP_SIGNATURE)
}

fn parse_header(b: &[u8]) -> Result<KdumpHeader> {
    let mut signature = [0u8; 8];
    signature.copy_from_slice(b.get(..8).ok_or_else(|| Error::invalid("kdump header", 0, "too short"))?);
    if !is_kdump_signature(&signature) {
        return Err(Error::invalid("kdump header", 0, "signature is neither \"KDUMP   \" nor \"DISKDUMP\""));
    }
    let version_le = u32_at(b, h::HEADER_VERSION, false).unwrap_or(u32::MAX);
    let big_endian = version_le > 0xffff;
    let be = big_endian;
    let get32 = |off: usize| u32_at(b, off, be).unwrap_or(0);
    let get64 = |off: usize| u64_at(b, off, be).unwrap_or(0);
    let header_version = get32(h::HEADER_VERSION) as i32;
    if !(0..=0xffff).contains(&header_version) {
        return Err(Error::invalid(
            "kdump header_version",
            h::HEADER_VERSION as u64,
            format!("{header_version}, expected 0 to 6 (or a later version, read by its version 6 fields)"),
        ));
    }
    let uts = |i: usize| {
        let start = h::UTSNAME + i * raw::UTS_LEN;
        cstr(b.get(start..start + raw::UTS_LEN).unwrap_or_default())
    };
    let block_size = get32(h::BLOCK_SIZE);
    if !block_size.is_power_of_two() || !(512..=1 << 20).contains(&block_size) {
        return Err(Error::invalid("kdump block_size", h::BLOCK_SIZE as u64, format!(
            "{block_size}, expected the page size (a power of two from 512 to 1 MiB); 32-bit kdump layouts are not read")));
    }
    Ok(KdumpHeader {
        signature,
        header_version,
        utsname: Utsname {
            sysname: uts(0),
            nodename: uts(1),
            release: uts(2),
            version: uts(3),
            machine: uts(4),
            domainname: uts(5),
        },
        timestamp_sec: get64(h::TIMESTAMP) as i64,
        timestamp_usec: get64(h::TIMESTAMP + 8) as i64,
        status: get32(h::STATUS),
        block_size,
        sub_hdr_size: get32(h::SUB_HDR_SIZE),
        bitmap_blocks: get32(h::BITMAP_BLOCKS),
        max_mapnr_32: get32(h::MAX_MAPNR),
        nr_cpus: get32(h::NR_CPUS) as i32,
        big_endian,
    })
}

fn parse_sub_header(b: &[u8], version: i32, be: bool) -> KdumpSubHeader {
    let get32 = |off: usize| u32_at(b, off, be).unwrap_or(0);
    let get64 = |off: usize| u64_at(b, off, be).unwrap_or(0);
    let pair = |off: usize, size: usize| Some((get64(off), get64(size))).filter(|&(o, s)| o != 0 && s != 0);
    KdumpSubHeader {
        phys_base: get64(sh::PHYS_BASE),
        dump_level: (version >= 1).then(|| get32(sh::DUMP_LEVEL) as i32),
        split: (version >= 2).then(|| get32(sh::SPLIT) != 0),
        start_pfn: (version >= 2).then(|| if version >= 6 { get64(sh::START_PFN_64) } else { get64(sh::START_PFN) }),
        end_pfn: (version >= 2).then(|| if version >= 6 { get64(sh::END_PFN_64) } else { get64(sh::END_PFN) }),
        vmcoreinfo: if version >= 3 { pair(sh::OFFSET_VMCOREINFO, sh::SIZE_VMCOREINFO) } else { None },
        note: if version >= 4 { pair(sh::OFFSET_NOTE, sh::SIZE_NOTE) } else { None },
        eraseinfo: if version >= 5 { pair(sh::OFFSET_ERASEINFO, sh::SIZE_ERASEINFO) } else { None },
        max_mapnr_64: (version >= 6).then(|| get64(sh::MAX_MAPNR_64)),
    }
}

/// The kernel's VMCOREINFO is one page (VMCOREINFO_BYTES); 1 MiB allows the largest.
const MAX_VMCOREINFO: u64 = 1 << 20;
/// The notes are one or two per CPU (up to 8192) and a few more: a few MiB.
const MAX_NOTES_BYTES: u64 = 64 << 20;
/// makedumpfile's erase information: a line per erased symbol or member.
const MAX_ERASEINFO: u64 = 16 << 20;
/// The sub header's blocks hold it, the VMCOREINFO, the notes and the erase information.
const MAX_SUB_HEADER_BYTES: u64 = MAX_VMCOREINFO + MAX_NOTES_BYTES + MAX_ERASEINFO + (1 << 20);
/// x86_64 with 5-level paging addresses 2^52 bytes of RAM, 2^40 frames of 4 KiB: the most
/// of any architecture. Bitmaps are sized by max_mapnr, so a larger one is refused.
const MAX_MAPNR: u64 = 1 << 40;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<R: ReadAt> KdumpFile<R> {
    /// Parses headers and both bitmaps of `src`.
    pub fn parse(src: R) -> Result<KdumpFile<R>> {
        let mut hbuf = [0u8; h::SIZE];
        read_exact(&src, &mut hbuf, 0, "kdump disk_dump_header")?;
        let header = parse_header(&hbuf)?;
        let bs = u64::from(header.block_size);
        let sub = if header.sub_hdr_size > 0 {
            let mut sbuf = [0u8; sh::SIZE];
            read_exact(&src, &mut sbuf, bs, "kdump_sub_header")?;
            parse_sub_header(&sbuf, header.header_version, header.big_endian)
        } else {
            KdumpSubHeader::default()
        };
        if u64::from(header.sub_hdr_size) * bs > MAX_SUB_HEADER_BYTES {
            return Err(Error::invalid(
                "kdump sub_hdr_size",
                h::SUB_HDR_SIZE as u64,
                format!(
                    "{} blocks of {bs} bytes, expected at most {MAX_SUB_HEADER_BYTES} bytes for the sub header, VMCOREINFO, notes and erase information",
                    header.sub_hdr_size
                ),
            ));
        }
        let max_mapnr = sub.max_mapnr_64.unwrap_or(u64::from(header.max_mapnr_32));
        if max_mapnr > MAX_MAPNR {
            let (field, at) = match sub.max_mapnr_64 {
                Some(_) => ("kdump_sub_header max_mapnr_64", bs + sh::MAX_MAPNR_64 as u64),
                None => ("kdump max_mapnr", h::MAX_MAPNR as u64),
            };
            return Err(Error::invalid(field, at, format!("{max_mapnr:#x}, expected at most 2^40 frames")));
        }
        let bitmap_offset = (1 + u64::from(header.sub_hdr_size)) * bs;
        let bitmap_bytes = u64::from(header.bitmap_blocks) * bs;
        let one = bitmap_bytes / 2;
        if one.saturating_mul(8) < max_mapnr {
            return Err(Error::invalid(
                "kdump bitmaps",
                h::BITMAP_BLOCKS as u64,
                format!(
                    "{} blocks hold {} bits per bitmap, fewer than max_mapnr {max_mapnr}",
                    header.bitmap_blocks,
                    one * 8
                ),
            ));
        }
        let present = FileBitmap::open(&src, bitmap_offset, max_mapnr, "1st bitmap (memory present)")?;
        let dumpable = FileBitmap::open(&src, bitmap_offset + one, max_mapnr, "2nd bitmap (pages dumped)")?;
        let desc_offset = bitmap_offset + bitmap_bytes;
        let (start_pfn, end_pfn) = match (sub.split, sub.start_pfn, sub.end_pfn) {
            (Some(true), Some(s), Some(e)) if s <= e && e <= max_mapnr => (s, e),
            (Some(true), s, e) => {
                return Err(Error::invalid(
                    "kdump_sub_header split range",
                    bs + sh::START_PFN as u64,
                    format!("start {s:?} end {e:?} is not a range inside max_mapnr {max_mapnr}"),
                ))
            }
            _ => (0, max_mapnr),
        };
        let rank_base = dumpable.rank(&src, start_pfn)?;
        Ok(KdumpFile { src, header, sub, max_mapnr, present, dumpable, desc_offset, start_pfn, end_pfn, rank_base })
    }

    /// Page size of the dump.
    pub fn page_size(&self) -> u32 {
        self.header.block_size
    }

    /// Number of page frames the bitmaps cover.
    pub fn max_mapnr(&self) -> u64 {
        self.max_mapnr
    }

    /// The pfn range whose pages this file holds: all of them unless it is a split file.
    pub fn pfn_range(&self) -> (u64, u64) {
        (self.start_pfn, self.end_pfn)
    }

    /// Whether the writer ran out of space or hit its size limit.
    pub fn is_incomplete(&self) -> bool {
        self.header.status & raw::DUMP_DH_COMPRESSED_INCOMPLETE != 0
    }

    /// Whether it was written with makedumpfile's `-e`: the vmemmap pages that describe
    /// only excluded frames are left out too.
    pub fn excludes_vmemmap(&self) -> bool {
        self.header.status & raw::DUMP_DH_EXCLUDED_VMEMMAP != 0
    }

    /// The codec the header names.
    pub fn compression(&self) -> Option<Codec> {
        Codec::from_header_status(self.header.status)
    }

    /// 1st bitmap: the pfn is RAM.
    pub fn is_present(&self, pfn: u64) -> Result<bool> {
        self.present.get(&self.src, pfn)
    }

    /// 2nd bitmap: the pfn was dumped.
    pub fn is_dumpable(&self, pfn: u64) -> Result<bool> {
        self.dumpable.get(&self.src, pfn)
    }

    /// Pages of RAM (set bits of the 1st bitmap).
    pub fn present_pages(&self) -> u64 {
        self.present.count_ones()
    }

    /// Pages dumped in the whole dump, this file's range or not (set bits of the 2nd
    /// bitmap).
    pub fn dumped_pages(&self) -> u64 {
        self.dumpable.count_ones()
    }

    /// Calls `f` with each run `[start, end)` of pfns that are RAM, in order.
    pub fn for_each_present_run(&self, f: impl FnMut(u64, u64)) -> Result<()> {
        self.present.for_each_run(&self.src, f)
    }

    /// Calls `f` with each run `[start, end)` of dumped pfns, in order.
    pub fn for_each_dumped_run(&self, f: impl FnMut(u64, u64)) -> Result<()> {
        self.dumpable.for_each_run(&self.src, f)
    }

    /// Whether `other` dumped exactly the same pfns (as the files of one split dump do).
    pub fn same_dumped_pages<S: ReadAt>(&self, other: &KdumpFile<S>) -> Result<bool> {
        self.dumpable.same_bits(&self.src, &other.dumpable, &other.src)
    }

    /// Whether `other` is a file of the same dump (another file of its `--split` set): the
    /// same header but for the INCOMPLETE bit (one file can be cut short), the same
    /// phys_base and dump level, and the same pages dumped.
    pub fn same_dump_as<S: ReadAt>(&self, other: &KdumpFile<S>) -> Result<bool> {
        let (a, b) = (&self.header, &other.header);
        let status = |h: &KdumpHeader| h.status & !raw::DUMP_DH_COMPRESSED_INCOMPLETE;
        let same_header = a.signature == b.signature
            && a.header_version == b.header_version
            && a.utsname == b.utsname
            && (a.timestamp_sec, a.timestamp_usec) == (b.timestamp_sec, b.timestamp_usec)
            && status(a) == status(b)
            && (a.block_size, a.sub_hdr_size, a.bitmap_blocks) == (b.block_size, b.sub_hdr_size, b.bitmap_blocks)
            && (a.max_mapnr_32, a.nr_cpus, a.big_endian) == (b.max_mapnr_32, b.nr_cpus, b.big_endian);
        Ok(same_header
            && self.max_mapnr == other.max_mapnr
            && (self.sub.phys_base, self.sub.dump_level) == (other.sub.phys_base, other.sub.dump_level)
            && self.same_dumped_pages(other)?)
    }

    /// Pages with a descriptor in this file.
    pub fn dumpable_pages(&self) -> Result<u64> {
        Ok(self.dumpable.rank(&self.src, self.end_pfn)? - self.rank_base)
    }

    /// The descriptor of a dumped pfn in this file's range, `None` when the pfn is not
    /// dumped here. A descriptor past the end of an incomplete file reads as unwritten.
    pub fn page_desc(&self, pfn: u64) -> Result<Option<PageDesc>> {
        Ok(self.page_desc_at(pfn)?.map(|(desc, _)| desc))
    }

    /// [`page_desc`](Self::page_desc), with the descriptor's offset in the file.
    fn page_desc_at(&self, pfn: u64) -> Result<Option<(PageDesc, u64)>> {
        if pfn < self.start_pfn || pfn >= self.end_pfn {
            return Ok(None);
        }
        let Some(rank) = self.dumpable.rank_if_set(&self.src, pfn)? else { return Ok(None) };
        let index = rank - self.rank_base;
        let at = self.desc_offset + index * raw::PAGE_DESC_SIZE as u64;
        let mut d = [0u8; raw::PAGE_DESC_SIZE];
        match read_exact(&self.src, &mut d, at, "page descriptor") {
            Ok(()) => {}
            Err(Error::Truncated { .. }) if self.is_incomplete() => {
                return Ok(Some((PageDesc { offset: 0, size: 0, flags: 0, page_flags: 0 }, at)))
            }
            Err(e) => return Err(e),
        }
        let be = self.header.big_endian;
        let desc = PageDesc {
            offset: u64_at(&d, 0, be).unwrap_or(0),
            size: u32_at(&d, 8, be).unwrap_or(0),
            flags: u32_at(&d, 12, be).unwrap_or(0),
            page_flags: u64_at(&d, 16, be).unwrap_or(0),
        };
        Ok(Some((desc, at)))
    }

    /// Reads page `pfn` into `out` (exactly one page long).
    pub fn read_page(&self, pfn: u64, out: &mut [u8]) -> Result<PageRead> {
        if out.len() != self.header.block_size as usize {
            return Err(Error::invalid("read buffer", 0, format!("{} bytes, expected one page", out.len())));
        }
        if !self.present.get(&self.src, pfn)? {
            return Ok(PageRead::Hole);
        }
        let Some((desc, desc_at)) = self.page_desc_at(pfn)? else {
            return Ok(if self.dumpable.get(&self.src, pfn)? { PageRead::NotWritten } else { PageRead::Excluded });
        };
        if desc.offset == 0 {
            return Ok(PageRead::NotWritten);
        }
        if desc.offset > i64::MAX as u64 {
            // The field is a signed off_t.
            return Err(Error::invalid(
                "page descriptor",
                desc_at,
                format!("pfn {pfn:#x}: data offset {:#x} is negative", desc.offset),
            ));
        }
        if desc.size == 0 || desc.size > self.header.block_size {
            return Err(Error::invalid(
                "page descriptor",
                desc_at,
                format!("pfn {pfn:#x}: stored size {} outside 1..={}", desc.size, self.header.block_size),
            ));
        }
        let codec = Codec::from_page_flags(desc.flags).ok_or_else(|| {
            Error::invalid(
                "page descriptor",
                desc_at,
                format!("pfn {pfn:#x}: flags {:#x} name no single codec", desc.flags),
            )
        })?;
        if codec == Codec::Raw {
            if desc.size != self.header.block_size {
                return Err(Error::invalid(
                    "page descriptor",
                    desc_at,
                    format!(
                        "pfn {pfn:#x}: flags say uncompressed, but the stored size is {} bytes, expected {}",
                        desc.size, self.header.block_size
                    ),
                ));
            }
            return self.read_stored(&mut *out, desc.offset).map(|written| {
                if written {
                    PageRead::Data
                } else {
                    PageRead::NotWritten
                }
            });
        }
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.resize(desc.size as usize, 0);
            if !self.read_stored(&mut s, desc.offset)? {
                return Ok(PageRead::NotWritten);
            }
            if !codec.is_supported() {
                return Err(Error::Unsupported(format!(
                    "pfn {pfn:#x}: the page is compressed with {}, which this build of vmcore was built without",
                    codec.name()
                )));
            }
            codec.decode(&s, out).map_err(|detail| Error::Decompress {
                pfn,
                codec: codec.name(),
                offset: desc.offset,
                len: desc.size,
                detail,
            })?;
            Ok(PageRead::Data)
        })
    }

    /// Reads stored page data; `false` when an incomplete dump ends before it.
    fn read_stored(&self, buf: &mut [u8], offset: u64) -> Result<bool> {
        match read_exact(&self.src, buf, offset, "page data") {
            Ok(()) => Ok(true),
            Err(Error::Truncated { .. }) if self.is_incomplete() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The VMCOREINFO text stored in the sub header area (v3+).
    pub fn vmcoreinfo(&self) -> Result<Option<Vec<u8>>> {
        self.sub_header_blob(self.sub.vmcoreinfo, sh::SIZE_VMCOREINFO, MAX_VMCOREINFO, "VMCOREINFO in the sub header")
    }

    /// The ELF notes copied from the dumped kernel (v4+).
    pub fn notes(&self) -> Result<Option<Vec<u8>>> {
        self.sub_header_blob(self.sub.note, sh::SIZE_NOTE, MAX_NOTES_BYTES, "ELF notes in the sub header")
    }

    /// The erase information text (v5+).
    pub fn eraseinfo(&self) -> Result<Option<Vec<u8>>> {
        self.sub_header_blob(self.sub.eraseinfo, sh::SIZE_ERASEINFO, MAX_ERASEINFO, "erase info")
    }

    /// Reads a blob the sub header points at, if its size (the field at `size_field` of
    /// the sub header) is at most `max`: a file may be sparse, so that its size alone does
    /// not bound what a corrupt field makes us allocate.
    fn sub_header_blob(
        &self,
        at: Option<(u64, u64)>,
        size_field: usize,
        max: u64,
        what: &'static str,
    ) -> Result<Option<Vec<u8>>> {
        let Some((off, size)) = at else { return Ok(None) };
        if size > max {
            return Err(Error::invalid(
                what,
                u64::from(self.header.block_size) + size_field as u64,
                format!("size {size}; expected at most {max}"),
            ));
        }
        read_vec(&self.src, off, size, what).map(Some)
    }
}
