//! Knowing the machine: layout values, kallsyms and virtual reads on the real dumps,
//! against what drgn read from the same dumps (expected/truth.json, expected/kallsyms.txt).

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;

use vmcore_kernel::machine::{Layout, Machine};
use vmcore_kernel::{Dump, OpenOptions};
use vmcore_physmem::{PageState, ReadOptions};
use vmcore_types::{Pfn, PhysAddr};

use crate::util::{fixture, fixture_names, read_with_vmcoreinfo, run, vmcoreinfo_text, Fixture};

fn truth(f: &Fixture) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(f.expected("truth.json")).unwrap()).unwrap()
}

fn info_json(args: &[&OsStr]) -> (serde_json::Value, String) {
    let mut all = vec![OsStr::new("info"), OsStr::new("--json")];
    all.extend_from_slice(args);
    let (ok, out, err) = run(&all);
    assert!(ok, "{err}");
    (serde_json::from_slice(&out).unwrap(), err)
}

#[test]
fn x86_64_layout_equals_drgn_on_every_input_format() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("x86_64")) {
        let f = Fixture::new(&name);
        let t = truth(&f);
        let mut inputs = vec![f.vmcore()];
        inputs.extend(f.makedumpfile("d31_zlib.kdump", &["-c", "-d", "31"]));
        for input in inputs {
            let (v, _) = info_json(&[input.as_os_str()]);
            let layout = &v["layout"];
            for var in ["page_offset_base", "vmemmap_base", "vmalloc_base", "phys_base"] {
                assert_eq!(
                    layout[var]["value"],
                    t["variables"][var]["value"],
                    "{name} {}: {var}: {}",
                    input.display(),
                    layout[var]
                );
            }
            let pob = &layout["page_offset_base"];
            // The variable's address comes from kallsyms (6.0+); before, the PT_LOADs answer
            // (an ELF input) or the page tables (a kdump file).
            let first = match (f.has_kallsyms(), input == f.vmcore()) {
                (true, _) => "symbol",
                (false, true) => "pt_load",
                (false, false) => "page_tables",
            };
            assert_eq!(pob["source"], first, "{name}: kallsyms variable first when VMCOREINFO lacks it");
            for key in ["vmcoreinfo", "pt_load", "symbol", "page_tables"] {
                assert!(pob["sources"].get(key).is_some(), "{name}: {key} missing from {pob}");
            }
            assert_eq!(pob["sources"]["page_tables"], t["variables"]["page_offset_base"]["value"], "{name}: probe");
            for var in ["vmemmap_base", "vmalloc_base"] {
                let probe = &layout[var]["sources"]["page_tables"];
                assert_eq!(probe, &t["variables"][var]["value"], "{name} {}: {var} probe", input.display());
            }
            let levels = if name.contains("-l5-") { "0x5" } else { "0x4" };
            assert_eq!(layout["paging_levels"]["value"], levels, "{name}");
            for (k, val) in layout["paging_levels"]["sources"].as_object().unwrap() {
                assert!(val.is_null() || val == levels, "{name}: paging levels by {k}: {val}");
            }
            assert_eq!(v["warnings"], serde_json::json!([]), "{name}: methods must agree");
            let count = if f.has_kallsyms() { t["kallsyms_count"].clone() } else { serde_json::Value::Null };
            assert_eq!(v["kallsyms"], count, "{name}");
        }
    }
}

