//! The kernel log, read from the dumped memory with nothing but VMCOREINFO.
//!
//! Three generations of the printk buffer, chosen as `makedumpfile --dump-dmesg` chooses:
//!
//! * [`Generation::Ringbuffer`], Linux 5.10+, when `SYMBOL(prb)` is exported: the lockless
//!   `printk_ringbuffer` (a descriptor ring, an info array and a text data ring), laid out
//!   by the VMCOREINFO `SIZE`/`OFFSET` keys ([`ringbuffer`]);
//! * [`Generation::PrintkLog`], 3.5 to 5.9, when `SYMBOL(log_buf)` is exported without
//!   `SYMBOL(log_end)`: variable-length `struct printk_log` records in `log_buf`
//!   ([`printk_log`]);
//! * [`Generation::Plain`], before 3.5, when `SYMBOL(log_end)` is exported: a character
//!   ring written out raw ([`plain`]).
//!
//! [`read_log`] returns the records (and for the plain buffer its raw bytes) with the
//! warnings of what it skipped, in memory within a small factor of the buffer's size
//! ([`Records`]); [`render()`] writes makedumpfile's exact bytes.
//!
//! Everything read from the dump is bounded before it is used: ring sizes by their bit
//! counts (`count_bits <= 24`, `size_bits <= 31`, `log_buf_len <= 2 GiB`), descriptors are
//! visited at most `count` times, a text is at most its `u16` length and the ring buffer's
//! texts together at most its data ring, reads go through a 64 KiB window
//! ([`mem::Window`]), and the `printk_log` walk goes strictly forward with at most one
//! wrap, so it ends on any input. A record that cannot be trusted is skipped
//! with a warning naming what was expected; the walk stops at the first structural
//! corruption and keeps what it read before it.

pub mod mem;
pub mod plain;
pub mod printk_log;
mod render;
pub mod ringbuffer;

pub use render::{caller_string, render, render_record, Escape};

use std::borrow::Cow;

use crate::vmcoreinfo::VmcoreInfo;

/// Reads `buf.len()` bytes of kernel virtual memory at an address, or says why it cannot.
pub type ReadMem<'a> = &'a dyn Fn(u64, &mut [u8]) -> Result<(), String>;

/// Which printk buffer the kernel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// The lockless `printk_ringbuffer` (5.10+).
    Ringbuffer,
    /// Variable-length `struct printk_log` records (3.5 to 5.9).
    PrintkLog,
    /// A plain character buffer (before 3.5).
    Plain,
}

impl Generation {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Generation::Ringbuffer => "printk_ringbuffer",
            Generation::PrintkLog => "printk_log",
            Generation::Plain => "log_buf",
        }
    }
}

/// One record of the kernel log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Sequence number: the kernel's for the ring buffer; for `printk_log` (whose records
    /// carry none) and plain-buffer lines, the position in the log from 0.
    pub seq: u64,
    /// Timestamp in nanoseconds (0 for a plain-buffer line without a `[...]` time).
    pub ts_nsec: u64,
    /// Syslog level 0-7, when known (see [`ringbuffer`] for where it is read from).
    pub level: Option<u8>,
    /// Syslog facility, when known.
    pub facility: Option<u8>,
    /// The caller: thread id, or `0x80000000 | cpu`, when the kernel records it.
    pub caller_id: Option<u32>,
    /// The message, raw bytes as stored (no trailing newline).
    pub text: Vec<u8>,
    /// `SUBSYSTEM` of a `dev_printk()` message.
    pub subsystem: Option<String>,
    /// `DEVICE` of a `dev_printk()` message.
    pub device: Option<String>,
}

/// The kernel log as read.
#[derive(Debug, Clone)]
pub struct Log {
    /// Which buffer it came from.
    pub generation: Generation,
    /// The records, oldest first. For the plain buffer, its lines split and parsed.
    pub records: Records,
    /// Whether the kernel exports the caller id offset, so that lines carry `[ T123]`.
    pub caller_ids: bool,
    /// What was skipped and why.
    pub warnings: Vec<String>,
}

impl Log {
    /// For the plain buffer: the bytes makedumpfile writes, in order.
    pub fn raw(&self) -> Option<&[u8]> {
        match &self.records.0 {
            Store::Lines { raw, .. } => Some(raw),
            _ => None,
        }
    }
}

