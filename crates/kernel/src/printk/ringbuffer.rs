//! The lockless `printk_ringbuffer` of Linux 5.10 and later.
//!
//! Layout (kernel/printk/printk_ringbuffer.h), every offset from VMCOREINFO:
//!
//! * `prb` is a pointer to a `struct printk_ringbuffer { struct prb_desc_ring desc_ring;
//!   struct prb_data_ring text_data_ring; ... }`;
//! * `struct prb_desc_ring { unsigned int count_bits; struct prb_desc *descs; struct
//!   printk_info *infos; atomic_long_t head_id, tail_id; ... }`: `1 << count_bits`
//!   descriptors and as many infos, indexed by `id % count`;
//! * `struct prb_desc { atomic_long_t state_var; struct prb_data_blk_lpos { unsigned long
//!   begin, next; } text_blk_lpos; }`: `state_var` holds the descriptor id in its low 62
//!   bits and the state in the top two (0 reserved, 1 committed, 2 finalized, 3 reusable);
//! * `struct prb_data_ring { unsigned int size_bits; char *data; ... }`: `1 << size_bits`
//!   bytes of data blocks `{ unsigned long id; char text[]; }` at 8-byte aligned logical
//!   positions; a block that would cross the end of the ring is stored at its start
//!   instead (`begin` one wrap behind `next`, text at offset 0). Both positions odd is a
//!   block without data.
//! * `struct printk_info { u64 seq; u64 ts_nsec; u16 text_len; u8 facility; u8 flags:5;
//!   u8 level:3; u32 caller_id; struct dev_printk_info { char subsystem[16]; char
//!   device[48]; } dev_info; }`.
//!
//! The records are the descriptors from `tail_id` to `head_id` whose state is committed or
//! finalized and whose id matches, as makedumpfile prints them. Their blocks never
//! overlap, so their texts together fit in the data ring: the reader stops, with a
//! warning, at the record that would take more.
//!
//! Assumption (not exported by VMCOREINFO): `facility` and the `flags:5, level:3` byte
//! follow `text_len` (offsets `text_len + 2` and `+ 3`, level in the top three bits, as
//! GCC lays out bitfields on little-endian machines). It is used only when
//! `OFFSET(printk_info.caller_id)` is `text_len + 4`, which confirms that layout, and only
//! for `level`/`facility` (JSON output); makedumpfile's text output needs neither.

use super::mem::{byte, le16, le32, le64, read_exact, read_u32, read_u64, Window};
use super::{c_string, fits, offset, offset_opt, size, Error, Generation, Log, Options, ReadMem, Record, Warnings};
use crate::vmcoreinfo::VmcoreInfo;

/// Largest `count_bits` accepted (16 Mi descriptors; the kernel's limit of the buffer,
/// `log_buf_len` of 2 GiB with 32 bytes per record on average, is 2^26, far beyond any
/// real log).
pub const MAX_COUNT_BITS: u32 = 24;
/// Largest `size_bits` accepted (a 2 GiB text ring).
pub const MAX_SIZE_BITS: u32 = 31;
/// Bits of `state_var` that hold the state.
pub const DESC_FLAGS_SHIFT: u32 = 62;
/// Bits of `state_var` that hold the id.
pub const DESC_ID_MASK: u64 = !(3u64 << DESC_FLAGS_SHIFT);
/// Size of a data block's id word.
const BLK_ID: u64 = 8;

/// Descriptor states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Being written.
    Reserved,
    /// Written; may still be extended by a continuation line.
    Committed,
    /// Written and final.
    Finalized,
    /// Its data may be overwritten.
    Reusable,
    /// The descriptor holds another id.
    Miss,
}

/// The state of descriptor `id` from its `state_var`.
pub fn state(id: u64, state_var: u64) -> State {
    if state_var & DESC_ID_MASK != id & DESC_ID_MASK {
        return State::Miss;
    }
    match state_var >> DESC_FLAGS_SHIFT {
        0 => State::Reserved,
        1 => State::Committed,
        2 => State::Finalized,
        _ => State::Reusable,
    }
}