#[test]
fn symbols_equal_drgn_kallsyms_line_for_line() {
    for name in fixture_names() {
        let f = Fixture::new(&name);
        if !f.has_kallsyms() {
            let (ok, _, err) = run(&[OsStr::new("symbols"), f.vmcore().as_os_str()]);
            assert!(!ok && err.contains("does not export its tables in VMCOREINFO (before 6.0)"), "{name}: {err}");
            continue;
        }
        let mut expected = String::new();
        zstd::stream::read::Decoder::new(std::fs::File::open(f.expected("kallsyms.txt.zst")).unwrap())
            .unwrap()
            .read_to_string(&mut expected)
            .unwrap();
        let (ok, out, err) = run(&[OsStr::new("symbols"), f.vmcore().as_os_str()]);
        assert!(ok, "{name}: {err}");
        let out = String::from_utf8(out).unwrap();
        if out != expected {
            let diff = out.lines().zip(expected.lines()).enumerate().find(|(_, (a, b))| a != b);
            panic!(
                "{name}: {} lines vs drgn's {}; first difference: {diff:?}",
                out.lines().count(),
                expected.lines().count()
            );
        }
        // --json: one object per line, the same symbols as --types prints.
        let (ok, typed, err) = run(&[OsStr::new("symbols"), OsStr::new("--types"), f.vmcore().as_os_str()]);
        assert!(ok, "{name}: {err}");
        let (ok, json, err) = run(&[OsStr::new("symbols"), OsStr::new("--json"), f.vmcore().as_os_str()]);
        assert!(ok, "{name}: {err}");
        let (typed, json) = (String::from_utf8(typed).unwrap(), String::from_utf8(json).unwrap());
        assert_eq!(json.lines().count(), expected.lines().count(), "{name}");
        for (t, j) in typed.lines().zip(json.lines()) {
            let v: serde_json::Value = serde_json::from_str(j).unwrap();
            let (addr, name_and_type) = (v["address"].as_str().unwrap(), v["name"].as_str().unwrap());
            let line = format!(
                "{:016x} {} {name_and_type}",
                u64::from_str_radix(&addr[2..], 16).unwrap(),
                v["type"].as_str().unwrap()
            );
            assert_eq!(line, t, "{name}");
        }
    }
}

#[test]
fn linux_banner_read_by_symbol_matches_the_kernel() {
    for name in fixture_names() {
        let f = Fixture::new(&name);
        let t = truth(&f);
        let uname = std::fs::read_to_string(f.dir.join("live/uname")).unwrap();
        let (ok, out, err) =
            run(&[OsStr::new("read"), f.vmcore().as_os_str(), OsStr::new("linux_banner"), OsStr::new("512")]);
        if !ok && err.contains("nor a symbol") {
            // arm64 6.1 has no CONFIG_KALLSYMS_ALL: linux_banner is not in its kallsyms;
            // kernels before 6.0 export no kallsyms.
            assert!(name.starts_with("aarch64-6.1") || !f.has_kallsyms(), "{name}: {err}");
            continue;
        }
        assert!(ok, "{name}: {err}");
        let banner = String::from_utf8_lossy(&out);
        let banner = banner.split('\0').next().unwrap();
        assert!(banner.starts_with(&format!("Linux version {} ", uname.trim())), "{name}: {banner}");
        if let Some(expected) = t["linux_banner"].as_str() {
            // truth.py reads 256 bytes: a longer banner (Ubuntu's) is cut there.
            let compared = if expected.len() == 256 { banner.get(..256).unwrap_or(banner) } else { banner };
            assert_eq!(compared, expected, "{name}");
        }
    }
}

#[test]
fn utsname_release_read_through_init_uts_ns() {
    for name in fixture_names() {
        let f = Fixture::new(&name);
        let uname = std::fs::read_to_string(f.dir.join("live/uname")).unwrap();
        let name_off = f.utsname_offset();
        // struct new_utsname: sysname[65], nodename[65], release[65], ...
        let addr = format!("init_uts_ns+{:#x}", name_off + 2 * 65);
        let (ok, out, err) = run(&[OsStr::new("read"), f.vmcore().as_os_str(), OsStr::new(&addr), OsStr::new("65")]);
        assert!(ok, "{name}: {err}");
        let release = String::from_utf8_lossy(&out);
        assert_eq!(release.split('\0').next().unwrap(), uname.trim(), "{name}");
    }
}

