//! Unit tests: the three generations built by `vmcore_synth::printk` as the kernel writes them,
//! makedumpfile's formatting, and corrupt rings.

use proptest::prelude::*;

use super::ringbuffer::{block, state, Block, State, DESC_ID_MASK};
use super::*;
use crate::vmcoreinfo::Source;
use vmcore_synth::printk::{self as synth, Image, Msg, Plain, PrintkLog, Ringbuffer, STATE_COMMITTED, STATE_RESERVED};

const BASE: u64 = 0xffff_8880_0100_0000;

fn vi(img: &Image) -> VmcoreInfo {
    VmcoreInfo::parse(img.vmcoreinfo.as_bytes(), Source::ElfNote).unwrap()
}

fn read_img(img: &Image, opts: &Options) -> Result<Log, Error> {
    let read = |a: u64, b: &mut [u8]| img.read(a, b);
    read_log(&vi(img), &read, opts)
}

fn text(log: &Log, esc: Escape) -> String {
    let mut out = Vec::new();
    render(log, esc, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn recs(log: &Log) -> Vec<Record> {
    log.records.iter().map(std::borrow::Cow::into_owned).collect()
}

fn texts(log: &Log) -> Vec<String> {
    log.records.iter().map(|r| String::from_utf8_lossy(&r.text).into_owned()).collect()
}

fn msgs(n: usize) -> Vec<Msg> {
    (0..n)
        .map(|i| Msg::new(i as u64 * 1_234_567_891, format!("message {i} {}", "x".repeat(i % 23)).as_bytes()))
        .collect()
}

// ---------------------------------------------------------------- formatting

#[test]
fn record_prefix_caller_and_continuation_lines() {
    let rec = Record {
        ts_nsec: 3_174_242_123,
        caller_id: Some(1),
        text: b"Unstable clock\n  If you want\non the line".to_vec(),
        ..Record::default()
    };
    let mut out = Vec::new();
    render_record(&rec, true, Escape::SignedChar, &mut out);
    let indent = " ".repeat(26);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("[    3.174242] [      T1] Unstable clock\n{indent}  If you want\n{indent}on the line\n")
    );
    let cpu = Record { ts_nsec: 123_456_789_000_999, caller_id: Some(0x8000_0003), ..Record::default() };
    let mut out = Vec::new();
    render_record(&cpu, true, Escape::SignedChar, &mut out);
    assert_eq!(out, b"[123456.789000] [      C3] \n");
    let mut out = Vec::new();
    render_record(&cpu, false, Escape::SignedChar, &mut out);
    assert_eq!(out, b"[123456.789000] \n");
    assert_eq!(caller_string(0x8000_0000 | 12345678), "C12345678");
    let mut out = Vec::new();
    render_record(&Record { caller_id: Some(123_456_789), ..Record::default() }, true, Escape::SignedChar, &mut out);
    assert_eq!(out, b"[    0.000000] [T123456789] \n", "wider than 8: not cut");
}

#[test]
fn non_printable_bytes_escape_as_c_char_of_the_arch() {
    let rec = Record { text: "a\u{e2}\u{80}\x01\x7f\t\r\x0b\x0c~ ".bytes().collect(), ..Record::default() };
    let mut signed = Vec::new();
    render_record(&rec, false, Escape::SignedChar, &mut signed);
    let mut unsigned = Vec::new();
    render_record(&rec, false, Escape::UnsignedChar, &mut unsigned);
    // "\u{e2}" is 0xc3 0xa2 in UTF-8, "\u{80}" 0xc2 0x80.
    assert_eq!(
        String::from_utf8(signed).unwrap(),
        "[    0.000000] a\\xffffffc3\\xffffffa2\\xffffffc2\\xffffff80\\x01\\x7f\t\r\x0b\x0c~ \n"
    );
    assert_eq!(String::from_utf8(unsigned).unwrap(), "[    0.000000] a\\xc3\\xa2\\xc2\\x80\\x01\\x7f\t\r\x0b\x0c~ \n");
    assert_eq!(Escape::for_arch(crate::machine::Arch::X86_64), Escape::SignedChar);
    assert_eq!(Escape::for_arch(crate::machine::Arch::Aarch64), Escape::UnsignedChar);
}

// ---------------------------------------------------------------- ring buffer

#[test]
fn descriptor_states_and_blocks() {
    assert_eq!(state(5, 5 | 2 << 62), State::Finalized);
    assert_eq!(state(5, 5 | 1 << 62), State::Committed);
    assert_eq!(state(5, 5), State::Reserved);
    assert_eq!(state(5, 5 | 3 << 62), State::Reusable);
    assert_eq!(state(5, 6 | 2 << 62), State::Miss);
    assert_eq!(block(1, 1, 10), Block::Dataless);
    assert_eq!(block(3, 3, 10), Block::Dataless);
    assert_eq!(block(16, 48, 10), Block::At { offset: 16, size: 32 });
    assert_eq!(block(1024 + 1000, 2048 + 40, 10), Block::At { offset: 0, size: 40 });
    assert!(matches!(block(16, 3000, 10), Block::Illegal(_)));
    assert!(matches!(block(48, 16, 10), Block::Illegal(_)));
    assert!(matches!(block(12, 48, 10), Block::Illegal(_)));
    assert!(matches!(block(1000, 1024, 10), Block::Illegal(_)), "wrapped, but no room for the id");
    assert_eq!(block(16, 24, 10), Block::At { offset: 16, size: 8 });
    assert!(matches!(block(16, 16, 10), Block::Illegal(_)));
}

#[test]
fn ringbuffer_records_with_caller_level_facility_and_dev_info() {
    let m = vec![
        Msg::new(0, b"Linux version 6.1.0"),
        Msg { level: 3, facility: 1, ..Msg::new(1_500_000, b"user says hi").caller(0x8000_0002) },
        Msg::new(2_000_000_001, b"virtio_net virtio1 enp0s3: renamed from eth0").dev("virtio", "+virtio:virtio1"),
    ];
    let rb = Ringbuffer::default().build(&m, BASE);
    let log = read_img(&rb.image, &Options::default()).unwrap();
    assert_eq!(log.generation, Generation::Ringbuffer);
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    assert!(log.caller_ids);
    assert_eq!(log.records.len(), 3);
    let all = recs(&log);
    let r = &all[1];
    assert_eq!(
        (r.seq, r.ts_nsec, r.level, r.facility, r.caller_id),
        (1, 1_500_000, Some(3), Some(1), Some(0x8000_0002))
    );
    assert_eq!((&r.subsystem, &r.device), (&None, &None));
    let d = &all[2];
    assert_eq!((d.subsystem.as_deref(), d.device.as_deref()), (Some("virtio"), Some("+virtio:virtio1")));
    assert_eq!((d.level, d.facility), (Some(6), Some(0)));
    assert_eq!(
        text(&log, Escape::SignedChar),
        "[    0.000000] [      T1] Linux version 6.1.0\n\
         [    0.001500] [      C2] user says hi\n\
         [    2.000000] [      T1] virtio_net virtio1 enp0s3: renamed from eth0\n"
    );
}

#[test]
fn ringbuffer_without_caller_or_dev_keys() {
    let spec = Ringbuffer { caller_id_key: false, dev_info_keys: false, ..Ringbuffer::default() };
    let rb = spec.build(&[Msg::new(7_000, b"hello").dev("pci", "+pci:0000:00:01.0")], BASE);
    let log = read_img(&rb.image, &Options::default()).unwrap();
    assert!(!log.caller_ids);
    let r = &recs(&log)[0];
    assert_eq!((r.caller_id, r.level, r.facility, &r.subsystem), (None, None, None, &None));
    assert_eq!(text(&log, Escape::UnsignedChar), "[    0.000007] hello\n");
}

#[test]
fn wrapped_ringbuffer_keeps_the_newest_records_and_wrapped_blocks() {
    // 16 descriptors, 512 bytes of text: both rings wrap many times, and the ids wrap
    // around the 62-bit id space.
    let spec = Ringbuffer {
        count_bits: 4,
        size_bits: 9,
        first_id: DESC_ID_MASK - 40,
        first_lpos: 0x7fff_ff00,
        first_seq: 1000,
        ..Ringbuffer::default()
    };
    let all = msgs(300);
    let rb = spec.build(&all, BASE);
    assert!(rb.head_id < 300, "ids wrapped past the mask");
    let log = read_img(&rb.image, &Options::default()).unwrap();
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    let seqs: Vec<u64> = log.records.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = rb.kept.iter().map(|&(_, s)| s).collect();
    assert_eq!(seqs, expected);
    assert!(seqs.len() >= 8, "{seqs:?}");
    assert_eq!(*seqs.last().unwrap(), 1299);
    for r in log.records.iter() {
        assert_eq!(r.text, all[(r.seq - 1000) as usize].text);
    }
    // Some kept record must be a wrapped block (text at ring offset 0, begin elsewhere).
    let wrapped = rb.kept.iter().any(|&(id, _)| {
        let d = rb.desc(id, 4);
        let (b, n) = (rb.image.get_u64(d + 8), rb.image.get_u64(d + 16));
        matches!(block(b, n, 9), Block::At { offset: 0, .. }) && b % 512 != 0
    });
    assert!(wrapped, "no wrapped block among the kept records");
}

#[test]
fn every_ring_position_reads_the_same_records() {
    for start in (0..512).step_by(40) {
        let spec =
            Ringbuffer { count_bits: 3, size_bits: 9, first_lpos: start, first_id: start, ..Ringbuffer::default() };
        let rb = spec.build(&msgs(40), BASE);
        let log = read_img(&rb.image, &Options::default()).unwrap();
        let expected: Vec<u64> = rb.kept.iter().map(|&(_, s)| s).collect();
        assert_eq!(log.records.iter().map(|r| r.seq).collect::<Vec<_>>(), expected, "lpos {start}");
        assert!(log.warnings.is_empty());
    }
}

#[test]
fn only_committed_and_finalized_descriptors_and_no_dataless_ones() {
    let mut m = msgs(4);
    m[1].text.clear();
    let reserved = Ringbuffer { last_state: STATE_RESERVED, ..Ringbuffer::default() }.build(&m, BASE);
    let log = read_img(&reserved.image, &Options::default()).unwrap();
    assert_eq!(log.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 2]);
    let committed = Ringbuffer { last_state: STATE_COMMITTED, ..Ringbuffer::default() }.build(&m, BASE);
    let log = read_img(&committed.image, &Options::default()).unwrap();
    assert_eq!(log.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 2, 3]);
    assert!(log.warnings.is_empty());
}

