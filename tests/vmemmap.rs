//! `-e` (leave out unused vmemmap pages) against Debian's makedumpfile: byte-identical
//! files on synthetic machines of three kernel generations (56- and 64-byte struct pages,
//! a vmemmap in one stretch and in two), and the same pages left out of the 6.12 fixture.

use std::ffi::OsStr;
use std::path::Path;

use vmcore_formats::raw::kdump::DUMP_DH_EXCLUDED_VMEMMAP;
use vmcore_kernel::{Dump, OpenOptions};
use vmcore_physmem::{Container, PageState};
use vmcore_synth::machine::{Layout, Machine, MachineSpec};
use vmcore_types::Pfn;

use crate::util::{fixture, have_makedumpfile, run};

/// The frames kept in a kdump-compressed file, and its header status.
fn kept_frames(path: &Path) -> (Vec<u64>, u32) {
    let dump = Dump::open(&[path.to_path_buf()], &OpenOptions::default()).unwrap();
    let Container::Kdump { mem: split, .. } = &dump.container else { panic!("{}: not kdump", path.display()) };
    let status = split.primary().unwrap().header.status;
    let kept =
        (0..dump.mem.max_pfn()).filter(|&p| matches!(dump.mem.page_state(Pfn(p)), Ok(PageState::Dumped))).collect();
    (kept, status)
}

/// The frames `with` lacks of those `without` keeps.
fn left_out(without: &Path, with: &Path) -> Vec<u64> {
    let (a, _) = kept_frames(without);
    let (b, _) = kept_frames(with);
    let b: std::collections::HashSet<u64> = b.into_iter().collect();
    a.into_iter().filter(|p| !b.contains(p)).collect()
}

/// `vmcore makedumpfile ARGS IN OUT`, asserting success; its stderr.
fn front_end(args: &[&str], input: &Path, out: &Path) -> String {
    let mut cmd: Vec<&OsStr> = vec![OsStr::new("makedumpfile")];
    cmd.extend(args.iter().map(OsStr::new));
    cmd.extend([input.as_os_str(), out.as_os_str()]);
    let (ok, _, err) = run(&cmd);
    assert!(ok, "{args:?}: {err}");
    err
}

