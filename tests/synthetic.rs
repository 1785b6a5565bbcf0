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
    let ours = dir.path().join("ours.kdump");
    let theirs = dir.path().join("mkd.kdump");
    let (ok, _, err) = run(&[
        OsStr::new("makedumpfile"),
        OsStr::new("-l"),
        OsStr::new("-d"),
        OsStr::new("31"),
        path.as_os_str(),
        ours.as_os_str(),
    ]);
    assert!(ok, "{err}");
    let mkd =
        std::process::Command::new("makedumpfile").args(["-l", "-d", "31"]).arg(&path).arg(&theirs).output().unwrap();
    assert!(mkd.status.success(), "{}", String::from_utf8_lossy(&mkd.stderr));
    let (a, b) = (std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
    assert_eq!(a.len(), b.len());
    let first_difference = a.iter().zip(&b).position(|(x, y)| x != y);
    assert_eq!(first_difference, None, "ours and makedumpfile's differ");
}
