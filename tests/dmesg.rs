//! The kernel log: `vmcore dmesg` against upstream makedumpfile 1.7.9's `--dump-dmesg`
//! output of every real fixture (expected/dmesg.txt), on the ELF vmcore and on kdump files
//! made by Debian's makedumpfile; and synthetic dumps of every printk generation built as
//! the kernel writes them (printk_log of 3.5-5.9, the plain log_buf before 3.5, a wrapped
//! printk_ringbuffer, dev_printk records, --partial), and corrupt rings.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vmcore_kernel::machine::Machine;
use vmcore_kernel::printk::{read_log, render, Escape, Generation, Log, Options, Record};
use vmcore_kernel::vmem::{KernelMem, LinearMap};
use vmcore_kernel::{Dump, OpenOptions};
use vmcore_synth::elf::{vmcoreinfo_note, ElfVmcore, Load, EM_X86_64};
use vmcore_synth::kdump::{self, KdumpSpec, PageSpec};
use vmcore_synth::printk::{Image, Msg, Plain, PrintkLog, Ringbuffer};

use crate::util::{fixture_names, have_makedumpfile, run, Fixture};

fn open(path: &Path) -> Dump {
    Dump::open(&[path.to_path_buf()], &OpenOptions::default()).unwrap_or_else(|e| panic!("open {path:?}: {e}"))
}

/// The log of a real dump through the library, and makedumpfile's text of it.
fn library_dmesg(path: &Path, opts: &Options) -> (Log, Vec<u8>) {
    let dump = open(path);
    let machine = Machine::new(&dump).unwrap();
    let read = |a: u64, b: &mut [u8]| machine.kmem.read(a, b).map_err(|e| e.to_string());
    let log = read_log(dump.vmcoreinfo.as_ref().unwrap(), &read, opts).unwrap();
    let mut out = Vec::new();
    render(&log, Escape::for_arch(machine.arch), &mut out).unwrap();
    (log, out)
}

/// The records of `log`, decoded.
fn records(log: &Log) -> Vec<Record> {
    log.records.iter().map(std::borrow::Cow::into_owned).collect()
}

/// Whether this binary has the `dmesg` subcommand (it is wired into the command line
/// separately from this module). Under CI it must.
fn have_dmesg_command() -> bool {
    let (ok, _, _) = run(&[OsStr::new("dmesg"), OsStr::new("--help")]);
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "`vmcore dmesg` is not wired into the command line");
        eprintln!("\n*** `vmcore dmesg` NOT IN THE COMMAND LINE YET: its binary checks are SKIPPED ***\n");
    }
    ok
}

/// The printk generation of a fixture's kernel, by its release: the lockless ring since
/// 5.10, printk_log records since 3.5, a plain buffer before.
fn generation_of(f: &Fixture) -> Generation {
    match f.kernel_version() {
        v if v >= (5, 10) => Generation::Ringbuffer,
        v if v >= (3, 5) => Generation::PrintkLog,
        _ => Generation::Plain,
    }
}

/// Whether the kernel recorded callers (CONFIG_PRINTK_CALLER): makedumpfile 1.7.9 prints
/// them, `[      T0]`, after the time of each line of expected/dmesg.txt.
fn records_callers(f: &Fixture) -> bool {
    let expected = std::fs::read_to_string(f.expected("dmesg.txt")).unwrap();
    let first = expected.lines().next().unwrap_or_default();
    first.split_once("] [").is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 'C']))
}

/// First differing line, for readable failures.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    match a.lines().zip(b.lines()).enumerate().find(|(_, (x, y))| x != y) {
        Some((i, (x, y))) => format!("line {}: {x:?} vs {y:?}", i + 1),
        None => format!("{} vs {} lines, {} vs {} bytes", a.lines().count(), b.lines().count(), a.len(), b.len()),
    }
}

#[test]
fn dmesg_is_byte_identical_to_makedumpfile_on_every_fixture() {
    let cli = have_dmesg_command();
    for name in fixture_names() {
        let f = Fixture::new(&name);
        let expected = std::fs::read(f.expected("dmesg.txt")).unwrap();
        let mut inputs = vec![f.vmcore()];
        if f.is_x86_64() {
            // Debian's makedumpfile cannot read the arm64 fixtures.
            inputs.extend(f.makedumpfile("d31_zlib.kdump", &["-c", "-d", "31"]));
        }
        for input in inputs {
            let (log, out) = library_dmesg(&input, &Options::default());
            assert_eq!(log.generation, generation_of(&f), "{name}");
            assert!(log.warnings.is_empty(), "{name}: {:?}", log.warnings);
            assert!(out == expected, "{name} {}: {}", input.display(), first_difference(&out, &expected));
            if cli {
                let (ok, out, err) = run(&[OsStr::new("dmesg"), input.as_os_str()]);
                assert!(ok, "{name}: {err}");
                assert!(err.is_empty(), "{name}: {err}");
                assert!(out == expected, "{name} {} (binary): {}", input.display(), first_difference(&out, &expected));
            }
        }
    }
}

