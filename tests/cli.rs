//! The binary's behaviour that needs no dump.

use std::ffi::OsStr;

use crate::util::run;

#[test]
fn help_names_every_command() {
    let (ok, out, _) = run(&[OsStr::new("--help")]);
    assert!(ok);
    let out = String::from_utf8(out).unwrap();
    for cmd in ["info", "vmcoreinfo", "read"] {
        assert!(out.contains(cmd), "{cmd} missing from --help:\n{out}");
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let (ok, out, err) = run(&[OsStr::new("info"), OsStr::new("/nonexistent/dump")]);
    assert!(!ok && out.is_empty());
    assert!(err.contains("/nonexistent/dump") && err.contains("cannot open"), "{err}");
}

/// A full disk under stderr (a kdump script's log beside the dump it filled) leaves the
/// exit code 1, not an abort.
#[test]
fn an_unwritable_stderr_does_not_abort() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_vmcore"))
        .args(["info", "/nonexistent/dump"])
        .stderr(full)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "{status}");
}

#[test]
fn read_of_an_unknown_symbol_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let machine = vmcore_synth::sample::SampleMachine::new(4 << 20, 1).unwrap();
    let dump = machine.elf().to_vec(|paddr, buf| machine.fill(paddr, buf)).unwrap();
    let path = dir.path().join("d.elf");
    std::fs::write(&path, dump).unwrap();
    let (ok, _, err) = run(&[OsStr::new("read"), path.as_os_str(), OsStr::new("no_such_symbol"), OsStr::new("8")]);
    assert!(!ok);
    assert!(err.contains("no_such_symbol") && err.contains("nor a symbol"), "{err}");
}
