//! Variable-length `struct printk_log` records (Linux 3.5 to 5.9; `struct log` before
//! 3.11).
//!
//! `log_buf` (a `char *`) points at `log_buf_len` bytes of records `{ u64 ts_nsec; u16 len;
//! u16 text_len; u16 dict_len; u8 facility; u8 flags:5, level:3; [u32 caller_id;] }`, each
//! followed by its text and its dictionary (`KEY=value` pairs separated by NULs:
//! `SUBSYSTEM=`, `DEVICE=`), `len` bytes in all. A record with `len == 0` marks the end of
//! the used part of the buffer: the next record is at offset 0. The log runs from
//! `log_first_idx` to `log_next_idx` (or from `clear_idx`, for the part after the last
//! clear).
//!
//! VMCOREINFO exports `OFFSET(printk_log.{ts_nsec,len,text_len,dict_len})` and, with
//! `CONFIG_PRINTK_CALLER` (5.1+), `caller_id`. Assumption: `facility` and the level byte
//! follow `dict_len` (offsets `dict_len + 2` and `+ 3`), as in every kernel of this
//! generation; used for `level`/`facility` only.
//!
//! The walk goes forward only: each record is at least a header long, and only an
//! end-of-buffer marker goes back (to 0). A second marker, or coming back to where the
//! walk started, is a cycle; a record leaving the buffer or shorter than its header ends
//! the walk. So it stops after at most `log_buf_len / SIZE(printk_log) + 2` steps.

use super::mem::{byte, le16, le32, le64, read_u32, read_u64, Window};
use super::{
    c_string, fits, offset, offset_opt, size, Error, Generation, Log, Options, ReadMem, Record, Records, Store,
    Warnings,
};
use crate::vmcoreinfo::VmcoreInfo;

/// Largest `log_buf_len` accepted (the kernel's `log_buf_len=` limit is 2 GiB).
pub const MAX_LOG_BUF_LEN: u64 = 1 << 31;

const WHAT: &str = "printk_log records";

/// Header offsets.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    hdr: usize,
    ts_nsec: usize,
    len: usize,
    text_len: usize,
    dict_len: usize,
    facility: Option<usize>,
    caller_id: Option<usize>,
}

impl Layout {
    /// Reads and checks the layout keys (`printk_log`, or `log` before 3.11).
    pub fn from_vmcoreinfo(vi: &VmcoreInfo) -> Result<Layout, Error> {
        let name = if vi.size("printk_log").is_some() { "printk_log" } else { "log" };
        let hdr = size(vi, &["printk_log", "log"], WHAT)?;
        let o = |f: &str| offset(vi, &[&format!("{name}.{f}")], WHAT);
        let ts_nsec = o("ts_nsec")?;
        let len = o("len")?;
        let text_len = o("text_len")?;
        let dict_len = offset_opt(vi, &format!("{name}.dict_len"))?.unwrap_or(text_len + 2);
        let caller_id = offset_opt(vi, &format!("{name}.caller_id"))?;
        fits(&format!("{name}.ts_nsec"), ts_nsec, 8, name, hdr)?;
        fits(&format!("{name}.len"), len, 2, name, hdr)?;
        fits(&format!("{name}.text_len"), text_len, 2, name, hdr)?;
        fits(&format!("{name}.dict_len"), dict_len, 2, name, hdr)?;
        if let Some(c) = caller_id {
            fits(&format!("{name}.caller_id"), c, 4, name, hdr)?;
        }
        let facility = (dict_len + 4 <= hdr).then_some(dict_len + 2);
        Ok(Layout { hdr, ts_nsec, len, text_len, dict_len, facility, caller_id })
    }

