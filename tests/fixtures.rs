//! Real kernel dumps (../shared/fixtures), next to what the real tools said about them.

use std::ffi::OsStr;
use std::path::PathBuf;

use vmcore_kernel::{Dump, OpenOptions};
use vmcore_physmem::{Error, PageState, PhysMem, ReadOptions};
use vmcore_types::{Pfn, PhysAddr};

use crate::util::{fixture_names, run, Fixture};

fn open(paths: &[PathBuf]) -> Dump {
    Dump::open(paths, &OpenOptions::default()).unwrap_or_else(|e| panic!("open {paths:?}: {e}"))
}

/// "Total pages" of a makedumpfile report: its max_mapnr.
fn report_total_pages(f: &Fixture) -> u64 {
    let text = std::fs::read_to_string(f.expected("report_d0.txt")).unwrap();
    let line = text.lines().find(|l| l.starts_with("Total pages")).unwrap();
    let hex = line.split(':').nth(1).unwrap().trim().trim_start_matches("0x");
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn vmcoreinfo_is_byte_identical_to_the_note() {
    for name in fixture_names() {
        let f = Fixture::new(&name);
        let expected = std::fs::read(f.expected("vmcoreinfo.txt")).unwrap();
        let dump = open(&[f.vmcore()]);
        assert_eq!(dump.require_vmcoreinfo().unwrap().raw(), &expected[..], "{name}: library");
        let (ok, out, err) = run(&[OsStr::new("vmcoreinfo"), f.vmcore().as_os_str()]);
        assert!(ok, "{name}: {err}");
        assert_eq!(out, expected, "{name}: vmcore vmcoreinfo");
        // --json: the same lines, in order, KEY=VALUE each.
        let (ok, out, err) = run(&[OsStr::new("vmcoreinfo"), OsStr::new("--json"), f.vmcore().as_os_str()]);
        assert!(ok, "{name}: {err}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["source"], "elf-note", "{name}");
        let lines: Vec<String> = v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| format!("{}={}", l["key"].as_str().unwrap(), l["value"].as_str().unwrap()))
            .collect();
        let text = String::from_utf8_lossy(&expected);
        let want: Vec<&str> = text.trim_end_matches('\0').lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines, want, "{name}: vmcoreinfo --json");
    }
}