#[test]
fn full_and_partial_logs_equal_debians_makedumpfile() {
    // Debian's makedumpfile (1.7.2) prints no caller ids; compare with what it prints.
    for name in fixture_names().into_iter().filter(|n| n.starts_with("x86_64")) {
        if !have_makedumpfile() {
            return;
        }
        let f = Fixture::new(&name);
        for partial in [false, true] {
            let out_file = f.scratch.join(format!("dmesg-debian-{partial}.txt"));
            let mut cmd = std::process::Command::new("makedumpfile");
            cmd.arg("--dump-dmesg");
            if partial {
                cmd.arg("--partial-dmesg");
            }
            let status = cmd.arg(f.vmcore()).arg(&out_file).output().unwrap().status;
            assert!(status.success(), "{name}: makedumpfile --dump-dmesg failed");
            let theirs = std::fs::read(&out_file).unwrap();
            let (mut log, _) = library_dmesg(&f.vmcore(), &Options { partial, live: false });
            log.caller_ids = theirs.get(15..17) == Some(b"[ ");
            let mut ours = Vec::new();
            render(&log, Escape::SignedChar, &mut ours).unwrap();
            assert!(ours == theirs, "{name} partial={partial}: {}", first_difference(&ours, &theirs));
        }
    }
}

/// The synthetic machines of every printk generation (plain log_buf of 2.6.32, printk_log
/// records of 5.4, the lockless ring of 6.1 and 6.12), with a short log and one wrapped many
/// times: Debian's makedumpfile prints the same bytes. (The fixtures cover only the ring.)
#[test]
fn every_printk_generation_equals_debians_makedumpfile_on_synthetic_machines() {
    use vmcore_synth::machine::{Layout, Machine as Synthetic, MachineSpec};
    if !have_makedumpfile() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut generations = Vec::new();
    for layout in ["x86_64-2.6.32-l4", "x86_64-5.4-l4", "x86_64-6.1-l4", "x86_64-6.12-l5"] {
        for messages in [3, 20_000] {
            let name = format!("{layout}, {messages} messages");
            let spec = MachineSpec {
                messages: Some(messages),
                ..MachineSpec::new(Layout::parse(layout).unwrap(), 64 << 20, 7)
            };
            let path = dir.path().join(format!("{layout}-{messages}.elf"));
            Synthetic::new(&spec).unwrap().write_elf(&path).unwrap();
            for partial in [false, true] {
                let out_file = dir.path().join("makedumpfile.txt");
                let _ = std::fs::remove_file(&out_file);
                let mut cmd = std::process::Command::new("makedumpfile");
                cmd.arg("--dump-dmesg");
                if partial {
                    cmd.arg("--partial-dmesg");
                }
                let status = cmd.arg(&path).arg(&out_file).output().unwrap().status;
                assert!(status.success(), "{name}: makedumpfile --dump-dmesg failed");
                let theirs = std::fs::read(&out_file).unwrap();
                let (mut log, _) = library_dmesg(&path, &Options { partial, live: false });
                // (With --partial-dmesg, a log before 3.5 warns that it is printed whole.)
                assert!(partial || log.warnings.is_empty(), "{name}: {:?}", log.warnings);
                // 1.7.2 prints no caller ids (1.7.9 does).
                log.caller_ids &= theirs.get(15..17) == Some(b"[ ");
                let mut ours = Vec::new();
                render(&log, Escape::SignedChar, &mut ours).unwrap();
                assert!(ours.len() > 500, "{name}: {} bytes", ours.len());
                assert!(ours == theirs, "{name} partial={partial}: {}", first_difference(&ours, &theirs));
                generations.push(log.generation);
            }
        }
    }
    for g in [Generation::Plain, Generation::PrintkLog, Generation::Ringbuffer] {
        assert!(generations.contains(&g), "{g:?} not tried");
    }
}