    /// The text and dictionary lengths of the record with header `head` (whose `len` is
    /// at least the header): where they say more than its `len` holds, the text keeps what
    /// fits and the dictionary goes. The `bool` says they were cut.
    fn body(&self, head: &[u8]) -> (usize, usize, bool) {
        let room = usize::from(le16(head, self.len)).saturating_sub(self.hdr);
        let text_len = usize::from(le16(head, self.text_len));
        let dict_len = usize::from(le16(head, self.dict_len));
        if text_len + dict_len > room {
            (text_len.min(room), 0, true)
        } else {
            (text_len, dict_len, false)
        }
    }

    /// The record of header `head` and body `body` (its text, then its dictionary).
    fn record(&self, seq: u64, head: &[u8], body: &[u8], text_n: usize) -> Record {
        let (subsystem, device) = dict_values(body.get(text_n..).unwrap_or_default());
        Record {
            seq,
            ts_nsec: le64(head, self.ts_nsec),
            level: self.facility.map(|f| byte(head, f + 1) >> 5),
            facility: self.facility.map(|f| byte(head, f)),
            caller_id: self.caller_id.map(|c| le32(head, c)),
            text: body.get(..text_n).unwrap_or_default().to_vec(),
            subsystem,
            device,
        }
    }
}

/// The records read, as their header, text and dictionary bytes back to back: at most
/// the bytes of `log_buf` the walk went over, whatever their number.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    layout: Layout,
    bytes: Vec<u8>,
    count: usize,
}

impl Packed {
    fn push(&mut self, head: &[u8], body: &[u8]) {
        self.bytes.extend_from_slice(head);
        self.bytes.extend_from_slice(body);
        self.count += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// The records, decoded one at a time (each record's lengths come from its header,
    /// as when it was pushed).
    pub(crate) fn iter(&self) -> impl Iterator<Item = Record> + '_ {
        let l = &self.layout;
        let mut at = 0usize;
        let mut seq = 0u64;
        std::iter::from_fn(move || {
            let head = self.bytes.get(at..at + l.hdr)?;
            let (text_n, dict_n, _) = l.body(head);
            let body = self.bytes.get(at + l.hdr..at + l.hdr + text_n + dict_n)?;
            at += l.hdr + text_n + dict_n;
            seq += 1;
            Some(l.record(seq - 1, head, body, text_n))
        })
    }
}

fn symbol(vi: &VmcoreInfo, name: &str) -> Result<u64, Error> {
    vi.symbol(name).ok_or_else(|| Error::Missing { key: format!("SYMBOL({name})"), what: WHAT })
}

/// The `SUBSYSTEM=` and `DEVICE=` values of a dictionary.
fn dict_values(dict: &[u8]) -> (Option<String>, Option<String>) {
    let (mut subsystem, mut device) = (None, None);
    for entry in dict.split(|&c| c == 0) {
        if let Some(v) = entry.strip_prefix(b"SUBSYSTEM=") {
            subsystem = subsystem.or_else(|| c_string(v));
        } else if let Some(v) = entry.strip_prefix(b"DEVICE=") {
            device = device.or_else(|| c_string(v));
        }
    }
    (subsystem, device)
}