#[test]
fn partial_starts_at_clear_seq() {
    for latched in [true, false] {
        let spec =
            Ringbuffer { count_bits: 4, size_bits: 10, first_seq: 50, clear_seq: 60, latched, ..Ringbuffer::default() };
        let rb = spec.build(&msgs(20), BASE);
        let partial = Options { partial: true, ..Options::default() };
        let log = read_img(&rb.image, &partial).unwrap();
        assert_eq!(log.records.iter().next().map(|r| r.seq), Some(60), "latched {latched}");
        assert_eq!(log.records.iter().last().map(|r| r.seq), Some(69));
        assert!(log.warnings.is_empty());
        // Everything cleared (dmesg -C after the last record): nothing, and no hang.
        let spec = Ringbuffer { clear_seq: 70, ..spec };
        assert!(read_img(&spec.build(&msgs(20), BASE).image, &partial).unwrap().records.is_empty());
    }
    // No SYMBOL(clear_seq): the whole log and a warning.
    let mut rb = Ringbuffer { clear_seq: 3, ..Ringbuffer::default() }.build(&msgs(5), BASE);
    rb.image.vmcoreinfo =
        rb.image.vmcoreinfo.lines().filter(|l| !l.starts_with("SYMBOL(clear_seq)")).map(|l| format!("{l}\n")).collect();
    let log = read_img(&rb.image, &Options { partial: true, ..Options::default() }).unwrap();
    assert_eq!(log.records.len(), 5);
    assert!(log.warnings.iter().any(|w| w.contains("clear_seq")), "{:?}", log.warnings);
}

