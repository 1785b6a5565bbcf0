//! The kernel log in its three historical forms, and the text `makedumpfile --dump-dmesg`
//! makes of it (../shared/docs/makedumpfile.md section 6).
//!
//! Each builder simulates the kernel's own writer message by message (the lockless ring
//! of 5.10+ with its descriptor and data rings, the `struct printk_log` ring of 3.5-5.9
//! with its wrap markers, the plain text ring before 3.5), so old messages are overwritten
//! the way the kernel overwrites them, and records which messages survive.

use crate::printk::{STATE_FINALIZED, STATE_REUSABLE};
use crate::rng::SplitMix64;

/// One printk message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Timestamp in nanoseconds since boot.
    pub ts_nsec: u64,
    /// `caller_id`: a thread id, or `0x80000000 | cpu`.
    pub caller_id: u32,
    /// Syslog level.
    pub level: u8,
    /// The text, without a trailing newline (it may hold newlines and any byte).
    pub text: Vec<u8>,
}

const DRIVERS: &[&str] = &[
    "virtio_blk",
    "e1000e",
    "ahci",
    "usb",
    "ext4",
    "xfs",
    "nvme",
    "i8042",
    "rtc_cmos",
    "tsc",
    "clocksource",
    "ACPI",
    "PCI",
    "pci_bus",
    "NET",
    "TCP",
    "audit",
    "systemd[1]",
    "random",
    "zswap",
    "kvm",
    "intel_pstate",
    "EDAC",
    "input",
];
const EVENTS: &[&str] = &[
    "registered",
    "probe succeeded",
    "link is up",
    "using MSI-X",
    "enabled",
    "initialized",
    "found device",
    "mounted filesystem with ordered data mode",
    "Switched to clocksource",
    "hash table entries",
    "loaded",
];

/// The messages of a boot and a crash: realistic early lines (including the RAM map),
/// `count` messages in all, with a multi-line message, a tab, a control byte, UTF-8 bytes
/// and an empty message among them, ending with the sysrq crash.
pub fn messages(seed: u64, count: usize, release: &str, ram: &[(u64, u64)], cpus: u32) -> Vec<Message> {
    let mut rng = SplitMix64::new(seed ^ 0x7072_696e_746b);
    let mut out: Vec<Message> = Vec::with_capacity(count.max(8));
    let mut ts = 0u64;
    let push = |out: &mut Vec<Message>, ts: u64, caller: u32, level: u8, text: Vec<u8>| {
        out.push(Message { ts_nsec: ts, caller_id: caller, level, text });
    };
    let fixed: Vec<Vec<u8>> = {
        let mut v = vec![
            format!(
                "Linux version {release} (synth@vmcore-synth) (gcc (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC synthetic"
            )
            .into_bytes(),
            b"Command line: console=ttyS0 crashkernel=256M panic=1".to_vec(),
            b"BIOS-provided physical RAM map:".to_vec(),
        ];
        for &(s, e) in ram {
            v.push(format!("BIOS-e820: [mem {s:#018x}-{:#018x}] usable", e - 1).into_bytes());
        }
        v
    };
    for t in fixed {
        push(&mut out, 0, 0, 6, t);
    }
    let specials: Vec<Vec<u8>> = vec![
        b"Trace clock warning: the clock is not monotonic.\nIf you want to keep using the local clock, then add:\n  \"trace_clock=local\"\non the kernel command line".to_vec(),
        b"tab\tseparated\tfields".to_vec(),
        b"control byte \x01 and DEL \x7f here".to_vec(),
        "UTF-8 caf\u{e9} \u{2192} done".as_bytes().to_vec(),
        Vec::new(),
        vec![b'x'; 900],
    ];
    let body = count.saturating_sub(out.len() + 3);
    let special_at: Vec<usize> =
        specials.iter().enumerate().map(|(i, _)| (i + 1) * body / (specials.len() + 1)).collect();
    let mut specials = specials.into_iter();
    for i in 0..body {
        ts += 1 + rng.below(4_000_000);
        let caller = if rng.below(10) == 0 {
            0x8000_0000 | rng.below(u64::from(cpus.max(1))) as u32
        } else {
            rng.below(2000) as u32
        };
        let text = if special_at.contains(&i) {
            specials.next().unwrap_or_default()
        } else {
            let d = DRIVERS.get(rng.below(DRIVERS.len() as u64) as usize).copied().unwrap_or("x");
            let e = EVENTS.get(rng.below(EVENTS.len() as u64) as usize).copied().unwrap_or("x");
            format!("{d}: {e} ({:#x}, {} pages)", rng.next_u64() >> 20, rng.below(1 << 20)).into_bytes()
        };
        push(&mut out, ts, caller, rng.below(8) as u8, text);
    }
    ts += 5_000_000_000;
    let cpu = cpus.saturating_sub(1);
    for t in [
        "sysrq: Trigger a crash".to_string(),
        "Kernel panic - not syncing: sysrq triggered crash".to_string(),
        format!("CPU: {cpu} PID: 612 Comm: bash Not tainted {release} #1"),
    ] {
        ts += 1000;
        push(&mut out, ts, 612, if t.starts_with("sysrq") { 6 } else { 0 }, t.into_bytes());
    }
    out
}

