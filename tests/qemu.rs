//! Dumps QEMU's `dump-guest-memory` writes (what `virsh dump --memory-only` runs), as a
//! synthetic machine: without `-device vmcoreinfo` they carry no VMCOREINFO, only the note
//! the kernel keeps in its own memory; their ELF header points at section headers. The
//! real thing is checked by scripts/vm/qemu-dump.sh.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use vmcore_formats::elf::test_support::note;
use vmcore_synth::machine::{Category, Layout, Machine, MachineSpec};

use crate::util::{have_makedumpfile, python_with, run};

/// The machine written as QEMU writes a guest without `-device vmcoreinfo`: no
/// VMCOREINFO note, `notes` (physical address, text) in RAM, and QEMU's ELF header, which
/// names two section headers and an e_ehsize of 8.
fn qemu_elf(dir: &Path, machine: &Machine, notes: &[(u64, String)]) -> PathBuf {
    qemu_elf_with(dir, machine, notes, |_| {})
}

/// [`qemu_elf`], its segments edited by `edit` first.
fn qemu_elf_with(
    dir: &Path,
    machine: &Machine,
    notes: &[(u64, String)],
    edit: impl Fn(&mut vmcore_synth::elf::ElfVmcore),
) -> PathBuf {
    let mut elf = machine.elf();
    elf.notes.retain(|(name, _, _)| name != "VMCOREINFO");
    edit(&mut elf);
    let notes: Vec<(u64, Vec<u8>)> =
        notes.iter().map(|(at, text)| (*at, note("VMCOREINFO", 0, text.as_bytes()))).collect();
    let mut image = std::io::Cursor::new(Vec::new());
    elf.write_to(&mut image, |paddr, buf| {
        machine.fill(paddr, buf);
        for (at, note) in &notes {
            for (i, b) in note.iter().enumerate() {
                if let Some(dst) = (at + i as u64).checked_sub(paddr).and_then(|o| buf.get_mut(o as usize)) {
                    *dst = *b;
                }
            }
        }
    })
    .unwrap();
    let mut image = image.into_inner();
    image[40..48].copy_from_slice(&0x40u64.to_le_bytes()); // e_shoff
    image[52..54].copy_from_slice(&8u16.to_le_bytes()); // e_ehsize
    image[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    image[60..62].copy_from_slice(&2u16.to_le_bytes()); // e_shnum
    image[62..64].copy_from_slice(&1u16.to_le_bytes()); // e_shstrndx
    let path = dir.join("qemu.elf");
    std::fs::write(&path, image).unwrap();
    path
}

fn machine() -> Machine {
    Machine::new(&MachineSpec::new(Layout::parse("x86_64-6.1-l4").unwrap(), 128 << 20, 3)).unwrap()
}

/// Physical addresses of two free pages in the dump, the second higher: their bytes
/// matter to nothing else, and free pages are what -d 31 leaves out.
fn free_pages(machine: &Machine) -> (u64, u64) {
    let free: Vec<u64> = (0..machine.max_pfn())
        .filter(|&pfn| {
            let page = machine.page(pfn);
            page.dumped && page.category == Category::Free
        })
        .collect();
    (free[10] * 4096, free[free.len() - 10] * 4096)
}

fn ok(args: &[&OsStr]) -> Vec<u8> {
    let (ok, out, err) = run(args);
    assert!(ok, "{args:?}: {err}");
    out
}

#[test]
fn a_qemu_dump_without_vmcoreinfo_is_read_and_rewritten_through_the_kernels_own_note() {
    let dir = tempfile::tempdir().unwrap();
    let machine = machine();
    let (_, high) = free_pages(&machine);
    let input = qemu_elf(dir.path(), &machine, &[(high, machine.vmcoreinfo().to_string())]);
    let info: serde_json::Value =
        serde_json::from_slice(&ok(&[OsStr::new("info"), OsStr::new("--json"), input.as_os_str()])).unwrap();
    assert_eq!(info["vmcoreinfo_source"], format!("memory-scan:{high:#x}"), "{info}");
    assert_eq!(info["release"], "6.1.0-synthetic");
    assert_eq!(info["warnings"], serde_json::json!([]), "{info}");
    let dmesg = ok(&[OsStr::new("dmesg"), input.as_os_str()]);
    assert_eq!(String::from_utf8_lossy(&dmesg), machine.dmesg());

    // What vmcore writes from it carries the VMCOREINFO as a note, for every reader.
    let kdump = dir.path().join("out.kdump");
    let elf = dir.path().join("out.elf");
    ok(&[OsStr::new("dump"), OsStr::new("-q"), OsStr::new("-l"), input.as_os_str(), kdump.as_os_str()]);
    ok(&[OsStr::new("dump"), OsStr::new("-q"), OsStr::new("-E"), input.as_os_str(), elf.as_os_str()]);
    for out in [&kdump, &elf] {
        let text = ok(&[OsStr::new("vmcoreinfo"), out.as_os_str()]);
        assert_eq!(String::from_utf8_lossy(&text), machine.vmcoreinfo(), "{}", out.display());
        let info: serde_json::Value =
            serde_json::from_slice(&ok(&[OsStr::new("info"), OsStr::new("--json"), out.as_os_str()])).unwrap();
        assert!(info["vmcoreinfo_source"] == "elf-note" || info["vmcoreinfo_source"] == "kdump-sub-header", "{info}");
    }
    // The ELF header is vmcore's own: no section headers, e_ehsize 64.
    let head = std::fs::read(&elf).unwrap();
    let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
    assert_eq!(&head[40..48], &[0; 8], "e_shoff");
    assert_eq!((u16_at(52), u16_at(60), u16_at(62)), (64, 0, 0), "e_ehsize, e_shnum, e_shstrndx");
    if let Some(py) = python_with("kdumpfile") {
        for out in [&kdump, &elf] {
            let o = std::process::Command::new(py)
                .args(["-c", "import kdumpfile,sys; sys.stdout.write(bytes(kdumpfile.kdumpfile(sys.argv[1]).attr['linux.vmcoreinfo.raw']).decode())"])
                .arg(out)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(String::from_utf8_lossy(&o.stdout), machine.vmcoreinfo(), "libkdumpfile: {}", out.display());
        }
    }
    if have_makedumpfile() {
        let txt = dir.path().join("dmesg.txt");
        let st = std::process::Command::new("makedumpfile").arg("--dump-dmesg").args([&kdump, &txt]).output().unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        let last = String::from_utf8_lossy(&machine.messages().last().unwrap().text).into_owned();
        assert!(std::fs::read_to_string(&txt).unwrap().contains(&last), "makedumpfile --dump-dmesg");
    }
}

/// A guest kernel before 4.10 exports no NUMBER(phys_base), and QEMU's ELF dump (without
/// paging) has no kernel-image segment: its PT_LOADs map physical memory to itself. Then
/// phys_base is found by the one 2 MiB step at which the image map reaches the kernel's
/// utsname (Ubuntu's 4.4 guests: vmcore could not read their QEMU dumps at all).
#[test]
fn a_qemu_dump_of_a_kernel_without_phys_base_finds_it_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let machine = machine();
    let (_, high) = free_pages(&machine);
    let text = machine.vmcoreinfo();
    let line = text.lines().find(|l| l.starts_with("NUMBER(phys_base)=")).unwrap();
    let phys_base: i64 = line.trim_start_matches("NUMBER(phys_base)=").parse().unwrap();
    assert_ne!(phys_base, 0, "a machine loaded where phys_base is 0 would prove little");
    let old = text.replace(&format!("{line}\n"), "");
    let input = qemu_elf_with(dir.path(), &machine, &[(high, old)], |elf| {
        elf.loads.retain(|l| l.vaddr < 0xffff_ffff_8000_0000);
        for l in &mut elf.loads {
            l.vaddr = l.paddr;
        }
    });
    let info: serde_json::Value =
        serde_json::from_slice(&ok(&[OsStr::new("info"), OsStr::new("--json"), input.as_os_str()])).unwrap();
    let pb = &info["layout"]["phys_base"];
    assert_eq!(pb["source"], "memory_scan", "{info}");
    assert_eq!(pb["value"], format!("{:#x}", phys_base as u64), "{info}");
    assert_eq!(info["warnings"], serde_json::json!([]), "{info}");
    let dmesg = ok(&[OsStr::new("dmesg"), input.as_os_str()]);
    assert_eq!(String::from_utf8_lossy(&dmesg), machine.dmesg());
}