#[test]
fn live_reading_rechecks_descriptors() {
    let rb = Ringbuffer::default().build(&msgs(5), BASE);
    let log = read_img(&rb.image, &Options { live: true, ..Options::default() }).unwrap();
    assert_eq!(log.records.len(), 5);
    // A reader whose descriptor state changes between the two reads (a writer reusing it).
    let reads = std::cell::Cell::new(0u32);
    let desc2 = rb.desc(2, 5);
    let read = |a: u64, b: &mut [u8]| {
        rb.image.read(a, b)?;
        if a == desc2 && b.len() == 8 {
            reads.set(reads.get() + 1);
            b[7] ^= 0x40;
        }
        Ok(())
    };
    let log = read_log(&vi(&rb.image), &read, &Options { live: true, ..Options::default() }).unwrap();
    assert_eq!(log.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 3, 4]);
    assert!(log.warnings.iter().any(|w| w.contains("overwritten while being read")));
    assert_eq!(reads.get(), 1);
}

// ------------------------------------------------------------ corrupt rings

fn corrupt_rb(f: impl FnOnce(&mut synth::RbImage)) -> Result<Log, Error> {
    let mut rb = Ringbuffer::default().build(&msgs(10), BASE);
    f(&mut rb);
    read_img(&rb.image, &Options::default())
}

