//! The binary's behaviour that needs no dump.

use std::ffi::OsStr;
use std::path::Path;

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

/// Runs vmcore and checks that it fails, saying each of `words`.
fn refused(argv: &[&OsStr], words: &[&str]) {
    let (ok, _, err) = run(argv);
    assert!(!ok && words.iter().all(|w| err.contains(w)), "{err}");
}

/// A small ELF dump in `dir`, for the output-file tests.
fn sample_dump(dir: &std::path::Path) -> std::path::PathBuf {
    crate::util::synthetic_elf(dir, "d.elf", "x86_64-6.1-l4", 64 << 20, 7)
}

fn args<'a>(list: &'a [&'a str], paths: &'a [&'a Path]) -> Vec<&'a OsStr> {
    list.iter().map(OsStr::new).chain(paths.iter().map(|p| p.as_os_str())).collect()
}

#[test]
fn force_never_overwrites_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let before = std::fs::read(&input).unwrap();
    refused(
        &args(&["dump", "-q", "-f", "-d", "0", "-l"], &[&input, &input]),
        &["same file as", "--force would destroy it"],
    );
    assert!(std::fs::read(&input).unwrap() == before, "the input is unchanged");
    // Through another name, and as a reassembled or split output.
    let other = dir.path().join("./d.elf");
    refused(&args(&["dump", "-q", "-f", "-d", "0", "-l"], &[&input, &other]), &["same file as"]);
    refused(
        &args(&["dump", "-q", "-f", "-d", "0", "-l"], &[&input, Path::new("--split"), &dir.path().join("s"), &input]),
        &["same file as"],
    );
    assert!(std::fs::read(&input).unwrap() == before, "the input is unchanged");
}

#[test]
fn force_leaves_the_mode_of_what_is_not_a_regular_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").args(["-m", "644"]).arg(&fifo).status().unwrap().success());
    // A FIFO cannot take positioned writes: the dump fails, the FIFO keeps its mode.
    let (ok, _, _) = run(&args(&["dump", "-q", "-f", "-d", "0", "-l"], &[&input, &fifo]));
    assert!(!ok);
    assert_eq!(std::fs::metadata(&fifo).unwrap().permissions().mode() & 0o777, 0o644);
    // A regular file is made 0600.
    let file = dir.path().join("old.kdump");
    std::fs::write(&file, b"old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = run(&args(&["dump", "-q", "-f", "-d", "0", "-l"], &[&input, &file]));
    assert!(ok, "{err}");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_split_set_naming_one_file_twice_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let part = dir.path().join("p");
    refused(&args(&["dump", "-q", "-d", "0", "-l"], &[&input, Path::new("--split"), &part, &part]), &["exists"]);
    assert!(!part.exists(), "the part created first is removed");
    refused(
        &args(&["dump", "-q", "-f", "-d", "0", "-l"], &[&input, Path::new("--split"), &part, &dir.path().join("./p")]),
        &["same file as"],
    );
    assert!(!part.exists());
}

#[test]
fn a_command_that_fails_before_writing_leaves_no_empty_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let out = dir.path().join("r.kdump");
    refused(&args(&["rearrange"], &[&input, &out]), &["not a flattened stream"]);
    assert!(!out.exists());
    refused(&args(&["reassemble"], &[&input, &input, &out]), &[]);
    assert!(!out.exists());
}

#[test]
fn a_flattened_stream_takes_no_output_file_and_no_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let out = dir.path().join("wanted.kdump");
    refused(&args(&["dump", "-q", "-F", "-l"], &[&input, &out]), &["--flatten", "[OUT]"]);
    refused(&args(&["dump", "-q", "-F", "-L", "1M", "-l"], &[&input]), &["--limit"]);
    refused(&args(&["makedumpfile", "-F", "-l", "-d", "31"], &[&input, &out]), &["give only VMCORE"]);
    refused(&args(&["makedumpfile", "-F", "-L", "1M", "-l", "-d", "31"], &[&input]), &["-L"]);
    refused(
        &args(&["makedumpfile", "--split", "-E", "-d", "31"], &[&input, &out, &dir.path().join("o2")]),
        &["neither -E nor -F"],
    );
    assert!(!out.exists());
}

