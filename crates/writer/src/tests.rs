//! Round trips on a small synthetic machine: every writer, read back with the readers of
//! vmcore-formats and vmcore-physmem; thread counts; a disk that fills up at every
//! possible block; split sets and their reassembly; flattened streams.

use std::collections::HashSet;
use std::io;
use std::sync::Arc;

use vmcore_filter::{Filtered, PfnBitmap, Stats};
use vmcore_formats::elf::{test_support, ElfCore};
use vmcore_formats::kdump::{KdumpFile, PageRead};
use vmcore_physmem::{ElfMem, PageState, PhysMem, SplitMem};
use vmcore_types::ReadAt;

use crate::output::DROP_BEHIND_EVERY;
use crate::*;

const PS: u64 = 4096;
/// RAM: [0x1000, 0x9fc00) (an unaligned end, as on real machines) and 1 MiB + 1200 pages.
const LOW: (u64, u64) = (0x1000, 0x9fc00);
const HIGH_PAGES: u64 = 1200;

/// Page `pfn`'s contents: zero, incompressible, or text-like, by pfn.
fn page_of(pfn: u64) -> Vec<u8> {
    let mut p = vec![0u8; PS as usize];
    match pfn % 5 {
        0 => {}
        1 | 2 => {
            let mut x = pfn.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for b in p.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        }
        _ => {
            for (i, b) in p.iter_mut().enumerate() {
                *b = b"kernel data "[(i + pfn as usize) % 12];
            }
        }
    }
    p
}

struct Machine {
    file: Vec<u8>,
    core: ElfCore,
    src: Arc<dyn ReadAt>,
    mem: ElfMem,
}

fn machine() -> Machine {
    let high = (0x100000u64, HIGH_PAGES * PS);
    let notes = test_support::note("CORE", 1, &[7u8; 336]);
    let data_at = 0x1000u64;
    let low_len = LOW.1 - LOW.0;
    let note_at = 0x800u64;
    let mut file = test_support::header(
        &[
            (LOW.0, 0xffff_8880_0000_0000 + LOW.0, data_at, low_len, low_len),
            (high.0, 0xffff_8880_0000_0000 + high.0, data_at + low_len, high.1, high.1),
        ],
        (note_at, notes.len() as u64),
    );
    file.resize(note_at as usize, 0);
    file.extend_from_slice(&notes);
    file.resize(data_at as usize, 0);
    for addr in (LOW.0..LOW.1).step_by(PS as usize) {
        let p = page_of(addr / PS);
        let n = (LOW.1 - addr).min(PS) as usize;
        file.extend_from_slice(&p[..n]);
    }
    for pfn in high.0 / PS..high.0 / PS + HIGH_PAGES {
        file.extend_from_slice(&page_of(pfn));
    }
    let src: Arc<dyn ReadAt> = Arc::new(file.clone());
    let core = ElfCore::parse(&*src).unwrap();
    let mem = ElfMem::new(&core, src.clone(), PS);
    Machine { file, core, src, mem }
}

/// What a filter would say at `level`: present frames of the segments (ends rounded
/// down), less a long excluded run, a short one and some single frames.
fn filtered(level: u32) -> Filtered {
    let max = 0x100 + HIGH_PAGES;
    let mut present = PfnBitmap::new(max);
    present.set_range(LOW.0 / PS, LOW.1 / PS);
    present.set_range(0x100, max);
    let mut dumpable = present.clone();
    for pfn in (0x100 + 100..0x100 + 400).chain(0x100 + 600..0x100 + 610).chain((0x100 + 700..max).step_by(7)) {
        dumpable.clear(pfn);
    }
    Filtered {
        level,
        present,
        dumpable,
        zero_pages: PfnBitmap::new(max),
        zero_pages_scanned: false,
        stats: Stats::default(),
        warnings: Vec::new(),
        vmemmap: None,
        whole_bitmaps: false,
    }
}

const VMCOREINFO: &[u8] = b"OSRELEASE=6.1.0\nPAGESIZE=4096\n";

fn meta(m: &Machine) -> KdumpMeta {
    KdumpMeta {
        utsname: ["Linux".into(), "host".into(), "6.1.0".into(), "#1".into(), "x86_64".into(), String::new()],
        timestamp: 1_700_000_000,
        phys_base: 0x1000000,
        notes: [&m.file[0x800..0x800 + 356], &crate::meta::vmcoreinfo_note(VMCOREINFO, false)].concat(),
        vmcoreinfo_in_notes: Some((356 + 24, VMCOREINFO.len() as u64)),
        nr_cpus: 1,
    }
}

/// Positioned writes into memory, as a disk of `cap` blocks of 4096 bytes: a write that
/// needs a block beyond that writes what fits and fails, as a full filesystem does.
struct Disk {
    bytes: Vec<u8>,
    blocks: HashSet<u64>,
    cap: usize,
    /// Refuse every write (after a failure) if set: the writer must not retry forever.
    finished: bool,
}

impl Disk {
    fn new(cap: usize) -> Disk {
        Disk { bytes: Vec::new(), blocks: HashSet::new(), cap, finished: false }
    }
}

impl Output for Disk {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::result::Result<(), OutputError> {
        assert!(!self.finished, "write after finish");
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let block = at / PS;
            if !self.blocks.contains(&block) {
                if self.blocks.len() >= self.cap {
                    return Err(OutputError::Full);
                }
                self.blocks.insert(block);
            }
            let n = ((block + 1) * PS - at).min((data.len() - done) as u64) as usize;
            let end = at as usize + n;
            if self.bytes.len() < end {
                self.bytes.resize(end, 0);
            }
            self.bytes[at as usize..end].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }
    fn can_rewrite(&self) -> bool {
        true
    }
    fn written(&self) -> Option<Box<dyn ReadAt + '_>> {
        Some(Box::new(self.bytes.clone()))
    }
    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        Ok(())
    }
}

