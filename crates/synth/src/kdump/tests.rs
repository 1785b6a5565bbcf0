//! The writer checked against the reader of vmcore-formats, and against byte offsets
//! worked out by hand from makedumpfile.md.

use super::*;
use crate::elf::{encode_notes, prstatus_note, vmcoreinfo_note};
use crate::rng::SplitMix64;
use proptest::prelude::*;
use vmcore_formats::flat::FlatView;
use vmcore_formats::kdump::{KdumpFile, PageRead};
use vmcore_types::ReadAt;

const CODECS: [Codec; 5] = [Codec::Raw, Codec::Zlib, Codec::Lzo, Codec::Snappy, Codec::Zstd];
const VMCOREINFO: &[u8] = b"OSRELEASE=6.1.0-synthetic\nPAGESIZE=4096\nCRASHTIME=1795685165\n";

fn page_of(rng: &mut SplitMix64, ps: usize) -> Vec<u8> {
    let mut p = vec![0u8; ps];
    match rng.below(5) {
        0 => {}
        1 => p.fill(rng.next_u64() as u8),
        2 => {
            for (i, b) in p.iter_mut().enumerate() {
                *b = b"kernel page cache "[i % 18];
            }
        }
        3 => rng.fill(&mut p),
        _ => {
            for _ in 0..4 {
                let i = rng.below(ps as u64) as usize;
                p[i] = rng.next_u64() as u8 | 1;
            }
        }
    }
    p
}

/// About a fifth holes, a fifth excluded, the rest dumped with varied contents.
fn random_pages(seed: u64, max_mapnr: u64, ps: usize) -> BTreeMap<u64, PageSpec> {
    let mut rng = SplitMix64::new(seed);
    let mut pages = BTreeMap::new();
    for pfn in 0..max_mapnr {
        match rng.below(10) {
            0 | 1 => {}
            2 | 3 => {
                pages.insert(pfn, PageSpec::Excluded);
            }
            _ => {
                pages.insert(pfn, PageSpec::Dumped(page_of(&mut rng, ps)));
            }
        }
    }
    pages
}

fn note_be(name: &str, ntype: u32, desc: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(name.len() as u32 + 1).to_be_bytes());
    b.extend_from_slice(&(desc.len() as u32).to_be_bytes());
    b.extend_from_slice(&ntype.to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b.resize(b.len().next_multiple_of(4), 0);
    b.extend_from_slice(desc);
    b.resize(b.len().next_multiple_of(4), 0);
    b
}

/// Two CPUs' PRSTATUS notes, with or without a VMCOREINFO note, in the dump's byte order.
fn notes_blob(big_endian: bool, with_vmcoreinfo: bool) -> Vec<u8> {
    let text = std::str::from_utf8(VMCOREINFO).unwrap();
    if big_endian {
        let mut b = [note_be("CORE", 1, &[0; 336]), note_be("CORE", 1, &[0; 336])].concat();
        if with_vmcoreinfo {
            b.extend_from_slice(&note_be("VMCOREINFO", 0, VMCOREINFO));
        }
        b
    } else {
        let mut notes = vec![prstatus_note(), prstatus_note()];
        if with_vmcoreinfo {
            notes.push(vmcoreinfo_note(text));
        }
        encode_notes(&notes).unwrap()
    }
}

fn spec(version: i32, codec: Codec, big_endian: bool, max_mapnr: u64, ps: u32, variant: u64) -> KdumpSpec {
    let blob_has_vmcoreinfo = variant % 3 != 0;
    KdumpSpec {
        header_version: version,
        page_size: ps,
        max_mapnr,
        crash_time: 1_795_685_165,
        phys_base: 0xffff_ffff_eca0_0000,
        dump_level: if variant % 2 == 0 { 31 } else { 0 },
        codec,
        vmcoreinfo: (!blob_has_vmcoreinfo || variant % 4 == 1).then(|| VMCOREINFO.to_vec()),
        notes: (variant % 5 != 4).then(|| notes_blob(big_endian, blob_has_vmcoreinfo)),
        eraseinfo: (variant % 3 == 2).then(|| b"erase modules size 16\n".to_vec()),
        big_endian,
        share_zero_pages: variant % 2 == 0,
        ..KdumpSpec::default()
    }
}