/// One line of `makedumpfile --dump-dmesg` output for a record: `[%5lld.%06ld] `, with
/// caller ids `[%8s] ` (`T<pid>` or `C<cpu>`), newlines in the text indented to the prefix,
/// bytes that are neither printable nor space as `\xNN`, where a byte of 0x80 or more
/// prints as the sign-extended `char` of x86_64 (`\xffffffe2`).
pub fn format_record(out: &mut String, m: &Message, caller_ids: bool) {
    use std::fmt::Write;
    let start = out.len();
    let _ = write!(out, "[{:5}.{:06}] ", m.ts_nsec / 1_000_000_000, (m.ts_nsec % 1_000_000_000) / 1000);
    if caller_ids {
        let kind = if m.caller_id & 0x8000_0000 != 0 { 'C' } else { 'T' };
        let _ = write!(out, "[{:>8}] ", format!("{kind}{}", m.caller_id & 0x7fff_ffff));
    }
    let indent = out.len() - start;
    for &c in &m.text {
        if c == b'\n' {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent));
        } else if (0x20..0x7f).contains(&c) || matches!(c, b' ' | b'\t' | b'\x0b' | b'\x0c' | b'\r') {
            out.push(char::from(c));
        } else {
            let _ = write!(out, "\\x{:02x}", c as i8 as i32 as u32);
        }
    }
    out.push('\n');
}

