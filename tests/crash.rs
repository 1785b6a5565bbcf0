//! The crash utility reads the dumps vmcore writes. Without a vmlinux with debuginfo (the
//! fixtures have none) crash can only print the kernel log, which `crash --log` finds from
//! VMCOREINFO alone for the printk_log records of 3.5-5.9 and the plain log_buf before
//! (Debian's crash 8.0.2 says "no log buffer data" for the lockless ring of 5.10+). So
//! synthetic machines of those two generations are written in every format vmcore writes,
//! and crash must print from each the log it prints from the ELF input: crash's own
//! readers of kdump-compressed files (every codec), ELF dumps and rearranged streams go
//! through vmcore's headers, bitmaps and page descriptors to the log's pages.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::util::{missing, run, synthetic_elf};

/// `crash --log DUMP`: its stdout when it succeeds, else its message.
fn crash_log(dump: &Path) -> Result<String, String> {
    let out = Command::new("crash").arg("--log").arg(dump).output().map_err(|e| format!("run crash: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{}{text}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn have_crash() -> bool {
    let ok = Command::new("crash").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        missing("crash");
    }
    ok
}

/// makedumpfile's (and so `vmcore dmesg`'s) log as crash prints it: crash shows each
/// unprintable byte as '.', where makedumpfile writes `\xNN` (sign-extended to eight
/// digits for bytes over 0x7f, as its `%x` of a char does).
fn as_crash_prints(makedumpfile_log: &str) -> String {
    let mut out = String::with_capacity(makedumpfile_log.len());
    let mut rest = makedumpfile_log;
    while let Some(at) = rest.find("\\x") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let digits = if after.starts_with("ffffff") { 8 } else { 2 };
        out.push('.');
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[test]
fn crash_prints_the_same_log_from_every_dump_vmcore_writes() {
    if !have_crash() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for layout in ["x86_64-5.4-l4", "x86_64-2.6.32-l4"] {
        let elf = synthetic_elf(dir.path(), &format!("{layout}.elf"), layout, 128 << 20, 11);
        let want = crash_log(&elf).unwrap_or_else(|e| panic!("{layout}: crash --log of the ELF input: {e}"));
        let (ok, ours, err) = run(&[OsStr::new("dmesg"), elf.as_os_str()]);
        assert!(ok, "{layout}: vmcore dmesg: {err}");
        let ours = as_crash_prints(&String::from_utf8(ours).unwrap());
        assert!(ours.lines().count() >= 1000, "{layout}: the machine's log is too short to tell anything");
        assert!(want == ours, "{layout}: crash --log and vmcore dmesg differ on the ELF input");

        let mut outputs = Vec::new();
        for (what, args) in [
            ("zlib -d 31", &["-c", "-d", "31"][..]),
            ("lzo -d 1", &["-l", "-d", "1"]),
            ("snappy -d 31", &["-p", "-d", "31"]),
            ("zstd -d 31", &["-z", "-d", "31"]),
            ("uncompressed -d 0", &["--uncompressed", "-d", "0"]),
            ("ELF -d 31", &["-E", "-d", "31"]),
        ] {
            let out = dir.path().join(format!("{layout} {what}"));
            let mut argv = vec![OsStr::new("dump"), elf.as_os_str(), out.as_os_str()];
            argv.extend(args.iter().map(OsStr::new));
            let (ok, _, err) = run(&argv);
            assert!(ok, "{layout} {what}: {err}");
            outputs.push((what.to_string(), out));
        }
        // A refiltered dump, and a flattened stream through vmcore rearrange.
        let lzo = outputs[1].1.clone();
        let refiltered = dir.path().join(format!("{layout} refiltered"));
        let (ok, _, err) = run(&[
            OsStr::new("dump"),
            lzo.as_os_str(),
            refiltered.as_os_str(),
            OsStr::new("-d"),
            OsStr::new("31"),
            OsStr::new("-z"),
        ]);
        assert!(ok, "{layout}: refilter: {err}");
        outputs.push(("lzo -d 1 refiltered to zstd -d 31".into(), refiltered));
        let (ok, stream, err) = run(&[
            OsStr::new("dump"),
            elf.as_os_str(),
            OsStr::new("-F"),
            OsStr::new("-l"),
            OsStr::new("-d"),
            OsStr::new("31"),
        ]);
        assert!(ok, "{layout}: -F: {err}");
        let stream_path = dir.path().join(format!("{layout} stream"));
        std::fs::write(&stream_path, stream).unwrap();
        let rearranged = dir.path().join(format!("{layout} rearranged"));
        let (ok, _, err) = run(&[OsStr::new("rearrange"), stream_path.as_os_str(), rearranged.as_os_str()]);
        assert!(ok, "{layout}: rearrange: {err}");
        outputs.push(("a rearranged lzo -d 31 stream".into(), rearranged));

        for (what, path) in outputs {
            let got = crash_log(&path).unwrap_or_else(|e| panic!("{layout} {what}: crash --log: {e}"));
            assert!(got == want, "{layout} {what}: crash prints another log than from the input");
        }
    }
}

#[test]
fn as_crash_prints_turns_each_escaped_byte_into_a_dot() {
    assert_eq!(as_crash_prints("a\\x01b \\x7f caf\\xffffffc3\\xffffffa9!"), "a.b . caf..!");
    assert_eq!(as_crash_prints("\\x1fdeadbeef"), ".deadbeef");
}
