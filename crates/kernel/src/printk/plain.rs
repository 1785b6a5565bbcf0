//! The plain character `log_buf` of kernels before 3.5.
//!
//! `log_buf` (a `char *`) points at `log_buf_len` bytes (a power of two) written as a ring;
//! `log_end` counts every character ever written (`unsigned long` up to 2.6.24, `unsigned
//! int` from 2.6.25). The log is `[0, log_end)` while it has not wrapped, else the ring
//! from `log_end % log_buf_len` on. makedumpfile writes these bytes unchanged; for JSON the
//! lines are split and their `<N>` level prefix and `[seconds.micros]` time parsed.

use super::mem::{read_u32, read_u64, CHUNK};
use super::{Error, Generation, Log, Options, ReadMem, Record, Records, Store, Warnings};
use crate::vmcoreinfo::VmcoreInfo;

/// Largest `log_buf_len` accepted.
pub const MAX_LOG_BUF_LEN: u64 = 1 << 31;

const WHAT: &str = "plain log_buf";

pub use crate::vmcoreinfo::release_before;

fn symbol(vi: &VmcoreInfo, name: &str) -> Result<u64, Error> {
    vi.symbol(name).ok_or_else(|| Error::Missing { key: format!("SYMBOL({name})"), what: WHAT })
}

/// Reads the log.
pub fn read(vi: &VmcoreInfo, mem: ReadMem<'_>, opts: &Options) -> Result<Log, Error> {
    let mut warn = Warnings::default();
    if opts.partial {
        warn.push("no partial", || "kernels before 3.5 keep no clear index: printing the whole log".into());
    }
    let buf = read_u64(mem, symbol(vi, "log_buf")?, "the pointer log_buf")?;
    let len_sym = symbol(vi, "log_buf_len")?;
    let len = u64::from(read_u32(mem, len_sym, "log_buf_len")?);
    if len == 0 || len > MAX_LOG_BUF_LEN {
        return Err(Error::BadValue {
            what: "log_buf_len".into(),
            addr: len_sym,
            value: len,
            expected: format!("1 to {MAX_LOG_BUF_LEN}"),
        });
    }
    let end_sym = symbol(vi, "log_end")?;
    let log_end = if release_before(vi.osrelease(), (2, 6, 25)) == Some(true) {
        read_u64(mem, end_sym, "log_end")?
    } else {
        u64::from(read_u32(mem, end_sym, "log_end")?)
    };
    let pieces = if log_end < len {
        vec![(0, log_end)]
    } else {
        if !len.is_power_of_two() {
            warn.push("odd length", || format!("log_buf_len {len} is not a power of two, as the kernel makes it"));
        }
        let start = log_end % len;
        vec![(start, len), (0, start)]
    };
    let mut raw = Vec::new();
    for (from, to) in pieces {
        let mut at = from;
        while at < to {
            let n = (to - at).min(CHUNK as u64);
            let mut chunk = vec![0u8; n as usize];
            let addr = buf.wrapping_add(at);
            match mem(addr, &mut chunk) {
                Ok(()) => raw.extend_from_slice(&chunk),
                Err(e) => warn
                    .push("unreadable", || format!("log_buf bytes {at:#x}..{:#x} at {addr:#x}: {e}: left out", at + n)),
            }
            at += n;
        }
    }
    let count = line_count(&raw);
    Ok(Log {
        generation: Generation::Plain,
        records: Records(Store::Lines { raw, count }),
        caller_ids: false,
        warnings: warn.finish(),
    })
}

/// How many records [`lines`] yields.
pub fn line_count(raw: &[u8]) -> usize {
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    if body.is_empty() {
        0
    } else {
        body.iter().filter(|&&c| c == b'\n').count() + 1
    }
}

/// The lines of a plain buffer as records, parsed as they are reached: `<N>` gives level
/// `N & 7` and facility `N >> 3`, a `[%5lu.%06lu] ` time after it gives `ts_nsec`; `seq`
/// counts lines.
pub fn lines(raw: &[u8]) -> impl Iterator<Item = Record> + '_ {
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    // Splitting an empty slice yields one empty piece; an empty buffer has no lines.
    let split = (!body.is_empty()).then(|| body.split(|&c| c == b'\n'));
    split.into_iter().flatten().enumerate().map(|(i, line)| {
        let mut rec = Record { seq: i as u64, ..Record::default() };
        let mut rest = line;
        if let Some((n, after)) = level_prefix(rest) {
            rec.level = Some((n & 7) as u8);
            rec.facility = u8::try_from(n >> 3).ok();
            rest = after;
        }
        if let Some((ts, after)) = time_prefix(rest) {
            rec.ts_nsec = ts;
            rest = after;
        }
        rec.text = rest.to_vec();
        rec
    })
}

fn level_prefix(b: &[u8]) -> Option<(u32, &[u8])> {
    let inner = b.strip_prefix(b"<")?;
    let close = inner.iter().position(|&c| c == b'>').filter(|&p| (1..=4).contains(&p))?;
    let digits = inner.get(..close)?;
    let n = std::str::from_utf8(digits).ok()?.parse::<u32>().ok()?;
    Some((n, inner.get(close + 1..)?))
}

fn time_prefix(b: &[u8]) -> Option<(u64, &[u8])> {
    let inner = b.strip_prefix(b"[")?;
    let close = inner.iter().position(|&c| c == b']').filter(|&p| p <= 24)?;
    let text = std::str::from_utf8(inner.get(..close)?).ok()?.trim_start();
    let (secs, micros) = text.split_once('.')?;
    if micros.len() != 6 {
        return None;
    }
    let ns = secs.parse::<u64>().ok()?.checked_mul(1_000_000_000)?.checked_add(micros.parse::<u64>().ok()? * 1000)?;
    let rest = inner.get(close + 1..)?;
    Some((ns, rest.strip_prefix(b" ").unwrap_or(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(release_before(Some("2.6.24-1-amd64"), (2, 6, 25)), Some(true));
        assert_eq!(release_before(Some("2.6.32-5-amd64"), (2, 6, 25)), Some(false));
        assert_eq!(release_before(Some("3.4"), (3, 5, 0)), Some(true));
        assert_eq!(release_before(Some("3.10.0-1160.el7.x86_64"), (3, 5, 0)), Some(false));
        assert_eq!(release_before(Some("garbage"), (3, 5, 0)), None);
        assert_eq!(release_before(None, (3, 5, 0)), None);
    }

    #[test]
    fn lines_parse_level_and_time() {
        let recs: Vec<Record> = lines(b"<6>[    1.500000] hello\n<12>no time\nplain\n").collect();
        assert_eq!(recs.len(), 3);
        assert_eq!((recs[0].level, recs[0].facility, recs[0].ts_nsec), (Some(6), Some(0), 1_500_000_000));
        assert_eq!(recs[0].text, b"hello");
        assert_eq!((recs[1].level, recs[1].facility, recs[1].ts_nsec), (Some(4), Some(1), 0));
        assert_eq!(recs[1].text, b"no time");
        assert_eq!((recs[2].level, recs[2].seq), (None, 2));
        for (raw, n) in [(&b""[..], 0), (b"\n", 0), (b"\n\n", 2), (b"a", 1), (b"a\n\nb", 3)] {
            assert_eq!((lines(raw).count(), line_count(raw)), (n, n), "{raw:?}");
        }
    }
}
