//! arm64 dumps, read on this x86_64 host: the checks that need a written dump (the others
//! run on every fixture in `layout`, `filter` and `dmesg`).

use std::ffi::OsStr;

use vmcore_kernel::{Dump, OpenOptions};
use vmcore_physmem::{Container, PageState};
use vmcore_types::Pfn;

use crate::util::{fixture_names, run, Fixture};

#[test]
fn written_arm64_dumps_keep_upstreams_pages_and_read_back() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("aarch64")) {
        let f = Fixture::new(&name);
        let out = f.work.join("d31_zstd_ours.kdump");
        let _ = std::fs::remove_file(&out);
        let (ok, _, err) = run(&[
            OsStr::new("dump"),
            f.vmcore().as_os_str(),
            out.as_os_str(),
            OsStr::new("-d"),
            OsStr::new("31"),
            OsStr::new("-z"),
            OsStr::new("-q"),
        ]);
        assert!(ok, "{name}: {err}");
        let ours = Dump::open(std::slice::from_ref(&out), &OpenOptions::default()).unwrap();
        let Container::Kdump { mem, .. } = &ours.container else { panic!("{name}: not kdump") };
        let part = mem.primary().unwrap();
        assert_eq!(part.header.utsname.machine, "aarch64", "{name}");
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for pfn in 0..part.max_mapnr() {
            if part.is_dumpable(pfn).unwrap() {
                match ranges.last_mut() {
                    Some((_, end)) if *end == pfn => *end += 1,
                    _ => ranges.push((pfn, pfn + 1)),
                }
            }
        }
        assert_eq!(ranges, f.expected_d31(), "{name}: the 2nd bitmap");
        // Every page it holds equals vmcore.elf's.
        let elf = Dump::open(&[f.vmcore()], &OpenOptions::default()).unwrap();
        let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
        let mut same = 0;
        for pfn in 0..ours.mem.max_pfn() {
            if ours.mem.read_page(Pfn(pfn), &mut b).unwrap() == PageState::Dumped {
                elf.mem.read_page(Pfn(pfn), &mut a).unwrap();
                assert!(a == b, "{name}: pfn {pfn:#x}");
                same += 1;
            }
        }
        assert!(same > 10_000, "{name}: {same} pages");
        // The kernel log of the written file is still makedumpfile's, byte for byte.
        let (ok, log, err) = run(&[OsStr::new("dmesg"), out.as_os_str()]);
        assert!(ok, "{err}");
        assert_eq!(log, std::fs::read(f.expected("dmesg.txt")).unwrap(), "{name}: dmesg of our dump");
    }
}