/// Reads the log.
pub fn read(vi: &VmcoreInfo, mem: ReadMem<'_>, opts: &Options) -> Result<Log, Error> {
    let l = Layout::from_vmcoreinfo(vi)?;
    let buf = read_u64(mem, symbol(vi, "log_buf")?, "the pointer log_buf")?;
    let len_sym = symbol(vi, "log_buf_len")?;
    let buf_len = u64::from(read_u32(mem, len_sym, "log_buf_len")?);
    if buf_len < l.hdr as u64 || buf_len > MAX_LOG_BUF_LEN {
        return Err(Error::BadValue {
            what: "log_buf_len".into(),
            addr: len_sym,
            value: buf_len,
            expected: format!("{} (one record header) to {MAX_LOG_BUF_LEN}", l.hdr),
        });
    }
    let index = |name: &str| -> Result<u64, Error> {
        let sym = symbol(vi, name)?;
        let v = u64::from(read_u32(mem, sym, name)?);
        if v >= buf_len {
            return Err(Error::BadValue {
                what: name.into(),
                addr: sym,
                value: v,
                expected: format!("an offset inside log_buf_len {buf_len:#x}"),
            });
        }
        Ok(v)
    };
    let first = index("log_first_idx")?;
    let next = index("log_next_idx")?;
    let mut warn = Warnings::default();
    let start = if opts.partial {
        if vi.symbol("clear_idx").is_some() {
            index("clear_idx")?
        } else {
            warn.push("no clear_idx", || "no SYMBOL(clear_idx) in VMCOREINFO: printing the whole log".into());
            first
        }
    } else {
        first
    };

    let hdr = l.hdr as u64;
    let mut w = Window::new(mem, buf, buf_len);
    let mut records = Packed { layout: l, bytes: Vec::new(), count: 0 };
    let mut idx = start;
    let mut wrapped = false;
    let max_steps = buf_len / hdr + 2;
    let mut steps = 0u64;
    let cycle = |at: u64| {
        format!(
            "cycle when parsing dmesg detected: the printk_log walk from {start:#x} came back to {at:#x} without \
             meeting log_next_idx {next:#x}: records from there on are not printed"
        )
    };
    while idx != next {
        steps += 1;
        if steps > max_steps || (wrapped && idx >= start) {
            warn.push("cycle", || cycle(idx));
            break;
        }
        if idx + hdr > buf_len {
            warn.push("outside", || {
                format!(
                    "index outside log_buf detected: a record header at {idx:#x} would end past log_buf_len \
                     {buf_len:#x}: stopping there"
                )
            });
            break;
        }
        let mut at = idx;
        let mut head = match w.get(at, l.hdr) {
            Ok(b) => b.to_vec(),
            Err(e) => {
                warn.push("unreadable", || format!("printk_log record at {at:#x}: {e}: stopping there"));
                break;
            }
        };
        if le16(&head, l.len) == 0 {
            // End-of-buffer marker: the record is at the start.
            if wrapped {
                warn.push("cycle", || cycle(idx));
                break;
            }
            wrapped = true;
            at = 0;
            head = match w.get(0, l.hdr) {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    warn.push("unreadable", || format!("printk_log record at 0: {e}: stopping there"));
                    break;
                }
            };
        }
        let rec_len = u64::from(le16(&head, l.len));
        if rec_len < hdr || at + rec_len > buf_len {
            warn.push("bad len", || {
                format!(
                    "printk_log record at {at:#x}: len {rec_len} is not between its header ({hdr} bytes) and the end \
                     of log_buf ({buf_len:#x}): stopping there"
                )
            });
            break;
        }
        let (text_n, dict_n, cut) = l.body(&head);
        if cut {
            let (text_len, dict_len) = (le16(&head, l.text_len), le16(&head, l.dict_len));
            warn.push("text past record", || {
                format!(
                    "printk_log record at {at:#x}: text_len {text_len} + dict_len {dict_len} exceed its len {rec_len} \
                     less the header: text cut there"
                )
            });
        }
        match w.get(at + hdr, text_n + dict_n) {
            Ok(body) => records.push(&head, body),
            Err(e) => warn.push("unreadable text", || format!("printk_log record at {at:#x}: text: {e}: skipped")),
        }
        idx = at + rec_len;
    }
    Ok(Log {
        generation: Generation::PrintkLog,
        records: Records(Store::Packed(records)),
        caller_ids: l.caller_id.is_some(),
        warnings: warn.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::dict_values;

    #[test]
    fn dictionary_values() {
        assert_eq!(
            dict_values(b"SUBSYSTEM=pci\0DEVICE=+pci:0000:00:01.0"),
            (Some("pci".into()), Some("+pci:0000:00:01.0".into()))
        );
        assert_eq!(dict_values(b""), (None, None));
        assert_eq!(dict_values(b"DEVICE=\0OTHER=x"), (None, None));
    }
}