/// A note of another kernel (one that ran before a kexec, say) found first is passed over:
/// the utsname its own addresses lead to says another release. It is named, and with no
/// other note it is the one the machine's check refuses, naming where it was found. A
/// page-aligned note wins over a 4-byte-aligned one before it.
#[test]
fn a_note_in_memory_of_another_kernel_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let machine = machine();
    let (low, high) = free_pages(&machine);
    let other = machine.vmcoreinfo().replace("OSRELEASE=6.1.0-synthetic", "OSRELEASE=5.10.0-other");
    let right = machine.vmcoreinfo().to_string();
    let input = qemu_elf(dir.path(), &machine, &[(low, other.clone()), (high, right.clone())]);
    let info: serde_json::Value =
        serde_json::from_slice(&ok(&[OsStr::new("info"), OsStr::new("--json"), input.as_os_str()])).unwrap();
    assert_eq!(info["vmcoreinfo_source"], format!("memory-scan:{high:#x}"), "{info}");
    assert!(info["notes"].to_string().contains(&format!("{low:#x}")), "{info}");
    let dmesg = ok(&[OsStr::new("dmesg"), input.as_os_str()]);
    assert_eq!(String::from_utf8_lossy(&dmesg), machine.dmesg());

    let input = qemu_elf(dir.path(), &machine, &[(low, other.clone())]);
    let (done, _, err) = run(&[OsStr::new("dmesg"), input.as_os_str()]);
    assert!(!done, "{err}");
    assert!(err.contains(&format!("found in memory at physical {low:#x}")) && err.contains("5.10.0-other"), "{err}");

    let input = qemu_elf(dir.path(), &machine, &[(high + 0x804, other), (high, right)]);
    let dmesg = ok(&[OsStr::new("dmesg"), input.as_os_str()]);
    assert_eq!(String::from_utf8_lossy(&dmesg), machine.dmesg());
}