#[test]
fn corrupt_ring_sizes_are_errors_naming_the_field() {
    let e = corrupt_rb(|rb| rb.image.put_u32(rb.rb, 40)).unwrap_err().to_string();
    assert!(e.contains("count_bits") && e.contains("at most 24"), "{e}");
    let e = corrupt_rb(|rb| rb.image.put_u32(rb.rb + 48, 63)).unwrap_err().to_string();
    assert!(e.contains("size_bits") && e.contains("4 to 31"), "{e}");
    let e = corrupt_rb(|rb| rb.image.put_u64(rb.image.base, 0x1234)).unwrap_err().to_string();
    assert!(e.contains("struct printk_ringbuffer") && e.contains("0x1234"), "{e}");
    let e = corrupt_rb(|rb| rb.image.vmcoreinfo = rb.image.vmcoreinfo.replace("SIZE(prb_desc)=24", "SIZE(prb_desc)=8"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("prb_data_blk_lpos.begin") && e.contains("SIZE(prb_desc)=8"), "{e}");
    let e = corrupt_rb(|rb| rb.image.vmcoreinfo = rb.image.vmcoreinfo.replace("OFFSET(prb_desc_ring.infos)=16\n", ""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("OFFSET(prb_desc_ring.infos)"), "{e}");
    let e = corrupt_rb(|rb| {
        rb.image.vmcoreinfo =
            rb.image.vmcoreinfo.replace("OFFSET(printk_info.ts_nsec)=8", "OFFSET(printk_info.ts_nsec)=-8")
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("OFFSET(printk_info.ts_nsec)=-8"), "{e}");
}

#[test]
fn a_tail_far_behind_the_head_reads_one_ring_of_ids() {
    let log = corrupt_rb(|rb| rb.image.put_u64(rb.rb + 32, rb.head_id.wrapping_sub(1 << 40))).unwrap();
    assert_eq!(log.records.len(), 10);
    assert!(log.warnings.iter().any(|w| w.contains("tail_id") && w.contains("32 descriptors")), "{:?}", log.warnings);
    // Maximal count_bits over memory that is not there: bounded, warned, no hang.
    let t = std::time::Instant::now();
    let log = corrupt_rb(|rb| {
        rb.image.put_u32(rb.rb, 24);
        rb.image.put_u64(rb.rb + 32, rb.head_id.wrapping_sub(1 << 30));
    })
    .unwrap();
    assert!(log.records.len() <= 10);
    assert!(log.warnings.len() <= Warnings::KEEP * 8, "{:?}", log.warnings);
    assert!(log.warnings.iter().any(|w| w.starts_with("... and ")), "{:?}", log.warnings);
    assert!(t.elapsed().as_secs() < 20, "took {:?}", t.elapsed());
}

#[test]
fn bad_blocks_are_skipped_with_warnings() {
    // Record 3: a block spanning several wraps; record 4: misaligned; record 5: a text
    // longer than its block; record 6: a block holding another id.
    let log = corrupt_rb(|rb| {
        let d3 = rb.desc(3, 5);
        let b3 = rb.image.get_u64(d3 + 8);
        rb.image.put_u64(d3 + 16, b3 + 5 * 1024);
        let d4 = rb.desc(4, 5);
        rb.image.put_u64(d4 + 8, rb.image.get_u64(d4 + 8) + 4);
        rb.image.put_u16(rb.info(5, 5) + 16, 5000);
        let d6 = rb.desc(6, 5);
        let at = rb.data + (rb.image.get_u64(d6 + 8) & 1023);
        rb.image.put_u64(at, 99);
    })
    .unwrap();
    assert_eq!(log.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2, 5, 7, 8, 9]);
    let w = log.warnings.join("\n");
    assert!(w.contains("seq 3") && w.contains("same or in consecutive wraps"), "{w}");
    assert!(w.contains("seq 4") && w.contains("aligned"), "{w}");
    assert!(w.contains("seq 5") && w.contains("text_len 5000"), "{w}");
    assert!(w.contains("seq 6") && w.contains("belongs to id 0x63"), "{w}");
    // The long text is cut at its block: "message 5 xxxxx" padded to the block's end.
    let r5 = &recs(&log)[3];
    assert!(r5.text.starts_with(b"message 5 xxxxx") && r5.text.len() <= 24, "{:?}", r5.text);
}

#[test]
fn overlapping_blocks_yield_at_most_one_data_ring_of_text() {
    // Every record's block starts 8 bytes after the previous one's and runs to near the
    // end of the 1024-byte ring, its id word inside the previous block's text: each block
    // is valid on its own, and each claims 936 bytes of the same data.
    let log = corrupt_rb(|rb| {
        for (i, &(id, _)) in rb.kept.iter().enumerate() {
            let begin = 8 * i as u64;
            let d = rb.desc(id, 5);
            rb.image.put_u64(d + 8, begin);
            rb.image.put_u64(d + 16, begin + 944);
            rb.image.put_u16(rb.info(id, 5) + 16, 936);
            rb.image.put_u64(rb.data + begin, id);
        }
    })
    .unwrap();
    assert_eq!(log.records.iter().map(|r| (r.seq, r.text.len())).collect::<Vec<_>>(), [(0, 936)]);
    let w = log.warnings.join("\n");
    assert!(w.contains("seq 1") && w.contains("to 1872 bytes") && w.contains("1024-byte data ring"), "{w}");
    // A ring packed as full as the kernel packs it is read whole: blocks back to back up
    // to its last 8 bytes (a block ending at the end of the ring would be stored at its
    // start), all but the id words text, and two dataless records.
    let log = corrupt_rb(|rb| {
        for (i, &(id, _)) in rb.kept.iter().enumerate() {
            let d = rb.desc(id, 5);
            let begin = 128 * i as u64;
            let (begin, next) = match i {
                0..7 => (begin, begin + 128),
                7 => (begin, begin + 120),
                _ => (1, 1),
            };
            rb.image.put_u64(d + 8, begin);
            rb.image.put_u64(d + 16, next);
            rb.image.put_u16(rb.info(id, 5) + 16, (next - begin).saturating_sub(8) as u16);
            if i < 8 {
                rb.image.put_u64(rb.data + begin, id);
            }
        }
    })
    .unwrap();
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    assert_eq!(log.records.iter().map(|r| r.text.len()).collect::<Vec<_>>(), [120, 120, 120, 120, 120, 120, 120, 112]);
}

#[test]
fn descriptors_of_another_id_and_unreadable_arrays() {
    let log = corrupt_rb(|rb| {
        let d = rb.desc(2, 5);
        rb.image.put_u64(d, 77 | 2 << 62);
    })
    .unwrap();
    assert_eq!(log.records.len(), 9);
    assert!(log.warnings.iter().any(|w| w.contains("holds id 0x4d")), "{:?}", log.warnings);
    for (field, what) in [(8u64, "printk descriptor"), (16, "printk_info"), (56, "text")] {
        // Not one record left: the reasons are the error.
        let Err(Error::Unreadable { warnings }) = corrupt_rb(|rb| rb.image.put_u64(rb.rb + field, 0x10_0000)) else {
            panic!("{field}: a log without any record readable");
        };
        assert!(warnings.first().is_some_and(|w| w.contains(what) && w.contains("no memory")), "{warnings:?}");
    }
}

// ------------------------------------------------------------ printk_log

fn log_records(spec: &PrintkLog, m: &[Msg], clear: usize, opts: &Options) -> (synth::LogImage, Log) {
    let li = spec.build(m, BASE, clear);
    let log = read_img(&li.image, opts).unwrap();
    (li, log)
}

#[test]
fn printk_log_records_and_dictionaries() {
    let m = vec![
        Msg::new(0, b"Linux version 4.19.0"),
        Msg { level: 4, facility: 3, ..Msg::new(12_345_678, b"line one\nline two") },
        Msg::new(99_000_000_000, b"e1000 0000:00:03.0 eth0: link up").dev("pci", "+pci:0000:00:03.0"),
    ];
    let (_, log) = log_records(&PrintkLog::default(), &m, 0, &Options::default());
    assert_eq!(log.generation, Generation::PrintkLog);
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    assert!(!log.caller_ids);
    assert_eq!(log.records.len(), 3);
    let r = recs(&log);
    assert_eq!((r[1].level, r[1].facility), (Some(4), Some(3)));
    assert_eq!(r[2].subsystem.as_deref(), Some("pci"));
    assert_eq!(r[2].device.as_deref(), Some("+pci:0000:00:03.0"));
    assert_eq!(r[2].text, m[2].text, "the dictionary is not text");
    let pad = " ".repeat(15);
    assert_eq!(
        text(&log, Escape::SignedChar),
        format!(
            "[    0.000000] Linux version 4.19.0\n\
             [    0.012345] line one\n{pad}line two\n\
             [   99.000000] e1000 0000:00:03.0 eth0: link up\n"
        )
    );
    // With CONFIG_PRINTK_CALLER (5.1+), under the old struct name, without dict_len.
    let spec = PrintkLog { caller_id: true, old_name: true, dict_len_key: false, align: 4, ..PrintkLog::default() };
    let (_, log) = log_records(&spec, &[Msg::new(1_000, b"hi").caller(0x8000_0001)], 0, &Options::default());
    assert!(log.caller_ids);
    assert_eq!(text(&log, Escape::SignedChar), "[    0.000001] [      C1] hi\n");
}

#[test]
fn printk_log_wraps_and_drops_the_oldest() {
    let all = msgs(200);
    let spec = PrintkLog { buf_len: 1024, ..PrintkLog::default() };
    let (li, log) = log_records(&spec, &all, 0, &Options::default());
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    let first = li.image.get_u64(li.first_idx) as u32;
    let next = li.image.get_u64(li.next_idx) as u32;
    assert!(first > next, "the buffer has wrapped: first {first} next {next}");
    let expected: Vec<usize> = li.kept.iter().map(|&(_, n)| n).collect();
    assert_eq!(
        texts(&log),
        expected.iter().map(|&n| String::from_utf8_lossy(&all[n].text).into_owned()).collect::<Vec<_>>()
    );
    assert_eq!(expected.last(), Some(&199));
    assert!(expected.len() > 10);
    assert_eq!(log.records.iter().map(|r| r.seq).collect::<Vec<_>>(), (0..expected.len() as u64).collect::<Vec<_>>());
}

#[test]
fn printk_log_partial_starts_at_clear_idx() {
    let all = msgs(30);
    let partial = Options { partial: true, ..Options::default() };
    let (_, log) = log_records(&PrintkLog { buf_len: 4096, ..PrintkLog::default() }, &all, 25, &partial);
    assert_eq!(log.records.iter().next().map(|r| r.text.clone()), Some(all[25].text.clone()));
    assert_eq!(log.records.len(), 5);
    let (_, log) = log_records(&PrintkLog { buf_len: 4096, ..PrintkLog::default() }, &all, 30, &partial);
    assert!(log.records.is_empty());
    // clear_idx overwritten by the wrap: from the first record kept.
    let (li, log) = log_records(&PrintkLog::default(), &all, 2, &partial);
    assert_eq!(log.records.len(), li.kept.len());
}

fn corrupt_log(f: impl FnOnce(&mut synth::LogImage)) -> Result<Log, Error> {
    let mut li = PrintkLog::default().build(&msgs(60), BASE, 0);
    f(&mut li);
    read_img(&li.image, &Options::default())
}

#[test]
fn printk_log_cycles_and_bad_records_stop_the_walk() {
    let good = corrupt_log(|_| {}).unwrap();
    let n = good.records.len();
    assert!(n > 5);
    // The newest record's len leads back to log_first_idx: a cycle, each record once.
    let log = corrupt_log(|li| {
        let first = li.image.get_u64(li.first_idx) as u32;
        let (last, _) = *li.kept.last().unwrap();
        assert!(last < first, "the buffer has wrapped");
        li.image.put_u16(li.buf + u64::from(last) + 8, (first - last) as u16);
    })
    .unwrap();
    assert!(log.warnings.iter().any(|w| w.contains("cycle when parsing dmesg detected")), "{:?}", log.warnings);
    assert_eq!(texts(&log), texts(&good));
    // log_next_idx that the walk never meets: it wraps a second time, or runs into
    // stale bytes, and stops either way.
    for delta in [4u32, 8, 16, 24] {
        let log = corrupt_log(|li| {
            let next = li.image.get_u64(li.next_idx) as u32;
            li.image.put_u32(li.next_idx, next + delta);
        })
        .unwrap();
        assert!(!log.warnings.is_empty());
        assert!(log.records.len() <= n + 1024 / 16, "{} records", log.records.len());
    }
    // A record shorter than its header.
    let log = corrupt_log(|li| {
        let (idx, _) = li.kept[3];
        li.image.put_u16(li.buf + u64::from(idx) + 8, 5);
    })
    .unwrap();
    assert_eq!(log.records.len(), 3);
    assert!(log.warnings[0].contains("len 5 is not between"), "{:?}", log.warnings);
    // A record running past the end of the buffer.
    let log = corrupt_log(|li| {
        let (idx, _) = li.kept[1];
        li.image.put_u16(li.buf + u64::from(idx) + 8, 0xfff0);
    })
    .unwrap();
    assert_eq!(log.records.len(), 1);
    // text_len beyond the record: cut, with a warning.
    let log = corrupt_log(|li| {
        let (idx, _) = li.kept[0];
        li.image.put_u16(li.buf + u64::from(idx) + 10, 900);
    })
    .unwrap();
    assert_eq!(log.records.len(), n);
    assert!(log.warnings[0].contains("text_len 900"), "{:?}", log.warnings);
    // Indices and lengths outside the buffer are errors naming them.
    let e = corrupt_log(|li| li.image.put_u32(li.first_idx, 5000)).unwrap_err().to_string();
    assert!(e.contains("log_first_idx") && e.contains("log_buf_len 0x400"), "{e}");
    let e = corrupt_log(|li| li.image.put_u32(li.image.base + 8, u32::MAX)).unwrap_err().to_string();
    assert!(e.contains("log_buf_len") && e.contains("2147483648"), "{e}");
    // An all-zero buffer: no record, an error saying why.
    let e = corrupt_log(|li| {
        let len = 1024;
        li.image.put(li.buf, &vec![0; len]);
    })
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("no record of the kernel log could be read: printk_log record at 0x0: len 0"), "{e}");
}

// ------------------------------------------------------------ plain log_buf

#[test]
fn plain_log_buf_raw_bytes() {
    let text = b"<6>Linux version 2.6.32\n<4>[    1.000000] second\n";
    let img = Plain::default().build(text, BASE);
    let log = read_img(&img, &Options::default()).unwrap();
    assert_eq!(log.generation, Generation::Plain);
    assert_eq!(log.raw(), Some(&text[..]));
    assert_eq!(text_of(&log), text);
    assert_eq!(log.records.len(), 2);
    let r = recs(&log);
    assert_eq!((r[1].level, r[1].ts_nsec), (Some(4), 1_000_000_000));
    // Wrapped: the ring from log_end on.
    let long: Vec<u8> = (0..1000).flat_map(|i| format!("<6>line {i}\n").into_bytes()).collect();
    let img = Plain { buf_len: 256, ..Plain::default() }.build(&long, BASE);
    let log = read_img(&img, &Options { partial: true, ..Options::default() }).unwrap();
    assert_eq!(log.raw(), long.get(long.len() - 256..));
    assert!(log.warnings.iter().any(|w| w.contains("clear index")));
    // 2.6.24 and older: log_end is an unsigned long.
    let img = Plain { buf_len: 256, release: "2.6.18-8.el5".into() }.build(&long, BASE);
    assert_eq!(read_img(&img, &Options::default()).unwrap().raw(), long.get(long.len() - 256..));
}

#[test]
fn records_of_empty_lines_and_bare_headers_take_about_their_buffer() {
    // 64 KiB of newlines: 64 Ki empty lines, which as `Record`s would take 100 times the
    // buffer.
    let len = 1u32 << 16;
    let img = Plain { buf_len: len, ..Plain::default() }.build(&vec![b'\n'; len as usize], BASE);
    let log = read_img(&img, &Options::default()).unwrap();
    assert_eq!(log.raw().map(<[u8]>::len), Some(len as usize));
    assert_eq!((log.records.len(), log.records.iter().count()), (1 << 16, 1 << 16));
    assert!(log.records.iter().all(|r| r.text.is_empty() && r.level.is_none()));
    assert_eq!(log.records.iter().last().map(|r| r.seq), Some(65535));
    let (held, decoded) = (log.records.heap_bytes(), Records::from(recs(&log)).heap_bytes());
    assert!(held <= len as usize, "{held} bytes held for a {len}-byte buffer");
    assert!(decoded > 90 * len as usize, "as Records: {decoded}");
    assert_eq!(text_of(&log).len(), len as usize);

    // printk_log records of nothing but their 16-byte header, wrapped many times.
    let m: Vec<Msg> = (0..10_000).map(|i| Msg::new(i * 1000, b"")).collect();
    let li = PrintkLog { buf_len: len, ..PrintkLog::default() }.build(&m, BASE, 0);
    let log = read_img(&li.image, &Options::default()).unwrap();
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    let kept = li.kept.len();
    assert!(kept > 4000, "{kept} records kept");
    assert_eq!((log.records.len(), log.records.iter().count()), (kept, kept));
    let ts: Vec<u64> = log.records.iter().map(|r| r.ts_nsec).collect();
    assert_eq!(ts, li.kept.iter().map(|&(_, n)| n as u64 * 1000).collect::<Vec<_>>());
    let (held, decoded) = (log.records.heap_bytes(), Records::from(recs(&log)).heap_bytes());
    assert!(held <= 2 * len as usize, "{held} bytes held for a {len}-byte buffer");
    assert!(decoded > 6 * len as usize, "as Records: {decoded}");
    assert_eq!(text_of(&log).len(), kept * "[    0.000000] \n".len());
}

fn text_of(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    render(log, Escape::SignedChar, &mut out).unwrap();
    out
}

#[test]
fn generation_needs_the_keys() {
    let none = VmcoreInfo::parse(b"OSRELEASE=6.1.0\n", Source::ElfNote).unwrap();
    assert!(matches!(generation(&none), Err(Error::NoLog)));
    let old = VmcoreInfo::parse(b"OSRELEASE=3.2.0\nSYMBOL(log_buf)=1000\nSYMBOL(log_buf_len)=2000\n", Source::ElfNote)
        .unwrap();
    assert!(generation(&old).unwrap_err().to_string().contains("SYMBOL(log_end)"));
    let mid = VmcoreInfo::parse(b"OSRELEASE=4.19.0\nSYMBOL(log_buf)=1000\nSYMBOL(log_buf_len)=2000\n", Source::ElfNote)
        .unwrap();
    assert_eq!(generation(&mid).unwrap(), Generation::PrintkLog);
    let e = read_log(&mid, &|_, _| Ok(()), &Options::default()).unwrap_err().to_string();
    assert!(e.contains("SIZE(printk_log) or SIZE(log)"), "{e}");
}

// ------------------------------------------------------------ any corruption

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random bytes written anywhere into a ring buffer's structures: the reader ends,
    /// with records, warnings or an error, and never panics.
    #[test]
    fn ringbuffer_survives_random_corruption(
        pokes in proptest::collection::vec((0usize..0x4000, any::<u64>()), 1..8),
        n in 1usize..80,
    ) {
        let mut rb = Ringbuffer { count_bits: 4, size_bits: 9, ..Ringbuffer::default() }.build(&msgs(n), BASE);
        for (off, v) in pokes {
            let len = rb.image.bytes.len();
            rb.image.put_u64(BASE + (off % (len - 8)) as u64, v);
        }
        if let Ok(log) = read_img(&rb.image, &Options::default()) {
            prop_assert!(log.records.len() <= 16);
            let _ = text_of(&log);
        }
        let _ = read_img(&rb.image, &Options { partial: true, live: true });
    }

    /// The same for printk_log buffers.
    #[test]
    fn printk_log_survives_random_corruption(
        pokes in proptest::collection::vec((0usize..0x1400, any::<u64>()), 1..8),
        n in 1usize..80,
    ) {
        let mut li = PrintkLog::default().build(&msgs(n), BASE, n / 2);
        for (off, v) in pokes {
            let len = li.image.bytes.len();
            li.image.put_u64(BASE + (off % (len - 8)) as u64, v);
        }
        if let Ok(log) = read_img(&li.image, &Options::default()) {
            prop_assert!(log.records.len() <= 1024 / 16 + 2);
            let _ = text_of(&log);
        }
        let _ = read_img(&li.image, &Options { partial: true, live: false });
    }
}