fn opts(codec: Codec, threads: usize) -> WriteOptions {
    WriteOptions { codec, threads, stop: None }
}

fn kdump_bytes(m: &Machine, f: &Filtered, codec: Codec, threads: usize) -> Vec<u8> {
    let mut disk = Disk::new(usize::MAX);
    let r = write_kdump(&mut disk, &m.mem, f, &meta(m), &opts(codec, threads), &NoProgress).unwrap();
    assert!(!r.incomplete);
    assert_eq!(r.pages_written, f.dumpable.count());
    disk.bytes
}

/// The flattened stream of [`kdump_bytes`]' file.
fn kdump_stream(m: &Machine, f: &Filtered, codec: Codec, threads: usize) -> Vec<u8> {
    let mut flat = FlatOutput::new(Vec::new());
    write_kdump(&mut flat, &m.mem, f, &meta(m), &opts(codec, threads), &NoProgress).unwrap();
    flat.into_inner()
}

/// Every frame of `file` reads as the machine has it: kept frames equal, the others
/// excluded or holes; with `cut`, kept frames may also be not written, but only after
/// every written one.
/// No descriptor points past the file's end (vmcore reads such a page as not written,
/// not every peer does).
fn check_kdump(file: Vec<u8>, f: &Filtered, incomplete: bool) -> u64 {
    let len = file.len() as u64;
    let src: Arc<dyn ReadAt> = Arc::new(file);
    let k = KdumpFile::parse(src).unwrap();
    assert_eq!(k.is_incomplete(), incomplete);
    let mut page = vec![0u8; PS as usize];
    let mut written = 0u64;
    let mut seen_unwritten = false;
    for pfn in 0..f.present.len() {
        if let Some(d) = k.page_desc(pfn).unwrap() {
            assert!(d.offset + u64::from(d.size) <= len, "pfn {pfn:#x}: {d:?} in a file of {len} bytes");
        }
        let r = k.read_page(pfn, &mut page).unwrap();
        match r {
            PageRead::Data => {
                assert!(f.dumpable.get(pfn), "pfn {pfn:#x}");
                assert!(!seen_unwritten, "pfn {pfn:#x} written after an unwritten one");
                assert_eq!(page, page_of(pfn), "pfn {pfn:#x}");
                written += 1;
            }
            PageRead::NotWritten => {
                assert!(incomplete && f.dumpable.get(pfn), "pfn {pfn:#x}");
                seen_unwritten = true;
            }
            PageRead::Excluded => assert!(f.present.get(pfn) && !f.dumpable.get(pfn), "pfn {pfn:#x}"),
            PageRead::Hole => assert!(!f.present.get(pfn), "pfn {pfn:#x}"),
        }
    }
    written
}

#[test]
fn every_codec_reads_back_and_threads_do_not_change_a_byte() {
    let m = machine();
    for level in [0, 1, 31] {
        let f = filtered(level);
        for codec in [Codec::Raw, Codec::Zlib, Codec::Lzo, Codec::Snappy, Codec::Zstd] {
            let one = kdump_bytes(&m, &f, codec, 1);
            for threads in [2, 3, 8] {
                assert!(kdump_bytes(&m, &f, codec, threads) == one, "{codec:?} level {level}: {threads} threads");
            }
            assert_eq!(check_kdump(one, &f, false), f.dumpable.count());
        }
    }
}

/// Asks the writer to stop (what Ctrl-C does) once the first pages are written.
struct StopAfterFirstJob(Arc<std::sync::atomic::AtomicBool>);

impl Progress for StopAfterFirstJob {
    fn set_total(&self, _: u64) {}
    fn advance(&self, _: u64) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    fn finish(&self) {}
}

#[test]
fn a_stop_request_leaves_a_readable_incomplete_dump() {
    let m = machine();
    let f = filtered(1);
    for threads in [1, 3] {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut out = FileOutput::new(tmp.reopen().unwrap(), None);
        let o = WriteOptions { codec: Codec::Lzo, threads, stop: Some(Arc::clone(&stop)) };
        let r = write_kdump(&mut out, &m.mem, &f, &meta(&m), &o, &StopAfterFirstJob(stop)).unwrap();
        assert!(r.incomplete, "{threads} threads");
        assert!(r.pages_written > 0 && r.pages_written < f.dumpable.count(), "{threads} threads: {}", r.pages_written);
        assert_eq!(check_kdump(std::fs::read(tmp.path()).unwrap(), &f, true), r.pages_written);
    }
}

