//! kdump-compressed ("diskdump") layout, LP64. Offsets from makedumpfile's `diskdump_mod.h`
//! as compiled for x86_64 (see ../shared/docs/makedumpfile.md section 1).

/// Signature makedumpfile writes.
pub const KDUMP_SIGNATURE: &[u8; 8] = b"KDUMP   ";
/// Signature of the older diskdump module.
pub const DISKDUMP_SIGNATURE: &[u8; 8] = b"DISKDUMP";

/// Page or header compressed with zlib.
pub const DUMP_DH_COMPRESSED_ZLIB: u32 = 0x1;
/// LZO1X.
pub const DUMP_DH_COMPRESSED_LZO: u32 = 0x2;
/// Snappy.
pub const DUMP_DH_COMPRESSED_SNAPPY: u32 = 0x4;
/// Header status: the dump was cut short (disk full or size limit).
pub const DUMP_DH_COMPRESSED_INCOMPLETE: u32 = 0x8;
/// Header status: unused vmemmap pages were excluded (`-e`).
pub const DUMP_DH_EXCLUDED_VMEMMAP: u32 = 0x10;
/// Zstandard.
pub const DUMP_DH_COMPRESSED_ZSTD: u32 = 0x20;

/// `struct new_utsname` field length.
pub const UTS_LEN: usize = 65;

/// `struct disk_dump_header` field offsets.
pub mod header {
    /// `char signature[8]`.
    pub const SIGNATURE: usize = 0;
    /// `int header_version`.
    pub const HEADER_VERSION: usize = 8;
    /// `struct new_utsname utsname` (6 x 65 bytes).
    pub const UTSNAME: usize = 12;
    /// `struct timeval timestamp` (tv_sec, tv_usec as 64-bit).
    pub const TIMESTAMP: usize = 408;
    /// `unsigned int status`.
    pub const STATUS: usize = 424;
    /// `int block_size`.
    pub const BLOCK_SIZE: usize = 428;
    /// `int sub_hdr_size` in blocks.
    pub const SUB_HDR_SIZE: usize = 432;
    /// `unsigned int bitmap_blocks` (both bitmaps).
    pub const BITMAP_BLOCKS: usize = 436;
    /// `unsigned int max_mapnr` (32-bit, obsolete since version 6).
    pub const MAX_MAPNR: usize = 440;
    /// `unsigned int total_ram_blocks`.
    pub const TOTAL_RAM_BLOCKS: usize = 444;
    /// `unsigned int device_blocks`.
    pub const DEVICE_BLOCKS: usize = 448;
    /// `unsigned int written_blocks`.
    pub const WRITTEN_BLOCKS: usize = 452;
    /// `unsigned int current_cpu`.
    pub const CURRENT_CPU: usize = 456;
    /// `int nr_cpus`.
    pub const NR_CPUS: usize = 460;
    /// `sizeof(struct disk_dump_header)`.
    pub const SIZE: usize = 464;
}

/// `struct kdump_sub_header` field offsets (each valid from the header version noted).
pub mod sub_header {
    /// `unsigned long phys_base` (v0+).
    pub const PHYS_BASE: usize = 0;
    /// `int dump_level` (v1+).
    pub const DUMP_LEVEL: usize = 8;
    /// `int split` (v2+).
    pub const SPLIT: usize = 12;
    /// `unsigned long start_pfn` (v2+, 32-bit clamped from v6).
    pub const START_PFN: usize = 16;
    /// `unsigned long end_pfn` (v2+).
    pub const END_PFN: usize = 24;
    /// `off_t offset_vmcoreinfo` (v3+).
    pub const OFFSET_VMCOREINFO: usize = 32;
    /// `unsigned long size_vmcoreinfo` (v3+).
    pub const SIZE_VMCOREINFO: usize = 40;
    /// `off_t offset_note` (v4+).
    pub const OFFSET_NOTE: usize = 48;
    /// `unsigned long size_note` (v4+).
    pub const SIZE_NOTE: usize = 56;
    /// `off_t offset_eraseinfo` (v5+).
    pub const OFFSET_ERASEINFO: usize = 64;
    /// `unsigned long size_eraseinfo` (v5+).
    pub const SIZE_ERASEINFO: usize = 72;
    /// `unsigned long long start_pfn_64` (v6+).
    pub const START_PFN_64: usize = 80;
    /// `unsigned long long end_pfn_64` (v6+).
    pub const END_PFN_64: usize = 88;
    /// `unsigned long long max_mapnr_64` (v6+).
    pub const MAX_MAPNR_64: usize = 96;
    /// `sizeof(struct kdump_sub_header)`.
    pub const SIZE: usize = 104;
}

/// `page_desc_t`: offset (off_t), size (u32), flags (u32), page_flags (u64).
pub const PAGE_DESC_SIZE: usize = 24;