/// The dump-dmesg text of `messages` (already in ring order).
pub fn format_records<'a>(messages: impl IntoIterator<Item = &'a Message>, caller_ids: bool) -> String {
    let mut s = String::new();
    for m in messages {
        format_record(&mut s, m, caller_ids);
    }
    s
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// `DESC_ID_MASK`: the state bits are the top two of `state_var`.
pub const DESC_ID_MASK: u64 = !(3u64 << 62);
/// `sizeof(struct prb_desc)`.
pub const PRB_DESC_SIZE: usize = 24;
/// `sizeof(struct printk_info)`.
pub const PRINTK_INFO_SIZE: usize = 88;

/// The lockless ring buffer (5.10+) after the messages were written.
#[derive(Debug, Clone)]
pub struct Ringbuffer {
    /// `count_bits` of the descriptor ring.
    pub count_bits: u32,
    /// `size_bits` of the data ring.
    pub size_bits: u32,
    /// The `prb_desc` array.
    pub descs: Vec<u8>,
    /// The `printk_info` array.
    pub infos: Vec<u8>,
    /// The text data ring.
    pub data: Vec<u8>,
    /// `desc_ring.head_id`.
    pub head_id: u64,
    /// `desc_ring.tail_id`.
    pub tail_id: u64,
    /// `text_data_ring.head_lpos`.
    pub head_lpos: u64,
    /// `text_data_ring.tail_lpos`.
    pub tail_lpos: u64,
    /// Indices of the messages still in the ring, oldest first.
    pub survivors: Vec<usize>,
}

/// Writes `messages` into a ring of `1 << count_bits` descriptors and `1 << size_bits`
/// data bytes as the kernel's `prb_reserve()`/`prb_final_commit()` would, starting from
/// the static initial state (`DESC0_ID`, `BLK0_LPOS`). Every message must fit in half the
/// data ring.
pub fn ringbuffer(messages: &[Message], count_bits: u32, size_bits: u32) -> Ringbuffer {
    let count = 1u64 << count_bits;
    let size = 1u64 << size_bits;
    let mut descs = vec![0u8; count as usize * PRB_DESC_SIZE];
    let mut infos = vec![0u8; count as usize * PRINTK_INFO_SIZE];
    let mut data = vec![0u8; size as usize];
    let wraps = |lpos: u64| lpos >> size_bits;
    let index = |lpos: u64| (lpos & (size - 1)) as usize;
    // Static initial state: DESC0_ID = DESC_ID(-(count + 1)), BLK0_LPOS = -size; the last
    // descriptor is reusable with DESC0_ID and FAILED_LPOS (1).
    let desc0_id = 0u64.wrapping_sub(count + 1) & DESC_ID_MASK;
    let last = (count - 1) as usize * PRB_DESC_SIZE;
    put(&mut descs, last, &((STATE_REUSABLE << 62) | desc0_id).to_le_bytes());
    put(&mut descs, last + 8, &1u64.to_le_bytes());
    put(&mut descs, last + 16, &1u64.to_le_bytes());
    put(&mut infos, 0, &0u64.wrapping_sub(count).to_le_bytes());
    let mut head_lpos = 0u64.wrapping_sub(size);
    let mut tail_lpos = head_lpos;
    let mut head_id = desc0_id;
    let mut tail_id = desc0_id;
    // Each message's data block, and the oldest message whose block is still in the data
    // ring (recycling a descriptor pushes the data tail past its block first, so the
    // survivors are exactly the messages from `first_data` on).
    let mut lpos: Vec<(u64, u64)> = Vec::with_capacity(messages.len());
    let mut first_data = 0usize;
    let push_tail = |upto: usize, first_data: &mut usize, tail_lpos: &mut u64, lpos: &[(u64, u64)]| {
        while *first_data < upto {
            if let Some(&(_, next)) = lpos.get(*first_data) {
                *tail_lpos = next;
            }
            *first_data += 1;
        }
    };
    for (i, m) in messages.iter().enumerate() {
        let id = head_id.wrapping_add(1) & DESC_ID_MASK;
        // desc_reserve(): the slot's previous owner (message i - count) is recycled.
        if i as u64 >= count {
            push_tail(i + 1 - count as usize, &mut first_data, &mut tail_lpos, &lpos);
        }
        // data_alloc(): text plus the NUL vsnprintf reserves, plus the block's id word.
        let blk_size = (8 + m.text.len() as u64 + 1).next_multiple_of(8);
        let begin = head_lpos;
        let mut next = begin.wrapping_add(blk_size);
        if wraps(begin) != wraps(next) {
            next = (next & !(size - 1)).wrapping_add(blk_size);
        }
        // data_push_tail(): drop the oldest blocks until the new one fits.
        while next.wrapping_sub(tail_lpos) > size && first_data < i {
            push_tail(first_data + 1, &mut first_data, &mut tail_lpos, &lpos);
        }
        if first_data == i {
            tail_lpos = begin;
        }
        // Block id at begin; a wrapping block stores its data at the ring's start.
        let at = if wraps(begin) != wraps(next) {
            put(&mut data, index(begin), &id.to_le_bytes());
            0
        } else {
            index(begin)
        };
        put(&mut data, at, &id.to_le_bytes());
        put(&mut data, at + 8, &m.text);
        put(&mut data, at + 8 + m.text.len(), &[0]);
        let slot = (id % count) as usize;
        let d = slot * PRB_DESC_SIZE;
        put(&mut descs, d, &((STATE_FINALIZED << 62) | id).to_le_bytes());
        put(&mut descs, d + 8, &begin.to_le_bytes());
        put(&mut descs, d + 16, &next.to_le_bytes());
        let inf = slot * PRINTK_INFO_SIZE;
        let mut info = [0u8; PRINTK_INFO_SIZE];
        put(&mut info, 0, &(i as u64).to_le_bytes());
        put(&mut info, 8, &m.ts_nsec.to_le_bytes());
        put(&mut info, 16, &(m.text.len() as u16).to_le_bytes());
        put(&mut info, 18, &[0, m.level << 5]);
        put(&mut info, 20, &m.caller_id.to_le_bytes());
        put(&mut infos, inf, &info);
        head_lpos = next;
        head_id = id;
        lpos.push((begin, next));
    }
    // Records whose blocks left the data ring are reusable; the tail is the oldest live one.
    let n = messages.len();
    if n > 0 {
        tail_id = desc0_id.wrapping_add(1 + first_data as u64) & DESC_ID_MASK;
    }
    for j in first_data.saturating_sub(count as usize)..first_data {
        let id = desc0_id.wrapping_add(1 + j as u64) & DESC_ID_MASK;
        let d = (id % count) as usize * PRB_DESC_SIZE;
        let sv = descs.get(d..d + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0);
        if sv == (STATE_FINALIZED << 62) | id {
            put(&mut descs, d, &((STATE_REUSABLE << 62) | id).to_le_bytes());
        }
    }
    Ringbuffer {
        count_bits,
        size_bits,
        descs,
        infos,
        data,
        head_id,
        tail_id,
        head_lpos,
        tail_lpos,
        survivors: (first_data..n).collect(),
    }
}

/// The 3.5-5.9 `struct printk_log` ring after the messages were written.
#[derive(Debug, Clone)]
pub struct PrintkLog {
    /// `__log_buf`.
    pub buf: Vec<u8>,
    /// `log_first_idx`.
    pub first_idx: u32,
    /// `log_next_idx`.
    pub next_idx: u32,
    /// `log_first_seq`.
    pub first_seq: u64,
    /// `log_next_seq`.
    pub next_seq: u64,
    /// Indices of the messages still in the buffer, oldest first.
    pub survivors: Vec<usize>,
}

/// `sizeof(struct printk_log)` on x86_64 (packed, 4-aligned), with or without `caller_id`.
pub fn printk_log_size(caller_id: bool) -> usize {
    if caller_id {
        20
    } else {
        16
    }
}

/// Writes `messages` as `log_store()` of 3.5-5.9 does, in a buffer of `len` bytes.
pub fn printk_log(messages: &[Message], len: usize, caller_id: bool) -> PrintkLog {
    let hdr = printk_log_size(caller_id);
    let mut buf = vec![0u8; len];
    let (mut first_idx, mut next_idx) = (0usize, 0usize);
    let (mut first_seq, mut next_seq) = (0u64, 0u64);
    let rd16 = |buf: &[u8], at: usize| {
        buf.get(at..at + 2).and_then(|b| b.try_into().ok()).map(u16::from_le_bytes).unwrap_or(0)
    };
    let log_next = |buf: &[u8], idx: usize| -> usize {
        let l = rd16(buf, idx + 8) as usize;
        if l == 0 {
            rd16(buf, 8) as usize
        } else {
            idx + l
        }
    };
    let has_space = |first: usize, next: usize, size: usize, empty: bool| {
        let free = if next > first || empty { (len - next).max(first) } else { first - next };
        free >= size + hdr
    };
    let mut origin: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    for (i, m) in messages.iter().enumerate() {
        let size = (hdr + m.text.len()).next_multiple_of(4);
        while first_seq < next_seq && !has_space(first_idx, next_idx, size, false) {
            first_idx = log_next(&buf, first_idx);
            first_seq += 1;
            origin.pop_front();
        }
        if !has_space(first_idx, next_idx, size, first_seq == next_seq) {
            continue; // the kernel drops a message that cannot fit at all
        }
        if next_idx + size + hdr > len {
            put(&mut buf, next_idx, &vec![0u8; hdr]);
            next_idx = 0;
        }
        let mut rec = vec![0u8; size];
        put(&mut rec, 0, &m.ts_nsec.to_le_bytes());
        put(&mut rec, 8, &(size as u16).to_le_bytes());
        put(&mut rec, 10, &(m.text.len() as u16).to_le_bytes());
        put(&mut rec, 14, &[0, m.level << 5]);
        if caller_id {
            put(&mut rec, 16, &m.caller_id.to_le_bytes());
        }
        put(&mut rec, hdr, &m.text);
        put(&mut buf, next_idx, &rec);
        next_idx += size;
        next_seq += 1;
        origin.push_back(i);
    }
    PrintkLog {
        buf,
        first_idx: first_idx as u32,
        next_idx: next_idx as u32,
        first_seq,
        next_seq,
        survivors: origin.into_iter().collect(),
    }
}

/// The plain text log of kernels before 3.5.
#[derive(Debug, Clone)]
pub struct LogBuf {
    /// `__log_buf`.
    pub buf: Vec<u8>,
    /// `log_end`: bytes ever written (an `unsigned int`).
    pub log_end: u32,
    /// `logged_chars`.
    pub logged_chars: u32,
    /// What `makedumpfile --dump-dmesg` writes: the ring's bytes in order.
    pub text: Vec<u8>,
}

/// The lines the kernel printed, `<level>[ seconds.micros] text`, into a ring of `len`
/// bytes (a power of two).
pub fn log_buf(messages: &[Message], len: usize) -> LogBuf {
    let mut all = Vec::new();
    for m in messages {
        for line in m.text.split(|&b| b == b'\n') {
            all.extend_from_slice(
                format!("<{}>[{:5}.{:06}] ", m.level, m.ts_nsec / 1_000_000_000, (m.ts_nsec % 1_000_000_000) / 1000)
                    .as_bytes(),
            );
            all.extend_from_slice(line);
            all.push(b'\n');
        }
    }
    let mut buf = vec![0u8; len];
    for (i, &b) in all.iter().enumerate() {
        if let Some(slot) = buf.get_mut(i & (len - 1)) {
            *slot = b;
        }
    }
    let log_end = all.len() as u32;
    let text = if all.len() < len { all.clone() } else { all.get(all.len() - len..).unwrap_or_default().to_vec() };
    LogBuf { buf, log_end, logged_chars: all.len().min(len) as u32, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(n: usize) -> Vec<Message> {
        messages(5, n, "6.1.0-synthetic", &[(0x1000, 0x9fc00), (0x100000, 0x4000000)], 2)
    }

    /// Reads a ring the way section 6.2 of the spec does.
    fn read_ring(r: &Ringbuffer, m: &[Message]) -> Vec<Vec<u8>> {
        let count = 1u64 << r.count_bits;
        let size = 1u64 << r.size_bits;
        let u64at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        let mut out = Vec::new();
        let mut id = r.tail_id;
        loop {
            let d = (id % count) as usize * PRB_DESC_SIZE;
            let sv = u64at(&r.descs, d);
            if sv & DESC_ID_MASK == id && matches!(sv >> 62, 1 | 2) {
                let mut begin = u64at(&r.descs, d + 8) % size;
                let next = u64at(&r.descs, d + 16) % size;
                if begin != next {
                    let inf = (id % count) as usize * PRINTK_INFO_SIZE;
                    let mut len = u16::from_le_bytes(r.infos[inf + 16..inf + 18].try_into().unwrap()) as u64;
                    if begin > next {
                        begin = 0;
                    }
                    begin += 8;
                    len = len.min(next - begin);
                    out.push(r.data[begin as usize..(begin + len) as usize].to_vec());
                }
            }
            if id == r.head_id {
                break;
            }
            id = (id + 1) & DESC_ID_MASK;
        }
        assert!(m.len() >= out.len());
        out
    }

    #[test]
    fn ring_keeps_the_newest_messages_in_order() {
        for (n, cb, sb) in [(10, 5, 10), (2500, 12, 17), (300, 6, 11), (3000, 8, 16)] {
            let m = msgs(n);
            let r = ringbuffer(&m, cb, sb);
            let got = read_ring(&r, &m);
            let want: Vec<Vec<u8>> = r.survivors.iter().map(|&i| m[i].text.clone()).collect();
            assert_eq!(got, want, "{n} {cb} {sb}");
            assert_eq!(*r.survivors.last().unwrap(), n - 1);
            assert!(r.survivors.windows(2).all(|w| w[1] == w[0] + 1));
            if n > 1000 {
                assert!(r.survivors[0] > 0, "the ring should have wrapped");
            }
        }
    }

    #[test]
    fn printk_log_keeps_the_newest_messages() {
        for (n, len, caller) in [(10, 4096, false), (3000, 1 << 17, true), (500, 1 << 14, false)] {
            let m = msgs(n);
            let p = printk_log(&m, len, caller);
            // Read it back as section 6.3 does.
            let hdr = printk_log_size(caller);
            let mut idx = p.first_idx as usize;
            let mut got = Vec::new();
            while idx != p.next_idx as usize {
                let mut l = u16::from_le_bytes(p.buf[idx + 8..idx + 10].try_into().unwrap()) as usize;
                if l == 0 {
                    idx = 0;
                    l = u16::from_le_bytes(p.buf[8..10].try_into().unwrap()) as usize;
                }
                let tl = u16::from_le_bytes(p.buf[idx + 10..idx + 12].try_into().unwrap()) as usize;
                got.push(p.buf[idx + hdr..idx + hdr + tl].to_vec());
                idx += l;
            }
            let want: Vec<Vec<u8>> = p.survivors.iter().map(|&i| m[i].text.clone()).collect();
            assert_eq!(got, want);
            assert_eq!(*p.survivors.last().unwrap(), n - 1);
        }
    }

    #[test]
    fn log_buf_text_is_the_ring_in_order() {
        let m = msgs(2000);
        let l = log_buf(&m, 1 << 14);
        assert!(l.log_end as usize > l.buf.len());
        let idx = l.log_end as usize & (l.buf.len() - 1);
        let mut ring = l.buf[idx..].to_vec();
        ring.extend_from_slice(&l.buf[..idx]);
        assert_eq!(ring, l.text);
        assert!(l.text.ends_with(b"Not tainted 6.1.0-synthetic #1\n"));
    }

    #[test]
    fn formatting_matches_makedumpfile() {
        let mut s = String::new();
        let m = Message { ts_nsec: 12_345_678_901, caller_id: 0x8000_0001, level: 6, text: b"a\nb\x01\xe2".to_vec() };
        format_record(&mut s, &m, true);
        assert_eq!(s, "[   12.345678] [      C1] a\n                          b\\x01\\xffffffe2\n");
        s.clear();
        format_record(&mut s, &Message { caller_id: 7, ..m.clone() }, false);
        assert_eq!(s, "[   12.345678] a\n               b\\x01\\xffffffe2\n");
    }
}