/// Where a data block's text is, from its logical positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// No data (both positions odd: an empty or failed record).
    Dataless,
    /// Block at `offset` in the ring (its id word first), `size` bytes with the id word.
    At {
        /// Offset of the id word in the ring.
        offset: u64,
        /// Bytes from the id word to the end of the block.
        size: u64,
    },
    /// Positions no writer produces.
    Illegal(&'static str),
}

/// Decodes `begin`/`next` of a data block in a ring of `1 << size_bits` bytes as the
/// kernel's reader does (`get_data()`).
pub fn block(begin: u64, next: u64, size_bits: u32) -> Block {
    if begin & 1 == 1 && next & 1 == 1 {
        return Block::Dataless;
    }
    let size = 1u64 << size_bits;
    let wraps = |lpos: u64| lpos >> size_bits;
    let index = |lpos: u64| lpos & (size - 1);
    let (offset, len) = if wraps(begin) == wraps(next) && begin < next {
        (index(begin), next - begin)
    } else if wraps(begin.wrapping_add(size)) == wraps(next) {
        // Wrapped: the data is at the start of the ring, up to `next`.
        (0, index(next))
    } else {
        return Block::Illegal("begin and next are not in the same or in consecutive wraps of the ring");
    };
    if begin % BLK_ID != 0 || next % BLK_ID != 0 {
        return Block::Illegal("begin or next is not aligned to 8 bytes");
    }
    if len < BLK_ID {
        return Block::Illegal("the block is smaller than its id word");
    }
    Block::At { offset, size: len }
}

/// Offsets of everything the reader uses, from VMCOREINFO.
#[derive(Debug, Clone)]
pub struct Layout {
    count_bits: usize,
    descs: usize,
    infos: usize,
    head_id: usize,
    tail_id: usize,
    size_bits: usize,
    data: usize,
    rb_len: usize,
    desc_size: usize,
    state_var: usize,
    begin: usize,
    next: usize,
    info_size: usize,
    seq: usize,
    ts_nsec: usize,
    text_len: usize,
    caller_id: Option<usize>,
    facility: Option<usize>,
    dev: Option<DevLayout>,
}

#[derive(Debug, Clone, Copy)]
struct DevLayout {
    subsystem: usize,
    subsystem_len: usize,
    device: usize,
    device_len: usize,
}

const WHAT: &str = "printk ring buffer";