/// QEMU's kdump files carry NUMBER(phys_base) read as hex (or 0 without VMCOREINFO) and a
/// utsname with the machine only: what vmcore writes from one has the machine's phys_base
/// and the kernel's own utsname, as what it writes from the ELF form of the same guest.
#[test]
fn a_qemu_kdump_files_bad_header_values_are_not_copied() {
    use vmcore_formats::codec::Codec;
    use vmcore_formats::raw::kdump::{header as h, sub_header as sh, UTS_LEN};
    let dir = tempfile::tempdir().unwrap();
    let machine = machine();
    let mut file = machine.kdump(Codec::Zlib).unwrap();
    let block = u32::from_le_bytes(file[h::BLOCK_SIZE..h::BLOCK_SIZE + 4].try_into().unwrap()) as usize;
    let phys_base = &mut file[block + sh::PHYS_BASE..block + sh::PHYS_BASE + 8];
    let truth = u64::from_le_bytes(phys_base.try_into().unwrap());
    let decimal = (truth as i64).to_string();
    let as_hex = u64::from_str_radix(decimal.trim_start_matches('-'), 16).unwrap();
    phys_base.copy_from_slice(&as_hex.to_le_bytes());
    let uts = &mut file[h::UTSNAME..h::UTSNAME + 6 * UTS_LEN];
    uts.fill(0);
    uts[4 * UTS_LEN..4 * UTS_LEN + 6].copy_from_slice(b"x86_64");
    let input = dir.path().join("qemu.kdump");
    std::fs::write(&input, &file).unwrap();
    let (from_kdump, from_elf) = (dir.path().join("from_kdump"), dir.path().join("from_elf"));
    let elf = dir.path().join("vmcore.elf");
    machine.write_elf(&elf).unwrap();
    let (done, _, err) =
        run(&[OsStr::new("dump"), OsStr::new("-q"), OsStr::new("-l"), input.as_os_str(), from_kdump.as_os_str()]);
    assert!(done && err.contains(&format!("kdump_header={as_hex:#x}")), "{err}");
    ok(&[OsStr::new("dump"), OsStr::new("-q"), OsStr::new("-l"), elf.as_os_str(), from_elf.as_os_str()]);
    let heads = |path: &Path| {
        let f = std::fs::read(path).unwrap();
        (f[h::UTSNAME..h::UTSNAME + 6 * UTS_LEN].to_vec(), f[block + sh::PHYS_BASE..block + sh::PHYS_BASE + 8].to_vec())
    };
    let (uts, base) = heads(&from_kdump);
    assert_eq!(base, truth.to_le_bytes(), "phys_base");
    assert_eq!(&uts[2 * UTS_LEN..2 * UTS_LEN + 15], b"6.1.0-synthetic");
    assert_eq!(heads(&from_kdump), heads(&from_elf));
}