#[test]
fn aarch64_layout_equals_truth() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("aarch64")) {
        let f = Fixture::new(&name);
        let t = &truth(&f)["layout"];
        let (v, _) = info_json(&[f.vmcore().as_os_str()]);
        let layout = &v["layout"];
        assert_eq!(v["arch"], "aarch64");
        let hex = |n: u64| format!("{n:#x}");
        assert_eq!(layout["va_bits"]["value"], hex(t["va_bits"].as_u64().unwrap()), "{name}");
        assert_eq!(layout["page_size"]["value"], hex(t["page_size"].as_u64().unwrap()), "{name}");
        for key in ["page_offset", "kimage_voffset", "phys_offset", "kaslr_offset"] {
            assert_eq!(layout[key]["value"], t[key], "{name}: {key}: {}", layout[key]);
        }
        for key in ["va_bits", "page_size", "page_offset", "kimage_voffset", "phys_offset", "kaslr_offset", "pgd"] {
            assert!(layout[key]["source"].is_string(), "{name}: {key} has no source");
        }
        assert_eq!(layout["page_offset"]["sources"]["page_tables"], t["page_offset"], "{name}: probe");
        assert_eq!(v["warnings"], serde_json::json!([]), "{name}: methods must agree");
        // The first entry of swapper_pg_dir, read at the physical pgd.
        let pgd = layout["pgd"]["value"].as_str().unwrap().to_string();
        let (ok, out, err) =
            run(&[OsStr::new("read"), f.vmcore().as_os_str(), OsStr::new(&pgd), OsStr::new("8"), OsStr::new("--phys")]);
        assert!(ok, "{err}");
        let entry = u64::from_le_bytes(out.try_into().unwrap());
        assert_eq!(format!("{entry:#x}"), truth(&f)["swapper_pg_dir_first_entry"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn every_direct_map_page_reads_the_same_virtually_and_physically() {
    for name in fixture_names() {
        let f = Fixture::new(&name);
        let dump = Dump::open(&[f.vmcore()], &OpenOptions::default()).unwrap();
        let m = Machine::new(&dump).unwrap();
        // The linear map: vaddr = base + (paddr - phys_start).
        let (base, phys_start) = match &m.layout {
            Layout::X86_64(l) => (l.page_offset_base.value.unwrap(), 0),
            Layout::Aarch64(l) => (l.page_offset.value.unwrap(), l.phys_offset.value.unwrap()),
        };
        let ps = f.page_size();
        let (mut virt, mut phys) = (vec![0u8; ps as usize], vec![0u8; ps as usize]);
        let mut pages = 0;
        for pfn in 0..dump.mem.max_pfn() {
            if dump.mem.page_state(Pfn(pfn)).unwrap() != PageState::Dumped || (f.is_x86_64() && pfn == 0x9f) {
                continue; // 0x9f: only partly RAM (e820 ends at 0x9fc00)
            }
            // phys_start may lie above the first RAM (KASLR lowers PHYS_OFFSET to move RAM
            // up the linear map), so the sum wraps.
            let vaddr = base.wrapping_add(pfn * ps).wrapping_sub(phys_start);
            let paddr = m.kmem.walk(vaddr).unwrap_or_else(|e| panic!("{name}: {vaddr:#x}: {e}"));
            assert_eq!(paddr, pfn * ps, "{name}: {vaddr:#x}");
            m.kmem.read(vaddr, &mut virt).unwrap();
            dump.mem.read(PhysAddr(pfn * ps), &mut phys, ReadOptions::default()).unwrap();
            assert!(virt == phys, "{name}: pfn {pfn:#x}");
            pages += 1;
        }
        assert!(pages * ps > 300 << 20, "{name}: only {pages} pages");
    }
}

#[test]
fn number_page_offset_base_in_vmcoreinfo_wins_and_is_cross_checked() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("x86_64")) {
        let f = Fixture::new(&name);
        let t = truth(&f);
        let right = t["variables"]["page_offset_base"]["value"].as_str().unwrap().to_string();
        let vi = std::fs::read_to_string(f.expected("vmcoreinfo.txt")).unwrap();
        for (value, agree) in [(right.clone(), true), ("0xffff888000000000".to_string(), false)] {
            let edited = f.scratch.join(format!("vmcoreinfo-pob-{agree}.txt"));
            std::fs::write(&edited, format!("{vi}NUMBER(page_offset_base)={value}\n")).unwrap();
            let (v, stderr) = info_json(&[OsStr::new("--vmcoreinfo"), edited.as_os_str(), f.vmcore().as_os_str()]);
            let pob = &v["layout"]["page_offset_base"];
            assert_eq!(pob["source"], "vmcoreinfo", "{name}");
            assert_eq!(pob["value"], value.as_str(), "{name}");
            let other = if f.has_kallsyms() { "symbol" } else { "pt_load" };
            assert_eq!(pob["sources"][other], right.as_str(), "{name}: the other methods still run");
            let warned = v["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().is_some_and(|w| w.contains("page_offset_base") && w.contains("disagree")));
            assert_eq!(warned, !agree, "{name}: {}", v["warnings"]);
            assert_eq!(stderr.contains("disagree"), !agree, "{name}: the warning must be loud: {stderr}");
        }
    }
}

#[test]
fn addr2sym_names_the_variable() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("x86_64")) {
        let f = Fixture::new(&name);
        if !f.has_kallsyms() {
            continue; // VMCOREINFO names no variable of the kernel's data
        }
        let t = truth(&f);
        let addr = u64::from_str_radix(
            t["variables"]["vmemmap_base"]["symbol_address"].as_str().unwrap().trim_start_matches("0x"),
            16,
        )
        .unwrap();
        let a = format!("{:#x}", addr + 3);
        let (ok, out, err) = run(&[OsStr::new("addr2sym"), f.vmcore().as_os_str(), OsStr::new(&a)]);
        assert!(ok, "{err}");
        assert_eq!(String::from_utf8(out).unwrap(), "vmemmap_base+0x3/0x8\n", "{name}");
        let (ok, out, err) =
            run(&[OsStr::new("addr2sym"), OsStr::new("--json"), f.vmcore().as_os_str(), OsStr::new(&a)]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let expected = serde_json::json!({ "address": a, "symbol": "vmemmap_base", "offset": "0x3", "size": "0x8" });
        assert_eq!(v, expected, "{name}");
    }
}

/// /proc/kcore of the same kernels (its first 64 KiB, captured live): the PT_LOAD method
/// skips kcore's text, vmalloc, module and vmemmap segments and finds the direct map.
#[test]
fn live_kcore_headers_give_the_direct_map_and_phys_base() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("x86_64")) {
        let f = Fixture::new(&name);
        let t = truth(&f);
        let kcore = f.dir.join("live/kcore_head");
        let (v, _) = info_json(&[kcore.as_os_str()]);
        assert_eq!(v["format"], "kcore", "{name}");
        if f.kernel_version() < (4, 19) {
            // A copy of a kcore without the note: this machine's /sys/kernel/vmcoreinfo
            // describes another kernel.
            assert!(v["vmcoreinfo_source"].is_null(), "{name}: {v}");
            assert!(v["warnings"].to_string().contains("is not its /proc/kcore"), "{name}: {v}");
            continue;
        }
        assert_eq!(v["vmcoreinfo_source"], "elf-note", "{name}: kcore carries VMCOREINFO since 4.19");
        let layout = &v["layout"];
        assert_eq!(
            layout["page_offset_base"]["sources"]["pt_load"], t["variables"]["page_offset_base"]["value"],
            "{name}"
        );
        assert_eq!(layout["page_offset_base"]["value"], t["variables"]["page_offset_base"]["value"], "{name}");
        assert_eq!(layout["phys_base"]["sources"]["pt_load"], t["variables"]["phys_base"]["value"], "{name}");
        assert_eq!(layout["paging_levels"]["sources"]["pt_load"], layout["paging_levels"]["sources"]["vmcoreinfo"]);
    }
}