#[test]
fn a_disk_filling_at_any_block_leaves_a_readable_incomplete_dump() {
    let m = machine();
    let f = filtered(1);
    let full = kdump_bytes(&m, &f, Codec::Lzo, 1);
    let blocks = full.len().div_ceil(PS as usize);
    let header_blocks = 1 + 1 + 2; // header, sub header with notes, two bitmaps
    let mut best = 0;
    for cap in header_blocks + 1..blocks {
        let mut disk = Disk::new(cap);
        let r = write_kdump(&mut disk, &m.mem, &f, &meta(&m), &opts(Codec::Lzo, 2), &NoProgress).unwrap();
        assert!(r.incomplete, "cap {cap}");
        assert!(disk.finished);
        let written = check_kdump(disk.bytes, &f, true);
        assert_eq!(written, r.pages_written, "cap {cap}");
        assert!(written >= best, "cap {cap}: fewer pages on a larger disk");
        best = written;
    }
    // The last capacity short of the whole file keeps nearly everything.
    assert!(best + 64 >= f.dumpable.count(), "{best}");
    // A size limit anywhere in the data, up to one byte short of the whole file.
    let whole = kdump_bytes(&m, &f, Codec::Zlib, 1).len() as u64;
    for limit in [40_000u64, 100_000, 1_000_000, whole - 1] {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut out = FileOutput::new(tmp.reopen().unwrap(), Some(limit));
        let r = write_kdump(&mut out, &m.mem, &f, &meta(&m), &opts(Codec::Zlib, 1), &NoProgress).unwrap();
        assert!(r.incomplete);
        let bytes = std::fs::read(tmp.path()).unwrap();
        assert!(bytes.len() as u64 <= limit);
        assert_eq!(check_kdump(bytes, &f, true), r.pages_written);
    }
}

/// `disks`, the files of a split set, reassembled into one.
fn reassembled(disks: &[Disk]) -> (WriteReport, Disk) {
    let inputs: Vec<(String, Arc<dyn ReadAt>)> = disks
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("p{i}"), Arc::new(d.bytes.clone()) as Arc<dyn ReadAt>))
        .collect();
    let mut joined = Disk::new(usize::MAX);
    let r = reassemble(inputs, &mut joined, &NoProgress, None).unwrap();
    (r, joined)
}

#[test]
fn split_sets_read_back_and_reassemble_to_the_direct_file() {
    let m = machine();
    for level in [0, 31] {
        let f = filtered(level);
        let direct = kdump_bytes(&m, &f, Codec::Zstd, 1);
        for (files, block_pages) in [(3usize, 64u64), (2, 1), (4, 1 << 18)] {
            let ranges = split_ranges(&f.dumpable, files, block_pages);
            let mut disks: Vec<Disk> = (0..files).map(|_| Disk::new(usize::MAX)).collect();
            let mut outs: Vec<&mut dyn Output> = disks.iter_mut().map(|d| d as &mut dyn Output).collect();
            let reports =
                write_kdump_split(&mut outs, &ranges, &m.mem, &f, &meta(&m), &opts(Codec::Zstd, 2), &NoProgress)
                    .unwrap();
            assert_eq!(reports.iter().map(|r| r.pages_written).sum::<u64>(), f.dumpable.count());
            // Read as a set, in any order.
            let mut parts: Vec<(String, KdumpFile<Arc<dyn ReadAt>>)> = disks
                .iter()
                .rev()
                .enumerate()
                .map(|(i, d)| {
                    let src: Arc<dyn ReadAt> = Arc::new(d.bytes.clone());
                    (format!("part{i}"), KdumpFile::parse(src).unwrap())
                })
                .collect();
            parts.rotate_left(1);
            let set = SplitMem::new(parts).unwrap();
            let mut page = vec![0u8; PS as usize];
            for pfn in f.dumpable.iter() {
                assert_eq!(set.read_page(vmcore_types::Pfn(pfn), &mut page).unwrap(), PageState::Dumped);
                assert_eq!(page, page_of(pfn));
            }
            let (r, joined) = reassembled(&disks);
            assert!(!r.incomplete);
            assert!(joined.bytes == direct, "level {level}, {files} files of blocks of {block_pages}");
        }
        // A missing part is an error that says so.
        let ranges = split_ranges(&f.dumpable, 3, 64);
        let mut disks: Vec<Disk> = (0..3).map(|_| Disk::new(usize::MAX)).collect();
        let mut outs: Vec<&mut dyn Output> = disks.iter_mut().map(|d| d as &mut dyn Output).collect();
        write_kdump_split(&mut outs, &ranges, &m.mem, &f, &meta(&m), &opts(Codec::Lzo, 1), &NoProgress).unwrap();
        let two: Vec<(String, Arc<dyn ReadAt>)> =
            [0, 2].iter().map(|&i| (format!("p{i}"), Arc::new(disks[i].bytes.clone()) as Arc<dyn ReadAt>)).collect();
        let e = reassemble(two, &mut Disk::new(usize::MAX), &NoProgress, None).unwrap_err().to_string();
        assert!(e.contains("do not tile"), "{e}");
        let twice: Vec<(String, Arc<dyn ReadAt>)> = [0, 1, 1, 2]
            .iter()
            .map(|&i| (format!("p{i}"), Arc::new(disks[i].bytes.clone()) as Arc<dyn ReadAt>))
            .collect();
        let e = reassemble(twice, &mut Disk::new(usize::MAX), &NoProgress, None).unwrap_err().to_string();
        assert!(e.contains("p1 (pfns") && e.contains("overlap: a file given twice"), "{e}");
        let not_split: Vec<(String, Arc<dyn ReadAt>)> = vec![("d".into(), Arc::new(direct.clone()))];
        let e = reassemble(not_split, &mut Disk::new(usize::MAX), &NoProgress, None).unwrap_err().to_string();
        assert!(e.contains("not a file of a --split set"), "{e}");
    }
}