/// The records of a log, oldest first.
///
/// A [`Record`] takes about 100 bytes, while a `printk_log` record can be a 16-byte header
/// and a plain-buffer line a single newline: as `Record`s, a 2 GiB buffer would need from
/// 14 to 220 GB. So the records of those two generations stay the bytes they were read
/// as, and become `Record`s one at a time as they are iterated. The ring buffer's, spread
/// over three arrays, are encoded back to back (`Encoded`): 27 bytes at most besides
/// their text (and a `dev_printk()`'s subsystem and device), where the kernel holds 112
/// bytes of descriptor and `printk_info` for every record.
#[derive(Debug, Clone)]
pub struct Records(Store);

#[derive(Debug, Clone)]
enum Store {
    Decoded(Vec<Record>),
    Encoded(Encoded),
    /// The plain buffer (what text output writes) and its number of lines.
    Lines {
        raw: Vec<u8>,
        count: usize,
    },
    Packed(printk_log::Packed),
}

impl From<Vec<Record>> for Records {
    fn from(records: Vec<Record>) -> Records {
        Records(Store::Decoded(records))
    }
}

impl Records {
    /// Number of records.
    pub fn len(&self) -> usize {
        match &self.0 {
            Store::Decoded(v) => v.len(),
            Store::Encoded(e) => e.count,
            Store::Lines { count, .. } => *count,
            Store::Packed(p) => p.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of heap the records hold.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let string = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        match &self.0 {
            Store::Decoded(v) => {
                v.capacity() * std::mem::size_of::<Record>()
                    + v.iter().map(|r| r.text.capacity() + string(&r.subsystem) + string(&r.device)).sum::<usize>()
            }
            Store::Encoded(e) => e.bytes.capacity(),
            Store::Lines { raw, .. } => raw.capacity(),
            Store::Packed(p) => p.heap_bytes(),
        }
    }

    /// The records in order, each decoded as it is reached (borrowed where kept decoded).
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, Record>> + '_ {
        let it: Box<dyn Iterator<Item = Cow<'_, Record>> + '_> = match &self.0 {
            Store::Decoded(v) => Box::new(v.iter().map(Cow::Borrowed)),
            Store::Encoded(e) => Box::new(e.iter().map(Cow::Owned)),
            Store::Lines { raw, .. } => Box::new(plain::lines(raw).map(Cow::Owned)),
            Store::Packed(p) => Box::new(p.iter().map(Cow::Owned)),
        };
        it
    }
}

impl From<Encoded> for Records {
    fn from(mut records: Encoded) -> Records {
        // Up to half of a grown vector is spare room.
        records.bytes.shrink_to_fit();
        Records(Store::Encoded(records))
    }
}

/// Records encoded back to back: seq and timestamp (8 bytes each), a byte saying which of
/// the optional fields follow, level and facility (a byte each), caller id (4), then the
/// text, subsystem and device, each as a 4-byte length and its bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Encoded {
    bytes: Vec<u8>,
    count: usize,
}

const HAS_LEVEL: u8 = 1;
const HAS_FACILITY: u8 = 2;
const HAS_CALLER: u8 = 4;
const HAS_SUBSYSTEM: u8 = 8;
const HAS_DEVICE: u8 = 16;

impl Encoded {
    pub(crate) fn push(&mut self, r: &Record) {
        let b = &mut self.bytes;
        b.extend_from_slice(&r.seq.to_le_bytes());
        b.extend_from_slice(&r.ts_nsec.to_le_bytes());
        let has = |present: bool, bit: u8| if present { bit } else { 0 };
        b.push(
            has(r.level.is_some(), HAS_LEVEL)
                | has(r.facility.is_some(), HAS_FACILITY)
                | has(r.caller_id.is_some(), HAS_CALLER)
                | has(r.subsystem.is_some(), HAS_SUBSYSTEM)
                | has(r.device.is_some(), HAS_DEVICE),
        );
        b.extend(r.level);
        b.extend(r.facility);
        if let Some(c) = r.caller_id {
            b.extend_from_slice(&c.to_le_bytes());
        }
        for field in
            [Some(r.text.as_slice()), r.subsystem.as_deref().map(str::as_bytes), r.device.as_deref().map(str::as_bytes)]
                .into_iter()
                .flatten()
        {
            // Each fits 16 bits: printk_info.text_len is a u16, subsystem and device
            // are 16- and 48-byte arrays.
            b.extend_from_slice(&(field.len() as u32).to_le_bytes());
            b.extend_from_slice(field);
        }
        self.count += 1;
    }