/// The kernel image map covers `KERNEL_IMAGE_SIZE` (1 GiB on x86_64), but the kernel maps
/// only its image in that window: past `_end` (or past the image on arm64 6.1, whose
/// kallsyms has no `_end`), reads used to return whatever physical memory followed, exit
/// 0, where drgn says "not mapped". Once the page tables are known, they decide there.
#[test]
fn addresses_past_the_kernel_image_are_not_mapped() {
    for name in fixture_names() {
        let f = Fixture::new(&name);
        if !f.has_kallsyms() {
            continue; // where the image ends is known from kallsyms only
        }
        let (ok, syms, err) = run(&[OsStr::new("symbols"), f.vmcore().as_os_str()]);
        assert!(ok, "{err}");
        let syms = String::from_utf8(syms).unwrap();
        let addr = |want: &str| {
            syms.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                let (a, n) = (it.next()?, it.last()?);
                (n == want).then(|| u64::from_str_radix(a, 16).unwrap())
            })
        };
        // 16 MiB past the last symbol: no kernel image is followed by that much padding.
        let last =
            syms.lines().filter_map(|l| u64::from_str_radix(l.split_whitespace().next()?, 16).ok()).max().unwrap();
        let past = addr("_end").unwrap_or(last).next_multiple_of(2 << 20) + (16 << 20);
        let text = addr("_stext").unwrap();
        for (at, mapped) in [(text, true), (past, false)] {
            let (ok, _, err) =
                run(&[OsStr::new("read"), f.vmcore().as_os_str(), OsStr::new(&format!("{at:#x}")), OsStr::new("16")]);
            assert_eq!(ok, mapped, "{name}: {at:#x}: {err}");
            if !mapped {
                assert!(err.contains("not mapped") || err.contains("not present"), "{name}: {err}");
            }
        }
    }
}

