//! The `vmcore-synth` binary, run as a user would run it.
// Helpers of an integration test are not `#[test]` functions, so clippy's test allowances
// do not reach them.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use vmcore_formats::elf::ElfCore;
use vmcore_formats::kdump::{KdumpFile, PageRead};
use vmcore_synth::machine::REPORT_LINES;

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmcore-synth")).args(args).output().unwrap()
}

fn synth(out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![out.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    run(&args)
}

#[test]
fn elf_dump_with_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vmcore");
    let truth = dir.path().join("truth.json");
    let o = synth(&out, &["--layout", "sample", "--size", "4M", "--seed", "3", "--truth", truth.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let bytes = std::fs::read(&out).unwrap();
    let core = ElfCore::parse(&bytes).unwrap();
    assert_eq!(core.machine, 62);
    assert_eq!(
        core.loads.iter().map(|l| (l.paddr, l.vaddr, l.memsz)).collect::<Vec<_>>(),
        [(0x1000, 0xffff888000001000, 0x9f000), (0x100000, 0xffff888000100000, 0x300000)]
    );
    let vi = String::from_utf8(core.note(b"VMCOREINFO", 0).unwrap().desc.clone()).unwrap();
    assert!(vi.starts_with("OSRELEASE=6.1.0-synthetic\nPAGESIZE=4096\n"), "{vi}");
    assert_eq!(core.notes.iter().filter(|n| n.name == b"CORE" && n.ntype == 1).count(), 2);
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    assert_eq!(t, serde_json::json!({"release": "6.1.0-synthetic", "page_size": 4096, "max_pfn": 1024}));

    // Same seed, same bytes; another seed, other bytes.
    let again = dir.path().join("again");
    assert!(synth(&again, &["--layout", "sample", "--size", "4M", "--seed", "3"]).status.success());
    assert!(std::fs::read(&again).unwrap() == bytes);
    let other = dir.path().join("other");
    assert!(synth(&other, &["--layout", "sample", "--size", "4194304", "--seed", "4", "--format", "elf"])
        .status
        .success());
    assert!(std::fs::read(&other).unwrap() != bytes);
}

#[test]
fn kdump_dumps_hold_the_elf_dumps_memory() {
    let dir = tempfile::tempdir().unwrap();
    let elf_path = dir.path().join("vmcore.elf");
    assert!(synth(&elf_path, &["--layout", "sample", "--size", "2M", "--seed", "9"]).status.success());
    let elf = std::fs::read(&elf_path).unwrap();
    let core = ElfCore::parse(&elf).unwrap();
    for codec in ["zlib", "lzo", "snappy", "zstd", "none"] {
        let path = dir.path().join(format!("vmcore.{codec}"));
        let o =
            synth(&path, &["--layout", "sample", "--size", "2M", "--seed", "9", "--format", "kdump", "--codec", codec]);
        assert!(o.status.success(), "{codec}: {}", String::from_utf8_lossy(&o.stderr));
        let k = KdumpFile::parse(std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(k.header.header_version, 6);
        assert_eq!(k.max_mapnr(), 512);
        assert_eq!(k.compression().map(|c| c.name()).unwrap_or("none"), codec);
        assert_eq!(k.header.utsname.release, "6.1.0-synthetic");
        let vi = k.vmcoreinfo().unwrap().unwrap();
        assert_eq!(vi, core.note(b"VMCOREINFO", 0).unwrap().desc);
        let mut page = vec![0u8; 4096];
        let mut data = 0;
        for pfn in 0..512u64 {
            let seg = core.loads.iter().find(|s| (s.paddr..s.paddr + s.memsz).contains(&(pfn * 4096)));
            let got = k.read_page(pfn, &mut page).unwrap();
            match seg {
                None => assert_eq!(got, PageRead::Hole, "pfn {pfn:#x}"),
                Some(s) => {
                    assert_eq!(got, PageRead::Data, "pfn {pfn:#x}");
                    let at = (s.offset + pfn * 4096 - s.paddr) as usize;
                    assert!(page == elf[at..at + 4096], "pfn {pfn:#x}");
                    data += 1;
                }
            }
        }
        assert_eq!(data, 0x9f + 0x100);
    }
}

#[test]
fn existing_files_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vmcore");
    std::fs::write(&out, b"precious").unwrap();
    let o = synth(&out, &["--size", "64M"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("vmcore"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");

    // A clash on the truth file leaves no half-made dump behind.
    let fresh = dir.path().join("fresh");
    let o = synth(&fresh, &["--size", "64M", "--truth", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(!fresh.exists());
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
}

#[test]
fn bad_arguments_fail_before_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vmcore");
    for args in [
        &["--size", "12Q"][..],
        &["--size", "512K"],
        &["--size", "2M", "--format", "sadump"],
        &["--size", "2M", "--codec", "lz4"],
        &["--size", "64M", "--layout", "x86_64-9.9-l4"],
        &["--size", "64M", "--levels", "32"],
        &["--size", "16G", "--format", "kdump"],
        &[],
    ] {
        let o = synth(&out, args);
        assert!(!o.status.success(), "{args:?}");
        assert!(!out.exists(), "{args:?}");
    }
}

#[test]
fn kernel_dump_with_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vmcore");
    let truth = dir.path().join("truth.json");
    let o = synth(&out, &["--size", "80M", "--seed", "5", "--truth", truth.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < meta.len(), "free memory is written as holes");
    let bytes = std::fs::read(&out).unwrap();
    let core = ElfCore::parse(&bytes).unwrap();
    let vi = String::from_utf8(core.note(b"VMCOREINFO", 0).unwrap().desc.clone()).unwrap();
    assert!(vi.starts_with("OSRELEASE=6.1.0-synthetic\nBUILD-ID="), "{vi}");
    assert!(vi.contains("SYMBOL(kallsyms_names)=") && vi.contains("NUMBER(pgtable_l5_enabled)=0\n"), "{vi}");
    // The kernel image first, overlapping the direct map.
    assert!(core.loads[0].vaddr >= 0xffff_ffff_8000_0000);
    assert!(core.loads[1..].iter().any(|l| (l.paddr..l.paddr + l.memsz).contains(&core.loads[0].paddr)));
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    assert_eq!(t["layout_name"], "x86_64-6.1-l4");
    assert_eq!(t["levels"].as_object().unwrap().len(), 32);
    for (_, key) in REPORT_LINES {
        assert!(t["levels"]["31"][key].is_u64(), "{key}");
    }
    for key in ["kaslr_offset", "phys_base", "paging_levels", "pgd", "page_offset_base", "vmalloc_base", "vmemmap_base"]
    {
        assert!(t["layout"][key].as_str().unwrap().starts_with("0x"), "{key}");
    }
    assert_eq!(t["layout"]["paging_levels"], "0x4");
    // 2500 messages wrap the 128 KiB ring: the newest are there, with caller ids.
    let dmesg = t["dmesg"].as_str().unwrap();
    assert!(dmesg.contains("] [    T612] Kernel panic - not syncing: sysrq triggered crash\n"), "{dmesg}");
    assert!(!dmesg.contains("Linux version"), "the oldest messages were overwritten");
    // The direct-map PT_LOADs are at page_offset_base.
    let pob =
        u64::from_str_radix(t["layout"]["page_offset_base"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert!(core.loads[1..].iter().all(|l| l.vaddr == pob + l.paddr));

    // Deterministic.
    let again = dir.path().join("again");
    assert!(synth(&again, &["--size", "80M", "--seed", "5"]).status.success());
    assert!(std::fs::read(&again).unwrap() == bytes);

    // Chosen levels only; another layout.
    let t2 = dir.path().join("t2.json");
    let o = synth(
        &dir.path().join("l5"),
        &[
            "--size",
            "64M",
            "--layout",
            "x86_64-6.12-l5",
            "--levels",
            "0,31",
            "--no-kallsyms",
            "--truth",
            t2.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t2: serde_json::Value = serde_json::from_slice(&std::fs::read(&t2).unwrap()).unwrap();
    assert_eq!(t2["levels"].as_object().unwrap().keys().collect::<Vec<_>>(), ["0", "31"]);
    assert_eq!(t2["layout"]["paging_levels"], "0x5");
    assert!(t2["kallsyms"].is_null());
}

#[test]
fn kernel_dump_as_kdump_holds_the_elf_pages() {
    let dir = tempfile::tempdir().unwrap();
    let elf_path = dir.path().join("vmcore.elf");
    let kdump_path = dir.path().join("vmcore.kdump");
    assert!(synth(&elf_path, &["--size", "64M", "--seed", "8", "--layout", "x86_64-5.4-l4"]).status.success());
    let o = synth(
        &kdump_path,
        &["--size", "64M", "--seed", "8", "--layout", "x86_64-5.4-l4", "--format", "kdump", "--codec", "zstd"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let elf = std::fs::read(&elf_path).unwrap();
    let core = ElfCore::parse(&elf).unwrap();
    let k = KdumpFile::parse(std::fs::read(&kdump_path).unwrap()).unwrap();
    assert_eq!(k.header.utsname.release, "5.4.0-synthetic");
    assert_eq!(k.vmcoreinfo().unwrap().unwrap(), core.note(b"VMCOREINFO", 0).unwrap().desc);
    let mut page = vec![0u8; 4096];
    for seg in &core.loads[1..] {
        for i in (0..seg.filesz / 4096).step_by(7) {
            let pfn = seg.paddr / 4096 + i;
            assert_eq!(k.read_page(pfn, &mut page).unwrap(), PageRead::Data);
            let at = (seg.offset + i * 4096) as usize;
            assert!(page == elf[at..at + 4096], "pfn {pfn:#x}");
        }
    }
}
