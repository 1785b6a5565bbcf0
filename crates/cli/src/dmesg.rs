//! `vmcore dmesg`: the kernel log of a dump or of the running kernel.
//!
//! Text output is byte for byte what `makedumpfile --dump-dmesg FILE OUT` writes to OUT
//! (escapes as C `char` of the dumped machine: signed on x86_64, unsigned on arm64).
//! `--json` writes JSON Lines, one object per record:
//!
//! ```text
//! {"seq":12,"ts_nsec":1500000,"level":6,"facility":0,"caller":"T1","text":"...",
//!  "subsystem":"pci","device":"+pci:0000:00:01.0"}
//! ```
//!
//! `text` is a string when the message is valid UTF-8, else `{"bytes":[...]}` with the raw
//! byte values, so that nothing is lost or guessed. `level` and `facility` are null where
//! the kernel's layout does not confirm them (see `vmcore_kernel::printk::ringbuffer`),
//! `caller` is null when the kernel does not record callers, `subsystem` and `device` are
//! null for messages not from `dev_printk()`. `seq` is the kernel's sequence number from
//! 5.10 on; older records carry none, and it counts from 0 at the oldest record the log
//! still holds. For kernels before 3.5 (a plain character
//! buffer) the objects are the buffer's lines, with the `<N>` prefix and time parsed.
//!
//! What could not be trusted (corrupt descriptors, cycles) is left out and reported on
//! stderr as `vmcore: warning: ...`; the rest is still printed.

use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use serde_json::json;
use vmcore_kernel::machine::Machine;
use vmcore_kernel::printk::{caller_string, read_log, render, Escape, Log, Options, Record};
use vmcore_kernel::Dump;

/// Prints the kernel log of `dump` to `out`: makedumpfile's text, or JSON Lines with
/// `json`; `partial` starts at the last clear, as `makedumpfile --partial-dmesg`.
/// Warnings go to stderr.
pub fn run(dump: &Dump, machine: &Machine, partial: bool, json: bool, out: &mut dyn Write) -> Result<()> {
    let name = dump.paths.first().map(|p| p.display().to_string()).unwrap_or_default();
    let log = read(dump, machine, partial).with_context(|| format!("{name}: reading the kernel log"))?;
    for w in &log.warnings {
        say!("vmcore: warning: {w}");
    }
    if json {
        let mut w = BufWriter::with_capacity(64 << 10, &mut *out);
        for rec in log.records.iter() {
            w.write_all(record_json(&rec, log.caller_ids).as_bytes())?;
        }
        w.flush()?;
    } else {
        render(&log, Escape::for_arch(machine.arch), out)?;
    }
    Ok(out.flush()?)
}

/// The log of `dump` with its warnings (no printing).
pub fn read(dump: &Dump, machine: &Machine, partial: bool) -> Result<Log> {
    let vi = dump.require_vmcoreinfo()?;
    let live = dump.container.info().format.ends_with("kcore");
    let mem = |addr: u64, buf: &mut [u8]| machine.kmem.read(addr, buf).map_err(|e| e.to_string());
    Ok(read_log(vi, &mem, &Options { partial, live })?)
}

/// One record as a line of JSON (with its newline), keys in a fixed order: seq, ts_nsec,
/// level, facility, caller, text, subsystem, device.
pub fn record_json(rec: &Record, caller_ids: bool) -> String {
    let text = match std::str::from_utf8(&rec.text) {
        Ok(s) => json!(s),
        Err(_) => json!({ "bytes": rec.text }),
    };
    let caller = if caller_ids { rec.caller_id.map(caller_string) } else { None };
    format!(
        "{{\"seq\":{},\"ts_nsec\":{},\"level\":{},\"facility\":{},\"caller\":{},\"text\":{},\"subsystem\":{},\"device\":{}}}\n",
        rec.seq,
        rec.ts_nsec,
        json!(rec.level),
        json!(rec.facility),
        json!(caller),
        text,
        json!(rec.subsystem),
        json!(rec.device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn json_records() {
        let rec = Record {
            seq: 3,
            ts_nsec: 1_500_000,
            level: Some(6),
            facility: Some(0),
            caller_id: Some(0x8000_0001),
            text: b"hello \"world\"".to_vec(),
            subsystem: Some("pci".into()),
            device: None,
        };
        assert_eq!(
            record_json(&rec, true),
            "{\"seq\":3,\"ts_nsec\":1500000,\"level\":6,\"facility\":0,\"caller\":\"C1\",\
             \"text\":\"hello \\\"world\\\"\",\"subsystem\":\"pci\",\"device\":null}\n"
        );
        let bin = Record { text: vec![b'a', 0xe2, 0x80], ..rec };
        let v: Value = serde_json::from_str(&record_json(&bin, false)).unwrap();
        assert_eq!(v["text"], json!({"bytes": [97, 226, 128]}));
        assert_eq!(v["caller"], Value::Null);
    }
}