/// A wrong NUMBER(phys_base) disagrees with the kernel-image PT_LOAD. `info` said so; `read`
/// (and every other command) went on in silence, printing the wrong memory. Every command
/// that reads through the layout now says which methods disagree.
#[test]
fn every_command_reports_layout_disagreements() {
    for f in fixture_names().into_iter().filter(|n| n.starts_with("x86_64")).map(|n| Fixture::new(&n)) {
        let text = vmcoreinfo_text(&f.vmcore());
        // Kernels before 4.10 export no NUMBER(phys_base): nothing to get wrong.
        let Some(line) = text.lines().find(|l| l.starts_with("NUMBER(phys_base)=")) else { continue };
        let value: i64 = line.trim_start_matches("NUMBER(phys_base)=").parse().unwrap();
        let edited = f.scratch.join("vmcoreinfo-phys-base-2m-low.txt");
        std::fs::write(&edited, text.replace(line, &format!("NUMBER(phys_base)={}", value - 0x20_0000))).unwrap();
        let vmcore = f.vmcore();
        for args in [&["read", "init_uts_ns", "16"][..], &["symbols"], &["dmesg"]] {
            let mut a: Vec<&OsStr> = vec![OsStr::new(args[0]), OsStr::new("--vmcoreinfo"), edited.as_os_str()];
            a.push(vmcore.as_os_str());
            a.extend(args[1..].iter().map(OsStr::new));
            let (_, _, err) = run(&a);
            assert!(err.contains("warning: layout: phys_base: methods disagree"), "{} {args:?}: {err}", f.name);
        }
    }
}

/// Disagreeing methods used to be settled by a fixed order, VMCOREINFO first, even when
/// the dump proved VMCOREINFO wrong. Now the answer that a check against the dump
/// confirms wins, and the warning says which check: a wrong NUMBER(phys_base) (init_uts_ns
/// must read "Linux"), SYMBOL(init_top_pgt) or pgtable_l5_enabled (a walk of _stext must
/// land where the image map puts it). Reads then work as with the true values.
#[test]
fn a_wrong_vmcoreinfo_value_loses_to_the_methods_the_dump_confirms() {
    for f in fixture_names().into_iter().filter(|n| n.starts_with("x86_64")).map(|n| Fixture::new(&n)) {
        let text = vmcoreinfo_text(&f.vmcore());
        let key = |k: &str| text.lines().find(|l| l.starts_with(k)).map(str::to_string);
        let mut cases = Vec::new();
        // Kernels before 4.10 export no NUMBER(phys_base).
        if let Some(pb) = key("NUMBER(phys_base)=") {
            let pb_value: i64 = pb.trim_start_matches("NUMBER(phys_base)=").parse().unwrap();
            cases.push(("phys_base", pb.clone(), format!("NUMBER(phys_base)={}", pb_value - 0x20_0000), "pt_load"));
        }
        // Older kernels (4.15) export no pgtable_l5_enabled.
        if let Some(l5) = text.lines().find(|l| l.starts_with("NUMBER(pgtable_l5_enabled)=")) {
            let flipped =
                if l5.ends_with('1') { "NUMBER(pgtable_l5_enabled)=0" } else { "NUMBER(pgtable_l5_enabled)=1" };
            cases.push(("paging_levels", l5.to_string(), flipped.to_string(), "page_tables"));
        }
        // The other pgd method is kallsyms' (6.0+).
        if let (true, Some(pgt)) = (f.has_kallsyms(), key("SYMBOL(init_top_pgt)=")) {
            let pgt_value = u64::from_str_radix(pgt.trim_start_matches("SYMBOL(init_top_pgt)="), 16).unwrap();
            cases.push(("pgd", pgt.clone(), format!("SYMBOL(init_top_pgt)={:x}", pgt_value + 0x1000), "symbol"));
        }
        let vmcore = f.vmcore();
        let sysname = format!("init_uts_ns+{:#x}", f.utsname_offset());
        for (value, line, wrong, winner) in cases {
            let edited = f.scratch.join(format!("vmcoreinfo-wrong-{value}.txt"));
            std::fs::write(&edited, text.replace(&line, &wrong)).unwrap();
            let (ok, out, err) = read_with_vmcoreinfo(&edited, &vmcore, &sysname, "5");
            assert!(ok && out == b"Linux", "{} {value}: {err}", f.name);
            assert!(err.contains(&format!("layout: {value}: methods disagree")), "{} {value}: {err}", f.name);
            assert!(
                err.contains(&format!("using {winner}, as vmcoreinfo's answer fails the check")),
                "{} {value}: {err}",
                f.name
            );
        }
    }
}