fn debian(args: &[&str], input: &Path, out: &Path) {
    let o = std::process::Command::new("makedumpfile").args(args).arg(input).arg(out).output().unwrap();
    assert!(o.status.success(), "makedumpfile {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// The count in "excluded N unused vmemmap pages".
fn excluded_count(stderr: &str) -> u64 {
    let at = stderr.find("excluded ").unwrap_or_else(|| panic!("no count in: {stderr}"));
    stderr[at + 9..].split(' ').next().unwrap().parse().unwrap()
}

/// A synthetic machine: layout, RAM, seed, and the formats written with the vmemmap pages
/// each leaves out.
type SyntheticCase = (&'static str, u64, u64, &'static [(&'static str, u64)]);

/// Each machine, kdump (-l) and ELF (-E) at -d 31: the file equals Debian's makedumpfile's
/// byte for byte, and it left out as many vmemmap pages as vmcore reports (not none). The
/// 4 GiB 2.6.32 machine has 56-byte struct pages, whose vmemmap pages do not line up with
/// the bitmap's words, and a vmemmap in two stretches around the PCI hole. 5-level
/// machines are not compared: makedumpfile 1.7.2 walks their vmemmap with four levels.
#[test]
fn unused_vmemmap_pages_are_left_out_as_debians_makedumpfile_leaves_them_out() {
    if !have_makedumpfile() {
        return;
    }
    // (layout, RAM, seed, the formats compared, pages left out). Most of each machine is
    // free memory, which the image leaves as holes. In the 4 GiB one a run of free frames
    // reaches the end of the vmemmap's second stretch, inside a bitmap block: makedumpfile
    // drops that run (20 vmemmap pages kept). In the 3500 MiB one the vmemmap is mapped
    // past the struct page of the last frame, where makedumpfile does not look. ELF output
    // leaves zero pages out too, and makedumpfile counts them as excluded before -e looks
    // (26 more vmemmap pages in the 4 GiB one); that machine also has an empty input
    // segment, whose ELF header takes the running offset.
    let machines: [SyntheticCase; 4] = [
        ("x86_64-6.1-l4", 160 << 20, 7, &[("-l", 218), ("-E", 266)]),
        ("x86_64-5.4-l4", 1 << 30, 3, &[("-l", 3287)]),
        ("x86_64-2.6.32-l4", 4 << 30, 9, &[("-l", 12593), ("-E", 12619)]),
        ("x86_64-2.6.32-l4", 3500 << 20, 4, &[("-l", 10603)]),
    ];
    for (layout, size, seed, formats) in machines {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("vmcore.elf");
        let used = if size == 3500 << 20 { 64 << 20 } else { 96 << 20 };
        let spec = MachineSpec { used: Some(used), ..MachineSpec::new(Layout::parse(layout).unwrap(), size, seed) };
        Machine::new(&spec).unwrap().write_elf(&input).unwrap();
        let work = dir.path().to_str().unwrap();
        for &(format, pages) in formats {
            let args = ["-e", "--work-dir", work, format, "-d", "31"];
            let (ours, theirs) = (dir.path().join(format!("ours{format}")), dir.path().join(format!("mkd{format}")));
            let err = front_end(&args, &input, &ours);
            debian(&args, &input, &theirs);
            let (a, b) = (std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
            assert_eq!(a.len(), b.len(), "{layout} {format}");
            assert!(a == b, "{layout} {format}: ours and makedumpfile's differ at byte {:?}", {
                a.iter().zip(&b).position(|(x, y)| x != y)
            });
            assert_eq!(excluded_count(&err), pages, "{layout} {format}");
        }
        let (_, status) = kept_frames(&dir.path().join("ours-l"));
        assert_eq!(status & DUMP_DH_EXCLUDED_VMEMMAP, DUMP_DH_EXCLUDED_VMEMMAP, "{layout}");
    }
}

/// The 6.12 fixture (where Debian's 1.7.2 keeps other slab pages than vmcore, which
/// follows upstream 1.7.9, so the files differ elsewhere): -e leaves out the same 495
/// frames as makedumpfile's -e. A dump refiltered from it keeps the header's flag, and
/// the pages it kept still read back equal to vmcore.elf in libkdumpfile.
#[test]
fn the_fixture_loses_the_same_vmemmap_pages_as_with_debians_makedumpfile() {
    let Some(f) = fixture("x86_64-6.12-l4-kaslr").filter(|_| have_makedumpfile()) else { return };
    let work = f.scratch.to_str().unwrap().to_string();
    let base = ["--work-dir", work.as_str(), "-l", "-d", "31"];
    let with_e: Vec<&str> = std::iter::once("-e").chain(base).collect();
    let (theirs_without, theirs_with) =
        (f.makedumpfile("vm_mkd_base", &base).unwrap(), f.makedumpfile("vm_mkd_e", &with_e).unwrap());
    let (ours_without, ours_with) = (f.scratch.join("vm_ours_base"), f.scratch.join("vm_ours_e"));
    front_end(&base, &f.vmcore(), &ours_without);
    let err = front_end(&with_e, &f.vmcore(), &ours_with);
    let theirs = left_out(&theirs_without, &theirs_with);
    assert_eq!(theirs.len(), 495);
    assert_eq!(left_out(&ours_without, &ours_with), theirs);
    assert_eq!(excluded_count(&err), 495);
    for (file, flag) in [(&ours_with, true), (&ours_without, false)] {
        let (ok, out, err) = run(&[OsStr::new("info"), file.as_os_str(), OsStr::new("--json")]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["excluded_vmemmap"], flag, "{}", file.display());
    }

    let refiltered = f.scratch.join("vm_refiltered");
    let (ok, _, err) = run(&[
        OsStr::new("dump"),
        ours_with.as_os_str(),
        refiltered.as_os_str(),
        OsStr::new("-d"),
        OsStr::new("31"),
        OsStr::new("-q"),
    ]);
    assert!(ok, "{err}");
    let (kept, status) = kept_frames(&refiltered);
    assert_eq!(kept, kept_frames(&ours_with).0);
    assert_ne!(status & DUMP_DH_EXCLUDED_VMEMMAP, 0);
    if let Some(python) = crate::util::python_with("kdumpfile") {
        let script = "import kdumpfile,sys\n\
            a=kdumpfile.kdumpfile(sys.argv[1]); b=kdumpfile.kdumpfile(sys.argv[2]); n=0\n\
            for line in sys.stdin:\n\
            \x20   p=int(line)*4096\n\
            \x20   assert a.read(kdumpfile.KDUMP_MACHPHYSADDR,p,4096)==b.read(kdumpfile.KDUMP_MACHPHYSADDR,p,4096), line\n\
            \x20   n+=1\n\
            print(n)\n";
        let list: String = kept.iter().map(|p| format!("{p}\n")).collect();
        let out = pipe(python, &["-c", script, ours_with.to_str().unwrap(), f.vmcore().to_str().unwrap()], &list);
        assert_eq!(out.trim(), kept.len().to_string());
    }
}

fn pipe(program: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// 5-level paging (the 6.1 fixture), which Debian's makedumpfile gets wrong: every frame
/// left out is a page of the vmemmap (frames 0x1e200-0x1e7ff in this VM, as in the 6.12
/// one) whose 64 struct pages all describe frames the dump leaves out anyway.
#[test]
fn five_level_vmemmap_pages_are_left_out_only_where_they_describe_nothing_kept() {
    let Some(f) = fixture("x86_64-6.1-l5-kaslr") else { return };
    let work = f.scratch.to_str().unwrap().to_string();
    let (without, with) = (f.scratch.join("vm_l5_base"), f.scratch.join("vm_l5_e"));
    front_end(&["--work-dir", &work, "-l", "-d", "31"], &f.vmcore(), &without);
    let err = front_end(&["-e", "--work-dir", &work, "-l", "-d", "31"], &f.vmcore(), &with);
    let gone = left_out(&without, &with);
    assert_eq!(gone.len() as u64, excluded_count(&err));
    assert_eq!(gone.len(), 984);
    let kept: std::collections::HashSet<u64> = kept_frames(&without).0.into_iter().collect();
    for p in gone {
        assert!((0x1e200..0x1e800).contains(&p), "{p:#x} is not a vmemmap page");
        let described = (p - 0x1e200) * 64..(p - 0x1e200 + 1) * 64;
        assert!(described.clone().all(|q| !kept.contains(&q)), "{p:#x} describes kept frames");
    }
}

/// Where -e cannot work (arm64, as in makedumpfile) the dump is written without it, with a
/// warning, and equals the dump written without -e; the front end wants --work-dir with -e,
/// as makedumpfile does.
#[test]
fn without_a_vmemmap_to_leave_out_the_dump_is_written_as_without_e() {
    let Some(f) = fixture("aarch64-6.1-va48-kaslr") else { return };
    let (without, with) = (f.scratch.join("vm_a64_base"), f.scratch.join("vm_a64_e"));
    let input = f.vmcore();
    let dump = |out: &Path, extra: &[&str]| {
        let mut args: Vec<&OsStr> = vec![OsStr::new("dump"), input.as_os_str(), out.as_os_str()];
        args.extend(["-l", "-d", "31", "-q"].iter().chain(extra).map(OsStr::new));
        let (ok, _, err) = run(&args);
        assert!(ok, "{err}");
        err
    };
    dump(&without, &[]);
    let err = dump(&with, &["-e"]);
    assert!(err.contains("x86_64 kernels only") && err.contains("written without it"), "{err}");
    assert!(std::fs::read(&without).unwrap() == std::fs::read(&with).unwrap());

    let (ok, _, err) = run(&[OsStr::new("makedumpfile"), OsStr::new("-e"), input.as_os_str(), with.as_os_str()]);
    assert!(!ok && err.contains("-e requires --work-dir"), "{err}");
}

/// Refiltering a kdump-compressed file with -e leaves out the same vmemmap pages as -e on
/// the ELF vmcore it came from (Debian's makedumpfile leaves out other frames there, some
/// of them no vmemmap pages at all; the ELF result is its).
#[test]
fn refiltering_with_e_leaves_out_what_the_elf_vmcore_would() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("vmcore.elf");
    let spec =
        MachineSpec { used: Some(200 << 20), ..MachineSpec::new(Layout::parse("x86_64-6.1-l4").unwrap(), 1 << 30, 12) };
    Machine::new(&spec).unwrap().write_elf(&input).unwrap();
    let work = dir.path().to_str().unwrap();
    let (d1, from_kdump, from_elf) = (dir.path().join("d1"), dir.path().join("refiltered"), dir.path().join("direct"));
    front_end(&["-l", "-d", "1"], &input, &d1);
    let err = front_end(&["-e", "--work-dir", work, "-l", "-d", "31"], &d1, &from_kdump);
    assert_eq!(excluded_count(&err), 2923);
    front_end(&["-e", "--work-dir", work, "-l", "-d", "31"], &input, &from_elf);
    let (kept, status) = kept_frames(&from_kdump);
    assert_eq!(kept, kept_frames(&from_elf).0);
    assert_ne!(status & DUMP_DH_EXCLUDED_VMEMMAP, 0);
}