#[test]
fn a_dump_level_list_retries_at_the_next_level_when_the_limit_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let size = |level: &str| {
        let out = dir.path().join(format!("l{level}"));
        let (ok, _, err) = run(&args(&["makedumpfile", "-l", "--message-level", "0", "-d", level], &[&input, &out]));
        assert!(ok, "{err}");
        std::fs::metadata(&out).unwrap().len()
    };
    let (all, kept) = (size("0"), size("31"));
    assert!(kept < all / 2, "{kept} of {all}");
    let limit = ((kept + all) / 2).to_string();
    let out = dir.path().join("retry.kdump");
    let (ok, _, err) =
        run(&args(&["makedumpfile", "-l", "--message-level", "7", "-L", &limit, "-d", "0,31"], &[&input, &out]));
    assert!(ok && err.contains("again at level 31"), "{err}");
    assert!(std::fs::read(&out).unwrap() == std::fs::read(dir.path().join("l31")).unwrap(), "the level-31 dump");
    // A list that runs out leaves the last attempt, incomplete, and exit status 1.
    let (ok, _, _) =
        run(&args(&["makedumpfile", "-l", "-f", "--message-level", "0", "-L", &limit, "-d", "0,1"], &[&input, &out]));
    assert!(!ok);
}

#[test]
fn the_front_end_refuses_options_that_would_be_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let out = dir.path().join("o");
    refused(&args(&["makedumpfile", "-E", "-c", "-d", "31"], &[&input, &out]), &["-E writes pages uncompressed"]);
    refused(&args(&["makedumpfile", "-R", "-l"], &[&out]), &["-R copies the stream as it is"]);
    assert!(!out.exists());
}

/// A flattened dump with descriptor 1 closed fails as makedumpfile's does (EBADF), where it
/// used to go to the /dev/null the runtime puts there and exit 0; `>/dev/null` still works.
#[test]
fn flattened_dump_to_a_closed_stdout_fails() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let shell = |redirect: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec \"$0\" dump -q -F -d 31 -l \"$1\" {redirect}"))
            .arg(env!("CARGO_BIN_EXE_vmcore"))
            .arg(&input)
            .output()
            .expect("run sh")
    };
    let closed = shell(">&-");
    let err = String::from_utf8_lossy(&closed.stderr);
    assert!(!closed.status.success() && err.contains("standard output is closed"), "{err}");
    let null = shell(">/dev/null");
    assert!(null.status.success(), "{}", String::from_utf8_lossy(&null.stderr));
}

/// kdump scripts check their core collector with `--check-params` when the service
/// starts (RHEL's mkdumprd). It used to accept everything; a collector with `-F` and a
/// file then failed only in the crash kernel, losing the dump. Now it refuses what the
/// run would refuse, accepts what it would take, and touches no file.
#[test]
fn check_params_refuses_what_the_dump_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let (out, out2, out3) = (dir.path().join("o"), dir.path().join("o2"), dir.path().join("o3"));
    let check = |list: &[&str], paths: &[&Path]| {
        let mut a = vec!["makedumpfile", "--check-params"];
        a.extend_from_slice(list);
        run(&args(&a, paths))
    };
    let bad: &[(&[&str], &[&Path])] = &[
        (&["-F", "-l", "-d", "31"], &[&input, &out]),
        (&["-E", "-l", "-d", "31"], &[&input, &out]),
        (&["--split", "-l", "-d", "31"], &[&input, &out]),
        (&["-l", "-d", "31"], &[&input]),
        (&["-R", "-c"], &[&out]),
        (&["-R", "-F"], &[&out]),
        (&["-F", "--split"], &[&input]),
        (&["--split", "-E"], &[&input, &out, &out2]),
        (&["--dump-dmesg"], &[&input]),
        (&["--dump-dmesg", "-F"], &[&input, &out]),
        (&["--reassemble", "-l"], &[&out, &out2, &out3]),
        (&["--partial-dmesg"], &[&input, &out]),
        (&["-F", "-L", "5M", "-l", "-d", "31"], &[&input]),
        // As Debian's makedumpfile 1.7.2 refuses them.
        (&["--dry-run", "-l", "-d", "31"], &[&input]),
        (&["--num-threads", "2", "--split", "-l", "-d", "31"], &[&input, &out, &out2]),
        (&["--num-threads", "2", "-E", "-d", "31"], &[&input, &out]),
        (&["--message-level", "32", "-l", "-d", "31"], &[&input, &out]),
    ];
    for (list, paths) in bad {
        let (ok, _, err) = check(list, paths);
        assert!(!ok, "{list:?}: accepted: {err}");
    }
    let good: &[(&[&str], &[&Path])] = &[
        (&["-l", "--message-level", "7", "-d", "31"], &[&input, &out]),
        (&["-F", "-l", "-d", "31"], &[&input]),
        (&["--split", "-c", "-d", "31"], &[&input, &out, &out2]),
        (&["--dump-dmesg"], &[&input, &out]),
        (&["-R"], &[&out]),
        (&["--reassemble"], &[&out, &out2, &out3]),
        (&["--dry-run", "-l", "-d", "31"], &[&input, &out]),
        (&["--message-level", "31", "-l", "-d", "31"], &[&input, &out]),
    ];
    for (list, paths) in good {
        let (ok, _, err) = check(list, paths);
        assert!(ok, "{list:?}: refused: {err}");
    }
    assert!(!out.exists() && !out2.exists() && !out3.exists());
}