#[test]
fn json_gives_one_object_per_record_with_dev_info() {
    if !have_dmesg_command() {
        return;
    }
    for name in fixture_names() {
        let f = Fixture::new(&name);
        let (log, _) = library_dmesg(&f.vmcore(), &Options::default());
        let (ok, out, err) = run(&[OsStr::new("dmesg"), OsStr::new("--json"), f.vmcore().as_os_str()]);
        assert!(ok, "{name}: {err}");
        let lines: Vec<serde_json::Value> =
            String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), log.records.len(), "{name}");
        let keys: Vec<&str> = lines[0].as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["seq", "ts_nsec", "level", "facility", "caller", "text", "subsystem", "device"] {
            assert!(keys.contains(&k), "{name}: {k} missing from {}", lines[0]);
        }
        // (4.4 logs its cgroup subsystems before the banner.)
        let banner = lines.iter().take(5).any(|l| l["text"].as_str().is_some_and(|t| t.starts_with("Linux version")));
        assert!(banner || name.starts_with("aarch64"), "{name}");
        let caller = if records_callers(&f) { serde_json::json!("T0") } else { serde_json::Value::Null };
        assert_eq!(lines[0]["caller"], caller, "{name}");
        // Sequence numbers increase; levels are syslog levels; some records come from
        // dev_printk() with both SUBSYSTEM and DEVICE.
        assert!(lines.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()), "{name}");
        assert!(lines.iter().all(|l| l["level"].as_u64().is_some_and(|v| v < 8)), "{name}");
        let dev = lines.iter().filter(|l| l["subsystem"].is_string() && l["device"].is_string()).count();
        assert!(dev > 0, "{name}: no dev_printk record");
        let text: Vec<String> = lines.iter().map(|l| l["text"].as_str().unwrap_or_default().to_string()).collect();
        let lib: Vec<String> = log.records.iter().map(|r| String::from_utf8_lossy(&r.text).into_owned()).collect();
        assert_eq!(text, lib, "{name}");
    }
}

// ------------------------------------------------------------ synthetic dumps

/// Physical address of the image in the synthetic dumps; the image's virtual base is
/// this address in the x86_64 4-level direct map.
const PADDR: u64 = 0x100_0000;
const BASE: u64 = 0xffff_8880_0000_0000 + PADDR;

/// An x86_64 ELF vmcore holding `img` at [`PADDR`] (mapped at `img.base`).
fn elf_dump(dir: &Path, name: &str, img: &Image) -> PathBuf {
    let size = (img.bytes.len() as u64).next_multiple_of(4096);
    let mut elf = ElfVmcore::new(EM_X86_64);
    elf.notes = vec![vmcoreinfo_note(&img.vmcoreinfo)];
    elf.loads = vec![Load::full(PADDR, img.base, size)];
    let path = dir.join(name);
    elf.write_path(&path, |pa, buf| {
        let off = (pa - PADDR) as usize;
        let src = img.bytes.get(off..).unwrap_or_default();
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
    })
    .unwrap();
    path
}

/// Reads the log of a synthetic dump through the image's linear map.
fn synthetic_log(path: &Path, img: &Image, opts: &Options) -> Log {
    let dump = open(path);
    let size = (img.bytes.len() as u64).next_multiple_of(4096);
    let kmem = KernelMem::new(Arc::clone(&dump.mem), Some(LinearMap { vstart: img.base, size, pstart: PADDR }));
    let read = |a: u64, b: &mut [u8]| kmem.read(a, b).map_err(|e| e.to_string());
    read_log(dump.vmcoreinfo.as_ref().unwrap(), &read, opts).unwrap()
}

