//! Page-table walks shown entry by entry: `vmcore vtop` and the front end's `--vtop`
//! against Debian's makedumpfile `--vtop`, on 4- and 5-level fixtures.

use std::ffi::OsStr;
use std::path::Path;

use crate::util::{
    arm64_makedumpfile, fixture, fixture_names, have_makedumpfile, layout_value, run, vmcoreinfo_text, Fixture,
};

/// (fixture, address, what it is): a 4 KiB direct-map page, a 2 MiB vmemmap page, the
/// kernel text in 2 MiB pages, and an address whose PUD entry is empty.
const CASES: [(&str, u64, &str); 6] = [
    ("x86_64-6.12-l4-kaslr", 0xffff_8931_0000_1000, "direct map"),
    ("x86_64-6.12-l4-kaslr", 0xffff_f8de_4000_1000, "vmemmap"),
    ("x86_64-6.12-l4-kaslr", 0xffff_ffff_b4e0_0000, "kernel image"),
    ("x86_64-6.12-l4-kaslr", 0xffff_8930_0000_0000, "unmapped"),
    ("x86_64-6.1-l5-kaslr", 0xff39_b1c9_4000_1000, "direct map"),
    ("x86_64-6.1-l5-kaslr", 0xffae_8746_4000_1000, "vmemmap"),
];

/// makedumpfile's stdout with --vtop, from the translation block to its end, the output
/// file's name replaced by OUT.
fn vtop_block(stdout: &[u8], out: &Path) -> String {
    let text = String::from_utf8_lossy(stdout).replace(&out.display().to_string(), "OUT");
    let at = text.find("\nTranslating").unwrap_or_else(|| panic!("no --vtop block in: {text}"));
    text[at..].to_string()
}

/// The `--vtop` blocks of the front end and of the makedumpfile `tool` for `addr`, each
/// writing `-l -d 31` of the fixture: (ours, theirs).
fn both_vtop_blocks(tool: &Path, f: &Fixture, addr: &str) -> (String, String) {
    let (ours, theirs) = (f.scratch.join("vtop_ours"), f.scratch.join("vtop_mkd"));
    let input = f.vmcore();
    let args = ["--vtop", addr, "-l", "-d", "31"];
    let mkd = std::process::Command::new(tool).args(args).arg(&input).arg(&theirs).output().unwrap();
    assert!(mkd.status.success(), "{}", String::from_utf8_lossy(&mkd.stderr));
    let mut cmd: Vec<&OsStr> = vec![OsStr::new("makedumpfile")];
    cmd.extend(args.iter().map(OsStr::new));
    cmd.extend([input.as_os_str(), ours.as_os_str()]);
    let (ok, stdout, err) = run(&cmd);
    assert!(ok, "{err}");
    // Gone before the next address's dumps, which may not overwrite them.
    std::fs::remove_file(&ours).unwrap();
    std::fs::remove_file(&theirs).unwrap();
    (vtop_block(&stdout, &ours), vtop_block(&mkd.stdout, &theirs))
}

/// The front end prints the same walk as makedumpfile: every entry's address and value,
/// and the physical address (all ones where the walk stops at an empty entry).
#[test]
fn the_front_ends_vtop_prints_makedumpfiles_walk() {
    if !have_makedumpfile() {
        return;
    }
    for (name, vaddr, what) in CASES {
        let Some(f) = fixture(name) else { continue };
        let addr = format!("{vaddr:#x}");
        let (ours, expected) = both_vtop_blocks(Path::new("makedumpfile"), &f, &addr);
        assert_eq!(ours, expected, "{name} {what} {addr}");
        let entries = expected.lines().filter(|l| l.starts_with("  P")).count();
        assert!(entries >= 2, "{name} {what}: {expected}");
    }
}

