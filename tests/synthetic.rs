//! Kernel generations the real fixtures do not cover, through vmcore-synth's images and
//! their ground truth: page classes at every level, the kernel log, and the layout.

use std::ffi::OsStr;

use vmcore_synth::machine::{Layout, Machine, MachineSpec};

use crate::util::run;

const LEVELS: [u8; 7] = [0, 1, 2, 4, 8, 16, 31];

fn image(layout: &str) -> (tempfile::TempDir, std::path::PathBuf, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let spec = MachineSpec::new(Layout::parse(layout).unwrap(), 160 << 20, 7);
    let machine = Machine::new(&spec).unwrap();
    let path = dir.path().join("vmcore.elf");
    machine.write_elf(&path).unwrap();
    let truth = serde_json::to_value(machine.truth(&LEVELS)).unwrap();
    (dir, path, truth)
}

fn check(layout: &str) {
    let (_dir, path, truth) = image(layout);
    for level in LEVELS {
        let lv = level.to_string();
        let (ok, out, err) = run(&[
            OsStr::new("dump"),
            path.as_os_str(),
            OsStr::new("-d"),
            OsStr::new(&lv),
            OsStr::new("--dry-run"),
            OsStr::new("--json"),
        ]);
        assert!(ok, "{layout} -d {level}: {err}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let expected = &truth["levels"][lv.as_str()];
        for (key, value) in expected.as_object().unwrap() {
            assert_eq!(&v[key], value, "{layout} -d {level}: {key}");
        }
    }
    let (ok, out, err) = run(&[OsStr::new("dmesg"), path.as_os_str()]);
    assert!(ok, "{layout}: {err}");
    assert_eq!(String::from_utf8_lossy(&out), truth["dmesg"].as_str().unwrap(), "{layout}: dmesg");
    let (ok, out, err) = run(&[OsStr::new("info"), OsStr::new("--json"), path.as_os_str()]);
    assert!(ok, "{layout}: {err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    for (key, value) in truth["layout"].as_object().unwrap() {
        assert_eq!(&v["layout"][key]["value"], value, "{layout}: layout {key}: {}", v["layout"][key]);
    }
    assert_eq!(v["warnings"], serde_json::json!([]), "{layout}: methods must agree");
}

#[test]
fn linux_2_6_32_pg_buddy_flag_and_plain_log_buf() {
    check("x86_64-2.6.32-l4");
}

#[test]
fn linux_5_4_printk_log_records_4_level() {
    check("x86_64-5.4-l4");
}

#[test]
fn linux_5_4_printk_log_records_5_level_without_kaslr() {
    check("x86_64-5.4-l5-nokaslr");
}

#[test]
fn linux_6_1_4_level() {
    check("x86_64-6.1-l4");
}

#[test]
fn linux_6_12_page_types_5_level() {
    check("x86_64-6.12-l5");
}

/// makedumpfile takes its non-cyclic path when its bitmap buffer (max_mapnr * 2 / 8 bytes,
/// rounded down) holds both bitmaps whole: max_mapnr a multiple of 4, as on this 160 MiB
/// machine (the 6.1 fixture's is not). Its 1st bitmap then also marks each segment's
/// partial last page (here pfn 0x9f of [0x1000, 0x9fc00)), and so must ours.
#[test]
fn the_dump_equals_debians_makedumpfile_on_a_non_cyclic_machine() {
    if !crate::util::have_makedumpfile() {
        return;
    }
    let (dir, path, _) = image("x86_64-6.1-l4");
    assert_same_file_as_makedumpfile(dir.path(), &path, &["-l", "-d", "31"], "kdump");
    // --split divides the buffer among the files: several cycles, the cyclic path's 1st
    // bitmap, without the partial page (vmcore marked it in every file).
    let names = |who: &str| (0..3).map(|i| dir.path().join(format!("{who}.split{i}"))).collect::<Vec<_>>();
    let (ours, theirs) = (names("ours"), names("mkd"));
    let mut cmd: Vec<&OsStr> = ["makedumpfile", "--split", "-l", "-d", "31"].iter().map(OsStr::new).collect();
    cmd.push(path.as_os_str());
    cmd.extend(ours.iter().map(|p| p.as_os_str()));
    let (ok, _, err) = run(&cmd);
    assert!(ok, "{err}");
    let mkd = std::process::Command::new("makedumpfile")
        .args(["--split", "-l", "-d", "31"])
        .arg(&path)
        .args(&theirs)
        .output()
        .unwrap();
    assert!(mkd.status.success(), "{}", String::from_utf8_lossy(&mkd.stderr));
    for (a, b) in ours.iter().zip(&theirs) {
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "{} differs from makedumpfile's", a.display());
    }
}

