//! Bad input: truncated files, wrong magic, fields pointing outside the file, bitmaps
//! shorter than max pfn, pages that do not decompress to one page, flattened streams that
//! end early, overlapping ELF segments. Each is a clear error naming the file, the offset
//! and what was expected; none panics or hangs.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vmcore_formats::codec::Codec;
use vmcore_formats::raw::kdump::{header as h, sub_header as sh};
use vmcore_kernel::{Dump, OpenOptions};
use vmcore_synth::kdump::{self, KdumpSpec, PageSpec};
use vmcore_types::Pfn;

use crate::util::{run, vmcoreinfo_text};

const PS: usize = 4096;

fn page(pfn: u64) -> Vec<u8> {
    (0..PS).map(|i| ((i as u64 * 7 + pfn * 13) % 251) as u8).collect()
}

/// A small kdump file (zlib), 32 pfns: 0-3 holes, 4-19 dumped, 20-31 excluded.
fn small_kdump(codec: Codec) -> (Vec<u8>, kdump::KdumpLayout) {
    let spec = KdumpSpec {
        max_mapnr: 32,
        codec,
        vmcoreinfo: Some(b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\n".to_vec()),
        ..KdumpSpec::default()
    };
    let mut pages = BTreeMap::new();
    for pfn in 4..20 {
        pages.insert(pfn, PageSpec::Dumped(page(pfn)));
    }
    for pfn in 20..32 {
        pages.insert(pfn, PageSpec::Excluded);
    }
    kdump::write_with_layout(&spec, &pages).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Opens the file and reads every page; returns the first error's text.
fn first_error(path: &Path) -> Option<String> {
    let dump = match Dump::open(&[path.to_path_buf()], &OpenOptions::default()) {
        Ok(d) => d,
        Err(e) => return Some(e.to_string()),
    };
    let mut buf = vec![0u8; dump.mem.page_size() as usize];
    for pfn in 0..dump.mem.max_pfn() {
        if let Err(e) = dump.mem.read_page(Pfn(pfn), &mut buf) {
            return Some(e.to_string());
        }
    }
    None
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn the_unmodified_file_reads_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = small_kdump(Codec::Zlib);
    assert_eq!(first_error(&write(dir.path(), "good", &good)), None);
}

#[test]
fn each_kind_of_damage_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (good, layout) = small_kdump(Codec::Zlib);
    let mut cases: Vec<(&str, Vec<u8>, &[&str])> = Vec::new();

    cases.push(("empty", Vec::new(), &["file signature", "offset 0x0", "the file is empty"]));
    cases.push(("truncated-header", good[..300].to_vec(), &["truncated", "disk_dump_header", "offset 0x0"]));
    cases.push(("truncated-sub-header", good[..4096 + 50].to_vec(), &["truncated", "kdump_sub_header", "0x1000"]));
    let bm = layout.bitmap_offset as usize;
    cases.push(("truncated-bitmap", good[..bm + 10].to_vec(), &["truncated", "bitmap"]));
    let data = layout.data_offset as usize;
    cases.push(("truncated-data", good[..data + 10].to_vec(), &["truncated", "page data"]));

    let mut b = good.clone();
    b[0..8].copy_from_slice(b"KDUMPXXX");
    cases.push(("bad-magic", b, &["signature", "expected"]));

    let mut b = good.clone();
    put_u32(&mut b, h::BLOCK_SIZE, 1000);
    cases.push(("bad-block-size", b, &["block_size", "1000", "power of two"]));

    let mut b = good.clone();
    put_u32(&mut b, h::BITMAP_BLOCKS, 0x00ff_ffff);
    // The 1st bitmap (max_mapnr bits) still fits; the 2nd starts half the blocks later.
    cases.push(("bitmaps-past-the-end", b, &["truncated", "2nd bitmap", "0x800001800"]));

    let mut b = good.clone();
    b[4096 + sh::MAX_MAPNR_64..4096 + sh::MAX_MAPNR_64 + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("bitmaps-shorter-than-max-pfn", b, &["fewer than max_mapnr"]));

    // Bitmaps are sized by max_mapnr: past 2^40 frames (2^52 bytes) it is refused before
    // anything is read or allocated.
    let mut b = good.clone();
    b[4096 + sh::MAX_MAPNR_64..4096 + sh::MAX_MAPNR_64 + 8].copy_from_slice(&((1u64 << 40) + 1).to_le_bytes());
    cases.push(("max-mapnr-past-2-40", b, &["max_mapnr_64", "0x1060", "expected at most 2^40"]));

    let mut b = good.clone();
    put_u32(&mut b, h::SUB_HDR_SIZE, 1 << 20);
    cases.push(("huge-sub-header", b, &["sub_hdr_size", "0x1b0", "1048576 blocks", "expected at most"]));

    // The second descriptor: errors give its own offset, not the table's.
    let desc = layout.desc_offset as usize;
    let second = format!("offset {:#x}", desc + 24);
    let size_needles = ["page descriptor", "stored size 5000", second.as_str()];
    let flags_needles = ["flags 0x3", second.as_str()];
    let mut b = good.clone();
    put_u32(&mut b, desc + 24 + 8, 5000);
    cases.push(("desc-size-too-big", b, &size_needles));

    let mut b = good.clone();
    put_u32(&mut b, desc + 24 + 12, 0x3);
    cases.push(("desc-two-codecs", b, &flags_needles));

    let mut b = good.clone();
    b[desc..desc + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
    cases.push(("desc-offset-past-the-end", b, &["truncated", "page data"]));

    // A negative offset was an OS error ("Invalid argument") at a 2^64-ish offset.
    let mut b = good.clone();
    b[desc + 24..desc + 32].copy_from_slice(&(-4096i64).to_le_bytes());
    let negative_needles = ["data offset 0xfffffffffffff000 is negative", second.as_str()];
    cases.push(("desc-offset-negative", b, &negative_needles));

    // Uncompressed flags on a compressed size: the descriptor's offset, not the data's.
    let mut b = good.clone();
    put_u32(&mut b, desc + 24 + 12, 0);
    let raw_needles = ["flags say uncompressed, but the stored size is", second.as_str()];
    cases.push(("desc-raw-of-compressed-size", b, &raw_needles));

    // Corrupt the first stored page's compressed bytes.
    let off = u64::from_le_bytes(good[desc..desc + 8].try_into().unwrap()) as usize;
    let mut b = good.clone();
    for x in &mut b[off + 2..off + 40] {
        *x ^= 0x5a;
    }
    cases.push(("corrupt-zlib-page", b, &["pfn 0x4", "zlib", "corrupt"]));

    for (name, bytes, needles) in cases {
        let path = write(dir.path(), name, &bytes);
        let err = first_error(&path).unwrap_or_else(|| panic!("{name}: no error"));
        assert!(err.contains(&*path.to_string_lossy()), "{name}: error does not name the file: {err}");
        for n in needles {
            assert!(err.contains(n), "{name}: {err:?} lacks {n:?}");
        }
    }
}

#[test]
fn pages_that_decompress_to_the_wrong_size_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for codec in [Codec::Zlib, Codec::Lzo, Codec::Snappy, Codec::Zstd] {
        let (mut b, layout) = small_kdump(codec);
        let desc = layout.desc_offset as usize;
        // Replace the first page's data with half a page compressed by the same codec.
        let half = kdump::compress_page(codec, &page(4)[..PS / 2]).unwrap();
        let off = u64::from_le_bytes(b[desc..desc + 8].try_into().unwrap()) as usize;
        b[off..off + half.len()].copy_from_slice(&half);
        put_u32(&mut b, desc + 8, half.len() as u32);
        let err = first_error(&write(dir.path(), codec.name(), &b)).unwrap();
        assert!(err.contains("pfn 0x4") && err.contains(codec.name()), "{codec:?}: {err}");
    }
}

#[test]
fn flattened_stream_that_ends_early() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = small_kdump(Codec::Lzo);
    let flat = kdump::flatten(&good, kdump::ChunkOrder::FileOrder);
    let path = write(dir.path(), "cut.flat", &flat[..flat.len() - 16]);
    let err = first_error(&path).unwrap();
    assert!(err.contains("cut.flat") && err.contains("end marker"), "{err}");
    let path = write(dir.path(), "mid.flat", &flat[..flat.len() / 2]);
    let err = first_error(&path).unwrap();
    assert!(err.contains("truncated"), "{err}");
    let path = write(dir.path(), "whole.flat", &flat);
    assert_eq!(first_error(&path), None);
}