fn rendered(log: &Log) -> String {
    let mut out = Vec::new();
    render(log, Escape::SignedChar, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// `vmcore dmesg ARGS FILE` when the command exists: (stdout, stderr).
fn cli_dmesg(args: &[&str], file: &Path) -> Option<(String, String)> {
    if !have_dmesg_command() {
        return None;
    }
    let mut all: Vec<&OsStr> = vec![OsStr::new("dmesg")];
    all.extend(args.iter().map(OsStr::new));
    all.push(file.as_os_str());
    let (ok, out, err) = run(&all);
    assert!(ok, "vmcore dmesg {args:?}: {err}");
    Some((String::from_utf8(out).unwrap(), err))
}

fn boot_messages() -> Vec<Msg> {
    vec![
        Msg { level: 5, ..Msg::new(0, b"Linux version 6.1.0-synthetic (gcc 12.2.0)").caller(0) },
        Msg::new(1_104_723_883, b"acpi PNP0A03:00: _OSC: OS supports [ASPM]").dev("acpi", "+acpi:PNP0A03:00"),
        Msg::new(3_174_242_000, b"Unstable clock detected\n  If you want to keep it\non the command line").caller(1),
        Msg::new(41_594_080_123, "caf\u{e9} \u{2713}".as_bytes()).caller(0x8000_0001),
    ]
}

const BOOT_TEXT: &str = "\
[    0.000000] [      T0] Linux version 6.1.0-synthetic (gcc 12.2.0)
[    1.104723] [      T1] acpi PNP0A03:00: _OSC: OS supports [ASPM]
[    3.174242] [      T1] Unstable clock detected
                            If you want to keep it
                          on the command line
[   41.594080] [      C1] caf\\xffffffc3\\xffffffa9 \\xffffffe2\\xffffff9c\\xffffff93
";

#[test]
fn synthetic_ringbuffer_with_dev_info_through_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let rb = Ringbuffer::default().build(&boot_messages(), BASE);
    let path = elf_dump(dir.path(), "rb.elf", &rb.image);
    let log = synthetic_log(&path, &rb.image, &Options::default());
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    assert_eq!(rendered(&log), BOOT_TEXT);
    let recs = records(&log);
    let acpi = &recs[1];
    assert_eq!((acpi.subsystem.as_deref(), acpi.device.as_deref()), (Some("acpi"), Some("+acpi:PNP0A03:00")));
    assert_eq!((recs[0].level, recs[0].facility), (Some(5), Some(0)));
    if let Some((out, err)) = cli_dmesg(&[], &path) {
        assert_eq!(out, BOOT_TEXT, "{err}");
        let (json, _) = cli_dmesg(&["--json"], &path).unwrap();
        let v: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(v.len(), 4);
        assert_eq!(v[1]["subsystem"], "acpi");
        assert_eq!(v[1]["device"], "+acpi:PNP0A03:00");
        assert_eq!(v[1]["ts_nsec"], 1_104_723_883u64);
        assert_eq!(v[3]["caller"], "C1");
        assert_eq!(v[3]["text"], "caf\u{e9} \u{2713}");
        assert_eq!(v[0]["level"], 5);
    }
}

#[test]
fn synthetic_wrapped_ringbuffer_and_partial() {
    let dir = tempfile::tempdir().unwrap();
    let msgs: Vec<Msg> = (0..500u64)
        .map(|i| Msg::new(i * 10_000_000, format!("record {i:03} {}", "=".repeat((i % 40) as usize)).as_bytes()))
        .collect();
    let spec = Ringbuffer {
        count_bits: 6,
        size_bits: 11,
        first_lpos: 0x1234_5678 & !7,
        clear_seq: 480,
        ..Ringbuffer::default()
    };
    let rb = spec.build(&msgs, BASE);
    let path = elf_dump(dir.path(), "wrapped.elf", &rb.image);
    let log = synthetic_log(&path, &rb.image, &Options::default());
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    let seqs: Vec<u64> = log.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, rb.kept.iter().map(|&(_, s)| s).collect::<Vec<_>>());
    assert_eq!(seqs.last(), Some(&499));
    assert!(seqs.len() > 20 && seqs[0] > 400, "{seqs:?}");
    let expected: String = log
        .records
        .iter()
        .map(|r| {
            let ts = r.seq * 10_000_000;
            format!(
                "[{:5}.{:06}] [      T1] record {:03} {}\n",
                ts / 1_000_000_000,
                ts % 1_000_000_000 / 1000,
                r.seq,
                "=".repeat((r.seq % 40) as usize)
            )
        })
        .collect();
    assert_eq!(rendered(&log), expected);
    let partial = synthetic_log(&path, &rb.image, &Options { partial: true, live: false });
    assert_eq!(partial.records.iter().map(|r| r.seq).collect::<Vec<_>>(), (480..500).collect::<Vec<_>>());
    if let Some((out, _)) = cli_dmesg(&[], &path) {
        assert_eq!(out, expected);
        let (out, _) = cli_dmesg(&["--partial"], &path).unwrap();
        assert_eq!(out.lines().count(), 20);
        assert!(out.starts_with("[    4.800000] [      T1] record 480 "), "{out}");
    }
}