/// The vmemmap probe searches only past a vmalloc area in the kernel's half: a
/// VMCOREINFO VMALLOC_START in the lower half (corrupt, or another machine's) leaves it
/// without an answer instead of a non-canonical one that would be reported as a
/// disagreement; the right one gives drgn's vmemmap_base.
#[test]
fn the_vmemmap_probe_ignores_a_vmalloc_base_in_the_lower_half() {
    let name = "x86_64-6.12-l4-kaslr";
    let Some(f) = fixture(name) else { return };
    let t = truth(&f);
    let vi = std::fs::read_to_string(f.expected("vmcoreinfo.txt")).unwrap();
    let right = t["variables"]["vmalloc_base"]["value"].as_str().unwrap().to_string();
    for (value, probe) in [
        ("0x7fffe0000000".to_string(), serde_json::Value::Null),
        (right, t["variables"]["vmemmap_base"]["value"].clone()),
    ] {
        let edited = f.scratch.join(format!("vmcoreinfo-vmalloc-{value}.txt"));
        let lines: String =
            vi.lines().filter(|l| !l.starts_with("NUMBER(VMALLOC_START)=")).map(|l| format!("{l}\n")).collect();
        std::fs::write(&edited, format!("{lines}NUMBER(VMALLOC_START)={value}\n")).unwrap();
        let (v, _) = info_json(&[OsStr::new("--vmcoreinfo"), edited.as_os_str(), f.vmcore().as_os_str()]);
        assert_eq!(v["layout"]["vmalloc_base"]["value"], value.as_str(), "{name}");
        assert_eq!(v["layout"]["vmemmap_base"]["sources"]["page_tables"], probe, "{name} {value}");
    }
}

/// A fixture's VMCOREINFO as a kernel before 6.0 exports it: no kallsyms tables, no
/// vmalloc or vmemmap start.
fn as_before_6_0(vmcoreinfo: &str) -> String {
    let kept = |l: &&str| {
        !l.contains("kallsyms") && !l.starts_with("NUMBER(VMALLOC_START)") && !l.starts_with("NUMBER(VMEMMAP_START)")
    };
    vmcoreinfo.lines().filter(kept).map(|l| format!("{l}\n")).collect()
}

/// Before 6.0 neither the vmalloc and vmemmap starts nor the variables are known: the
/// vmalloc area comes from the page tables alone, and the vmemmap probe, which starts past
/// it, runs again once it is known, so that mem_section's answer is still checked by a
/// second method (a real 5.10 dump had it unchecked).
#[test]
fn without_kallsyms_the_vmemmap_base_is_still_found_two_ways() {
    for name in fixture_names().into_iter().filter(|n| n.starts_with("x86_64")) {
        let f = Fixture::new(&name);
        let t = truth(&f);
        let vi = std::fs::read_to_string(f.expected("vmcoreinfo.txt")).unwrap();
        let edited = f.scratch.join("vmcoreinfo-no-kallsyms.txt");
        std::fs::write(&edited, as_before_6_0(&vi)).unwrap();
        let (v, _) = info_json(&[OsStr::new("--vmcoreinfo"), edited.as_os_str(), f.vmcore().as_os_str()]);
        let layout = &v["layout"];
        assert!(v["kallsyms"].is_null(), "{name}: {}", v["kallsyms"]);
        let want = |var: &str| t["variables"][var]["value"].clone();
        assert_eq!(layout["vmalloc_base"]["source"], "page_tables", "{name}: {}", layout["vmalloc_base"]);
        assert_eq!(layout["vmalloc_base"]["value"], want("vmalloc_base"), "{name}");
        let vmemmap = &layout["vmemmap_base"];
        assert_eq!(vmemmap["sources"]["mem_section"], want("vmemmap_base"), "{name}: {vmemmap}");
        assert_eq!(vmemmap["sources"]["page_tables"], want("vmemmap_base"), "{name}: {vmemmap}");
        assert_eq!(v["warnings"], serde_json::json!([]), "{name}");
    }
}