/// makedumpfile's messages: `makedumpfile Failed.` on stdout (as MSG prints it), the
/// closing lines on stderr when stdout carries the stream, a split set's files named, `-f` named when the output
/// exists, unambiguous prefixes of long options taken as getopt_long takes them, and
/// `--partial-dmesg` alone refused rather than writing a whole dump.
#[test]
fn the_front_end_speaks_as_makedumpfile() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let out = dir.path().join("o");
    let (ok, stdout, err) =
        run(&args(&["makedumpfile", "-l", "--message", "7", "--num-thr", "2", "-d", "31"], &[&input, &out]));
    assert!(ok, "{err}");
    let stdout = String::from_utf8(stdout).unwrap();
    assert!(
        stdout.ends_with(&format!("\nThe dumpfile is saved to {}.\n\nmakedumpfile Completed.\n", out.display())),
        "{stdout}"
    );
    let (ok, stdout, err) = run(&args(&["makedumpfile", "-l", "-d", "31"], &[&input, &out]));
    assert!(!ok && err.contains("(-f overwrites it)"), "{err}");
    assert_eq!(String::from_utf8(stdout).unwrap(), "\nmakedumpfile Failed.\n");
    let (ok, _, err) = run(&args(&["makedumpfile", "--s", "-l", "-d", "31"], &[&input, &out]));
    assert!(!ok && err.contains("ambiguous") && err.contains("--split"), "{err}");
    let (ok, stream, err) = run(&args(&["makedumpfile", "-F", "-l", "-d", "31"], &[&input]));
    assert!(ok && stream.starts_with(b"makedumpfile"), "{err}");
    assert!(err.ends_with("\nThe dumpfile is saved to STDOUT.\n\nmakedumpfile Completed.\n"), "{err}");
    // A dry run reports only with --show-stats (on stderr under -F), as makedumpfile.
    let (ok, stream, err) = run(&args(&["makedumpfile", "-F", "--dry-run", "-l", "-d", "31"], &[&input]));
    assert!(ok && stream.is_empty() && !err.contains("Remaining pages") && err.ends_with("Completed.\n"), "{err}");
    let (ok, stream, err) =
        run(&args(&["makedumpfile", "-F", "--dry-run", "--show-stats", "-l", "-d", "31"], &[&input]));
    assert!(ok && stream.is_empty() && err.contains("Remaining pages") && err.contains("Write bytes"), "{err}");
    // makedumpfile 1.7.2 names a --split set's files: "to A, B, and C."
    let (s1, s2, s3) = (dir.path().join("s1"), dir.path().join("s2"), dir.path().join("s3"));
    let (ok, stdout, err) = run(&args(&["makedumpfile", "--split", "-l", "-d", "31"], &[&input, &s1, &s2, &s3]));
    let names = format!("{}, {}, and {}", s1.display(), s2.display(), s3.display());
    assert!(
        ok && String::from_utf8(stdout).unwrap().ends_with(&format!("saved to {names}.\n\nmakedumpfile Completed.\n")),
        "{err}"
    );
    let log = dir.path().join("log");
    let (ok, _, err) = run(&args(&["makedumpfile", "--partial-dmesg"], &[&input, &log]));
    assert!(!ok && err.contains("--partial-dmesg goes with --dump-dmesg") && !log.exists(), "{err}");
}

/// A size limit (or a disk) that ends the output before its headers and bitmaps are
/// whole leaves no file: there is no page to keep, and readers took what was left for a
/// dump (libkdumpfile read one as every page excluded, and died on another).
#[test]
fn a_limit_below_the_headers_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let (out, out2) = (dir.path().join("o"), dir.path().join("o2"));
    for list in [&["-l", "-L", "4096"][..], &["-l", "-L", "8K"], &["-E", "-L", "4096"]] {
        let mut a = vec!["dump", "-q", "-d", "31"];
        a.extend_from_slice(list);
        let (ok, _, err) = run(&args(&a, &[&input, &out]));
        assert!(!ok && err.contains("no space for the dump's headers"), "{list:?}: {err}");
        assert!(!out.exists(), "{list:?}: a file was left");
    }
    let split: Vec<&OsStr> = ["dump", "-q", "-d", "31", "-L", "4096"]
        .iter()
        .map(OsStr::new)
        .chain([input.as_os_str(), OsStr::new("--split"), out.as_os_str(), out2.as_os_str()])
        .collect();
    let (ok, _, err) = run(&split);
    assert!(!ok && err.contains("no space for the dump's headers"), "{err}");
    assert!(!out.exists() && !out2.exists(), "split files were left");
}

