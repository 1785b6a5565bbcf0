//! The text `makedumpfile --dump-dmesg` writes, byte for byte.
//!
//! Per record: `[%5lld.%06lld] ` (seconds, microseconds), then when the kernel exports the
//! caller id `[%8s] ` of `T<pid>` or `C<cpu>`, then the text with every newline followed by
//! as many spaces as the prefix is long, printable ASCII and whitespace as they are, any
//! other byte as `\x%02x` of a C `char` (so `\xffffffe2` where `char` is signed, as on
//! x86_64, and `\xe2` where it is unsigned, as on arm64), then a newline. The plain buffer
//! of old kernels is written as it is.

use std::io::{self, Write};

use super::{Log, Record};
use crate::machine::Arch;

/// How a byte outside printable ASCII is escaped: the signedness of C `char` on the
/// machine makedumpfile runs on (for byte-identical output, the dumped machine's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// `char` is signed (x86_64): 0xe2 prints as `\xffffffe2`.
    SignedChar,
    /// `char` is unsigned (arm64): 0xe2 prints as `\xe2`.
    UnsignedChar,
}

impl Escape {
    /// The escaping makedumpfile uses on `arch`.
    pub fn for_arch(arch: Arch) -> Escape {
        match arch {
            Arch::X86_64 => Escape::SignedChar,
            Arch::Aarch64 => Escape::UnsignedChar,
        }
    }
}

/// `T<pid>` for a thread, `C<cpu>` when the top bit is set.
pub fn caller_string(id: u32) -> String {
    let kind = if id & 0x8000_0000 != 0 { 'C' } else { 'T' };
    format!("{kind}{}", id & 0x7fff_ffff)
}

/// Appends one record's lines to `out`.
pub fn render_record(rec: &Record, caller_ids: bool, esc: Escape, out: &mut Vec<u8>) {
    let start = out.len();
    let secs = rec.ts_nsec / 1_000_000_000;
    let micros = rec.ts_nsec % 1_000_000_000 / 1000;
    let _ = write!(out, "[{secs:5}.{micros:06}] ");
    if caller_ids {
        let _ = write!(out, "[{:>8}] ", caller_string(rec.caller_id.unwrap_or(0)));
    }
    let indent = out.len() - start;
    for &c in &rec.text {
        match c {
            b'\n' => {
                out.push(b'\n');
                out.resize(out.len() + indent, b' ');
            }
            // isprint() || isspace() in the C locale.
            0x20..=0x7e | b'\t' | 0x0b | 0x0c | b'\r' => out.push(c),
            0x80.. if esc == Escape::SignedChar => {
                let _ = write!(out, "\\x{:02x}", c as i8 as i32 as u32);
            }
            _ => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(b'\n');
}

/// Writes the whole log as makedumpfile does.
pub fn render(log: &Log, esc: Escape, out: &mut dyn Write) -> io::Result<()> {
    if let Some(raw) = log.raw() {
        return out.write_all(raw);
    }
    let mut buf = Vec::with_capacity(64 << 10);
    for rec in log.records.iter() {
        render_record(&rec, log.caller_ids, esc, &mut buf);
        if buf.len() >= 60 << 10 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}