/// Without kallsyms (before 6.0) a wrong page-table root in a `--vmcoreinfo` file has no
/// other method to lose to, and the utsname check refuses the file: the refusal says what
/// could not be read, naming the root it walked from.
#[test]
fn a_vmcoreinfo_file_whose_utsname_cannot_be_read_says_why() {
    let Some(f) = fixture("x86_64-6.12-l4-kaslr") else { return };
    let text = vmcoreinfo_text(&f.vmcore());
    let root = text.lines().find_map(|l| l.strip_prefix("SYMBOL(init_top_pgt)=")).unwrap();
    let wrong = u64::from_str_radix(root, 16).unwrap() + 0x1000;
    let edited = as_before_6_0(&text)
        .replace(&format!("SYMBOL(init_top_pgt)={root}\n"), &format!("SYMBOL(init_top_pgt)={wrong:x}\n"));
    assert!(edited.contains(&format!("SYMBOL(init_top_pgt)={wrong:x}\n")));
    let path = f.scratch.join("vmcoreinfo-no-kallsyms-wrong-pgd.txt");
    std::fs::write(&path, edited).unwrap();
    let (ok, _, err) = read_with_vmcoreinfo(&path, &f.vmcore(), "init_uts_ns", "5");
    assert!(!ok, "{err}");
    assert!(err.contains("the kernel's utsname cannot be read with this VMCOREINFO (virtual address 0x"), "{err}");
    assert!(err.contains("is not present): it is another kernel's or another boot's, or one of its values"), "{err}");
    let (v, _) = info_json(&[f.vmcore().as_os_str()]);
    let pgd = crate::util::layout_value(&v, "pgd");
    assert!(err.contains(&format!("(table at physical {:#x})", pgd + 0x1000)), "{err}");
}