/// Ctrl-C during the first file of a split set used to leave the later files empty (not
/// dumps at all, so the set could not be read). Every file's headers and bitmaps now come
/// first: the later files are dumps marked incomplete, with no page written, and the set
/// reads and reassembles.
#[test]
fn a_stop_during_a_split_set_leaves_every_file_a_dump() {
    let m = machine();
    let f = filtered(1);
    let ranges = split_ranges(&f.dumpable, 3, 64);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let o = WriteOptions { codec: Codec::Lzo, threads: 2, stop: Some(Arc::clone(&stop)) };
    let mut disks: Vec<Disk> = (0..3).map(|_| Disk::new(usize::MAX)).collect();
    let mut outs: Vec<&mut dyn Output> = disks.iter_mut().map(|d| d as &mut dyn Output).collect();
    let reports = write_kdump_split(&mut outs, &ranges, &m.mem, &f, &meta(&m), &o, &StopAfterFirstJob(stop)).unwrap();
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| r.incomplete));
    assert!(reports[0].pages_written > 0 && reports[1].pages_written == 0 && reports[2].pages_written == 0);
    assert!(disks.iter().all(|d| d.finished));
    let (r, joined) = reassembled(&disks);
    assert!(r.incomplete);
    assert_eq!(check_kdump(joined.bytes, &f, true), reports[0].pages_written);
}

/// Ctrl-C during `reassemble` closes the joined file as a dump marked incomplete (it was
/// not caught: the process died with a file that read as complete).
#[test]
fn a_stop_during_reassembly_leaves_a_dump_marked_incomplete() {
    let m = machine();
    let f = filtered(1);
    let ranges = split_ranges(&f.dumpable, 2, 64);
    let mut disks: Vec<Disk> = (0..2).map(|_| Disk::new(usize::MAX)).collect();
    let mut outs: Vec<&mut dyn Output> = disks.iter_mut().map(|d| d as &mut dyn Output).collect();
    write_kdump_split(&mut outs, &ranges, &m.mem, &f, &meta(&m), &opts(Codec::Lzo, 1), &NoProgress).unwrap();
    let inputs: Vec<(String, Arc<dyn ReadAt>)> = disks
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("p{i}"), Arc::new(d.bytes.clone()) as Arc<dyn ReadAt>))
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut joined = Disk::new(usize::MAX);
    let r = reassemble(inputs, &mut joined, &StopAfterFirstJob(Arc::clone(&stop)), Some(&stop)).unwrap();
    assert!(r.incomplete && r.pages_written > 0 && r.pages_written < f.dumpable.count(), "{}", r.pages_written);
    assert_eq!(check_kdump(joined.bytes, &f, true), r.pages_written);
}

#[test]
fn reassembling_an_incomplete_part_keeps_what_it_has() {
    let m = machine();
    let f = filtered(1);
    let ranges = split_ranges(&f.dumpable, 2, 64);
    let mut a = Disk::new(usize::MAX);
    let mut b = Disk::new(12);
    let mut outs: Vec<&mut dyn Output> = vec![&mut a, &mut b];
    let reports =
        write_kdump_split(&mut outs, &ranges, &m.mem, &f, &meta(&m), &opts(Codec::Lzo, 1), &NoProgress).unwrap();
    assert!(!reports[0].incomplete && reports[1].incomplete);
    let inputs: Vec<(String, Arc<dyn ReadAt>)> =
        vec![("a".into(), Arc::new(a.bytes.clone())), ("b".into(), Arc::new(b.bytes.clone()))];
    let mut joined = Disk::new(usize::MAX);
    let r = reassemble(inputs, &mut joined, &NoProgress, None).unwrap();
    assert!(r.incomplete);
    let written = check_kdump(joined.bytes, &f, true);
    assert_eq!(written, reports[0].pages_written + reports[1].pages_written);
    assert_eq!(written, r.pages_written);
}

#[test]
fn a_stop_request_marks_a_flattened_stream_incomplete_too() {
    let m = machine();
    let f = filtered(1);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let o = WriteOptions { codec: Codec::Lzo, threads: 2, stop: Some(Arc::clone(&stop)) };
    let mut flat = FlatOutput::new(Vec::new());
    let r = write_kdump(&mut flat, &m.mem, &f, &meta(&m), &o, &StopAfterFirstJob(Arc::clone(&stop))).unwrap();
    assert!(r.incomplete && r.pages_written > 0);
    let mut out = Disk::new(usize::MAX);
    rearrange(&mut &flat.into_inner()[..], &mut out, &NoProgress, None).unwrap();
    assert_eq!(check_kdump(out.bytes, &f, true), r.pages_written);

    stop.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut flat = FlatOutput::new(Vec::new());
    let r = write_elf(&mut flat, &m.core, &*m.src, &m.mem, &f, None, &o, &StopAfterFirstJob(stop)).unwrap();
    assert!(r.incomplete);
    let mut out = Disk::new(usize::MAX);
    rearrange(&mut &flat.into_inner()[..], &mut out, &NoProgress, None).unwrap();
    assert!(ElfCore::parse(&out.bytes).unwrap().is_incomplete());
    // The stream carries the program headers again, cut to the pages it holds.
    check_loads_in_file(&out.bytes);
}