#[test]
fn elf_damage() {
    use vmcore_formats::elf::test_support::{header, note};
    let dir = tempfile::tempdir().unwrap();
    let n = note("VMCOREINFO", 0, b"OSRELEASE=x\nPAGESIZE=4096\n");
    let mut overlap =
        header(&[(0, 0, 0x1000, 0x2000, 0x2000), (0x100000, 0, 0x2000, 0x1000, 0x1000)], (0x800, n.len() as u64));
    overlap.resize(0x800, 0);
    overlap.extend_from_slice(&n);
    overlap.resize(0x4000, 0);
    let err = first_error(&write(dir.path(), "overlap.elf", &overlap)).unwrap();
    assert!(err.contains("overlap.elf") && err.contains("overlaps") && err.contains("PT_LOAD"), "{err}");

    let mut past = header(&[(0, 0, 0x1000, 0x100000, 0x100000)], (0x800, n.len() as u64));
    past.resize(0x800, 0);
    past.extend_from_slice(&n);
    past.resize(0x2000, 0);
    let err = first_error(&write(dir.path(), "short.elf", &past)).unwrap();
    assert!(err.contains("short.elf") && err.contains("truncated"), "{err}");

    let mut many = header(&[], (0x800, 0));
    many[56..58].copy_from_slice(&0xfffeu16.to_le_bytes());
    let err = first_error(&write(dir.path(), "phnum.elf", &many)).unwrap();
    assert!(err.contains("program header table") && err.contains("truncated"), "{err}");
}