impl Layout {
    /// Reads and checks the layout keys.
    pub fn from_vmcoreinfo(vi: &VmcoreInfo) -> Result<Layout, Error> {
        let o = |n: &str| offset(vi, &[n], WHAT);
        let counter = offset_opt(vi, "atomic_long_t.counter")?.unwrap_or(0);
        let desc_ring = o("printk_ringbuffer.desc_ring")?;
        let text_ring = o("printk_ringbuffer.text_data_ring")?;
        let count_bits = desc_ring + o("prb_desc_ring.count_bits")?;
        let descs = desc_ring + o("prb_desc_ring.descs")?;
        let infos = desc_ring + o("prb_desc_ring.infos")?;
        let head_id = desc_ring + o("prb_desc_ring.head_id")? + counter;
        let tail_id = desc_ring + o("prb_desc_ring.tail_id")? + counter;
        let size_bits = text_ring + o("prb_data_ring.size_bits")?;
        let data = text_ring + o("prb_data_ring.data")?;
        let rb_len = [count_bits + 4, descs + 8, infos + 8, head_id + 8, tail_id + 8, size_bits + 4, data + 8]
            .into_iter()
            .max()
            .unwrap_or(0);
        if let Some(rb_size) = vi.size("printk_ringbuffer") {
            if usize::try_from(rb_size).ok().is_none_or(|s| s < rb_len) {
                return Err(Error::BadKey {
                    key: "SIZE(printk_ringbuffer)".into(),
                    value: rb_size,
                    expected: format!("at least {rb_len}, the end of the fields its OFFSETs name"),
                });
            }
        }

        let desc_size = size(vi, &["prb_desc"], WHAT)?;
        let state_var = o("prb_desc.state_var")? + counter;
        let lpos = o("prb_desc.text_blk_lpos")?;
        let begin = lpos + o("prb_data_blk_lpos.begin")?;
        let next = lpos + o("prb_data_blk_lpos.next")?;
        fits("prb_desc.state_var", state_var, 8, "prb_desc", desc_size)?;
        fits("prb_data_blk_lpos.begin", begin, 8, "prb_desc", desc_size)?;
        fits("prb_data_blk_lpos.next", next, 8, "prb_desc", desc_size)?;

        let info_size = size(vi, &["printk_info"], WHAT)?;
        let seq = offset_opt(vi, "printk_info.seq")?.unwrap_or(0);
        let ts_nsec = o("printk_info.ts_nsec")?;
        let text_len = o("printk_info.text_len")?;
        let caller_id = offset_opt(vi, "printk_info.caller_id")?;
        fits("printk_info.seq", seq, 8, "printk_info", info_size)?;
        fits("printk_info.ts_nsec", ts_nsec, 8, "printk_info", info_size)?;
        fits("printk_info.text_len", text_len, 2, "printk_info", info_size)?;
        if let Some(c) = caller_id {
            fits("printk_info.caller_id", c, 4, "printk_info", info_size)?;
        }
        // See the module documentation: facility and level sit between text_len and
        // caller_id when caller_id is where that layout puts it.
        let facility = (caller_id == Some(text_len + 4)).then_some(text_len + 2);

        let dev = match (
            offset_opt(vi, "printk_info.dev_info")?,
            offset_opt(vi, "dev_printk_info.subsystem")?,
            vi.length("printk_info_subsystem"),
            offset_opt(vi, "dev_printk_info.device")?,
            vi.length("printk_info_device"),
        ) {
            (Some(d), Some(s), Some(sl), Some(dv), Some(dl)) if (1..=256).contains(&sl) && (1..=256).contains(&dl) => {
                let dev =
                    DevLayout { subsystem: d + s, subsystem_len: sl as usize, device: d + dv, device_len: dl as usize };
                fits("dev_printk_info.subsystem", dev.subsystem, dev.subsystem_len, "printk_info", info_size)?;
                fits("dev_printk_info.device", dev.device, dev.device_len, "printk_info", info_size)?;
                Some(dev)
            }
            _ => None,
        };
        Ok(Layout {
            count_bits,
            descs,
            infos,
            head_id,
            tail_id,
            size_bits,
            data,
            rb_len,
            desc_size,
            state_var,
            begin,
            next,
            info_size,
            seq,
            ts_nsec,
            text_len,
            caller_id,
            facility,
            dev,
        })
    }
}

/// The sequence number of the last clear: `clear_seq`, a `u64` (5.10-5.12) or a
/// `struct latched_seq { seqcount_latch_t latch; u64 val[2]; }` (5.13+), whose current
/// value is `val[latch & 1]`.
pub fn clear_seq(vi: &VmcoreInfo, mem: ReadMem<'_>) -> Result<Option<u64>, Error> {
    let Some(sym) = vi.symbol("clear_seq") else { return Ok(None) };
    let latched = vi.size("latched_seq").is_some();
    if !latched {
        return read_u64(mem, sym, "clear_seq").map(Some);
    }
    let val = offset(vi, &["latched_seq.val"], "latched clear_seq")?;
    let latch = read_u32(mem, sym, "clear_seq.latch")?;
    let at = sym.wrapping_add(val as u64).wrapping_add(u64::from(latch & 1) * 8);
    read_u64(mem, at, "clear_seq.val").map(Some)
}