fn expected(pages: &BTreeMap<u64, PageSpec>, pfn: u64, range: (u64, u64)) -> (PageRead, Option<&[u8]>) {
    match pages.get(&pfn) {
        None => (PageRead::Hole, None),
        Some(PageSpec::Excluded) => (PageRead::Excluded, None),
        Some(PageSpec::Dumped(d)) if (range.0..range.1).contains(&pfn) => (PageRead::Data, Some(d)),
        // A split file has no descriptor for the others' pages.
        Some(PageSpec::Dumped(_)) => (PageRead::NotWritten, None),
    }
}

fn check_pages<R: ReadAt>(k: &KdumpFile<R>, pages: &BTreeMap<u64, PageSpec>, range: (u64, u64)) {
    let mut buf = vec![0u8; k.page_size() as usize];
    for pfn in 0..k.max_mapnr() + 10 {
        let got = k.read_page(pfn, &mut buf).unwrap_or_else(|e| panic!("pfn {pfn:#x}: {e}"));
        let (want, data) = expected(pages, pfn, range);
        assert_eq!(got, want, "pfn {pfn:#x}");
        if let Some(d) = data {
            assert!(buf == d, "pfn {pfn:#x}: bytes differ");
        }
    }
}

/// Checks everything the reader reports of a file written from `s` and `pages`.
fn check_file(s: &KdumpSpec, pages: &BTreeMap<u64, PageSpec>) {
    let (bytes, layout) = write_with_layout(s, pages).unwrap();
    assert_eq!(bytes.len() as u64, layout.full_size);
    let k = KdumpFile::parse(bytes).unwrap();
    let v = s.header_version;
    assert_eq!(k.header.header_version, v);
    assert_eq!(k.header.big_endian, s.big_endian);
    assert_eq!(&k.header.signature, b"KDUMP   ");
    let u = &k.header.utsname;
    assert_eq!(
        [&u.sysname, &u.nodename, &u.release, &u.version, &u.machine, &u.domainname].map(|x| x.as_str()),
        s.utsname.each_ref().map(|x| x.as_str())
    );
    assert_eq!(k.header.timestamp_sec, s.crash_time);
    assert_eq!(k.page_size(), s.page_size);
    assert_eq!(k.max_mapnr(), s.max_mapnr);
    assert_eq!(k.header.max_mapnr_32 as u64, s.max_mapnr);
    assert_eq!(k.compression(), Some(s.codec).filter(|c| *c != Codec::Raw));
    assert!(!k.is_incomplete());
    assert_eq!(k.header.nr_cpus, if s.notes.is_some() { 2 } else { 0 });
    assert_eq!(k.sub.phys_base, s.phys_base);
    assert_eq!(k.sub.dump_level, Some(s.dump_level));
    assert_eq!(k.sub.split, (v >= 2).then_some(false));
    assert_eq!(k.sub.max_mapnr_64, (v >= 6).then_some(s.max_mapnr));
    assert_eq!(k.pfn_range(), (0, s.max_mapnr));
    let dumped = pages.values().filter(|p| matches!(p, PageSpec::Dumped(_))).count() as u64;
    assert_eq!(k.dumpable_pages().unwrap(), dumped);
    assert_eq!(k.present_pages(), pages.len() as u64);

    let blob_has_vmcoreinfo =
        s.notes.as_deref().is_some_and(|b| scan_notes(b, s.big_endian).iter().any(|n| n.name == b"VMCOREINFO"));
    let want_vmcoreinfo = s.vmcoreinfo.is_some() || blob_has_vmcoreinfo;
    let vi = k.vmcoreinfo().unwrap();
    assert_eq!(vi.as_deref(), (v >= 3 && want_vmcoreinfo).then_some(VMCOREINFO));
    assert_eq!(k.notes().unwrap(), s.notes.clone().filter(|_| v >= 4));
    assert_eq!(k.eraseinfo().unwrap(), s.eraseinfo.clone().filter(|_| v >= 5));
    if let (Some((off, _)), Some((note_off, note_size))) = (k.sub.vmcoreinfo, k.sub.note) {
        let inside = off < note_off + note_size;
        assert_eq!(inside, blob_has_vmcoreinfo);
    }

    check_pages(&k, pages, (0, s.max_mapnr));

    // Descriptors: the shared zero page, and compressed data only when smaller.
    let ps = s.page_size;
    let share = s.share_zero_pages && s.dump_level & 1 != 0;
    assert_eq!(layout.zero_page, share.then_some(layout.data_offset));
    for (&pfn, p) in pages {
        let PageSpec::Dumped(d) = p else { continue };
        let desc = k.page_desc(pfn).unwrap().unwrap();
        assert_eq!(desc.page_flags, 0);
        if share && d.iter().all(|&b| b == 0) {
            assert_eq!((desc.offset, desc.size, desc.flags), (layout.data_offset, ps, 0), "pfn {pfn:#x}");
            continue;
        }
        assert!(desc.offset >= layout.data_offset + if share { u64::from(ps) } else { 0 });
        let packed = compress_page(s.codec, d).unwrap();
        if s.codec != Codec::Raw && packed.len() < ps as usize {
            assert_eq!((desc.size, desc.flags), (packed.len() as u32, codec_flag(s.codec)), "pfn {pfn:#x}");
        } else {
            assert_eq!((desc.size, desc.flags), (ps, 0), "pfn {pfn:#x}");
        }
    }
}