#[test]
fn rearranging_onto_a_full_disk_leaves_a_dump_marked_incomplete() {
    let m = machine();
    let f = filtered(1);
    let stream = kdump_stream(&m, &f, Codec::Lzo, 1);
    let blocks = kdump_bytes(&m, &f, Codec::Lzo, 1).len().div_ceil(PS as usize);
    // Too small for the headers and bitmaps: no dump, said so (the caller removes the file).
    let mut out = Disk::new(3);
    let err = rearrange(&mut &stream[..], &mut out, &NoProgress, None).unwrap_err();
    assert!(matches!(err, Error::NoRoomForHeaders), "{err}");
    for cap in [blocks / 2, blocks - 1] {
        let mut out = Disk::new(cap);
        let err = rearrange(&mut &stream[..], &mut out, &NoProgress, None).unwrap_err().to_string();
        assert!(err.contains("the kdump file is marked incomplete"), "{cap} blocks: {err}");
        let written = check_kdump(out.bytes, &f, true);
        assert!(written < f.dumpable.count(), "{cap} blocks: {written}");
    }
    let mut flat = FlatOutput::new(Vec::new());
    write_elf(&mut flat, &m.core, &*m.src, &m.mem, &f, None, &opts(Codec::Raw, 1), &NoProgress).unwrap();
    let mut out = Disk::new(4);
    let err = rearrange(&mut &flat.into_inner()[..], &mut out, &NoProgress, None).unwrap_err().to_string();
    assert!(err.ends_with("the ELF file is marked incomplete"), "{err}");
    assert!(ElfCore::parse(&out.bytes).unwrap().is_incomplete());
    check_loads_in_file(&out.bytes);
}

/// makedumpfile's streams carry the page descriptors ahead of the pages (vmcore's carry
/// each page ahead of its descriptor): rearranged onto a full disk or cut short, the
/// descriptors of the pages that did not arrive must read as not written, not point past
/// the file's end (libkdumpfile died of SIGBUS there).
#[test]
fn descriptors_ahead_of_their_pages_are_cleared_when_the_pages_do_not_arrive() {
    let m = machine();
    let f = filtered(1);
    let file = kdump_bytes(&m, &f, Codec::Lzo, 1);
    let k = KdumpFile::parse(file.clone()).unwrap();
    let h = &k.header;
    let desc_offset = (1 + u64::from(h.sub_hdr_size) + u64::from(h.bitmap_blocks)) * PS;
    let data_offset = u64::from_le_bytes(file[desc_offset as usize..desc_offset as usize + 8].try_into().unwrap());
    let mut flat = FlatOutput::new(Vec::new());
    flat.write_at(0, &file[..desc_offset as usize]).unwrap();
    flat.write_at(desc_offset, &file[desc_offset as usize..data_offset as usize]).unwrap();
    for (i, piece) in file[data_offset as usize..].chunks(PS as usize).enumerate() {
        flat.write_at(data_offset + i as u64 * PS, piece).unwrap();
    }
    flat.finish().unwrap();
    let stream = flat.into_inner();
    let blocks = file.len().div_ceil(PS as usize);
    for cap in [blocks / 2, blocks - 2] {
        let mut out = Disk::new(cap);
        let err = rearrange(&mut &stream[..], &mut out, &NoProgress, None).unwrap_err().to_string();
        assert!(err.ends_with("the kdump file is marked incomplete"), "{cap} blocks: {err}");
        check_pages_that_arrived(out.bytes, &f, &format!("{cap} blocks"));
    }
    for cut in [stream.len() / 2, stream.len() - 100] {
        let mut out = Disk::new(usize::MAX);
        let err = rearrange(&mut &stream[..cut], &mut out, &NoProgress, None).unwrap_err().to_string();
        assert!(err.ends_with("the kdump file is marked incomplete"), "{cut}: {err}");
        check_pages_that_arrived(out.bytes, &f, &format!("cut at {cut}"));
    }
}

/// Every descriptor of `file` points inside it, every page read is the machine's, and
/// some pages arrived and some did not. (The zero pages after the cut still read: the
/// shared zero page came first.)
fn check_pages_that_arrived(file: Vec<u8>, f: &Filtered, what: &str) {
    let len = file.len() as u64;
    let k = KdumpFile::parse(file).unwrap();
    assert!(k.is_incomplete(), "{what}");
    let (mut page, mut read, mut lost) = (vec![0u8; PS as usize], 0, 0);
    for pfn in f.dumpable.iter() {
        let d = k.page_desc(pfn).unwrap().unwrap();
        assert!(d.offset + u64::from(d.size) <= len, "{what}: pfn {pfn:#x}: {d:?} in a file of {len} bytes");
        match k.read_page(pfn, &mut page).unwrap() {
            PageRead::Data => {
                assert_eq!(page, page_of(pfn), "{what}: pfn {pfn:#x}");
                read += 1;
            }
            PageRead::NotWritten => lost += 1,
            other => panic!("{what}: pfn {pfn:#x}: {other:?}"),
        }
    }
    assert!(read > 0 && lost > 0, "{what}: {read} read, {lost} lost");
}