#[test]
fn ringbuffer_records_are_held_encoded() {
    let spec = Ringbuffer { count_bits: 12, size_bits: 16, ..Ringbuffer::default() };
    let m: Vec<Msg> = (0..4096u64)
        .map(|i| {
            let msg = Msg::new(i * 1000, b"x").caller(i as u32);
            if i % 2 == 0 {
                msg.dev("pci", "+pci:0000:00:01.0")
            } else {
                msg
            }
        })
        .collect();
    let rb = spec.build(&m, BASE);
    let log = read_img(&rb.image, &Options::default()).unwrap();
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    let n = log.records.len();
    assert!(n > 4000, "{n} records kept");
    // Every field survives the encoding.
    for r in log.records.iter() {
        let i = r.seq as usize;
        assert_eq!((r.ts_nsec, r.text.as_slice(), r.caller_id), (i as u64 * 1000, &b"x"[..], Some(i as u32)));
        assert_eq!((r.level, r.facility), (Some(6), Some(0)));
        let dev = (r.subsystem.as_deref(), r.device.as_deref());
        assert_eq!(dev, if i % 2 == 0 { (Some("pci"), Some("+pci:0000:00:01.0")) } else { (None, None) });
    }
    // 27 bytes and the text, plus 4 + 3 and 4 + 17 for half of them.
    let (held, decoded) = (log.records.heap_bytes(), Records::from(recs(&log)).heap_bytes());
    assert!(held <= n * (28 + 28 / 2) + n / 2, "{held} bytes held for {n} records");
    // Counting capacities only: malloc rounds each small text up to 24 or 32 bytes more.
    assert!(decoded > 2 * held, "as Records: {decoded}, encoded: {held}");
}