/// On arm64 the front end prints what Debian's arm64 makedumpfile prints: the address and
/// its physical one, no entries (its arm64 walk prints none), for the kernel image, the
/// linear map and vmalloc.
#[test]
fn the_front_ends_arm64_vtop_prints_makedumpfiles() {
    let Some(mdf) = arm64_makedumpfile() else { return };
    let Some(f) = fixture("aarch64-6.1-va48-kaslr") else { return };
    let input = f.vmcore();
    let text = vmcoreinfo_text(&input);
    let symbol = |name: &str| {
        let line = text.lines().find_map(|l| l.strip_prefix(&format!("SYMBOL({name})=")));
        format!("0x{}", line.unwrap_or_else(|| panic!("no SYMBOL({name})")))
    };
    // _stext and prb in the image, mem_section in the linear map, and the vmalloc area's
    // first page (the kernel's first vmalloc mapping).
    for addr in [symbol("_stext"), symbol("prb"), symbol("mem_section"), "0xffff800008000000".to_string()] {
        let (ours, expected) = both_vtop_blocks(&mdf, &f, &addr);
        assert!(!expected.contains("ffffffffffffffff"), "{addr}: makedumpfile found no page: {expected}");
        assert_eq!(ours, expected, "{addr}");
    }
}

/// `vmcore vtop --json` says the same as makedumpfile's walk, names the region, and its
/// physical address holds the bytes `vmcore read` finds at the virtual one.
#[test]
fn vtop_reports_the_walk_and_the_region() {
    let name = "x86_64-6.12-l4-kaslr";
    let Some(f) = fixture(name) else { return };
    let input = f.vmcore();
    let addrs: Vec<String> = CASES.iter().filter(|c| c.0 == name).map(|c| format!("{:#x}", c.1)).collect();
    let mut args: Vec<&OsStr> = vec![OsStr::new("vtop"), input.as_os_str(), OsStr::new("--json")];
    args.extend(addrs.iter().map(OsStr::new));
    let (ok, out, err) = run(&args);
    assert!(!ok && err.contains("virtual address 0xffff893000000000 is not mapped: level-3 entry"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let reports = v.as_array().unwrap();
    let fields = |i: usize, key: &str| reports[i][key].as_str().map(str::to_string);
    // The values makedumpfile 1.7.2 --vtop printed for these addresses.
    assert_eq!(fields(0, "paddr").as_deref(), Some("0x1000"));
    assert_eq!(fields(0, "region").as_deref(), Some("direct map"));
    assert_eq!(fields(0, "linear").as_deref(), Some("0x1000"));
    assert_eq!(reports[0]["steps"][3]["entry"], "0x8000000000001163");
    assert_eq!(reports[0]["steps"][0]["entry_addr"], "0x16622890");
    assert_eq!(fields(1, "paddr").as_deref(), Some("0x1e201000"));
    assert_eq!(fields(1, "region").as_deref(), Some("vmemmap"));
    assert_eq!(reports[1]["page_size"], 2 << 20);
    assert_eq!(reports[1]["steps"].as_array().unwrap().len(), 3);
    assert_eq!(fields(2, "paddr").as_deref(), Some("0x16600000"));
    assert_eq!(fields(2, "region").as_deref(), Some("kernel image"));
    assert_eq!(fields(2, "symbol").as_deref().map(|s| s.starts_with("init_stack+0x0/")), Some(true));
    assert_eq!(fields(3, "paddr"), None);
    assert_eq!(reports[3]["steps"][1]["entry"], "0x0000000000000000");

    // A user-space address is not named after a per-CPU variable (kallsyms holds those
    // at small offsets: 0x1234 is inside cpu_debug_store there).
    let (ok, out, _) = run(&[OsStr::new("vtop"), input.as_os_str(), OsStr::new("--json"), OsStr::new("0x1234")]);
    let user: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(!ok && user[0]["symbol"].is_null() && user[0]["region"].is_null(), "{user}");

    for (i, addr) in addrs.iter().enumerate().take(3) {
        let paddr = fields(i, "paddr").unwrap();
        let virt = run(&[OsStr::new("read"), input.as_os_str(), OsStr::new(addr), OsStr::new("64")]);
        let phys =
            run(&[OsStr::new("read"), input.as_os_str(), OsStr::new(&paddr), OsStr::new("64"), OsStr::new("--phys")]);
        assert!(virt.0 && phys.0, "{} {}", virt.2, phys.2);
        assert_eq!(virt.1, phys.1, "{addr}");
    }
}

/// arm64 (4-level 48-bit and 5-level 52-bit fixtures): the walk of a kernel-image and a
/// linear-map address lands where the image's and the linear map's fixed offsets put them,
/// and the vmemmap, vmalloc and modules regions are named by VMCOREINFO's bounds.
#[test]
fn arm64_walks_agree_with_the_fixed_offsets() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("aarch64")) {
        let f = Fixture::new(&name);
        let input = f.vmcore();
        let (_, out, err) = run(&[
            OsStr::new("vtop"),
            input.as_os_str(),
            OsStr::new("--json"),
            OsStr::new("_stext"),
            OsStr::new("init_uts_ns"),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|_| panic!("{name}: {err}"));
        let levels = if name.contains("va52") { 5 } else { 4 };
        for r in v.as_array().unwrap() {
            assert_eq!(r["region"], "kernel image", "{name}: {r}");
            assert!(r["paddr"].is_string() && r["paddr"] == r["linear"], "{name}: {r}");
            assert!(r["steps"].as_array().unwrap().len() <= levels, "{name}: {r}");
            assert_eq!(r["steps"][0]["level"], "PGD", "{name}: {r}");
        }
        // The linear map: the page of the image's physical address, through PAGE_OFFSET.
        let paddr = u64::from_str_radix(v[0]["paddr"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        let (_, info, _) = run(&[OsStr::new("info"), input.as_os_str(), OsStr::new("--json")]);
        let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
        let linear = format!("{:#x}", layout_value(&info, "page_offset") + paddr - layout_value(&info, "phys_offset"));
        let (ok, out, err) = run(&[OsStr::new("vtop"), input.as_os_str(), OsStr::new("--json"), OsStr::new(&linear)]);
        assert!(ok, "{name}: {err}");
        let r: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(r[0]["region"], "linear map", "{name}");
        assert_eq!(r[0]["paddr"], v[0]["paddr"], "{name}: {r}");
        // The regions VMCOREINFO bounds: VMEMMAP_START is the struct page of the first
        // frame of RAM (mapped); the others are named whether mapped or not.
        let number = |k: &str| f.vmcoreinfo_value(&format!("NUMBER({k})"));
        let (Some(vmemmap), Some(vmalloc), Some(modules)) =
            (number("VMEMMAP_START"), number("VMALLOC_START"), number("MODULES_VADDR"))
        else {
            continue; // exported since 6.0
        };
        let (_, out, err) = run(&[
            OsStr::new("vtop"),
            input.as_os_str(),
            OsStr::new("--json"),
            OsStr::new(&vmemmap),
            OsStr::new(&vmalloc),
            OsStr::new(&modules),
        ]);
        let r: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|_| panic!("{name}: {err}"));
        assert_eq!((&r[0]["region"], &r[0]["vaddr"]), (&"vmemmap".into(), &vmemmap.clone().into()), "{name}: {r}");
        assert!(r[0]["paddr"].is_string(), "{name}: the first struct page is mapped: {r}");
        assert_eq!(r[1]["region"], "vmalloc", "{name}: {r}");
        assert_eq!(r[2]["region"], "modules", "{name}: {r}");
    }
}

/// When makedumpfile prints the block and where: not below message level 4 (its common
/// messages), on stderr under -F (stdout is the stream), never for address 0, and an
/// address read as C's strtoul reads it (a leading 0 is octal). stdout, and the block on
/// stderr, equal Debian's makedumpfile's (less 1.7.2's "kernel version is not supported").
#[test]
fn the_front_end_prints_vtop_when_makedumpfile_does() {
    let Some(f) = fixture("x86_64-6.12-l4-kaslr").filter(|_| have_makedumpfile()) else { return };
    let input = f.vmcore();
    let octal = format!("{:o}", 0xffff_ffff_b4e0_0000u64);
    let octal = format!("0{octal}");
    let variants: [&[&str]; 5] = [
        &["--vtop", "0xffffffffb4e00000", "--message-level", "1"],
        &["--vtop", "0xffffffffb4e00000", "--message-level", "4"],
        &["--vtop", "0"],
        &["--vtop", &octal],
        &["--vtop", "0xffffffffb4e00000", "-F"],
    ];
    let keep = |text: &[u8]| -> String {
        String::from_utf8_lossy(text)
            .replace('\r', "\n")
            .lines()
            .filter(|l| {
                !l.contains("kernel version is not supported") && !l.contains("may be incomplete") && !l.contains('%')
            })
            .map(|l| format!("{l}\n"))
            .collect()
    };
    for (i, args) in variants.into_iter().enumerate() {
        let flatten = args.contains(&"-F");
        let (ours, theirs) = (f.scratch.join(format!("vtop_v_ours{i}")), f.scratch.join(format!("vtop_v_mkd{i}")));
        let mut mkd = std::process::Command::new("makedumpfile");
        mkd.args(args).args(["-l", "-d", "31"]).arg(&input);
        if !flatten {
            mkd.arg(&theirs);
        }
        let mkd = mkd.output().unwrap();
        assert!(mkd.status.success(), "{args:?}: {}", String::from_utf8_lossy(&mkd.stderr));
        let mut cmd: Vec<&OsStr> = vec![OsStr::new("makedumpfile")];
        cmd.extend(args.iter().chain(&["-l", "-d", "31"]).map(OsStr::new));
        cmd.push(input.as_os_str());
        if !flatten {
            cmd.push(ours.as_os_str());
        }
        let (ok, stdout, stderr) = run(&cmd);
        assert!(ok, "{args:?}: {stderr}");
        if flatten {
            let block =
                |t: &str| t.split("\nTranslating").nth(1).map(|b| b.split("\n\n").next().unwrap_or("").to_string());
            let theirs = block(&keep(&mkd.stderr));
            assert!(theirs.is_some(), "{args:?}: makedumpfile printed no block");
            assert_eq!(block(&keep(stderr.as_bytes())), theirs, "{args:?}");
        } else {
            let names = |t: String, p: &Path| t.replace(&p.display().to_string(), "OUT");
            assert_eq!(names(keep(&stdout), &ours), names(keep(&mkd.stdout), &theirs), "{args:?}");
        }
    }
}

/// With RANDOMIZE_MEMORY the kernel sizes the direct map by the RAM (plus 10 TiB) and the
/// vmalloc area may start well inside the 64 TiB a 4-level direct map could span (17.6 TiB
/// above it in a real 5.10 dump, whose vmalloc_base `vtop` called the direct map): the
/// direct map ends where the vmalloc area starts, which ends where the vmemmap starts.
#[test]
fn vtop_names_a_vmalloc_area_that_starts_near_the_direct_map() {
    let dir = tempfile::tempdir().unwrap();
    let elf = crate::util::synthetic_elf(dir.path(), "m.elf", "x86_64-5.4-l4", 256 << 20, 0);
    let (ok, info, err) = run(&[OsStr::new("info"), OsStr::new("--json"), elf.as_os_str()]);
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    let value = |k: &str| layout_value(&info, k);
    let (pob, vmalloc, vmemmap) = (value("page_offset_base"), value("vmalloc_base"), value("vmemmap_base"));
    assert!(vmalloc - pob < 64 << 40, "the machine must have the case: {pob:#x} {vmalloc:#x}");
    let addrs = [vmalloc - 1, vmalloc, vmalloc + 0x1000, vmemmap];
    let mut args = vec![OsStr::new("vtop").to_owned(), OsStr::new("--json").to_owned(), elf.clone().into_os_string()];
    args.extend(addrs.iter().map(|a| format!("{a:#x}").into()));
    let out = crate::util::vmcore().args(&args).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let regions: Vec<&str> = v.as_array().unwrap().iter().map(|r| r["region"].as_str().unwrap()).collect();
    assert_eq!(regions, ["direct map", "vmalloc", "vmalloc", "vmemmap"], "{v}");
}
