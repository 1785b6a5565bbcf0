//! arm64 dumps, read on this x86_64 host: the checks that need a written dump (the others
//! run on every fixture in `layout`, `filter` and `dmesg`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use vmcore_kernel::{Dump, OpenOptions};
use vmcore_physmem::{Container, PageState};
use vmcore_types::Pfn;

use crate::util::{fixture_names, read_with_vmcoreinfo, run, vmcoreinfo_text, Fixture};

#[test]
fn written_arm64_dumps_keep_upstreams_pages_and_read_back() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("aarch64")) {
        let f = Fixture::new(&name);
        let out = f.scratch.join("d31_zstd_ours.kdump");
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
        let ps = f.page_size() as usize;
        let (mut a, mut b) = (vec![0u8; ps], vec![0u8; ps]);
        let mut same = 0;
        for pfn in 0..ours.mem.max_pfn() {
            if ours.mem.read_page(Pfn(pfn), &mut b).unwrap() == PageState::Dumped {
                elf.mem.read_page(Pfn(pfn), &mut a).unwrap();
                assert!(a == b, "{name}: pfn {pfn:#x}");
                same += 1;
            }
        }
        assert!(same * ps > 40 << 20, "{name}: {same} pages");
        // The kernel log of the written file is still makedumpfile's, byte for byte.
        let (ok, log, err) = run(&[OsStr::new("dmesg"), out.as_os_str()]);
        assert!(ok, "{err}");
        assert_eq!(log, std::fs::read(f.expected("dmesg.txt")).unwrap(), "{name}: dmesg of our dump");
    }
}

/// A kernel built for 52-bit physical addresses with 4K pages (Debian's 6.12 arm64) on a
/// CPU without LPA2 runs with 48-bit addresses, and descriptor bits 9:8 are then the
/// shareability field, not PA[51:50]. Decoded as LPA2, every walk went to a physical
/// address past the dump (0xc0000... on the 48-bit fixture given MAX_PHYSMEM_BITS=52) and
/// the page-table method of page_offset disagreed with the others.
#[test]
fn a_52_bit_physical_build_on_48_bit_hardware_walks_as_48_bit() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("aarch64") && n.contains("va48")) {
        let f = Fixture::new(&name);
        let text = vmcoreinfo_text(&f.vmcore());
        assert!(text.contains("NUMBER(MAX_PHYSMEM_BITS)=48\n"), "{name}");
        let edited = f.scratch.join("vmcoreinfo-pa52.txt");
        std::fs::write(&edited, text.replace("NUMBER(MAX_PHYSMEM_BITS)=48\n", "NUMBER(MAX_PHYSMEM_BITS)=52\n"))
            .unwrap();
        let info = info_json_with(&edited, &f.vmcore());
        assert_eq!(info["warnings"], serde_json::json!([]), "{name}");
        let po = &info["layout"]["page_offset"];
        assert_eq!(po["sources"]["page_tables"], po["value"], "{name}: {po}");
        // The start of the vmalloc area (mapped from boot), read only through the page
        // tables, as without the edit. VMCOREINFO bounds the area since 6.0.
        let Some(vmalloc) = text.lines().find_map(|l| l.strip_prefix("NUMBER(VMALLOC_START)=")) else { continue };
        let vmcore = f.vmcore();
        let read = |extra: &[&OsStr]| {
            let mut a = vec![OsStr::new("read")];
            a.extend_from_slice(extra);
            a.extend([vmcore.as_os_str(), OsStr::new(vmalloc), OsStr::new("4096")]);
            run(&a)
        };
        let (ok, plain, err) = read(&[]);
        assert!(ok, "{err}");
        let (ok, pa52, err) = read(&[OsStr::new("--vmcoreinfo"), edited.as_os_str()]);
        assert!(ok && pa52 == plain, "{name}: {err}");
    }
}

/// A wrong NUMBER(kimage_voffset) loses to the kernel-image PT_LOAD when a page-table walk
/// of `_stext` confirms the latter (it won by the fixed order before, and every read of
/// the image went 2 MiB wrong).
#[test]
fn a_wrong_kimage_voffset_loses_to_the_one_the_page_tables_confirm() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("aarch64")) {
        let f = Fixture::new(&name);
        let text = vmcoreinfo_text(&f.vmcore());
        let line = text.lines().find(|l| l.starts_with("NUMBER(kimage_voffset)=")).unwrap();
        let value =
            u64::from_str_radix(line.trim_start_matches("NUMBER(kimage_voffset)=").trim_start_matches("0x"), 16)
                .unwrap();
        let edited = f.scratch.join("vmcoreinfo-kimage-voffset-2m-low.txt");
        std::fs::write(&edited, text.replace(line, &format!("NUMBER(kimage_voffset)={:#x}", value - 0x20_0000)))
            .unwrap();
        let (ok, out, err) =
            read_with_vmcoreinfo(&edited, &f.vmcore(), &format!("init_uts_ns+{:#x}", f.utsname_offset()), "5");
        assert!(ok && out == b"Linux", "{name}: {err}");
        assert!(
            err.contains("kimage_voffset: methods disagree")
                && err.contains("using pt_load, as vmcoreinfo's answer fails the check"),
            "{name}: {err}"
        );
    }
}