/// Found by `cargo fuzz run elf`: a segment without file data whose p_offset is near 2^64,
/// overlapped by a larger one, made the piece past the overlap start past 2^64 in the
/// file (an overflow panic with debug assertions). Its memory reads as zeros.
#[test]
fn a_clipped_segment_with_its_offset_near_2_64_reads_as_zeros() {
    use vmcore_formats::elf::test_support::{header, note};
    let n = note("VMCOREINFO", 0, b"OSRELEASE=x\nPAGESIZE=4096\n");
    let mut elf = header(&[(0, 0, 0, 0, 0x2000), (0x1000, 0, u64::MAX - 0x10, 0, 0x1800)], (0x800, n.len() as u64));
    elf.resize(0x800, 0);
    elf.extend_from_slice(&n);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "far-offset.elf", &elf);
    let (ok, out, err) =
        run(&[OsStr::new("read"), OsStr::new("--phys"), path.as_os_str(), OsStr::new("0x2000"), OsStr::new("16")]);
    assert!(ok, "{err}");
    assert_eq!(out, vec![0u8; 16]);
}

#[test]
fn cli_names_the_file_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = small_kdump(Codec::Zlib);
    let path = write(dir.path(), "short.kdump", &good[..5000]);
    let (ok, out, err) = run(&[OsStr::new("info"), path.as_os_str()]);
    assert!(!ok && out.is_empty());
    assert!(err.contains("short.kdump") && err.contains("truncated") && err.contains("offset"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any byte flipped anywhere, or any truncation: an error or a clean read, never a panic.
    #[test]
    fn random_damage_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        codec in prop::sample::select(vec![Codec::Zlib, Codec::Lzo, Codec::Snappy, Codec::Zstd, Codec::Raw]),
        flatten in any::<bool>(),
    ) {
        let (good, _) = small_kdump(codec);
        let mut bytes = if flatten { kdump::flatten(&good, kdump::ChunkOrder::Shuffled(7)) } else { good };
        for (i, x) in &flips {
            let i = i.index(bytes.len());
            bytes[i] ^= x | 1;
        }
        let keep = cut.index(bytes.len() + 1).max(bytes.len() / 2);
        bytes.truncate(keep);
        let dir = tempfile::tempdir().unwrap();
        let _ = first_error(&write(dir.path(), "fuzzed", &bytes));
    }
}