    /// The records in order, decoded one at a time.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Record> + '_ {
        use vmcore_types::bytes::{u32_at, u64_at, u8_at};
        let b = self.bytes.as_slice();
        let mut at = 0usize;
        std::iter::from_fn(move || {
            // The offset of the next `n` bytes, which it then steps over.
            let mut next = |n: usize| {
                at += n;
                at - n
            };
            let seq = u64_at(b, next(8), false)?;
            let ts_nsec = u64_at(b, next(8), false)?;
            let has = u8_at(b, next(1))?;
            let level = if has & HAS_LEVEL != 0 { Some(u8_at(b, next(1))?) } else { None };
            let facility = if has & HAS_FACILITY != 0 { Some(u8_at(b, next(1))?) } else { None };
            let caller_id = if has & HAS_CALLER != 0 { Some(u32_at(b, next(4), false)?) } else { None };
            let mut field = || {
                let n = u32_at(b, next(4), false)? as usize;
                let start = next(n);
                b.get(start..start + n)
            };
            let text = field()?.to_vec();
            let lossy = |f: &[u8]| String::from_utf8_lossy(f).into_owned();
            let subsystem = if has & HAS_SUBSYSTEM != 0 { Some(lossy(field()?)) } else { None };
            let device = if has & HAS_DEVICE != 0 { Some(lossy(field()?)) } else { None };
            Some(Record { seq, ts_nsec, level, facility, caller_id, text, subsystem, device })
        })
    }
}

/// How to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Start at the last clear (`dmesg -c`/`-C`), as `makedumpfile --partial-dmesg`:
    /// records from `clear_seq` on (ring buffer), from `clear_idx` (`printk_log`).
    pub partial: bool,
    /// The memory is a running kernel (/proc/kcore): re-check each ring-buffer
    /// descriptor after copying its text and skip records overwritten meanwhile.
    pub live: bool,
}

/// Errors: the log cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A VMCOREINFO key the reader needs is missing.
    #[error("VMCOREINFO has no {key}, needed to read the {what}")]
    Missing {
        /// The key, as written in VMCOREINFO.
        key: String,
        /// What it is needed for.
        what: &'static str,
    },
    /// A VMCOREINFO value is outside what any kernel writes.
    #[error("VMCOREINFO {key}={value}: expected {expected}")]
    BadKey {
        /// The key.
        key: String,
        /// Its value.
        value: i64,
        /// What was expected.
        expected: String,
    },
    /// A value read from the dump is impossible.
    #[error("{what} at {addr:#x} is {value:#x}: expected {expected}")]
    BadValue {
        /// What was read.
        what: String,
        /// Where.
        addr: u64,
        /// The value.
        value: u64,
        /// What was expected.
        expected: String,
    },
    /// Memory the log needs could not be read.
    #[error("cannot read {what} at {addr:#x}: {cause}")]
    Read {
        /// What was being read.
        what: String,
        /// Its address.
        addr: u64,
        /// Why not.
        cause: String,
    },
    /// Not one record could be read, and the reasons are these warnings: a log that
    /// prints nothing must not pass for an empty one.
    #[error("no record of the kernel log could be read: {}", unreadable_summary(.warnings))]
    Unreadable {
        /// Why each record was skipped (capped per kind).
        warnings: Vec<String>,
    },
    /// VMCOREINFO describes no printk buffer.
    #[error(
        "VMCOREINFO describes no kernel log: expected SYMBOL(prb) (5.10+) or SYMBOL(log_buf) and \
         SYMBOL(log_buf_len) (older kernels)"
    )]
    NoLog,
}

/// Which generation VMCOREINFO describes (the order makedumpfile uses).
pub fn generation(vi: &VmcoreInfo) -> Result<Generation, Error> {
    if vi.symbol("prb").is_some() {
        return Ok(Generation::Ringbuffer);
    }
    if vi.symbol("log_buf").is_none() || vi.symbol("log_buf_len").is_none() {
        return Err(Error::NoLog);
    }
    if vi.symbol("log_end").is_some() {
        return Ok(Generation::Plain);
    }
    if plain::release_before(vi.osrelease(), (3, 5, 0)) == Some(true) {
        return Err(Error::Missing { key: "SYMBOL(log_end)".into(), what: "plain log_buf of a kernel before 3.5" });
    }
    Ok(Generation::PrintkLog)
}

/// Reads the kernel log through `mem` (kernel virtual addresses).
pub fn read_log(vi: &VmcoreInfo, mem: ReadMem<'_>, opts: &Options) -> Result<Log, Error> {
    let log = match generation(vi)? {
        Generation::Ringbuffer => ringbuffer::read(vi, mem, opts),
        Generation::PrintkLog => printk_log::read(vi, mem, opts),
        Generation::Plain => plain::read(vi, mem, opts),
    }?;
    // Records skipped are what the warnings of a record ring say; the plain buffer's are
    // about the buffer as a whole, and its empty log is just that.
    if log.records.is_empty() && !log.warnings.is_empty() && log.generation != Generation::Plain {
        return Err(Error::Unreadable { warnings: log.warnings });
    }
    Ok(log)
}