#[test]
fn synthetic_printk_log_of_3_5_to_5_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut msgs = boot_messages();
    msgs.extend((0..100u64).map(|i| Msg::new(50_000_000_000 + i, format!("filler {i}").as_bytes())));
    msgs.push(Msg::new(99_000_000_000, b"e1000 0000:00:03.0 eth0: link up").dev("pci", "+pci:0000:00:03.0"));
    // Large enough for the first messages: not wrapped.
    let li = PrintkLog { buf_len: 8192, caller_id: true, ..PrintkLog::default() }.build(&msgs, BASE, 104);
    let path = elf_dump(dir.path(), "printk_log.elf", &li.image);
    let log = synthetic_log(&path, &li.image, &Options::default());
    assert_eq!(log.generation, Generation::PrintkLog);
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    assert_eq!(log.records.len(), msgs.len());
    let text = rendered(&log);
    assert!(text.starts_with(BOOT_TEXT), "{text}");
    assert!(text.ends_with("[   99.000000] [      T1] e1000 0000:00:03.0 eth0: link up\n"));
    let recs = records(&log);
    let last = recs.last().unwrap();
    assert_eq!((last.subsystem.as_deref(), last.device.as_deref()), (Some("pci"), Some("+pci:0000:00:03.0")));
    assert_eq!(recs[1].subsystem.as_deref(), Some("acpi"));
    let partial = synthetic_log(&path, &li.image, &Options { partial: true, live: false });
    assert_eq!(partial.records.len(), 1);
    // Without CONFIG_PRINTK_CALLER, wrapped many times.
    let li = PrintkLog { buf_len: 1024, ..PrintkLog::default() }.build(&msgs, BASE, 0);
    let path = elf_dump(dir.path(), "printk_log_wrapped.elf", &li.image);
    let log = synthetic_log(&path, &li.image, &Options::default());
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    let kept: Vec<&[u8]> = li.kept.iter().map(|&(_, n)| msgs[n].text.as_slice()).collect();
    assert_eq!(records(&log).iter().map(|r| r.text.as_slice()).collect::<Vec<_>>(), kept);
    assert!(rendered(&log).ends_with("[   99.000000] e1000 0000:00:03.0 eth0: link up\n"));
    if let Some((out, _)) = cli_dmesg(&[], &path) {
        assert_eq!(out, rendered(&log));
    }
}

#[test]
fn synthetic_plain_log_buf_before_3_5() {
    let dir = tempfile::tempdir().unwrap();
    let text: Vec<u8> =
        (0..300).flat_map(|i| format!("<6>[{:5}.{:06}] line {i}\n", i / 10, i % 10 * 1000).into_bytes()).collect();
    let img = Plain { buf_len: 4096, ..Plain::default() }.build(&text, BASE);
    let path = elf_dump(dir.path(), "plain.elf", &img);
    let log = synthetic_log(&path, &img, &Options::default());
    assert_eq!(log.generation, Generation::Plain);
    let tail = &text[text.len() - 4096..];
    assert_eq!(log.raw(), Some(tail));
    assert_eq!(rendered(&log).as_bytes(), tail, "written raw");
    let last = log.records.iter().last().unwrap();
    assert_eq!((last.level, last.ts_nsec, last.text.as_slice()), (Some(6), 29_009_000_000, &b"line 299"[..]));
    if let Some((out, _)) = cli_dmesg(&[], &path) {
        assert_eq!(out.as_bytes(), tail);
    }
}