/// A kernel before 6.0 exports no kallsyms: its System.map gives the symbols, moved by the
/// KASLR offset and checked against VMCOREINFO. Here the map is written from a fixture's
/// own kallsyms at link addresses, and read with that fixture's VMCOREINFO made to look
/// like a 5.x kernel's: every symbol comes back where kallsyms has it, `read` and
/// `addr2sym` use them, and the kernel variables become a layout method again. A map of
/// another build (its data 4 KiB further from its text) is refused.
#[test]
fn a_system_map_gives_the_symbols_of_kernels_without_kallsyms() {
    for name in fixture_names() {
        let f = Fixture::new(&name);
        if !f.has_kallsyms() {
            continue;
        }
        let offset = u64::from_str_radix(&f.vmcoreinfo_value("KERNELOFFSET").unwrap(), 16).unwrap();
        let (ok, typed, err) = run(&[OsStr::new("symbols"), OsStr::new("--types"), f.vmcore().as_os_str()]);
        assert!(ok, "{err}");
        let typed = String::from_utf8(typed).unwrap();
        // `data_shift` moves the data symbols only: another build, whose text is where this
        // one's is (a uniform shift is what KASLR does, and nothing can tell it).
        let map_moved_by = |data_shift: u64| -> String {
            typed
                .lines()
                .map(|l| {
                    let mut w = l.split_whitespace();
                    let (a, t, n) = (w.next().unwrap(), w.next().unwrap(), w.next().unwrap());
                    let a = u64::from_str_radix(a, 16).unwrap();
                    let shift = if matches!(t, "D" | "d" | "B" | "b") { data_shift } else { 0 };
                    let linked = if a >= 1 << 63 && t != "A" && t != "a" { a - offset + shift } else { a };
                    format!("{linked:016x} {t} {n}\n")
                })
                .collect()
        };
        let vmcore = f.vmcore();
        let map = f.scratch.join("System.map");
        std::fs::write(&map, map_moved_by(0)).unwrap();
        let vi = std::fs::read_to_string(f.expected("vmcoreinfo.txt")).unwrap();
        let old = f.scratch.join("vmcoreinfo-before-6.0.txt");
        std::fs::write(&old, as_before_6_0(&vi)).unwrap();
        let with_map = |args: &[&str], map: &Path| {
            let mut a: Vec<&OsStr> = vec![OsStr::new(args[0]), OsStr::new("--vmcoreinfo"), old.as_os_str()];
            a.extend([OsStr::new("--system-map"), map.as_os_str(), vmcore.as_os_str()]);
            a.extend(args[1..].iter().map(OsStr::new));
            run(&a)
        };
        let (ok, listed, err) = with_map(&["symbols", "--types"], &map);
        if name.starts_with("aarch64-6.1-") {
            // Its kallsyms has code symbols only (no CONFIG_KALLSYMS_ALL), so such a map
            // names no VMCOREINFO symbol but _stext, which it was placed by.
            assert!(!ok && err.contains("nothing shows it is this kernel's"), "{name}: {err}");
            continue;
        }
        assert!(ok, "{name}: {err}");
        assert!(String::from_utf8(listed).unwrap() == typed, "{name}: the map's symbols differ from kallsyms'");

        let sysname = format!("init_uts_ns+{:#x}", f.utsname_offset());
        let (ok, out, err) = with_map(&["read", &sysname, "5"], &map);
        assert!(ok && out == b"Linux", "{name}: {err}");
        let stext = typed.lines().find(|l| l.ends_with(" _stext")).unwrap().split(' ').next().unwrap().to_string();
        let (ok, out, err) = with_map(&["addr2sym", &format!("0x{stext}")], &map);
        assert!(ok && String::from_utf8_lossy(&out).contains("+0x0/"), "{name}: {err}");
        // Of the names at one address (the map lists them by name, as `nm -n` does),
        // addr2sym answers the kernel's choice, the one its own table puts first.
        let own = Machine::new(&Dump::open(std::slice::from_ref(&vmcore), &OpenOptions::default()).unwrap()).unwrap();
        let opts =
            OpenOptions { vmcoreinfo_file: Some(old.clone()), system_map: Some(map.clone()), ..OpenOptions::default() };
        let mapped = Machine::new(&Dump::open(std::slice::from_ref(&vmcore), &opts).unwrap()).unwrap();
        let (own, mapped) = (own.symbols.unwrap(), mapped.symbols.unwrap());
        let aliased: Vec<u64> =
            own.symbols().windows(2).filter(|w| w[0].address == w[1].address).map(|w| w[0].address).collect();
        assert!(aliased.len() > 100, "{name}: {} aliased addresses", aliased.len());
        for at in aliased {
            let name_at = |k: &vmcore_kernel::kallsyms::Kallsyms| k.addr2sym(at).map(|(s, _, _)| s.name.clone());
            assert_eq!(name_at(&mapped), name_at(&own), "{name}: the symbol named at {at:#x}");
        }

        let mut a = vec![OsStr::new("info"), OsStr::new("--json"), OsStr::new("--vmcoreinfo"), old.as_os_str()];
        a.extend([OsStr::new("--system-map"), map.as_os_str(), vmcore.as_os_str()]);
        let (v, _) = info_json(&a[2..]);
        assert!(v["symbols_from"].as_str().unwrap().contains("System.map"), "{name}: {}", v["symbols_from"]);
        if f.is_x86_64() {
            let t = truth(&f);
            let vmemmap = &v["layout"]["vmemmap_base"];
            assert_eq!(vmemmap["sources"]["symbol"], t["variables"]["vmemmap_base"]["value"], "{name}: {vmemmap}");
        }
        // The map measures the KASLR offset a second way; a wrong KERNELOFFSET is caught.
        let kaslr = &v["layout"]["kaslr_offset"];
        assert_eq!(kaslr["sources"]["system_map"], format!("{offset:#x}"), "{name}: {kaslr}");
        assert_eq!(kaslr["sources"]["vmcoreinfo"], format!("{offset:#x}"), "{name}: {kaslr}");
        let wrong = f.scratch.join("vmcoreinfo-wrong-kerneloffset.txt");
        let text = std::fs::read_to_string(&old).unwrap();
        let line = text.lines().find(|l| l.starts_with("KERNELOFFSET=")).unwrap();
        std::fs::write(&wrong, text.replace(line, &format!("KERNELOFFSET={:x}", offset + 0x20_0000))).unwrap();
        let mut a = vec![OsStr::new("--vmcoreinfo"), wrong.as_os_str()];
        a.extend([OsStr::new("--system-map"), map.as_os_str(), vmcore.as_os_str()]);
        let (v, _) = info_json(&a);
        assert!(v["warnings"].to_string().contains("kaslr_offset: methods disagree"), "{name}: {}", v["warnings"]);

        let other = f.scratch.join("System.map-other");
        std::fs::write(&other, map_moved_by(0x1000)).unwrap();
        let (ok, _, err) = with_map(&["symbols"], &other);
        assert!(!ok && err.contains("the list is another kernel's"), "{name}: {err}");
    }
}