/// Every older kernel generation too: the kdump files at -d 31 and -d 1 and the ELF file
/// equal Debian makedumpfile's. Before 5.11 the utsname in the header sits after a 4-byte
/// count in `init_uts_ns`, and VMCOREINFO has no offset for it: vmcore wrote the count.
/// (6.12 only at -d 1: at -d 31 Debian's 1.7.2 predates its slab rule.)
#[test]
fn the_dump_equals_debians_makedumpfile_for_every_kernel_generation() {
    if !crate::util::have_makedumpfile() {
        return;
    }
    for layout in ["x86_64-2.6.32-l4", "x86_64-5.4-l4", "x86_64-5.4-l5-nokaslr", "x86_64-6.1-l5", "x86_64-6.12-l4"] {
        let (dir, path, _) = image(layout);
        let mut runs: Vec<(&[&str], &str)> = vec![(&["-l", "-d", "1"], "d1.kdump")];
        if !layout.contains("6.12") {
            runs.extend([(&["-l", "-d", "31"][..], "d31.kdump"), (&["-E", "-d", "31"], "d31.elf")]);
        }
        for (args, name) in runs {
            assert_same_file_as_makedumpfile(dir.path(), &path, args, &format!("{layout}.{name}"));
        }
    }
}

/// Writes `input` with `args` through vmcore's makedumpfile-compatible command line and
/// with Debian's makedumpfile, into `dir` (`ours.NAME`, `mkd.NAME`), and asserts the two
/// files are byte-identical.
fn assert_same_file_as_makedumpfile(dir: &std::path::Path, input: &std::path::Path, args: &[&str], name: &str) {
    let ours = dir.join(format!("ours.{name}"));
    let theirs = dir.join(format!("mkd.{name}"));
    let mut cmd: Vec<&OsStr> = vec![OsStr::new("makedumpfile")];
    cmd.extend(args.iter().map(OsStr::new));
    cmd.extend([input.as_os_str(), ours.as_os_str()]);
    let (ok, _, err) = run(&cmd);
    assert!(ok, "{args:?}: {err}");
    let mkd = std::process::Command::new("makedumpfile").args(args).arg(input).arg(&theirs).output().unwrap();
    assert!(mkd.status.success(), "{}", String::from_utf8_lossy(&mkd.stderr));
    let (a, b) = (std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
    assert_eq!(a.len(), b.len(), "{name} {args:?}");
    let first_difference = a.iter().zip(&b).position(|(x, y)| x != y);
    assert_eq!(first_difference, None, "{name} {args:?}: ours and makedumpfile's differ");
}

/// Moves the start of the PT_LOAD at physical `paddr` up by `by` bytes (p_offset and
/// p_vaddr with it): RAM that starts inside a page, as e820 ranges may.
fn start_segment_later(path: &std::path::Path, paddr: u64, by: u64) {
    let mut elf = std::fs::read(path).unwrap();
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let phoff = u64_at(&elf, 32) as usize;
    let phnum = u16::from_le_bytes([elf[56], elf[57]]) as usize;
    let mut moved = 0;
    for ph in (0..phnum).map(|i| phoff + 56 * i) {
        if u32::from_le_bytes(elf[ph..ph + 4].try_into().unwrap()) == 1 && u64_at(&elf, ph + 24) == paddr {
            // p_offset, p_vaddr, p_paddr up; p_filesz, p_memsz down.
            for (field, delta) in
                [(8, by as i64), (16, by as i64), (24, by as i64), (32, -(by as i64)), (40, -(by as i64))]
            {
                let v = u64_at(&elf, ph + field).wrapping_add_signed(delta);
                elf[ph + field..ph + field + 8].copy_from_slice(&v.to_le_bytes());
            }
            moved += 1;
        }
    }
    assert_eq!(moved, 1, "no PT_LOAD at {paddr:#x}");
    std::fs::write(path, elf).unwrap();
}

/// A segment starting inside a page (RAM from 0x1400): the page is RAM from there on and
/// reads as zeros before it, as makedumpfile reads it. The kdump and ELF files equal Debian
/// makedumpfile's. vmcore used to stop at pfn 0x1: "to be dumped but the input has it Hole".
#[test]
fn ram_starting_inside_a_page_dumps_as_makedumpfile_dumps_it() {
    if !crate::util::have_makedumpfile() {
        return;
    }
    let (dir, path, _) = image("x86_64-6.1-l4");
    start_segment_later(&path, 0x1000, 0x400);
    for (args, name) in [(["-l", "-d", "31"], "kdump"), (["-E", "-d", "1"], "elf")] {
        assert_same_file_as_makedumpfile(dir.path(), &path, &args, name);
    }
}

/// The struct-page scan on several threads gives the one-thread result, also when an
/// exclusion runs from one unit of work into the next. With units of one batch (512
/// frames), a free buddy block of order 10 spans two; a stale buddy mark planted in the
/// struct page at its middle must be skipped as in one pass, so the unit holding it is
/// scanned again from the block's end. Without that rescan the mark would exclude 512
/// frames that one pass keeps.
#[test]
fn the_scan_on_several_threads_equals_one_thread() {
    use std::os::unix::fs::FileExt;
    use vmcore_kernel::{machine::Machine as Kernel, mm::MemMap, Dump, OpenOptions};
    use vmcore_physmem::Container;

    let (_dir, path, _truth) = image("x86_64-6.1-l4");
    let open = || {
        let dump = Dump::open(std::slice::from_ref(&path), &OpenOptions::default()).unwrap();
        let machine = Kernel::new(&dump).unwrap();
        (dump, machine)
    };
    let (dump, machine) = open();
    let before = vmcore_filter::filter(&dump, &machine, 16, &vmcore_filter::Options::default()).unwrap();
    // A block of 1024 free frames followed by 512 frames not all free.
    let block = (0..before.present.len() / 1024)
        .map(|b| b * 1024)
        .find(|&b| {
            (b..b + 1024).all(|p| before.present.get(p) && !before.dumpable.get(p))
                && (b + 1024..b + 1536).any(|p| before.dumpable.get(p))
        })
        .expect("an order-10 free block before kept frames");
    let vi = dump.require_vmcoreinfo().unwrap();
    let memmap = MemMap::discover(vi, &machine.kmem, before.present.len(), 4096).unwrap();
    let struct_page = |pfn: u64| {
        let s = memmap.sections.iter().find(|s| (s.pfn_start..s.pfn_end).contains(&pfn)).unwrap();
        s.mem_map + (pfn - s.pfn_start) * memmap.page_struct_size
    };
    let mut head = vec![0u8; memmap.page_struct_size as usize];
    machine.kmem.read(struct_page(block), &mut head).unwrap();
    let paddr = machine.kmem.translate(struct_page(block + 512)).unwrap();
    let Container::Elf { core, .. } = &dump.container else { panic!("an ELF image") };
    let seg = core.loads.iter().find(|s| (s.paddr..s.paddr + s.filesz).contains(&paddr)).unwrap();
    let offset = seg.offset + (paddr - seg.paddr);
    drop((machine, dump));
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&head, offset).unwrap();

    let (dump, machine) = open();
    for level in [16, 31] {
        let one = vmcore_filter::filter(&dump, &machine, level, &vmcore_filter::Options::default()).unwrap();
        if level == 16 {
            assert_eq!(one.stats, before.stats, "one pass skips the mark inside the block");
            assert!(one.dumpable == before.dumpable);
        }
        for (threads, unit_pfns) in [(2, 512), (3, 512), (3, 1536), (2, 32768)] {
            let opts = vmcore_filter::Options { threads, unit_pfns, ..vmcore_filter::Options::default() };
            let many = vmcore_filter::filter(&dump, &machine, level, &opts).unwrap();
            assert_eq!(many.stats, one.stats, "-d {level}, {threads} threads, units of {unit_pfns}");
            assert!(many.dumpable == one.dumpable, "-d {level}, {threads} threads, units of {unit_pfns}: bitmap");
        }
    }
}

