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

#[test]
fn read_requires_phys_until_virtual_reads_exist() {
    let (ok, _, err) = run(&[OsStr::new("read"), OsStr::new("x"), OsStr::new("0"), OsStr::new("1")]);
    assert!(!ok);
    assert!(err.contains("--phys"), "{err}");
}