/// A PT_LOAD at 2^62: the filter used to size its bitmaps by the highest frame and abort
/// on a 512 GiB allocation. Past 2^52 bytes it now refuses the dump, naming it.
#[test]
fn a_segment_beyond_any_physical_address_is_refused_not_allocated() {
    use vmcore_synth::machine::{Layout, Machine, MachineSpec};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("far.elf");
    let spec = MachineSpec::new(Layout::parse("x86_64-6.1-l4").unwrap(), 64 << 20, 3);
    Machine::new(&spec).unwrap().write_elf(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) =
        (u16::from_le_bytes([bytes[54], bytes[55]]) as usize, u16::from_le_bytes([bytes[56], bytes[57]]) as usize);
    let last_load =
        (0..phnum).map(|i| phoff + i * phentsize).rev().find(|&at| bytes[at..at + 4] == [1, 0, 0, 0]).unwrap();
    // p_paddr, p_filesz, p_memsz
    bytes[last_load + 24..last_load + 32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    bytes[last_load + 32..last_load + 40].copy_from_slice(&0u64.to_le_bytes());
    bytes[last_load + 40..last_load + 48].copy_from_slice(&4096u64.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    for args in [vec!["dump", "--dry-run"], vec!["mem-usage"]] {
        let mut a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        a.push(path.as_os_str());
        let (ok, _, err) = run(&a);
        assert!(!ok && err.contains("far.elf") && err.contains("beyond 2^52 bytes"), "{args:?}: {err}");
    }
}

/// Found by `cargo fuzz run model`: direct-map PT_LOADs whose sizes add past 2^64 made
/// the page_offset_base vote overflow (a panic with debug assertions). The sizes now
/// saturate, and the vote still finds the direct map's offset.
#[test]
fn direct_map_segments_sizes_past_2_64_do_not_overflow_the_vote() {
    use vmcore_formats::elf::test_support::{header, note};
    let n = note("VMCOREINFO", 0, b"OSRELEASE=x\nPAGESIZE=4096\n");
    let direct_map = 0xff11_0000_0000_0000u64;
    let half = 1u64 << 63;
    let loads = [(0, direct_map, 0x1000, 0, half), (0x1000_0000, direct_map + 0x1000_0000, 0x1000, 0, half)];
    let mut elf = header(&loads, (0x800, n.len() as u64));
    elf.resize(0x800, 0);
    elf.extend_from_slice(&n);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "huge-direct-map.elf", &elf);
    let (ok, out, err) = run(&[OsStr::new("info"), path.as_os_str()]);
    let out = String::from_utf8_lossy(&out);
    assert!(ok, "{err}");
    assert!(out.contains("page_offset_base   0xff11000000000000   from pt_load"), "{out}");
}

/// A synthetic 6.1 machine of 64 MiB as an ELF vmcore in `dir`, and its bytes.
fn synthetic_elf(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = crate::util::synthetic_elf(dir, "machine.elf", "x86_64-6.1-l4", 64 << 20, 3);
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// The file offset of the last PT_LOAD's program header.
fn last_load_header(bytes: &[u8]) -> usize {
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) =
        (u16::from_le_bytes([bytes[54], bytes[55]]) as usize, u16::from_le_bytes([bytes[56], bytes[57]]) as usize);
    (0..phnum).map(|i| phoff + i * phentsize).rev().find(|&at| bytes[at..at + 4] == [1, 0, 0, 0]).unwrap()
}

/// VMCOREINFO's PAGESIZE sizes every page buffer: 2^40 aborted `dump` on a 1 TiB
/// allocation. A page size no x86_64 or arm64 kernel has is now refused, naming it.
#[test]
fn a_page_size_no_machine_has_is_refused_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = synthetic_elf(dir.path());
    let text = vmcoreinfo_text(&path);
    assert!(text.contains("PAGESIZE=4096\n"));
    let out = dir.path().join("out.kdump");
    for size in ["1099511627776", "5000", "2048"] {
        let vi = dir.path().join(format!("vmcoreinfo-{size}"));
        std::fs::write(&vi, text.replace("PAGESIZE=4096\n", &format!("PAGESIZE={size}\n"))).unwrap();
        for args in [vec![OsStr::new("dump"), OsStr::new("-d"), OsStr::new("0")], vec![OsStr::new("info")]] {
            let mut a = args.clone();
            a.extend([OsStr::new("--vmcoreinfo"), vi.as_os_str(), path.as_os_str(), out.as_os_str()]);
            if args[0] == "info" {
                a.pop();
            }
            let (ok, _, err) = run(&a);
            assert!(!ok, "{size} {args:?}: accepted");
            for needle in ["machine.elf", &format!("page size {size} from VMCOREINFO PAGESIZE"), "4096 to 65536"] {
                assert!(err.contains(needle), "{size} {args:?}: {err:?} lacks {needle:?}");
            }
            assert!(!out.exists(), "{size}: an output file was created");
        }
    }
}