#[test]
fn info_json_gives_release_page_size_and_max_pfn() {
    for name in fixture_names() {
        let f = Fixture::new(&name);
        let (ok, out, err) = run(&[OsStr::new("info"), OsStr::new("--json"), f.vmcore().as_os_str()]);
        assert!(ok, "{name}: {err}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let uname = std::fs::read_to_string(f.dir.join("live/uname")).unwrap();
        assert_eq!(v["release"], uname.trim(), "{name}");
        assert_eq!(v["page_size"], f.page_size(), "{name}");
        assert_eq!(v["max_pfn"], report_total_pages(&f), "{name}: max_pfn vs makedumpfile's Total pages");
        assert_eq!(v["format"], "elf", "{name}");
        let arch = if f.is_x86_64() { "x86_64" } else { "aarch64" };
        assert_eq!(v["arch"], arch, "{name}");
        assert!(v["ranges"].as_array().is_some_and(|r| !r.is_empty()), "{name}");
    }
}

/// Walks every pfn of `other` against the same pfn of the ELF vmcore it was made from:
/// dumped pages must be byte-identical, excluded ones must read as "excluded" and be RAM
/// in the vmcore. Returns (dumped, excluded) counts.
fn compare_with_elf(name: &str, elf: &dyn PhysMem, other: &dyn PhysMem) -> (u64, u64) {
    let ps = elf.page_size() as usize;
    let (mut a, mut b) = (vec![0u8; ps], vec![0u8; ps]);
    let (mut dumped, mut excluded) = (0, 0);
    assert_eq!(other.max_pfn(), elf.max_pfn(), "{name}: max pfn");
    for pfn in 0..other.max_pfn() {
        let pfn = Pfn(pfn);
        match other.read_page(pfn, &mut b).unwrap() {
            PageState::Dumped => {
                assert_eq!(elf.read_page(pfn, &mut a).unwrap(), PageState::Dumped, "{name}: pfn {pfn}");
                assert!(a == b, "{name}: pfn {pfn} differs from vmcore.elf");
                dumped += 1;
            }
            PageState::Excluded => {
                assert_eq!(other.page_state(pfn).unwrap(), PageState::Excluded);
                assert_eq!(elf.page_state(pfn).unwrap(), PageState::Dumped, "{name}: excluded pfn {pfn} is RAM");
                let addr = PhysAddr(pfn.0 * ps as u64 + 8);
                let err = other.read(addr, &mut b[..16], ReadOptions::default()).unwrap_err();
                assert!(matches!(err, Error::Excluded { .. }), "{name}: {err}");
                assert!(err.to_string().contains("excluded"));
                other.read(addr, &mut b[..16], ReadOptions { excluded_as_zero: true }).unwrap();
                assert_eq!(&b[..16], &[0u8; 16]);
                excluded += 1;
            }
            PageState::Hole => {}
            s => panic!("{name}: pfn {pfn}: unexpected {s:?}"),
        }
    }
    assert!(dumped > 0 && excluded > 0, "{name}: {dumped} dumped, {excluded} excluded");
    (dumped, excluded)
}

fn x86_fixtures() -> Vec<Fixture> {
    fixture_names().iter().map(|n| Fixture::new(n)).filter(|f| f.is_x86_64()).collect()
}

#[test]
fn kdump_compressed_zlib_pages_equal_the_vmcore() {
    for f in x86_fixtures() {
        let Some(kdump) = f.makedumpfile("d31_zlib.kdump", &["-c", "-d", "31"]) else { return };
        let elf = open(&[f.vmcore()]);
        let kd = open(std::slice::from_ref(&kdump));
        let (dumped, excluded) = compare_with_elf(&f.name, &*elf.mem, &*kd.mem);
        let (ok, out, err) = run(&[OsStr::new("info"), OsStr::new("--json"), kdump.as_os_str()]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["format"], "kdump");
        assert_eq!(v["header_version"], 6);
        assert_eq!(v["dump_level"], 31);
        assert_eq!(v["compression"], "zlib");
        assert_eq!(v["dumpable_pages"], dumped, "{}", f.name);
        assert_eq!(v["excluded_pages"], excluded, "{}", f.name);
        let expected = std::fs::read(f.expected("vmcoreinfo.txt")).unwrap();
        assert_eq!(kd.require_vmcoreinfo().unwrap().raw(), &expected[..], "{}: VMCOREINFO of the sub header", f.name);
    }
}

#[test]
fn flattened_lzo_stream_is_read_in_place() {
    for f in x86_fixtures() {
        let Some(flat) = f.makedumpfile("d31_lzo.flat", &["-F", "-l", "-d", "31"]) else { return };
        let elf = open(&[f.vmcore()]);
        let fl = open(std::slice::from_ref(&flat));
        assert_eq!(fl.container.info().format, "flattened-kdump");
        compare_with_elf(&f.name, &*elf.mem, &*fl.mem);
        let expected = std::fs::read(f.expected("vmcoreinfo.txt")).unwrap();
        assert_eq!(fl.require_vmcoreinfo().unwrap().raw(), &expected[..], "{}", f.name);
    }
}

#[test]
fn split_set_reads_as_one_dump() {
    for f in x86_fixtures() {
        // 4 MiB split blocks, so that a 512 MiB machine really splits in three.
        let Some(parts) = f.makedumpfile_split("d31_split", 3, &["-c", "-d", "31", "--splitblock-size", "4096"]) else {
            return;
        };
        let Some(whole) = f.makedumpfile("d31_zlib.kdump", &["-c", "-d", "31"]) else { return };
        let elf = open(&[f.vmcore()]);
        let split = open(&parts);
        assert_eq!(split.container.info().format, "kdump-split");
        if let vmcore_physmem::Container::Kdump { mem, .. } = &split.container {
            let ranges: Vec<(u64, u64)> = mem.parts().iter().map(|p| p.pfn_range()).collect();
            assert!(ranges.iter().all(|(s, e)| s < e), "{}: every part holds pages: {ranges:x?}", f.name);
        }
        let (dumped, _) = compare_with_elf(&f.name, &*elf.mem, &*split.mem);
        let whole = open(&[whole]);
        let (whole_dumped, _) = compare_with_elf(&f.name, &*elf.mem, &*whole.mem);
        assert_eq!(dumped, whole_dumped, "{}", f.name);
        // In any order; a missing part is an error that says so.
        let reversed: Vec<PathBuf> = parts.iter().rev().cloned().collect();
        assert_eq!(open(&reversed).mem.max_pfn(), elf.mem.max_pfn());
        let err = Dump::open(&parts[..2], &OpenOptions::default()).unwrap_err().to_string();
        assert!(err.contains("give every file of the set"), "{err}");
    }
}

#[test]
fn cli_reads_physical_memory_and_refuses_excluded_pages() {
    for f in x86_fixtures() {
        let Some(kdump) = f.makedumpfile("d31_zlib.kdump", &["-c", "-d", "31"]) else { return };
        let kd = open(std::slice::from_ref(&kdump));
        let elf = open(&[f.vmcore()]);
        let mut page = vec![0u8; 4096];
        let first_dumped = (0..kd.mem.max_pfn())
            .find(|&p| kd.mem.page_state(Pfn(p)).unwrap() == PageState::Dumped && p > 0x100)
            .unwrap();
        let first_excluded =
            (0..kd.mem.max_pfn()).find(|&p| kd.mem.page_state(Pfn(p)).unwrap() == PageState::Excluded).unwrap();
        elf.mem.read_page(Pfn(first_dumped), &mut page).unwrap();
        let addr = format!("{:#x}", first_dumped * 4096 + 100);
        for file in [&kdump, &f.vmcore()] {
            let (ok, out, err) = run(&[
                OsStr::new("read"),
                file.as_os_str(),
                OsStr::new(&addr),
                OsStr::new("200"),
                OsStr::new("--phys"),
            ]);
            assert!(ok, "{err}");
            assert_eq!(out, &page[100..300]);
        }
        let addr = format!("{:#x}", first_excluded * 4096);
        let (ok, out, err) =
            run(&[OsStr::new("read"), kdump.as_os_str(), OsStr::new(&addr), OsStr::new("16"), OsStr::new("--phys")]);
        assert!(!ok && out.is_empty(), "reading an excluded page must fail");
        assert!(err.contains("excluded"), "{err}");
        let (ok, out, _) = run(&[
            OsStr::new("read"),
            kdump.as_os_str(),
            OsStr::new(&addr),
            OsStr::new("16"),
            OsStr::new("--phys"),
            OsStr::new("--zero-excluded"),
        ]);
        assert!(ok);
        assert_eq!(out, vec![0u8; 16]);
        // The same page by its direct-map address: --zero-excluded holds there too (it was
        // ignored for virtual addresses).
        let (ok, info, err) = run(&[OsStr::new("info"), OsStr::new("--json"), kdump.as_os_str()]);
        assert!(ok, "{err}");
        let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
        let base = info["layout"]["page_offset_base"]["value"].as_str().unwrap();
        let base = u64::from_str_radix(base.trim_start_matches("0x"), 16).unwrap();
        let vaddr = format!("{:#x}", base + first_excluded * 4096);
        let read = |extra: Option<&str>| {
            let mut a = vec![OsStr::new("read"), kdump.as_os_str(), OsStr::new(&vaddr), OsStr::new("16")];
            a.extend(extra.map(OsStr::new));
            run(&a)
        };
        let (ok, _, err) = read(None);
        assert!(!ok && err.contains("excluded"), "{err}");
        let (ok, out, err) = read(Some("--zero-excluded"));
        assert!(ok && out == vec![0u8; 16], "{err}");
    }
}