/// A kernel built for 52-bit VAs on a CPU with 48 (Debian 6.12 arm64 on most servers)
/// keeps PAGE_OFFSET at -(1 << 52) and lowers PHYS_OFFSET by 0xf << 48 instead. Taken as
/// stated, PHYS_OFFSET disagreed with the PT_LOADs, page_offset with itself, VA_BITS with
/// TCR_EL1.T1SZ, and the direct-map shortcut went off: false warnings on a healthy dump.
/// The 48-bit fixture's VMCOREINFO rewritten as such a kernel's must read as the original.
#[test]
fn a_52_bit_va_build_running_with_48_bits_reads_without_warnings() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("aarch64") && n.contains("va48")) {
        let f = Fixture::new(&name);
        let text = vmcoreinfo_text(&f.vmcore());
        let line = text.lines().find(|l| l.starts_with("NUMBER(PHYS_OFFSET)=")).unwrap();
        let phys =
            u64::from_str_radix(line.trim_start_matches("NUMBER(PHYS_OFFSET)=").trim_start_matches("0x"), 16).unwrap();
        let lowered = phys.wrapping_sub((1 << 52) - (1 << 48));
        let edited = f.scratch.join("vmcoreinfo-va52-on-48.txt");
        std::fs::write(
            &edited,
            text.replace(line, &format!("NUMBER(PHYS_OFFSET)={lowered:#x}"))
                .replace("NUMBER(VA_BITS)=48\n", "NUMBER(VA_BITS)=52\n"),
        )
        .unwrap();
        let info = info_json_with(&edited, &f.vmcore());
        assert_eq!(info["warnings"], serde_json::json!([]), "{name}");
        assert_eq!(info["layout"]["phys_offset"]["value"], serde_json::json!(format!("{phys:#x}")), "{name}");
        let (ok, out, err) =
            read_with_vmcoreinfo(&edited, &f.vmcore(), &format!("init_uts_ns+{:#x}", f.utsname_offset()), "5");
        assert!(ok && out == b"Linux" && !err.contains("warning"), "{name}: {err}");
        // A dump written from it states PHYS_OFFSET as VMCOREINFO does, as makedumpfile
        // writes it, not the one in use.
        let out = f.scratch.join("va52-on-48.kdump");
        let (ok, _, err) = run(&[
            OsStr::new("dump"),
            OsStr::new("-q"),
            OsStr::new("--vmcoreinfo"),
            edited.as_os_str(),
            f.vmcore().as_os_str(),
            out.as_os_str(),
        ]);
        assert!(ok, "{err}");
        let file = std::fs::read(&out).unwrap();
        let block = u32::from_le_bytes(file[428..432].try_into().unwrap()) as usize;
        assert_eq!(u64::from_le_bytes(file[block..block + 8].try_into().unwrap()), lowered, "{name}: phys_base");
    }
}

/// `vmcore info --json` of `vmcore` read with the VMCOREINFO file `vmcoreinfo`.
fn info_json_with(vmcoreinfo: &std::path::Path, vmcore: &std::path::Path) -> serde_json::Value {
    let (ok, out, err) = run(&[
        OsStr::new("info"),
        OsStr::new("--json"),
        OsStr::new("--vmcoreinfo"),
        vmcoreinfo.as_os_str(),
        vmcore.as_os_str(),
    ]);
    assert!(ok, "{err}");
    serde_json::from_slice(&out).unwrap()
}