#[test]
fn every_version_codec_and_byte_order_reads_back() {
    let mut seed = 0;
    for version in 1..=6 {
        for codec in CODECS {
            for big_endian in [false, true] {
                seed += 1;
                let max_mapnr = 150 + seed * 7;
                let pages = random_pages(seed, max_mapnr, 4096);
                check_file(&spec(version, codec, big_endian, max_mapnr, 4096, seed), &pages);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_page_sets_read_back(
        version in 1i32..=6,
        codec in 0usize..5,
        big_endian in any::<bool>(),
        ps_shift in prop::sample::select(vec![9u32, 12, 14]),
        max_mapnr in 0u64..700,
        seed in any::<u64>(),
        variant in 0u64..60,
    ) {
        let ps = 1u32 << ps_shift;
        let pages = random_pages(seed, max_mapnr, ps as usize);
        check_file(&spec(version, CODECS[codec], big_endian, max_mapnr, ps, variant), &pages);
    }
}

#[test]
fn byte_layout_matches_makedumpfile() {
    let mut random = vec![0u8; 4096];
    SplitMix64::new(9).fill(&mut random);
    let text: Vec<u8> = (0..4096).map(|i| b"abcd"[i % 4]).collect();
    let pages = BTreeMap::from([
        (0, PageSpec::Dumped(vec![0; 4096])),
        (1, PageSpec::Dumped(random.clone())),
        (5, PageSpec::Excluded),
        (9, PageSpec::Dumped(text.clone())),
    ]);
    let s = KdumpSpec { max_mapnr: 100, crash_time: 77, phys_base: 0x1000000, ..KdumpSpec::default() };
    let f = write(&s, &pages).unwrap();
    let u32_at = |o: usize| u32::from_le_bytes(f[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(f[o..o + 8].try_into().unwrap());
    assert_eq!(&f[0..8], b"KDUMP   ");
    assert_eq!(u32_at(8), 6);
    assert_eq!(&f[12..17], b"Linux");
    assert_eq!(&f[12 + 65 * 2..12 + 65 * 2 + 15], b"6.1.0-synthetic");
    assert_eq!(u64_at(408), 77);
    assert_eq!(u32_at(424), 1); // zlib
    assert_eq!(u32_at(428), 4096);
    assert_eq!(u32_at(432), 1); // the sub header alone fits one block
    assert_eq!(u32_at(436), 2); // each bitmap padded to one page
    assert_eq!(u32_at(440), 100);
    assert!(f[444..4096].iter().all(|&b| b == 0));
    assert_eq!(u64_at(4096), 0x1000000);
    assert_eq!(u32_at(4096 + 8), 1); // dump_level
    assert_eq!(u64_at(4096 + 96), 100); // max_mapnr_64
    assert!(f[4096 + 12..4096 + 96].iter().all(|&b| b == 0));
    // Bitmaps at (1 + 1) * 4096: pfns 0, 1, 5, 9 present; 0, 1, 9 dumped.
    assert_eq!(&f[8192..8194], &[0b0010_0011, 0b10]);
    assert!(f[8194..12288].iter().all(|&b| b == 0));
    assert_eq!(&f[12288..12290], &[0b0000_0011, 0b10]);
    // Descriptors at 16384; data at 16384 + 3 * 24 starts with the zero page.
    let data = 16384 + 72;
    let desc =
        |i: usize| (u64_at(16384 + 24 * i), u32_at(16392 + 24 * i), u32_at(16396 + 24 * i), u64_at(16400 + 24 * i));
    assert_eq!(desc(0), (data as u64, 4096, 0, 0));
    assert_eq!(desc(1), (data as u64 + 4096, 4096, 0, 0));
    let packed = compress_page(Codec::Zlib, &text).unwrap();
    assert_eq!(desc(2), (data as u64 + 8192, packed.len() as u32, 1, 0));
    assert!(f[data..data + 4096].iter().all(|&b| b == 0));
    assert_eq!(&f[data + 4096..data + 8192], random.as_slice());
    assert_eq!(&f[data + 8192..], packed.as_slice());
    assert_eq!(&packed[..2], &[0x78, 0x01], "zlib header of level 1");
}

#[test]
fn header_fields_follow_the_version() {
    // Fields past a version's last one stay zero; 32-bit fields are clamped.
    let last_field_end = [0, 12, 32, 48, 64, 80, 104];
    for v in 1..=6 {
        let s = KdumpSpec {
            header_version: v,
            max_mapnr: (1 << 33) + 5,
            split: Some((1 << 32, (1 << 33) + 1)),
            phys_base: u64::MAX,
            dump_level: -1,
            ..KdumpSpec::default()
        };
        let b = encode_sub_header(&s, Some((1, 2)), Some((3, 4)), Some((5, 6))).unwrap();
        assert!(b[last_field_end[v as usize]..].iter().all(|&x| x == 0), "version {v}");
        assert!(b[last_field_end[v as usize] - 8..last_field_end[v as usize]].iter().any(|&x| x != 0), "v{v}");
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        if v >= 2 {
            let clamped = if v >= 6 { u64::from(u32::MAX) } else { 1 << 32 };
            assert_eq!(u64_at(sh::START_PFN), clamped);
        }
        if v == 6 {
            assert_eq!(u64_at(sh::START_PFN_64), 1 << 32);
            assert_eq!(u64_at(sh::END_PFN_64), (1 << 33) + 1);
            assert_eq!(u64_at(sh::MAX_MAPNR_64), (1 << 33) + 5);
        }
        let fields = HeaderFields { status: 0x21, sub_hdr_blocks: 3, bitmap_blocks: 8, nr_cpus: 4 };
        let h = encode_header(&KdumpSpec { big_endian: true, ..s }, &fields).unwrap();
        assert_eq!(&h[h::MAX_MAPNR..h::MAX_MAPNR + 4], &[0xff; 4]);
        assert_eq!(&h[h::HEADER_VERSION..h::HEADER_VERSION + 4], &(v as u32).to_be_bytes());
        assert_eq!(&h[h::STATUS..h::STATUS + 4], &0x21u32.to_be_bytes());
        assert_eq!(&h[h::NR_CPUS..h::NR_CPUS + 4], &4u32.to_be_bytes());
    }
}

#[test]
fn vmcoreinfo_inside_the_notes_after_them_or_alone() {
    let pages = random_pages(3, 40, 4096);
    let note_off = 4096 + 104;
    // In the blob: the offset is that of the note's descriptor.
    let blob = notes_blob(false, true);
    let s = KdumpSpec { max_mapnr: 40, notes: Some(blob.clone()), ..KdumpSpec::default() };
    let (f, l) = write_with_layout(&s, &pages).unwrap();
    let (off, size) = l.vmcoreinfo.unwrap();
    assert_eq!(size, VMCOREINFO.len() as u64);
    assert_eq!(off, note_off + blob.len() as u64 - VMCOREINFO.len().next_multiple_of(4) as u64);
    assert_eq!(l.notes, Some((note_off, blob.len() as u64)));
    assert_eq!(&f[note_off as usize..][..blob.len()], blob.as_slice());
    // 104 + two 356-byte PRSTATUS notes + the VMCOREINFO note fit one block.
    assert_eq!(l.sub_hdr_blocks, 1);
    // Not in the blob: the text follows the notes.
    let blob = notes_blob(false, false);
    let s = KdumpSpec { notes: Some(blob.clone()), vmcoreinfo: Some(VMCOREINFO.to_vec()), ..s };
    let l = write_with_layout(&s, &pages).unwrap().1;
    assert_eq!(l.vmcoreinfo, Some((note_off + blob.len() as u64, VMCOREINFO.len() as u64)));
    // No notes: the text right after the sub header.
    let s = KdumpSpec { notes: None, ..s };
    let l = write_with_layout(&s, &pages).unwrap().1;
    assert_eq!((l.vmcoreinfo, l.notes), (Some((note_off, VMCOREINFO.len() as u64)), None));
    // Version 3 keeps only the text, even when it comes from the notes.
    let s = KdumpSpec { header_version: 3, notes: Some(notes_blob(false, true)), vmcoreinfo: None, ..s };
    let (f, l) = write_with_layout(&s, &pages).unwrap();
    assert_eq!((l.vmcoreinfo, l.notes), (Some((note_off, VMCOREINFO.len() as u64)), None));
    assert_eq!(KdumpFile::parse(f).unwrap().vmcoreinfo().unwrap().unwrap(), VMCOREINFO);
    // A text that contradicts the notes is refused.
    let s = KdumpSpec { header_version: 6, vmcoreinfo: Some(b"OSRELEASE=other\n".to_vec()), ..s };
    assert!(write(&s, &pages).is_err());
    // Large notes take more sub header blocks.
    let big = encode_notes(&[("CORE".into(), 1, vec![0; 9000]), vmcoreinfo_note("A=1\n")]).unwrap();
    let s = KdumpSpec { notes: Some(big.clone()), vmcoreinfo: None, ..s };
    let (f, l) = write_with_layout(&s, &pages).unwrap();
    assert_eq!(l.sub_hdr_blocks, (104 + big.len() as u64).div_ceil(4096));
    let k = KdumpFile::parse(f).unwrap();
    assert_eq!(k.vmcoreinfo().unwrap().unwrap(), b"A=1\n");
    check_pages(&k, &pages, (0, 40));
}

#[test]
fn zero_pages_are_shared_only_with_dump_level_1() {
    let pages: BTreeMap<u64, PageSpec> = (0..10).map(|pfn| (pfn, PageSpec::Dumped(vec![0; 4096]))).collect();
    for (dump_level, share, shared) in [(1, true, true), (31, true, true), (30, true, false), (1, false, false)] {
        let s = KdumpSpec { max_mapnr: 10, dump_level, share_zero_pages: share, ..KdumpSpec::default() };
        let (f, l) = write_with_layout(&s, &pages).unwrap();
        assert_eq!(l.zero_page.is_some(), shared);
        if shared {
            assert_eq!(l.data_end, l.data_offset + 4096, "one zero page for all");
        } else {
            assert!(l.data_end - l.data_offset < 10 * 4096, "each zero page compressed");
        }
        check_pages(&KdumpFile::parse(f).unwrap(), &pages, (0, 10));
    }
}

fn split_points(max_mapnr: u64, parts: u64) -> Vec<(u64, u64)> {
    (0..parts).map(|i| (max_mapnr * i / parts, max_mapnr * (i + 1) / parts)).collect()
}

#[test]
fn split_files_each_hold_their_range() {
    for version in 2..=6 {
        for (codec, big_endian) in [(Codec::Zlib, false), (Codec::Zstd, true), (Codec::Raw, false)] {
            let max_mapnr = 1000;
            let pages = random_pages(version as u64, max_mapnr, 4096);
            let base = spec(version, codec, big_endian, max_mapnr, 4096, 4 + version as u64);
            let whole = write_with_layout(&base, &pages).unwrap().1;
            let mut descs = 0;
            let tiles = split_points(max_mapnr, 3);
            for (start, end) in tiles.iter().copied().chain([(0, 0), (0, max_mapnr), (990, 1000)]) {
                let s = KdumpSpec { split: Some((start, end)), ..base.clone() };
                let (f, l) = write_with_layout(&s, &pages).unwrap();
                assert_eq!(l.desc_offset, whole.desc_offset);
                assert_eq!(l.data_offset, whole.data_offset, "data after the full-size table");
                assert_eq!(l.num_dumpable, whole.num_dumpable);
                let mine = pages.range(start..end).filter(|(_, p)| matches!(p, PageSpec::Dumped(_))).count();
                assert_eq!(l.descs_in_file, mine as u64);
                if tiles.contains(&(start, end)) {
                    descs += mine;
                }
                // The descriptors past this file's are left as a hole.
                let filled_end = (l.desc_offset + 24 * l.descs_in_file) as usize;
                assert!(f[filled_end..l.data_offset as usize].iter().all(|&b| b == 0));
                let k = KdumpFile::parse(f).unwrap();
                assert_eq!(k.sub.split, Some(true));
                assert_eq!((k.sub.start_pfn, k.sub.end_pfn), (Some(start), Some(end)));
                assert_eq!(k.pfn_range(), (start, end));
                assert_eq!(k.dumpable_pages().unwrap(), mine as u64);
                assert_eq!(k.present_pages(), pages.len() as u64, "full 1st bitmap");
                assert_eq!(k.dumped_pages(), whole.num_dumpable, "full 2nd bitmap");
                check_pages(&k, &pages, (start, end));
            }
            assert_eq!(descs as u64, whole.num_dumpable, "the three parts tile the dump");
        }
    }
}

#[test]
fn flattened_streams_read_like_the_file() {
    for (i, (version, codec)) in
        [(6, Codec::Zlib), (5, Codec::Lzo), (4, Codec::Snappy), (1, Codec::Zstd), (6, Codec::Raw)]
            .into_iter()
            .enumerate()
    {
        let max_mapnr = 600;
        let pages = random_pages(100 + i as u64, max_mapnr, 4096);
        let s = spec(version, codec, i % 2 == 1, max_mapnr, 4096, i as u64 * 7);
        let file = write(&s, &pages).unwrap();
        let streams = [
            flatten(&file, ChunkOrder::FileOrder),
            flatten(&file, ChunkOrder::Shuffled(i as u64)),
            flatten_with(
                &file,
                &FlattenOptions {
                    chunk_size: 4096,
                    order: ChunkOrder::Shuffled(7),
                    skip_zero_chunks: true,
                    // The sub header written a second time, as with erase info.
                    repeat: vec![(4096, 104)],
                },
            ),
            flatten_with(&file, &FlattenOptions { chunk_size: 1000, skip_zero_chunks: false, ..Default::default() }),
        ];
        for stream in streams {
            assert_eq!(crate::flat::rearrange(&stream).unwrap(), file);
            let view = FlatView::index(stream).unwrap();
            assert_eq!(view.size(), file.len() as u64);
            let mut all = vec![0u8; file.len()];
            view.read_exact_at(&mut all, 0).unwrap();
            assert!(all == file);
            let k = KdumpFile::parse(view).unwrap();
            assert_eq!(k.header.header_version, version);
            check_pages(&k, &pages, (0, max_mapnr));
        }
        // A split file through a stream.
        let part = write(&KdumpSpec { split: Some((100, 400)), ..s.clone() }, &pages);
        if version >= 2 {
            let k =
                KdumpFile::parse(FlatView::index(flatten(&part.unwrap(), ChunkOrder::Shuffled(3))).unwrap()).unwrap();
            check_pages(&k, &pages, (100, 400));
        } else {
            assert!(part.is_err(), "version 1 has no split fields");
        }
    }
}

#[test]
fn truncated_files_say_which_pages_were_not_written() {
    let max_mapnr = 300;
    let pages = random_pages(77, max_mapnr, 4096);
    for (version, codec, big_endian) in [(6, Codec::Zlib, false), (4, Codec::Raw, true), (6, Codec::Zstd, true)] {
        let base = spec(version, codec, big_endian, max_mapnr, 4096, 2);
        let (whole, layout) = write_with_layout(&base, &pages).unwrap();
        let full = KdumpFile::parse(whole.clone()).unwrap();
        let descs: BTreeMap<u64, _> =
            pages.keys().filter_map(|&pfn| full.page_desc(pfn).unwrap().map(|d| (pfn, d))).collect();
        let cuts = [
            layout.desc_offset + 10,
            layout.data_offset - 30,
            layout.data_offset,
            layout.data_offset + 4095,
            layout.data_offset + 4096,
            (layout.data_offset + layout.data_end) / 2,
            layout.data_end - 1,
        ];
        for cut in cuts {
            for zero_unwritten_descs in [false, true] {
                let s = KdumpSpec { truncate_at: Some(cut), zero_unwritten_descs, ..base.clone() };
                let f = write(&s, &pages).unwrap();
                assert_eq!(f.len() as u64, cut);
                let k = KdumpFile::parse(f).unwrap();
                assert!(k.is_incomplete());
                assert_eq!(k.compression(), Some(codec).filter(|c| *c != Codec::Raw));
                let mut buf = vec![0u8; 4096];
                let mut data = 0;
                for pfn in 0..max_mapnr {
                    let got = k.read_page(pfn, &mut buf).unwrap_or_else(|e| panic!("cut {cut} pfn {pfn}: {e}"));
                    let want = match (pages.get(&pfn), descs.get(&pfn)) {
                        (None, _) => PageRead::Hole,
                        (Some(PageSpec::Excluded), _) => PageRead::Excluded,
                        (Some(PageSpec::Dumped(_)), Some(d)) if d.offset + u64::from(d.size) <= cut => PageRead::Data,
                        (Some(PageSpec::Dumped(_)), _) => PageRead::NotWritten,
                    };
                    assert_eq!(got, want, "cut {cut} pfn {pfn:#x} zero_descs {zero_unwritten_descs}");
                    if let (PageRead::Data, Some(PageSpec::Dumped(d))) = (got, pages.get(&pfn)) {
                        assert!(&buf == d);
                        data += 1;
                    }
                }
                if cut >= layout.data_offset + 4096 {
                    assert!(data > 0, "cut {cut}: the zero page at least is complete");
                }
            }
        }
        // The flag is what makes a short file legal: without it, reading past the end is
        // an error.
        let mut cut = whole.clone();
        cut.truncate((layout.data_end - 1) as usize);
        let k = KdumpFile::parse(cut).unwrap();
        let last = *descs.iter().max_by_key(|(_, d)| d.offset).unwrap().0;
        assert!(k.read_page(last, &mut [0u8; 4096]).is_err());
    }
}

#[test]
fn bad_descriptions_are_refused() {
    let one = |pfn: u64, p: PageSpec| BTreeMap::from([(pfn, p)]);
    let ok = KdumpSpec { max_mapnr: 8, ..KdumpSpec::default() };
    assert!(write(&ok, &one(7, PageSpec::Excluded)).is_ok());
    assert!(write(&ok, &one(8, PageSpec::Excluded)).is_err(), "pfn past max_mapnr");
    assert!(write(&ok, &one(0, PageSpec::Dumped(vec![0; 100]))).is_err(), "short page");
    for v in [0, 7] {
        assert!(write(&KdumpSpec { header_version: v, ..ok.clone() }, &BTreeMap::new()).is_err());
    }
    for ps in [0, 256, 3000] {
        assert!(write(&KdumpSpec { page_size: ps, ..ok.clone() }, &BTreeMap::new()).is_err());
    }
    assert!(write(&KdumpSpec { header_version: 1, split: Some((0, 4)), ..ok.clone() }, &BTreeMap::new()).is_err());
    assert!(write(&KdumpSpec { split: Some((4, 9)), ..ok.clone() }, &BTreeMap::new()).is_err());
    assert!(write(&KdumpSpec { split: Some((5, 4)), ..ok.clone() }, &BTreeMap::new()).is_err());
    let mut long = ok.clone();
    long.utsname[3] = "x".repeat(66);
    assert!(write(&long, &BTreeMap::new()).is_err());
    let ranges = [PfnRange { start: 4, end: 2, dumped: true }];
    assert!(write_ranges(&ok, &ranges, |_, _| {}).is_err());
    let ranges = [PfnRange { start: 0, end: 4, dumped: true }, PfnRange { start: 3, end: 5, dumped: false }];
    assert!(write_ranges(&ok, &ranges, |_, _| {}).is_err(), "overlapping ranges");
}

#[test]
fn ranges_and_maps_give_the_same_file() {
    let ranges = [
        PfnRange { start: 1, end: 30, dumped: true },
        PfnRange { start: 30, end: 40, dumped: false },
        PfnRange { start: 64, end: 100, dumped: true },
    ];
    let fill = |pfn: u64, p: &mut [u8]| {
        if pfn % 3 != 0 {
            p.fill(pfn as u8)
        }
    };
    let mut pages = BTreeMap::new();
    for r in &ranges {
        for pfn in r.start..r.end {
            let mut p = vec![0u8; 4096];
            fill(pfn, &mut p);
            pages.insert(pfn, if r.dumped { PageSpec::Dumped(p) } else { PageSpec::Excluded });
        }
    }
    let s = KdumpSpec { max_mapnr: 128, codec: Codec::Lzo, ..KdumpSpec::default() };
    let (a, _) = write_ranges(&s, &ranges, fill).unwrap();
    assert!(a == write(&s, &pages).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump");
    assert_eq!(write_path(&s, &pages, &path).unwrap(), a.len() as u64);
    assert!(std::fs::read(&path).unwrap() == a);
    assert!(write_path(&s, &pages, &path).is_err(), "an existing file was overwritten");
}

#[test]
fn notes_are_scanned_in_either_byte_order() {
    for be in [false, true] {
        let blob = notes_blob(be, true);
        let notes = scan_notes(&blob, be);
        assert_eq!(notes.len(), 3);
        assert_eq!(notes[2].name, b"VMCOREINFO");
        assert_eq!(&blob[notes[2].desc_offset..][..notes[2].desc_len], VMCOREINFO);
        // Read in the wrong byte order the sizes are absurd, and the walk stops.
        assert!(scan_notes(&blob, !be).is_empty());
    }
    let mut padded = notes_blob(false, false);
    padded.extend_from_slice(&[0; 24]);
    assert_eq!(scan_notes(&padded, false).len(), 2);
}

#[test]
fn large_pages_read_back() {
    for codec in CODECS {
        for version in [1, 6] {
            let pages = random_pages(5, 40, 65536);
            check_file(&spec(version, codec, false, 40, 65536, 2), &pages);
        }
    }
}

#[test]
fn sub_header_sizes_beyond_any_kernel_are_errors_naming_the_field() {
    let pages = random_pages(5, 40, 4096);
    let s = KdumpSpec { max_mapnr: 40, vmcoreinfo: Some(VMCOREINFO.to_vec()), ..KdumpSpec::default() };
    let (mut f, l) = write_with_layout(&s, &pages).unwrap();
    let (off, _) = l.vmcoreinfo.unwrap();
    // A VMCOREINFO size of 1 MiB + 1 that the (sparse, say) file is long enough to hold.
    let size = (1u64 << 20) + 1;
    f.resize(f.len().max((off + size) as usize), 0);
    let field = 4096 + 40;
    f[field..field + 8].copy_from_slice(&size.to_le_bytes());
    let k = KdumpFile::parse(f).unwrap();
    let err = k.vmcoreinfo().unwrap_err().to_string();
    assert!(
        err.contains("VMCOREINFO in the sub header") && err.contains("0x1028") && err.contains("size 1048577"),
        "{err}"
    );
}