/// The first warnings of an unreadable log, and how many there are in all.
fn unreadable_summary(warnings: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = warnings.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if warnings.len() > SHOWN {
        text.push_str(&format!("; and {} more warnings", warnings.len() - SHOWN));
    }
    text
}

/// Largest struct or offset taken from VMCOREINFO for the printk structures (the real ones
/// are below 200 bytes).
pub const MAX_STRUCT: i64 = 4096;

/// Collects warnings, keeping the first [`Warnings::KEEP`] of each kind and counting the
/// rest, so that a corrupt ring of millions of descriptors yields a short report.
#[derive(Debug, Default)]
pub struct Warnings {
    kinds: Vec<(&'static str, u64, Vec<String>)>,
}

impl Warnings {
    /// Messages kept per kind.
    pub const KEEP: usize = 5;

    /// Adds a warning of `kind`.
    pub fn push(&mut self, kind: &'static str, msg: impl FnOnce() -> String) {
        let i = match self.kinds.iter().position(|(k, _, _)| *k == kind) {
            Some(i) => i,
            None => {
                self.kinds.push((kind, 0, Vec::new()));
                self.kinds.len() - 1
            }
        };
        if let Some((_, n, list)) = self.kinds.get_mut(i) {
            *n += 1;
            if list.len() < Self::KEEP {
                list.push(msg());
            }
        }
    }

    /// The messages, with a count line per kind that had more.
    pub fn finish(self) -> Vec<String> {
        let mut out = Vec::new();
        for (kind, n, list) in self.kinds {
            let kept = list.len() as u64;
            out.extend(list);
            if n > kept {
                out.push(format!("... and {} more: {kind}", n - kept));
            }
        }
        out
    }
}

/// `OFFSET(name)` (or the first of `names` present) as a byte offset below [`MAX_STRUCT`].
pub(crate) fn offset(vi: &VmcoreInfo, names: &[&str], what: &'static str) -> Result<usize, Error> {
    key_value(vi, "OFFSET", names, what)
}

/// `SIZE(name)` (or the first of `names` present), at most [`MAX_STRUCT`].
pub(crate) fn size(vi: &VmcoreInfo, names: &[&str], what: &'static str) -> Result<usize, Error> {
    key_value(vi, "SIZE", names, what)
}

/// An optional `OFFSET(name)`; present but out of range is an error.
pub(crate) fn offset_opt(vi: &VmcoreInfo, name: &str) -> Result<Option<usize>, Error> {
    match vi.offset(name) {
        None => Ok(None),
        Some(v) => checked(&format!("OFFSET({name})"), v).map(Some),
    }
}

fn key_value(vi: &VmcoreInfo, kind: &str, names: &[&str], what: &'static str) -> Result<usize, Error> {
    for name in names {
        let v = match kind {
            "OFFSET" => vi.offset(name),
            _ => vi.size(name),
        };
        if let Some(v) = v {
            return checked(&format!("{kind}({name})"), v);
        }
    }
    let key = names.iter().map(|n| format!("{kind}({n})")).collect::<Vec<_>>().join(" or ");
    Err(Error::Missing { key, what })
}

fn checked(key: &str, v: i64) -> Result<usize, Error> {
    if (0..MAX_STRUCT).contains(&v) {
        Ok(v as usize)
    } else {
        Err(Error::BadKey { key: key.into(), value: v, expected: format!("0 to {}", MAX_STRUCT - 1) })
    }
}

/// Checks that a field of `width` bytes at `off` fits a struct of `size` bytes.
pub(crate) fn fits(field: &str, off: usize, width: usize, sname: &str, size: usize) -> Result<(), Error> {
    if off + width <= size {
        Ok(())
    } else {
        Err(Error::BadKey {
            key: format!("OFFSET({field})"),
            value: off as i64,
            expected: format!("a {width}-byte field inside SIZE({sname})={size}"),
        })
    }
}

/// A NUL-terminated string of a fixed-size char array, `None` when empty.
pub(crate) fn c_string(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = b.get(..end).unwrap_or_default();
    (!s.is_empty()).then(|| String::from_utf8_lossy(s).into_owned())
}

#[cfg(test)]
mod tests;