/// Reads the log.
pub fn read(vi: &VmcoreInfo, mem: ReadMem<'_>, opts: &Options) -> Result<Log, Error> {
    let l = Layout::from_vmcoreinfo(vi)?;
    let sym = vi.symbol("prb").ok_or(Error::Missing { key: "SYMBOL(prb)".into(), what: WHAT })?;
    let prb = read_u64(mem, sym, "the pointer prb")?;
    let mut rb = vec![0u8; l.rb_len];
    read_exact(mem, prb, &mut rb, "struct printk_ringbuffer")?;
    let field_addr = |off: usize| prb.wrapping_add(off as u64);

    let count_bits = le32(&rb, l.count_bits);
    if count_bits > MAX_COUNT_BITS {
        return Err(Error::BadValue {
            what: "prb->desc_ring.count_bits".into(),
            addr: field_addr(l.count_bits),
            value: count_bits.into(),
            expected: format!("at most {MAX_COUNT_BITS}"),
        });
    }
    let size_bits = le32(&rb, l.size_bits);
    if !(4..=MAX_SIZE_BITS).contains(&size_bits) {
        return Err(Error::BadValue {
            what: "prb->text_data_ring.size_bits".into(),
            addr: field_addr(l.size_bits),
            value: size_bits.into(),
            expected: format!("4 to {MAX_SIZE_BITS}"),
        });
    }
    let count = 1u64 << count_bits;
    let ring_size = 1u64 << size_bits;
    let descs = le64(&rb, l.descs);
    let infos = le64(&rb, l.infos);
    let data = le64(&rb, l.data);
    let head = le64(&rb, l.head_id) & DESC_ID_MASK;
    let tail = le64(&rb, l.tail_id) & DESC_ID_MASK;

    let mut warn = Warnings::default();
    let mut span = head.wrapping_sub(tail) & DESC_ID_MASK;
    let mut first = tail;
    if span >= count {
        warn.push("bad tail_id", || {
            format!(
                "printk ring buffer: tail_id {tail:#x} is {span} ids behind head_id {head:#x}, more than the \
                 {count} descriptors of the ring: reading the last {count} only"
            )
        });
        span = count - 1;
        first = head.wrapping_sub(span) & DESC_ID_MASK;
    }
    let from_seq = if opts.partial {
        match clear_seq(vi, mem)? {
            Some(s) => Some(s),
            None => {
                warn.push("no clear_seq", || "no SYMBOL(clear_seq) in VMCOREINFO: printing the whole log".into());
                None
            }
        }
    } else {
        None
    };

    let mut descs_w = Window::new(mem, descs, count * l.desc_size as u64);
    let mut infos_w = Window::new(mem, infos, count * l.info_size as u64);
    let mut text_w = Window::new(mem, data, ring_size);
    let mut records = super::Encoded::default();
    // The blocks of the records between tail and head never overlap, so their texts
    // together fit in the data ring. Descriptors whose blocks overlap could otherwise each
    // claim up to 64 KiB of the same bytes, 16 Mi times. A live kernel may move the head
    // record's block, or allocate the blocks of records reserved before head_id was read,
    // over data already copied: one more ring of slack covers that.
    let text_budget = if opts.live { 2 * ring_size } else { ring_size };
    let mut text_taken = 0u64;
    // One text buffer serves every record: `Encoded` copies the text, so a ring of
    // millions of records costs no allocation per record.
    let mut text = Vec::new();
    for i in 0..=span {
        let id = first.wrapping_add(i) & DESC_ID_MASK;
        let idx = id & (count - 1);
        let desc = match descs_w.get(idx * l.desc_size as u64, l.desc_size) {
            Ok(d) => d,
            Err(e) => {
                warn.push("unreadable descriptor", || format!("printk descriptor {id:#x}: {e}"));
                continue;
            }
        };
        let sv = le64(desc, l.state_var);
        let (begin, next) = (le64(desc, l.begin), le64(desc, l.next));
        match state(id, sv) {
            State::Committed | State::Finalized => {}
            State::Miss => {
                warn.push("descriptor with another id", || {
                    format!(
                        "printk descriptor {id:#x} (between tail_id and head_id) holds id {:#x}: skipped",
                        sv & DESC_ID_MASK
                    )
                });
                continue;
            }
            // Being written at the time of the dump, or already given up: the kernel's
            // readers skip these too.
            State::Reserved | State::Reusable => continue,
        }
        let info = match infos_w.get(idx * l.info_size as u64, l.info_size) {
            Ok(b) => b,
            Err(e) => {
                warn.push("unreadable info", || format!("printk record {id:#x}: its printk_info: {e}"));
                continue;
            }
        };
        let seq = le64(info, l.seq);
        if from_seq.is_some_and(|s| seq < s) {
            continue;
        }
        let mut rec = Record {
            seq,
            ts_nsec: le64(info, l.ts_nsec),
            level: l.facility.map(|f| byte(info, f + 1) >> 5),
            facility: l.facility.map(|f| byte(info, f)),
            caller_id: l.caller_id.map(|c| le32(info, c)),
            text: std::mem::take(&mut text),
            subsystem: l.dev.and_then(|d| c_string(info.get(d.subsystem..d.subsystem + d.subsystem_len)?)),
            device: l.dev.and_then(|d| c_string(info.get(d.device..d.device + d.device_len)?)),
        };
        let text_len = u64::from(le16(info, l.text_len));
        let (off, blk_size) = match block(begin, next, size_bits) {
            Block::At { offset, size } => (offset, size),
            Block::Dataless => continue,
            Block::Illegal(why) => {
                warn.push("bad data block", || {
                    format!(
                        "printk record {id:#x} (seq {seq}): data block begin {begin:#x} next {next:#x}: {why}: skipped"
                    )
                });
                continue;
            }
        };
        let avail = blk_size - BLK_ID;
        if text_len > avail {
            warn.push("text longer than its block", || {
                format!(
                    "printk record {id:#x} (seq {seq}): text_len {text_len} is more than the {avail} bytes of its \
                     data block: text cut there"
                )
            });
        }
        let n = text_len.min(avail);
        let blk = match text_w.get(off, (BLK_ID + n) as usize) {
            Ok(b) => b,
            Err(e) => {
                warn.push("unreadable text", || format!("printk record {id:#x} (seq {seq}): text: {e}"));
                continue;
            }
        };
        let blk_id = le64(blk, 0);
        if blk_id & DESC_ID_MASK != id {
            warn.push("data block of another record", || {
                format!(
                    "printk record {id:#x} (seq {seq}): its data block at ring offset {off:#x} belongs to id \
                     {blk_id:#x}: skipped"
                )
            });
            continue;
        }
        rec.text.clear();
        rec.text.extend_from_slice(blk.get(BLK_ID as usize..).unwrap_or_default());
        if opts.live {
            let at = descs.wrapping_add(idx * l.desc_size as u64).wrapping_add(l.state_var as u64);
            if read_u64(mem, at, "state_var").ok() != Some(sv) {
                warn.push("changed while read", || {
                    format!("printk record {id:#x} (seq {seq}) was overwritten while being read: skipped")
                });
                continue;
            }
        }
        text_taken += n;
        if text_taken > text_budget {
            warn.push("texts overlap", || {
                format!(
                    "printk record {id:#x} (seq {seq}): its {n} bytes of text bring the texts read to {text_taken} \
                     bytes, past the {text_budget} that the {ring_size}-byte data ring allows: data blocks overlap: \
                     records from there on are not printed"
                )
            });
            break;
        }
        records.push(&rec);
        text = rec.text;
    }
    Ok(Log {
        generation: Generation::Ringbuffer,
        records: records.into(),
        caller_ids: l.caller_id.is_some(),
        warnings: warn.finish(),
    })
}