/// libkdumpfile reads kernel virtual addresses with its own layout detection and page-table
/// walker: on every generation (4- and 5-level paging, with and without KASLR) it reads
/// what vmcore reads at the image, direct-map and vmemmap addresses.
#[test]
fn kernel_virtual_reads_equal_libkdumpfiles_on_every_generation() {
    const SCRIPT: &str = r#"
import sys, kdumpfile
k = kdumpfile.kdumpfile(sys.argv[1])
k.attr["addrxlat.ostype"] = "linux"
for line in open(sys.argv[2]):
    try:
        print(bytes(k.read(kdumpfile.KDUMP_KVADDR, int(line, 16), 64)).hex())
    except Exception:
        print("error")
"#;
    let Some(py) = crate::util::python_with("kdumpfile") else { return };
    for layout in ["x86_64-2.6.32-l4", "x86_64-5.4-l4", "x86_64-5.4-l5-nokaslr", "x86_64-6.1-l4", "x86_64-6.12-l5"] {
        let (dir, path, truth) = image(layout);
        let base = |key: &str| {
            u64::from_str_radix(truth["layout"][key].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        let dump =
            vmcore_kernel::Dump::open(std::slice::from_ref(&path), &vmcore_kernel::OpenOptions::default()).unwrap();
        let machine = vmcore_kernel::machine::Machine::without_symbols(&dump).unwrap();
        let uts = dump.vmcoreinfo.as_ref().unwrap().symbol("init_uts_ns").unwrap();
        let mut addrs = vec![uts];
        // (From 1 MiB: libkdumpfile reads the absent page 0 as zeros.)
        addrs.extend((1u64 << 20..160 << 20).step_by(5 << 20).map(|pa| base("page_offset_base") + pa + 0x123));
        addrs.extend((0..(160u64 << 20) / 4096).step_by(1999).map(|pfn| base("vmemmap_base") + 64 * pfn));
        let list = dir.path().join("addresses");
        std::fs::write(&list, addrs.iter().map(|a| format!("{a:x}\n")).collect::<String>()).unwrap();
        let out = std::process::Command::new(py).args(["-c", SCRIPT]).arg(&path).arg(&list).output().unwrap();
        assert!(out.status.success(), "{layout}: {}", String::from_utf8_lossy(&out.stderr));
        let theirs: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
        assert_eq!(theirs.len(), addrs.len(), "{layout}");
        let mut read = 0;
        for (addr, their) in addrs.iter().zip(&theirs) {
            let mut buf = [0u8; 64];
            let ours = match machine.kmem.read(*addr, &mut buf) {
                Ok(()) => buf.iter().map(|b| format!("{b:02x}")).collect(),
                Err(_) => "error".to_string(),
            };
            assert_eq!(&ours, their, "{layout}: {addr:#x}");
            read += usize::from(ours != "error");
        }
        // The init_uts_ns read, all of RAM's direct map, and the struct pages of RAM.
        assert!(read > addrs.len() * 9 / 10, "{layout}: {read} of {} read", addrs.len());
        assert!(theirs[0].contains(&"Linux".bytes().map(|b| format!("{b:02x}")).collect::<String>()), "{layout}");
    }
}