/// A stream cut short (a dropped ssh connection) or a Ctrl-C during the rearrangement used
/// to leave a file that read as a complete dump: now it is marked incomplete, and the
/// error says so.
#[test]
fn a_stream_cut_short_or_interrupted_rearranges_to_a_dump_marked_incomplete() {
    let m = machine();
    let f = filtered(1);
    let stream = kdump_stream(&m, &f, Codec::Lzo, 1);
    for cut in [stream.len() / 2, stream.len() - 20] {
        let mut out = Disk::new(usize::MAX);
        let err = rearrange(&mut &stream[..cut], &mut out, &NoProgress, None).unwrap_err().to_string();
        assert!(err.contains("cut short") && err.contains("the kdump file is marked incomplete"), "{cut}: {err}");
        assert!(out.finished);
        let written = check_kdump(out.bytes, &f, true);
        assert!(written < f.dumpable.count(), "{cut}: {written}");
    }
    // Cut inside the headers: there is no dump to mark.
    for cut in [4096 + 16 + 100, 4096 + 2 * (4096 + 16) + 10] {
        let mut out = Disk::new(usize::MAX);
        let err = rearrange(&mut &stream[..cut], &mut out, &NoProgress, None).unwrap_err();
        assert!(matches!(err, Error::NoDump(_)), "{cut}: {err}");
        assert!(err.to_string().contains("no dump was written"), "{cut}: {err}");
    }
    // Ctrl-C half way.
    struct StopHalfWay(std::sync::atomic::AtomicBool, std::sync::atomic::AtomicU64, u64);
    impl Progress for StopHalfWay {
        fn set_total(&self, _: u64) {}
        fn advance(&self, n: u64) {
            if self.1.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n > self.2 {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        fn finish(&self) {}
    }
    // An ELF stream cut inside its program headers: no segment to mark either.
    let mut flat = FlatOutput::new(Vec::new());
    write_elf(&mut flat, &m.core, &*m.src, &m.mem, &f, None, &opts(Codec::Raw, 1), &NoProgress).unwrap();
    let elf_stream = flat.into_inner();
    let mut out = Disk::new(usize::MAX);
    let err = rearrange(&mut &elf_stream[..4096 + 16 + 64 + 16 + 20], &mut out, &NoProgress, None).unwrap_err();
    assert!(matches!(err, Error::NoDump(_)), "{err}");
    let half = StopHalfWay(Default::default(), Default::default(), stream.len() as u64 / 2);
    let mut out = Disk::new(usize::MAX);
    let err = rearrange(&mut &stream[..], &mut out, &half, Some(&half.0)).unwrap_err().to_string();
    assert!(err.contains("interrupted") && err.contains("the kdump file is marked incomplete"), "{err}");
    assert!(check_kdump(out.bytes, &f, true) < f.dumpable.count());
}

#[test]
fn flattened_streams_rearrange_to_the_file() {
    let m = machine();
    let f = filtered(31);
    let direct = kdump_bytes(&m, &f, Codec::Snappy, 1);
    let stream = kdump_stream(&m, &f, Codec::Snappy, 3);
    let mut out = Disk::new(usize::MAX);
    rearrange(&mut &stream[..], &mut out, &NoProgress, None).unwrap();
    assert!(out.bytes == direct);

    let mut elf_file = Disk::new(usize::MAX);
    write_elf(&mut elf_file, &m.core, &*m.src, &m.mem, &f, None, &opts(Codec::Raw, 1), &NoProgress).unwrap();
    let mut flat = FlatOutput::new(Vec::new());
    write_elf(&mut flat, &m.core, &*m.src, &m.mem, &f, None, &opts(Codec::Raw, 2), &NoProgress).unwrap();
    let mut out = Disk::new(usize::MAX);
    rearrange(&mut &flat.into_inner()[..], &mut out, &NoProgress, None).unwrap();
    assert!(out.bytes == elf_file.bytes);
}

#[test]
fn elf_output_reads_back_with_zero_pages_and_long_runs_left_out() {
    let m = machine();
    for level in [0, 1, 31] {
        let f = filtered(level);
        let mut disk = Disk::new(usize::MAX);
        let r = write_elf(&mut disk, &m.core, &*m.src, &m.mem, &f, None, &opts(Codec::Raw, 2), &NoProgress).unwrap();
        assert!(!r.incomplete);
        let src: Arc<dyn ReadAt> = Arc::new(disk.bytes.clone());
        let core = ElfCore::parse(&*src).unwrap();
        // The notes are copied, the segments split around the run of 300 excluded pages.
        assert_eq!(core.note(b"CORE", 1).map(|n| n.desc.len()), Some(336));
        assert_eq!(core.loads.len(), 3);
        let mem = ElfMem::new(&core, src, PS);
        let mut page = vec![0u8; PS as usize];
        for pfn in 0..f.present.len() {
            let state = mem.read_page(vmcore_types::Pfn(pfn), &mut page).unwrap();
            if f.dumpable.get(pfn) {
                assert!(matches!(state, PageState::Dumped | PageState::ZeroFilled), "pfn {pfn:#x}");
                assert_eq!(page, page_of(pfn), "pfn {pfn:#x}");
            } else if f.present.get(pfn) {
                // Excluded: zeros where the run was long, real contents in a short hole.
                assert!(page == page_of(pfn) || page.iter().all(|&b| b == 0), "pfn {pfn:#x}");
            }
        }
        let zero_kept = f.dumpable.iter().filter(|&p| p % 5 == 0).count() as u64;
        assert_eq!(r.zero_pages, if level & 1 != 0 { zero_kept } else { 0 });
    }
}

#[test]
fn an_elf_dump_cut_short_counts_the_pages_it_holds() {
    let m = machine();
    let f = filtered(0);
    for blocks in [3, 7, 20] {
        let mut disk = Disk::new(blocks);
        let r = write_elf(&mut disk, &m.core, &*m.src, &m.mem, &f, None, &opts(Codec::Raw, 1), &NoProgress).unwrap();
        assert!(r.incomplete);
        let core = ElfCore::parse(&disk.bytes.clone()).unwrap();
        assert!(core.is_incomplete());
        let data_start = core.loads[0].offset;
        assert_eq!(r.pages_written, (disk.bytes.len() as u64 - data_start) / PS, "{blocks} blocks");
        assert!(r.pages_written > 0, "{blocks} blocks");
        // What was not written is absent, not zeros.
        check_loads_in_file(&disk.bytes);
        let src: Arc<dyn ReadAt> = Arc::new(disk.bytes.clone());
        let mem = ElfMem::new(&core, src, PS);
        let mut page = vec![0u8; PS as usize];
        let mut dumped = 0;
        for pfn in f.dumpable.iter() {
            match mem.read_page(vmcore_types::Pfn(pfn), &mut page) {
                Ok(PageState::Dumped) => {
                    assert_eq!(page, page_of(pfn), "pfn {pfn:#x}");
                    dumped += 1;
                }
                Ok(PageState::Hole | PageState::NotWritten) => {}
                other => panic!("pfn {pfn:#x}: {other:?}"),
            }
        }
        assert_eq!(dumped, r.pages_written, "{blocks} blocks");
    }
}

/// The PT_LOADs of the ELF file `bytes` all have their data in it.
fn check_loads_in_file(bytes: &[u8]) {
    let file = bytes.to_vec();
    let core = ElfCore::parse(&file).unwrap();
    for s in &core.loads {
        assert!(s.filesz == 0 || s.offset + s.filesz <= bytes.len() as u64, "{s:?} in a file of {} bytes", bytes.len());
    }
}

/// A file of `head` followed by zeros up to `size` bytes.
struct Zeros {
    head: Vec<u8>,
    size: u64,
}

impl ReadAt for Zeros {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset + buf.len() as u64 > self.size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.fill(0);
        for (i, b) in buf.iter_mut().enumerate() {
            match self.head.get(offset as usize + i) {
                Some(&x) => *b = x,
                None => break,
            }
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// Keeps the first bytes written, counts the rest.
struct Head {
    keep: usize,
    bytes: Vec<u8>,
    end: u64,
}

impl Output for Head {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::result::Result<(), OutputError> {
        self.end = self.end.max(offset + data.len() as u64);
        if (offset as usize) < self.keep {
            let end = (offset as usize + data.len()).min(self.keep);
            if self.bytes.len() < end {
                self.bytes.resize(end, 0);
            }
            self.bytes[offset as usize..end].copy_from_slice(&data[..end - offset as usize]);
        }
        Ok(())
    }
    fn can_rewrite(&self) -> bool {
        true
    }
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn elf_output_with_more_than_65534_segments_uses_pn_xnum() {
    // One kept page every 257: each its own segment.
    let pieces = 70_000u64;
    let pages = pieces * 257;
    let mut head = test_support::header(&[(0, 0xffff_8880_0000_0000, 0x1000, pages * PS, pages * PS)], (0x800, 0));
    head.resize(0x1000, 0);
    let core = ElfCore::parse(&head).unwrap();
    let src = Arc::new(Zeros { head: head.clone(), size: 0x1000 + pages * PS });
    let mem = ElfMem::new(&core, src.clone(), PS);
    let mut present = PfnBitmap::new(pages);
    present.set_range(0, pages);
    let mut dumpable = PfnBitmap::new(pages);
    for i in 0..pieces {
        dumpable.set(i * 257);
    }
    let f = Filtered {
        level: 0,
        present,
        dumpable,
        zero_pages: PfnBitmap::new(pages),
        zero_pages_scanned: false,
        stats: Stats::default(),
        warnings: Vec::new(),
        vmemmap: None,
        whole_bitmaps: false,
    };
    let phnum = 1 + pieces as usize;
    let mut out = Head { keep: 64 + phnum * 56 + 64, bytes: Vec::new(), end: 0 };
    write_elf(&mut out, &core, &*src, &mem, &f, None, &opts(Codec::Raw, 1), &NoProgress).unwrap();
    assert_eq!(u16::from_le_bytes([out.bytes[56], out.bytes[57]]), 0xffff);
    assert_eq!(out.end, out.keep as u64 + pieces * PS);
    // Our own parser finds every segment through section header 0.
    out.bytes.resize(out.end as usize, 0);
    let parsed = ElfCore::parse(&out.bytes).unwrap();
    assert_eq!(parsed.loads.len(), pieces as usize);
    assert_eq!(parsed.loads[1].paddr, 257 * PS);
    assert_eq!(parsed.loads[1].filesz, PS);
    assert_eq!(parsed.loads[1].memsz, 257 * PS);
    assert_eq!(parsed.loads.last().map(|l| l.memsz), Some(257 * PS));
}

#[test]
fn reassembling_joins_the_erase_information_of_every_part_in_order() {
    use vmcore_synth::kdump::{write as write_part, KdumpSpec, PageSpec};
    let pages: std::collections::BTreeMap<u64, PageSpec> =
        (0..30).map(|pfn| (pfn, PageSpec::Dumped(page_of(pfn)))).collect();
    let erase = [&b"erase a size 8\n"[..], b"", b"erase c size 16\n"];
    let parts: Vec<(String, Arc<dyn ReadAt>)> = [(0, 10), (10, 20), (20, 30)]
        .iter()
        .zip(erase)
        .enumerate()
        .map(|(i, (&range, e))| {
            let spec = KdumpSpec {
                max_mapnr: 30,
                split: Some(range),
                eraseinfo: (!e.is_empty()).then(|| e.to_vec()),
                ..KdumpSpec::default()
            };
            (format!("p{i}"), Arc::new(write_part(&spec, &pages).unwrap()) as Arc<dyn ReadAt>)
        })
        .collect();
    let mut out = Disk::new(usize::MAX);
    let r = reassemble(parts, &mut out, &NoProgress, None).unwrap();
    assert!(!r.incomplete);
    let joined = KdumpFile::parse(Arc::new(out.bytes) as Arc<dyn ReadAt>).unwrap();
    assert_eq!(joined.eraseinfo().unwrap().unwrap(), b"erase a size 8\nerase c size 16\n");
}

/// Bytes of `path` in the page cache, as util-linux's `fincore` counts them.
fn cached_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_dump_file_drops_its_written_back_pages_from_the_page_cache() {
    // On tmpfs the page cache is the file itself: nothing to drop. target/ is on disk.
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    std::fs::create_dir_all(&target).unwrap();
    let tmp = tempfile::NamedTempFile::new_in(&target).unwrap();
    if rustix::fs::statfs(tmp.path()).unwrap().f_type == 0x0102_1994 {
        assert!(std::env::var_os("CI").is_none(), "target/ is on tmpfs under CI");
        eprintln!("\n*** target/ is on tmpfs: the drop-behind test is SKIPPED ***\n");
        return;
    }
    let mut out = FileOutput::new(tmp.reopen().unwrap(), None);
    let chunk = vec![0x5au8; 1 << 20];
    let mib = |n: u64| n << 20;
    let first = DROP_BEHIND_EVERY + mib(8);
    for i in 0..first >> 20 {
        out.write_at(mib(i), &chunk).unwrap();
    }
    // Written back, so clean: the next request may drop all of it.
    tmp.as_file().sync_data().unwrap();
    let second = DROP_BEHIND_EVERY;
    for i in 0..second >> 20 {
        out.write_at(first + mib(i), &chunk).unwrap();
    }
    out.finish().unwrap();
    let cached = cached_bytes(tmp.path());
    // Kept without the requests: all of first + second. Dropped: all of the first part
    // but what the last write, just after the request, dirtied again.
    assert!(cached <= second + mib(1), "{} MiB of {} MiB written are cached", cached >> 20, (first + second) >> 20);
}

#[test]
fn bitmaps_of_a_sparse_address_space_are_holes_in_the_file() {
    // The test machine's RAM, in a physical address space claimed up to 2^30 frames
    // (4 TiB): each bitmap takes 128 MiB, all of it zero past the first few hundred bytes.
    let m = machine();
    let small = filtered(31);
    let frames = 1u64 << 30;
    let (mut present, mut dumpable) = (PfnBitmap::new(frames), PfnBitmap::new(frames));
    for pfn in small.present.iter() {
        present.set(pfn);
    }
    for pfn in small.dumpable.iter() {
        dumpable.set(pfn);
    }
    let f = Filtered {
        level: 31,
        present,
        dumpable,
        zero_pages: PfnBitmap::new(frames),
        zero_pages_scanned: false,
        stats: Stats::default(),
        warnings: Vec::new(),
        vmemmap: None,
        whole_bitmaps: false,
    };
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let mut out = FileOutput::new(tmp.reopen().unwrap(), None);
    let r = write_kdump(&mut out, &m.mem, &f, &meta(&m), &opts(Codec::Zstd, 2), &NoProgress).unwrap();
    out.finish().unwrap();
    let bitmaps = 2 * (frames / 8);
    let sparse = |path: &std::path::Path| {
        let st = std::fs::metadata(path).unwrap();
        assert!(st.len() > bitmaps, "{} bytes: shorter than the bitmaps", st.len());
        // Written whole, the bitmaps alone would take 256 MiB of the disk.
        let allocated = std::os::unix::fs::MetadataExt::blocks(&st) * 512;
        assert!(allocated < 8 << 20, "{} MiB allocated for a {} MiB file", allocated >> 20, st.len() >> 20);
    };
    sparse(tmp.path());

    // A flattened stream carries the zeros; rearranged, it gives the same sparse file.
    let stream = tempfile::NamedTempFile::new().unwrap();
    let mut flat = FlatOutput::new(io::BufWriter::new(stream.reopen().unwrap()));
    write_kdump(&mut flat, &m.mem, &f, &meta(&m), &opts(Codec::Zstd, 2), &NoProgress).unwrap();
    flat.finish().unwrap();
    drop(flat);
    let rearranged = tempfile::NamedTempFile::new().unwrap();
    let mut out = FileOutput::new(rearranged.reopen().unwrap(), None);
    rearrange(&mut io::BufReader::new(stream.reopen().unwrap()), &mut out, &NoProgress, None).unwrap();
    sparse(rearranged.path());
    assert!(same_contents(tmp.path(), rearranged.path()));

    let k = KdumpFile::parse(vmcore_formats::FileSource::open(tmp.path()).unwrap()).unwrap();
    assert_eq!((k.present_pages(), k.dumped_pages()), (f.present.count(), r.pages_written));
    let mut runs = Vec::new();
    k.for_each_present_run(|s, e| runs.push((s, e))).unwrap();
    assert_eq!(runs, [(LOW.0 / PS, LOW.1 / PS), (0x100, 0x100 + HIGH_PAGES)]);
    let mut page = vec![0u8; PS as usize];
    for pfn in small.dumpable.iter().filter(|p| p % 5 != 0) {
        assert_eq!(k.read_page(pfn, &mut page).unwrap(), PageRead::Data, "pfn {pfn:#x}");
        assert_eq!(page, page_of(pfn), "pfn {pfn:#x}");
    }
}

/// Whether two files hold the same bytes, compared 1 MiB at a time.
fn same_contents(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::io::Read;
    let (mut a, mut b) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        if n == 0 {
            return b.read(&mut y).unwrap() == 0;
        }
        if b.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return false;
        }
    }
}