#[test]
fn synthetic_corrupt_ring_prints_what_it_can_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let mut rb = Ringbuffer::default().build(&boot_messages(), BASE);
    // Record 2's descriptor points outside any sane block; record 3's text claims more
    // than its block.
    let d2 = rb.desc(2, 5);
    rb.image.put_u64(d2 + 16, rb.image.get_u64(d2 + 8) + (1 << 20));
    rb.image.put_u16(rb.info(3, 5) + 16, 60_000);
    let path = elf_dump(dir.path(), "corrupt.elf", &rb.image);
    let log = synthetic_log(&path, &rb.image, &Options::default());
    assert_eq!(log.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 3]);
    assert_eq!(log.warnings.len(), 2, "{:?}", log.warnings);
    assert!(log.warnings[0].contains("seq 2") && log.warnings[0].contains("data block"), "{:?}", log.warnings);
    assert!(log.warnings[1].contains("text_len 60000"), "{:?}", log.warnings);
    if let Some((out, err)) = cli_dmesg(&[], &path) {
        assert!(out.starts_with("[    0.000000] [      T0] Linux version"), "{out}");
        assert_eq!(out.lines().count(), 3);
        assert_eq!(err.lines().filter(|l| l.starts_with("vmcore: warning: ")).count(), 2, "{err}");
    }
    // The ring pointer itself bad: an error naming what was read, exit 1.
    let mut bad = rb.image.clone();
    bad.put_u32(rb.rb, 60);
    let path = elf_dump(dir.path(), "corrupt2.elf", &bad);
    if have_dmesg_command() {
        let (ok, _, err) = run(&[OsStr::new("dmesg"), path.as_os_str()]);
        assert!(!ok);
        assert!(err.contains("count_bits") && err.contains("at most 24"), "{err}");
    }
    // No record readable: an error, not an empty log that passes for a saved one.
    let mut none = rb.image.clone();
    let n = boot_messages().len() as u64;
    for seq in 0..n {
        let d = rb.desc(seq, 5);
        none.put_u64(d + 16, none.get_u64(d + 8) + (1 << 20));
    }
    let path = elf_dump(dir.path(), "unreadable.elf", &none);
    let dump = open(&path);
    let size = (none.bytes.len() as u64).next_multiple_of(4096);
    let kmem = KernelMem::new(Arc::clone(&dump.mem), Some(LinearMap { vstart: none.base, size, pstart: PADDR }));
    let read = |a: u64, b: &mut [u8]| kmem.read(a, b).map_err(|e| e.to_string());
    match read_log(dump.vmcoreinfo.as_ref().unwrap(), &read, &Options::default()) {
        Err(vmcore_kernel::printk::Error::Unreadable { warnings }) => {
            assert_eq!(warnings.len() as u64, n, "{warnings:?}")
        }
        other => panic!("{other:?}"),
    }
    if have_dmesg_command() {
        let (ok, out, err) = run(&[OsStr::new("dmesg"), path.as_os_str()]);
        assert!(!ok && out.is_empty() && err.contains("no record of the kernel log could be read"), "{err}");
        let log = dir.path().join("log");
        let (ok, _, err) =
            run(&[OsStr::new("makedumpfile"), OsStr::new("--dump-dmesg"), path.as_os_str(), log.as_os_str()]);
        assert!(!ok && err.contains("no record of the kernel log could be read"), "{err}");
        // No empty log file left to pass for a saved log (or to refuse the next try).
        assert!(!log.exists());
    }
}

#[test]
fn synthetic_kdump_with_an_excluded_text_page() {
    // The ring in a kdump-compressed file whose filtering left one page of the text ring
    // out: the records on it are skipped with a warning naming "excluded", the rest read.
    let msgs: Vec<Msg> =
        (0..120u64).map(|i| Msg::new(i, format!("message number {i:03} {}", "#".repeat(100)).as_bytes())).collect();
    let rb = Ringbuffer { count_bits: 7, size_bits: 14, ..Ringbuffer::default() }.build(&msgs, BASE);
    let first_pfn = PADDR / 4096;
    let pages_n = (rb.image.bytes.len() as u64).div_ceil(4096);
    let excluded_pfn = (rb.data - BASE) / 4096 + first_pfn + 1;
    let mut pages = BTreeMap::new();
    for i in 0..pages_n {
        let pfn = first_pfn + i;
        let spec = if pfn == excluded_pfn {
            PageSpec::Excluded
        } else {
            let mut p = vec![0u8; 4096];
            let src = rb.image.bytes.get(i as usize * 4096..).unwrap_or_default();
            let n = src.len().min(4096);
            p[..n].copy_from_slice(&src[..n]);
            PageSpec::Dumped(p)
        };
        pages.insert(pfn, spec);
    }
    let spec = KdumpSpec {
        max_mapnr: first_pfn + pages_n,
        vmcoreinfo: Some(rb.image.vmcoreinfo.clone().into_bytes()),
        ..KdumpSpec::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("excluded.kdump");
    std::fs::write(&path, kdump::write(&spec, &pages).unwrap()).unwrap();
    let log = synthetic_log(&path, &rb.image, &Options::default());
    assert!(log.records.len() > 60 && log.records.len() < 100, "{}", log.records.len());
    assert!(log.warnings.iter().any(|w| w.contains("excluded")), "{:?}", log.warnings);
    let first_missing = records(&log).windows(2).find(|w| w[1].seq != w[0].seq + 1).map(|w| w[0].seq + 1);
    assert!(first_missing.is_some(), "a gap where the page was excluded");
    assert_eq!(log.records.iter().last().map(|r| r.seq), Some(119));
}