/// VMCOREINFO values that are there but unusable, and files that are not VMCOREINFO, are
/// named as such: they were reported missing, a value above the range as "below" it, an
/// empty file as another kernel's, and a 100 KB release was echoed whole.
#[test]
fn unusable_vmcoreinfo_values_are_named_with_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = synthetic_elf(dir.path());
    let text = vmcoreinfo_text(&path);
    let replace = |key: &str, value: &str| -> String {
        text.lines().map(|l| if l.starts_with(key) { format!("{key}{value}") } else { l.to_string() } + "\n").collect()
    };
    let cases: [(&str, String, &[&str]); 6] = [
        (
            "section-bits",
            replace("NUMBER(SECTION_SIZE_BITS)=", "200"),
            &["SECTION_SIZE_BITS 200: expected from the page shift (12) to 51"],
        ),
        ("mem-section", replace("SYMBOL(mem_section)=", "zz"), &["SYMBOL(mem_section)=zz (not a usable value)"]),
        (
            "page-flags",
            replace("OFFSET(page.flags)=", "18446744073709551615"),
            &["OFFSET(page.flags)=18446744073709551615 (not a usable value)"],
        ),
        ("empty", String::new(), &["not one KEY=VALUE line"]),
        ("long-release", replace("OSRELEASE=", &"x".repeat(100_000)), &["... (100000 bytes), but", "6.1.0-synthetic"]),
        ("page-size", replace("PAGESIZE=", "65536"), &["x86_64 pages are 4096 bytes"]),
    ];
    for (name, vmcoreinfo, needles) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, vmcoreinfo).unwrap();
        let (ok, _, err) = run(&[
            OsStr::new("dump"),
            OsStr::new("--dry-run"),
            OsStr::new("-d"),
            OsStr::new("31"),
            OsStr::new("--vmcoreinfo"),
            file.as_os_str(),
            path.as_os_str(),
        ]);
        assert!(!ok && err.len() < 1000, "{name}: {err}");
        for n in needles {
            assert!(err.contains(n), "{name}: {err:?} lacks {n:?}");
        }
    }
    // A key on two lines (a hand-edited file): the first is used, and a warning says so.
    let file = dir.path().join("repeated");
    std::fs::write(&file, format!("{text}PAGESIZE=65536\n")).unwrap();
    let (ok, _, err) = run(&[OsStr::new("info"), OsStr::new("--vmcoreinfo"), file.as_os_str(), path.as_os_str()]);
    assert!(ok && err.contains("VMCOREINFO has PAGESIZE on more than one line: the first of each is used"), "{err}");
    // Tens of thousands of them (the list was searched for each: quadratic, and all named).
    let many: String = (0..50_000).map(|i| format!("K{i}=\nK{i}=\n")).collect();
    std::fs::write(&file, format!("{text}{many}")).unwrap();
    let (ok, _, err) = run(&[OsStr::new("info"), OsStr::new("--vmcoreinfo"), file.as_os_str(), path.as_os_str()]);
    assert!(
        ok && err.contains("K0, K1, K2, K3, K4 and 49995 more keys on more than one line") && err.len() < 2000,
        "{err}"
    );
    // An ELF core whose EI_DATA names the other byte order.
    let mut be = bytes.clone();
    be[5] = 2;
    let file = dir.path().join("big-endian.elf");
    std::fs::write(&file, be).unwrap();
    let (ok, _, err) = run(&[OsStr::new("info"), file.as_os_str()]);
    assert!(!ok && err.contains("a wrong EI_DATA") && err.contains("offset 0x10"), "{err}");
}

/// A last PT_LOAD claiming memory up to 2^52 bytes without file data: the kernel's
/// section walk read past mem_section's roots and failed, so `dump` gave up (or, with no
/// struct-page scan needed, wrote 2^40 frames of bitmaps). The walk now stops at the
/// kernel's NR_MEM_SECTIONS, and the dump ends at the last section, as makedumpfile's.
#[test]
fn memory_claimed_up_to_2_52_without_data_is_cut_at_the_last_section() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut bytes) = synthetic_elf(dir.path());
    let load = last_load_header(&bytes);
    let paddr = u64::from_le_bytes(bytes[load + 24..load + 32].try_into().unwrap());
    bytes[load + 40..load + 48].copy_from_slice(&((1u64 << 52) - paddr).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let out = dir.path().join("out.kdump");
    let (ok, _, err) = run(&[
        OsStr::new("dump"),
        OsStr::new("-l"),
        OsStr::new("-d"),
        OsStr::new("1"),
        path.as_os_str(),
        out.as_os_str(),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("past the kernel's last memory section at 0x8000000"), "{err}");
    let written = std::fs::metadata(&out).unwrap().len();
    assert!(written < 64 << 20, "{written} bytes");
    let dump = Dump::open(&[out], &OpenOptions::default()).unwrap();
    assert_eq!(dump.mem.max_pfn(), 0x8000);
}