/// QEMU writes arm64 guests' kdump files in blocks of 64 KiB (its "maximum page size"),
/// each bit and descriptor a block, whatever the kernel's page size, and names the machine
/// "Unknown": vmcore serves the blocks as the kernel's pages and tells the architecture
/// from VMCOREINFO. Here the x86_64 synthetic machine so written: the log, the page
/// classes and the dump written from it are those of its file in 4 KiB blocks.
#[test]
fn a_kdump_file_of_64k_blocks_holding_4k_pages_reads_as_the_machine() {
    use vmcore_formats::codec::Codec;
    use vmcore_synth::kdump::{write_ranges, KdumpSpec, PfnRange};
    const BLOCK: u64 = 65536;
    let dir = tempfile::tempdir().unwrap();
    let machine = machine();
    let per_block = BLOCK / 4096;
    let mut utsname = vmcore_synth::kdump::default_utsname();
    utsname[4] = "Unknown".into();
    let vmcoreinfo = machine.vmcoreinfo();
    let phys_base = vmcoreinfo.lines().find_map(|l| l.strip_prefix("NUMBER(phys_base)=")).unwrap();
    let spec = KdumpSpec {
        phys_base: phys_base.parse::<i64>().unwrap() as u64,
        page_size: BLOCK as u32,
        max_mapnr: machine.max_pfn().div_ceil(per_block),
        utsname,
        codec: Codec::Zlib,
        vmcoreinfo: Some(machine.vmcoreinfo().as_bytes().to_vec()),
        ..KdumpSpec::default()
    };
    let ranges: Vec<PfnRange> = machine
        .dumped_ram()
        .iter()
        .map(|&(s, e)| PfnRange { start: s / BLOCK, end: e.div_ceil(BLOCK), dumped: true })
        .collect();
    let (bytes, _) = write_ranges(&spec, &ranges, |block, buf| {
        for (i, page) in buf.chunks_mut(4096).enumerate() {
            machine.fill_page(block * per_block + i as u64, page);
        }
    })
    .unwrap();
    let blocks = dir.path().join("qemu-arm64-style.kdump");
    std::fs::write(&blocks, bytes).unwrap();
    // The same pages in blocks of 4 KiB, as makedumpfile writes them.
    let pages = KdumpSpec { page_size: 4096, max_mapnr: spec.max_mapnr * per_block, ..spec.clone() };
    let page_ranges: Vec<PfnRange> =
        ranges.iter().map(|r| PfnRange { start: r.start * per_block, end: r.end * per_block, dumped: true }).collect();
    let (bytes, _) = write_ranges(&pages, &page_ranges, |pfn, buf| machine.fill_page(pfn, buf)).unwrap();
    let reference = dir.path().join("pages.kdump");
    std::fs::write(&reference, bytes).unwrap();

    let info: serde_json::Value =
        serde_json::from_slice(&ok(&[OsStr::new("info"), OsStr::new("--json"), blocks.as_os_str()])).unwrap();
    assert_eq!((&info["page_size"], &info["arch"]), (&4096.into(), &"x86_64".into()), "{info}");
    assert_eq!(info["warnings"], serde_json::json!([]), "{info}");
    let notes = info["notes"].to_string();
    assert!(
        notes.contains("blocks of 65536 bytes hold 16 pages") && notes.contains("x86_64 from VMCOREINFO"),
        "{notes}"
    );
    let dmesg = ok(&[OsStr::new("dmesg"), blocks.as_os_str()]);
    assert_eq!(String::from_utf8_lossy(&dmesg), machine.dmesg());
    let usage = |input: &Path| ok(&[OsStr::new("mem-usage"), OsStr::new("--json"), input.as_os_str()]);
    assert_eq!(usage(&blocks), usage(&reference), "mem-usage");
    // The dumps written from each hold the same pages, in 4 KiB blocks.
    let (from_blocks, from_reference) = (dir.path().join("from_blocks"), dir.path().join("from_reference"));
    for (input, out) in [(&blocks, &from_blocks), (&reference, &from_reference)] {
        ok(&[
            OsStr::new("dump"),
            OsStr::new("-q"),
            OsStr::new("-d"),
            OsStr::new("31"),
            input.as_os_str(),
            out.as_os_str(),
        ]);
    }
    let read = |path: &Path| vmcore_kernel::Dump::open(&[path.to_path_buf()], &Default::default()).unwrap();
    let (a, b) = (read(&from_blocks), read(&from_reference));
    assert_eq!((a.mem.page_size(), a.mem.max_pfn()), (4096, b.mem.max_pfn()));
    let (mut pa, mut pb) = (vec![0u8; 4096], vec![0u8; 4096]);
    let mut compared = 0;
    for pfn in 0..b.mem.max_pfn() {
        let sa = a.mem.read_page(vmcore_types::Pfn(pfn), &mut pa).unwrap();
        let sb = b.mem.read_page(vmcore_types::Pfn(pfn), &mut pb).unwrap();
        assert_eq!(sa, sb, "pfn {pfn:#x}");
        if sa == vmcore_physmem::PageState::Dumped {
            assert!(pa == pb, "pfn {pfn:#x}");
            compared += 1;
        }
    }
    assert!(compared > 1000, "{compared} pages compared");
}