/// The 64K-page dump of the tests below: 1 MiB of RAM at 1 GiB, the image at 64 KiB into
/// it; a level-2 block maps RAM at `WALKED` (outside the image and linear maps, so only the
/// walk reaches it). Its linear map starts `linear_shift` bytes above PAGE_OFFSET (KASLR
/// moves RAM up the linear map by lowering PHYS_OFFSET). Returns the file.
fn arm64_64k_dump(dir: &Path, linear_shift: u64) -> PathBuf {
    use vmcore_synth::elf::{vmcoreinfo_note, ElfVmcore, Load, EM_AARCH64};
    const PAGE: u64 = 0x1_0000;
    let stext = RAM + PAGE + KIMAGE_VOFFSET;
    let (swapper, pmd, pte) = (RAM + 2 * PAGE, RAM + 3 * PAGE, RAM + 4 * PAGE);
    let mut ram = vec![0u8; 16 * PAGE as usize];
    let mut put = |pa: u64, v: u64| {
        let at = (pa - RAM) as usize;
        ram[at..at + 8].copy_from_slice(&v.to_le_bytes());
    };
    let pgd_index = |va: u64| (va >> 42) & 0x3ff;
    let pmd_index = |va: u64| (va >> 29) & 0x1fff;
    // _stext through a table at each level, `WALKED` through a 512 MiB block.
    put(swapper + 8 * pgd_index(stext), pmd | 0b11);
    assert_eq!(pgd_index(stext), 960 + ((stext >> 42) & 0x3f));
    put(pmd + 8 * pmd_index(stext), pte | 0b11);
    put(pte + 8 * ((stext >> 16) & 0x1fff), (RAM + PAGE) | 0x703);
    put(pmd + 8 * pmd_index(WALKED), RAM | 0x701);
    ram[PAGE as usize..PAGE as usize + 12].copy_from_slice(b"stext marker");
    // Built for 52 bits, running with 48: PHYS_OFFSET lowered by the distance between the
    // two linear-map bases, and by the shift.
    let phys_offset = RAM.wrapping_sub((1 << 52) - (1 << 48)).wrapping_sub(linear_shift);
    let vmcoreinfo = format!(
        "OSRELEASE=6.8.0-64k\nPAGESIZE=65536\nSYMBOL(swapper_pg_dir)={:x}\nSYMBOL(_stext)={stext:x}\n\
         NUMBER(VA_BITS)=52\nNUMBER(kimage_voffset)={KIMAGE_VOFFSET:#x}\nNUMBER(PHYS_OFFSET)={phys_offset:#x}\n\
         NUMBER(TCR_EL1_T1SZ)=16\nKERNELOFFSET=0\n",
        swapper + KIMAGE_VOFFSET
    );
    let path = dir.join("arm64-64k.elf");
    let mut elf = ElfVmcore::new(EM_AARCH64);
    elf.notes = vec![vmcoreinfo_note(&vmcoreinfo)];
    // The linear map starts at PAGE_OFFSET for 48 bits, plus the shift, with the first RAM.
    elf.loads = vec![Load::full(RAM, 0xffff_0000_0000_0000 + linear_shift, ram.len() as u64)];
    elf.write_path(&path, |pa, buf| {
        let at = (pa - RAM) as usize;
        buf.copy_from_slice(&ram[at..at + buf.len()]);
    })
    .unwrap();
    path
}

const RAM: u64 = 0x4000_0000;
const KIMAGE_VOFFSET: u64 = 0xffff_8000_4000_0000;
const WALKED: u64 = 0xffff_8000_c001_0000;

/// A 64K-page kernel built for 52-bit VAs on a CPU with 48 (Ubuntu's -64k kernels on
/// Ampere Altra): swapper_pg_dir is sized for 52 bits, 1024 entries, and TTBR1 points
/// TTBR1_BADDR_4852_OFFSET (960 entries) into it, where the 48-bit range's entries are.
/// Walked from its start with 48-bit indexes, every kernel address missed its entry.
#[test]
fn a_64k_page_52_bit_va_build_on_48_bit_hardware_walks_from_ttbr1s_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = arm64_64k_dump(dir.path(), 0);
    let (ok, out, err) =
        run(&[OsStr::new("read"), path.as_os_str(), OsStr::new(&format!("{WALKED:#x}")), OsStr::new("12")]);
    assert!(ok && out == b"stext marker", "{err}");
    let (ok, out, err) = run(&[OsStr::new("info"), OsStr::new("--json"), path.as_os_str()]);
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(info["warnings"], serde_json::json!([]), "{info}");
    assert_eq!(info["layout"]["va_bits_actual"]["value"], "0x30", "{info}");
    assert_eq!(info["layout"]["kimage_voffset"]["value"], format!("{KIMAGE_VOFFSET:#x}"), "{info}");
    assert_eq!(info["layout"]["page_offset"]["value"], "0xffff000000000000", "{info}");
    assert_eq!(info["layout"]["phys_offset"]["value"], format!("{RAM:#x}"), "{info}");
}

/// KASLR also moves RAM up the linear map, lowering PHYS_OFFSET below the first RAM
/// address (5.10; later kernels on CPUs without LVA: 45.7 TiB up in a real 5.10 dump).
/// The PT_LOAD method took the lowest RAM for PHYS_OFFSET and warned on every such dump.
#[test]
fn a_randomized_linear_map_agrees_with_vmcoreinfos_phys_offset() {
    let dir = tempfile::tempdir().unwrap();
    let shift = 0x2dad_0000_0000;
    let path = arm64_64k_dump(dir.path(), shift);
    let (ok, out, err) = run(&[OsStr::new("info"), OsStr::new("--json"), path.as_os_str()]);
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(info["warnings"], serde_json::json!([]), "{info}");
    let phys = &info["layout"]["phys_offset"];
    assert_eq!(phys["value"], format!("{:#x}", RAM.wrapping_sub(shift)), "{phys}");
    assert_eq!(phys["sources"]["pt_load"], phys["sources"]["vmcoreinfo"], "{phys}");
    assert_eq!(info["layout"]["page_offset"]["sources"]["pt_load"], "0xffff000000000000", "{info}");
}