/// A VMCOREINFO file (`-i`) of another kernel than the dump's is refused with
/// makedumpfile's exit code 2, whether the dump says its release itself (its own note) or
/// only its memory does (its utsname, read with the file's offsets); the right file works.
#[test]
fn a_vmcoreinfo_file_of_another_kernel_is_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let elf = crate::util::synthetic_elf(dir.path(), "synth.elf", "x86_64-6.1-l4", 128 << 20, 2);
    let (ok, text, err) = run(&[OsStr::new("vmcoreinfo"), elf.as_os_str()]);
    assert!(ok, "{err}");
    let text = String::from_utf8(text).unwrap();
    let right = dir.path().join("right.txt");
    std::fs::write(&right, &text).unwrap();
    let wrong = dir.path().join("wrong.txt");
    std::fs::write(&wrong, text.replace("OSRELEASE=6.1.0-synthetic", "OSRELEASE=5.10.0-other")).unwrap();
    // The same machine without its VMCOREINFO note (renamed): only memory tells.
    let mut bytes = std::fs::read(&elf).unwrap();
    let at = bytes.windows(11).position(|w| w == b"VMCOREINFO\0").unwrap();
    bytes[at + 9] = b'X';
    let bare = dir.path().join("bare.elf");
    std::fs::write(&bare, bytes).unwrap();
    for input in [&elf, &bare] {
        let out = dir.path().join("out");
        let front = |vmcoreinfo: &Path| {
            let _ = std::fs::remove_file(&out);
            let status = crate::util::vmcore()
                .args([OsStr::new("makedumpfile"), OsStr::new("-i"), vmcoreinfo.as_os_str(), OsStr::new("-d")])
                .args([OsStr::new("31"), input.as_os_str(), out.as_os_str()])
                .output()
                .unwrap();
            (status.status.code(), String::from_utf8_lossy(&status.stderr).into_owned())
        };
        let (code, err) = front(&wrong);
        assert_eq!(code, Some(2), "{}: {err}", input.display());
        assert!(err.contains("VMCOREINFO of kernel 5.10.0-other") && err.contains("kernel 6.1.0-synthetic"), "{err}");
        assert!(!out.exists());
        let (code, err) = front(&right);
        assert_eq!(code, Some(0), "{}: {err}", input.display());
    }
    // Offsets that lead to no utsname: not this kernel's file either (makedumpfile: 2).
    let astray = dir.path().join("astray.txt");
    let moved: String = text
        .lines()
        .map(|l| if l.starts_with("OFFSET(uts_namespace.name)=") { "OFFSET(uts_namespace.name)=4000" } else { l })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(moved, text, "the synthetic VMCOREINFO exports OFFSET(uts_namespace.name)");
    std::fs::write(&astray, moved).unwrap();
    let out = dir.path().join("out");
    let status = crate::util::vmcore()
        .args([OsStr::new("makedumpfile"), OsStr::new("-i"), astray.as_os_str(), OsStr::new("-d"), OsStr::new("31")])
        .args([bare.as_os_str(), out.as_os_str()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(2), "{err}");
    assert!(err.contains("no utsname where the file's offsets point"), "{err}");
}

/// Numbers past what makes sense are refused or bounded, not taken literally: an offset
/// that wraps past 2^64 (it read the byte before the symbol), and a thread count that
/// would start 100,000 threads.
#[test]
fn offsets_that_wrap_and_thread_counts_past_reason_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_dump(dir.path());
    let (ok, _, err) =
        run(&[OsStr::new("read"), input.as_os_str(), OsStr::new("init_uts_ns+0xffffffffffffffff"), OsStr::new("8")]);
    assert!(!ok && err.contains("passes 2^64"), "{err}");
    let (one, many) = (dir.path().join("one"), dir.path().join("many"));
    let (ok, _, err) = run(&args(&["dump", "-q", "-l", "-d", "31", "--threads", "1"], &[&input, &one]));
    assert!(ok, "{err}");
    let (ok, _, err) = run(&args(&["dump", "-q", "-l", "-d", "31", "--threads", "100000"], &[&input, &many]));
    assert!(ok && err.contains("100000 threads asked for: using 256"), "{err}");
    assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&many).unwrap());
}
