//! Page classes against makedumpfile 1.7.9's own reports and bitmaps on the same dumps.

use std::ffi::OsStr;

use vmcore_kernel::machine::Machine;
use vmcore_kernel::{Dump, OpenOptions};

use crate::util::{fixture_names, run, Fixture};

const LEVELS: [u32; 7] = [0, 1, 2, 4, 8, 16, 31];

fn all() -> Vec<Fixture> {
    fixture_names().iter().map(|n| Fixture::new(n)).collect()
}

/// (key, value) pairs of a makedumpfile report, every line of it.
fn parse_report(text: &str) -> Vec<(&'static str, u64)> {
    let out = vmcore_synth::machine::parse_report(text);
    assert_eq!(out.len(), vmcore_synth::machine::REPORT_LINES.len(), "unparsed report:\n{text}");
    out
}

#[test]
fn dry_run_reports_equal_makedumpfile_for_every_level() {
    for f in all() {
        let vmcore = f.vmcore();
        for level in LEVELS {
            let expected = std::fs::read_to_string(f.expected(&format!("report_d{level}.txt"))).unwrap();
            let lv = level.to_string();
            let args =
                [OsStr::new("dump"), vmcore.as_os_str(), OsStr::new("-d"), OsStr::new(&lv), OsStr::new("--dry-run")];
            let (ok, out, err) = run(&args);
            assert!(ok, "{}: {err}", f.name);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{} -d {level}: the report text", f.name);
            let mut json_args = args.to_vec();
            json_args.push(OsStr::new("--json"));
            let (ok, out, err) = run(&json_args);
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            for (key, value) in parse_report(&expected) {
                assert_eq!(v[key], value, "{} -d {level}: {key}", f.name);
            }
            assert_eq!(v["dump_level"], level);
        }
    }
}

#[test]
fn level_31_keeps_exactly_the_pages_upstream_makedumpfile_keeps() {
    for f in all() {
        let expected = f.expected_d31();
        let dump = Dump::open(&[f.vmcore()], &OpenOptions::default()).unwrap();
        let machine = Machine::new(&dump).unwrap();
        let filtered = vmcore_filter::filter(&dump, &machine, 31, &vmcore_filter::Options::default()).unwrap();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for pfn in filtered.dumpable.iter() {
            match ranges.last_mut() {
                Some((_, end)) if *end == pfn => *end += 1,
                _ => ranges.push((pfn, pfn + 1)),
            }
        }
        assert_eq!(ranges.len(), expected.len(), "{}: number of ranges", f.name);
        assert_eq!(ranges, expected, "{}", f.name);
    }
}

#[test]
fn mem_usage_table_classifies_like_the_level_31_report() {
    for f in all() {
        let expected = std::fs::read_to_string(f.expected("report_d31.txt")).unwrap();
        let report: std::collections::HashMap<&str, u64> = parse_report(&expected).into_iter().collect();
        let vmcore = f.vmcore();
        let (ok, out, err) = run(&[OsStr::new("mem-usage"), OsStr::new("--json"), vmcore.as_os_str()]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        for key in ["zero", "non_pri_cache", "pri_cache", "user", "free"] {
            assert_eq!(v["classes"][key], report[key], "{}: {key}", f.name);
        }
        assert_eq!(v["total_pages"], report["original_pages"], "{}", f.name);
        assert_eq!(v["classes"]["kern_data"], report["remaining_pages"], "{}", f.name);
        assert_eq!(v["total_bytes"], report["original_pages"] * f.page_size());

        // A filtered kdump file still classifies from its struct pages (Debian's
        // makedumpfile makes them from the x86_64 dumps only).
        if !f.is_x86_64() {
            continue;
        }
        let Some(kdump) = f.makedumpfile("d31_zlib.kdump", &["-c", "-d", "31"]) else { continue };
        let (ok, out, err) = run(&[OsStr::new("mem-usage"), OsStr::new("--json"), kdump.as_os_str()]);
        assert!(ok, "{err}");
        let k: serde_json::Value = serde_json::from_slice(&out).unwrap();
        for key in ["non_pri_cache", "pri_cache", "user", "free"] {
            assert_eq!(k["classes"][key], report[key], "{} kdump: {key}", f.name);
        }
        assert!(k["not_in_dump"].as_u64().unwrap() > 0);
    }
}

/// On a machine whose frames makedumpfile's bitmaps hold whole (max_pfn a multiple of 4),
/// the 1st bitmap marks the frame a RAM segment ends inside (0x9f: RAM ends at 0x9fc00).
/// It is never dumpable; `mem-usage` of an ELF vmcore counted it as a zero page, one more
/// than the level-31 report of the same dump.
#[test]
fn mem_usage_leaves_out_a_segments_partial_last_page_as_the_report_does() {
    let dir = tempfile::tempdir().unwrap();
    let vmcore = crate::util::synthetic_elf(dir.path(), "m.elf", "x86_64-6.1-l4", 256 << 20, 7);
    // The BIOS area below 640 KiB reads as zeros in QEMU's guests; here the frame's RAM is
    // made so, which makes it a zero page to whoever reads it.
    let dump = Dump::open(std::slice::from_ref(&vmcore), &OpenOptions::default()).unwrap();
    assert_eq!(dump.mem.max_pfn() % 4, 0);
    let vmcore_physmem::Container::Elf { core, .. } = &dump.container else { panic!("not ELF") };
    let low = core.loads.iter().find(|s| s.paddr == 0x1000 && s.paddr + s.filesz == 0x9fc00).expect("RAM to 0x9fc00");
    let file = std::fs::OpenOptions::new().write(true).open(&vmcore).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0u8; 0xc00], low.offset + 0x9f000 - low.paddr).unwrap();
    drop(dump);
    let json = |args: &[&str]| {
        let mut a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        a.insert(1, vmcore.as_os_str());
        let (ok, out, err) = run(&a);
        assert!(ok, "{args:?}: {err}");
        serde_json::from_slice::<serde_json::Value>(&out).unwrap()
    };
    let usage = json(&["mem-usage", "--json"]);
    let report = json(&["dump", "-d", "31", "--dry-run", "--json"]);
    assert_eq!(usage["total_pages"], report["original_pages"]);
    for key in ["zero", "non_pri_cache", "pri_cache", "user", "free"] {
        assert_eq!(usage["classes"][key], report[key], "{key}");
    }
    assert_eq!(usage["classes"]["kern_data"], report["remaining_pages"]);
}
