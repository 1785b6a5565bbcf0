//! Builders of the three printk buffers in memory, written the way the kernel writes them,
//! for tests (vmcore-kernel's printk tests, and the integration tests, which put an
//! [`Image`] into an ELF dump).
//!
//! Each builder lays its structures out in one [`Image`]: bytes at a virtual address,
//! with the VMCOREINFO lines that describe them (the keys and values of a real x86_64
//! kernel of that generation).

/// The id bits of a descriptor's state word (the top two hold its state).
const DESC_ID_MASK: u64 = !(3u64 << 62);

/// VMCOREINFO of Linux 6.1's `printk_ringbuffer` on x86_64: the ring, its descriptors and `printk_info` up to `text_len` (also the synthetic machines').
pub(crate) const RB_CORE: &[&str] = &[
    "SIZE(printk_ringbuffer)=88",
    "OFFSET(printk_ringbuffer.desc_ring)=0",
    "OFFSET(printk_ringbuffer.text_data_ring)=48",
    "OFFSET(printk_ringbuffer.fail)=80",
    "SIZE(prb_desc_ring)=48",
    "OFFSET(prb_desc_ring.count_bits)=0",
    "OFFSET(prb_desc_ring.descs)=8",
    "OFFSET(prb_desc_ring.infos)=16",
    "OFFSET(prb_desc_ring.head_id)=24",
    "OFFSET(prb_desc_ring.tail_id)=32",
    "SIZE(prb_desc)=24",
    "OFFSET(prb_desc.state_var)=0",
    "OFFSET(prb_desc.text_blk_lpos)=8",
    "SIZE(prb_data_blk_lpos)=16",
    "OFFSET(prb_data_blk_lpos.begin)=0",
    "OFFSET(prb_data_blk_lpos.next)=8",
    "SIZE(printk_info)=88",
    "OFFSET(printk_info.seq)=0",
    "OFFSET(printk_info.ts_nsec)=8",
    "OFFSET(printk_info.text_len)=16",
];

/// `printk_info.dev_info` and its fields (5.10+).
pub(crate) const RB_DEV_INFO: &[&str] = &[
    "OFFSET(printk_info.dev_info)=24",
    "SIZE(dev_printk_info)=64",
    "OFFSET(dev_printk_info.subsystem)=0",
    "LENGTH(printk_info_subsystem)=16",
    "OFFSET(dev_printk_info.device)=16",
    "LENGTH(printk_info_device)=48",
];

/// The text data ring and `atomic_long_t`.
pub(crate) const RB_DATA_RING: &[&str] = &[
    "SIZE(prb_data_ring)=32",
    "OFFSET(prb_data_ring.size_bits)=0",
    "OFFSET(prb_data_ring.data)=8",
    "OFFSET(prb_data_ring.head_lpos)=16",
    "OFFSET(prb_data_ring.tail_lpos)=24",
    "SIZE(atomic_long_t)=8",
    "OFFSET(atomic_long_t.counter)=0",
];

/// One message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Timestamp.
    pub ts_nsec: u64,
    /// Text.
    pub text: Vec<u8>,
    /// Syslog level.
    pub level: u8,
    /// Syslog facility.
    pub facility: u8,
    /// Caller id.
    pub caller_id: u32,
    /// `dev_printk` subsystem (empty: none).
    pub subsystem: String,
    /// `dev_printk` device (empty: none).
    pub device: String,
}

impl Msg {
    /// A kernel message at level 6 from task 1.
    pub fn new(ts_nsec: u64, text: &[u8]) -> Msg {
        Msg {
            ts_nsec,
            text: text.to_vec(),
            level: 6,
            facility: 0,
            caller_id: 1,
            subsystem: String::new(),
            device: String::new(),
        }
    }

    /// The same message from a `dev_printk()`.
    pub fn dev(mut self, subsystem: &str, device: &str) -> Msg {
        self.subsystem = subsystem.into();
        self.device = device.into();
        self
    }

    /// The same message from another caller.
    pub fn caller(mut self, caller_id: u32) -> Msg {
        self.caller_id = caller_id;
        self
    }
}

/// Bytes at a virtual address and the VMCOREINFO lines describing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Virtual address of `bytes[0]`.
    pub base: u64,
    /// The memory.
    pub bytes: Vec<u8>,
    /// VMCOREINFO text (`KEY=VALUE` lines).
    pub vmcoreinfo: String,
}

impl Image {
    fn new(base: u64, size: usize) -> Image {
        Image { base, bytes: vec![0; size], vmcoreinfo: String::new() }
    }

    /// Reads memory as vmcore-kernel's printk readers do: an error outside the image.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        let src = addr
            .checked_sub(self.base)
            .and_then(|off| usize::try_from(off).ok())
            .and_then(|off| self.bytes.get(off..off.checked_add(buf.len())?))
            .ok_or_else(|| format!("no memory at {addr:#x} (+{:#x})", buf.len()))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    /// Writes `data` at virtual address `addr`, growing the image if needed.
    pub fn put(&mut self, addr: u64, data: &[u8]) {
        let off = addr.wrapping_sub(self.base) as usize;
        let end = off.saturating_add(data.len());
        if end > self.bytes.len() {
            self.bytes.resize(end, 0);
        }
        if let Some(dst) = self.bytes.get_mut(off..end) {
            dst.copy_from_slice(data);
        }
    }

    /// Writes a little-endian `u64`.
    pub fn put_u64(&mut self, addr: u64, v: u64) {
        self.put(addr, &v.to_le_bytes());
    }

    /// Writes a little-endian `u32`.
    pub fn put_u32(&mut self, addr: u64, v: u32) {
        self.put(addr, &v.to_le_bytes());
    }

    /// Writes a little-endian `u16`.
    pub fn put_u16(&mut self, addr: u64, v: u16) {
        self.put(addr, &v.to_le_bytes());
    }

    /// A little-endian `u64` of the image (0 outside).
    pub fn get_u64(&self, addr: u64) -> u64 {
        let mut b = [0u8; 8];
        let _ = self.read(addr, &mut b);
        u64::from_le_bytes(b)
    }

    fn line(&mut self, l: impl AsRef<str>) {
        self.vmcoreinfo.push_str(l.as_ref());
        self.vmcoreinfo.push('\n');
    }
}

/// Descriptor states as stored in the top bits of `state_var`.
pub const STATE_RESERVED: u64 = 0;
/// Committed.
pub const STATE_COMMITTED: u64 = 1;
/// Finalized.
pub const STATE_FINALIZED: u64 = 2;
/// Reusable.
pub const STATE_REUSABLE: u64 = 3;

/// A lockless `printk_ringbuffer` (5.10+), with the layout of Linux 6.1 on x86_64.
#[derive(Debug, Clone)]
pub struct Ringbuffer {
    /// `log2` of the number of descriptors.
    pub count_bits: u32,
    /// `log2` of the text ring size.
    pub size_bits: u32,
    /// Id of the first message (the ids before it were never used).
    pub first_id: u64,
    /// Logical position of the first data block (a multiple of 8).
    pub first_lpos: u64,
    /// Sequence number of the first message.
    pub first_seq: u64,
    /// Export `OFFSET(printk_info.caller_id)`.
    pub caller_id_key: bool,
    /// Export the `dev_printk_info` keys.
    pub dev_info_keys: bool,
    /// `clear_seq` is a `struct latched_seq` (5.13+), else a `u64`.
    pub latched: bool,
    /// The value of `clear_seq`.
    pub clear_seq: u64,
    /// State of the newest descriptor (finalized unless a crash caught it being written).
    pub last_state: u64,
}

impl Default for Ringbuffer {
    fn default() -> Ringbuffer {
        Ringbuffer {
            count_bits: 5,
            size_bits: 10,
            first_id: 0,
            first_lpos: 0,
            first_seq: 0,
            caller_id_key: true,
            dev_info_keys: true,
            latched: true,
            clear_seq: 0,
            last_state: STATE_FINALIZED,
        }
    }
}

/// Where a built ring buffer put things.
#[derive(Debug, Clone)]
pub struct RbImage {
    /// The memory and VMCOREINFO.
    pub image: Image,
    /// `struct printk_ringbuffer`.
    pub rb: u64,
    /// The descriptor array.
    pub descs: u64,
    /// The info array.
    pub infos: u64,
    /// The text data ring.
    pub data: u64,
    /// Id and sequence number of each message still readable, oldest first.
    pub kept: Vec<(u64, u64)>,
    /// `head_id`.
    pub head_id: u64,
    /// `tail_id`.
    pub tail_id: u64,
}

/// `sizeof(struct prb_desc)`.
pub const DESC_SIZE: u64 = 24;
/// `sizeof(struct printk_info)`.
pub const INFO_SIZE: u64 = 88;

impl RbImage {
    /// Address of descriptor `id`.
    pub fn desc(&self, id: u64, count_bits: u32) -> u64 {
        self.descs + (id & ((1 << count_bits) - 1)) * DESC_SIZE
    }

    /// Address of the info of `id`.
    pub fn info(&self, id: u64, count_bits: u32) -> u64 {
        self.infos + (id & ((1 << count_bits) - 1)) * INFO_SIZE
    }
}

fn align8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

impl Ringbuffer {
    /// Stores `msgs` as the kernel would (pushing out the oldest data and descriptors as
    /// the rings fill), at virtual address `base`.
    pub fn build(&self, msgs: &[Msg], base: u64) -> RbImage {
        let count = 1u64 << self.count_bits;
        let size = 1u64 << self.size_bits;
        let rb = base + 0x100;
        let clear = base + 0x40;
        let descs = base + 0x1000;
        let infos = (descs + count * DESC_SIZE).next_multiple_of(0x1000);
        let data = (infos + count * INFO_SIZE).next_multiple_of(0x1000);
        let mut img = Image::new(base, (data + size - base) as usize);
        img.put_u64(base, rb);

        // Like prb_init(): the descriptor before the first id is reusable.
        let mut tail = self.first_id.wrapping_sub(1) & DESC_ID_MASK;
        let mut head = tail;
        let sv = |id: u64, st: u64| (id & DESC_ID_MASK) | (st << 62);
        let desc_at = |id: u64| descs + (id & (count - 1)) * DESC_SIZE;
        let info_at = |id: u64| infos + (id & (count - 1)) * INFO_SIZE;
        img.put_u64(desc_at(tail), sv(tail, STATE_REUSABLE));
        img.put_u64(desc_at(tail) + 8, 1);
        img.put_u64(desc_at(tail) + 16, 1);
        let mut lpos = self.first_lpos;
        // (id, begin lpos (None: no data), seq) of records whose descriptor is not reusable.
        let mut live: Vec<(u64, Option<u64>, u64)> = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let id = self.first_id.wrapping_add(i as u64) & DESC_ID_MASK;
            let seq = self.first_seq + i as u64;
            // desc_reserve(): push the tail when the descriptor ring is full.
            if (id.wrapping_sub(tail) & DESC_ID_MASK) >= count {
                img.put_u64(desc_at(tail), sv(tail, STATE_REUSABLE));
                live.retain(|&(lid, _, _)| lid != tail);
                tail = tail.wrapping_add(1) & DESC_ID_MASK;
            }
            let (begin, next, at) = if m.text.is_empty() {
                (3, 3, None)
            } else {
                let bsize = align8(8 + m.text.len() as u64);
                let begin = lpos;
                let mut next = begin + bsize;
                let mut at = begin & (size - 1);
                if begin >> self.size_bits != next >> self.size_bits {
                    next = (next & !(size - 1)) + bsize;
                    at = 0;
                }
                lpos = next;
                (begin, next, Some(at))
            };
            // data_push_tail(): data overwritten by this block makes its record reusable.
            if at.is_some() {
                let oldest_kept = next.saturating_sub(size);
                for &(lid, lbegin, _) in &live {
                    if lbegin.is_some_and(|b| b < oldest_kept) {
                        img.put_u64(desc_at(lid), sv(lid, STATE_REUSABLE));
                    }
                }
                live.retain(|&(_, lbegin, _)| lbegin.is_none_or(|b| b >= oldest_kept));
            }
            if let Some(at) = at {
                if at == 0 && begin & (size - 1) != 0 {
                    img.put_u64(data + (begin & (size - 1)), id);
                }
                img.put_u64(data + at, id);
                img.put(data + at + 8, &m.text);
                live.push((id, Some(begin), seq));
            } else {
                live.push((id, None, seq));
            }
            let d = desc_at(id);
            img.put_u64(d, sv(id, STATE_FINALIZED));
            img.put_u64(d + 8, begin);
            img.put_u64(d + 16, next);
            let inf = info_at(id);
            img.put(inf, &[0; INFO_SIZE as usize]);
            img.put_u64(inf, seq);
            img.put_u64(inf + 8, m.ts_nsec);
            img.put_u16(inf + 16, m.text.len() as u16);
            img.put(inf + 18, &[m.facility, 2 | (m.level << 5)]);
            img.put_u32(inf + 20, m.caller_id);
            img.put(inf + 24, m.subsystem.as_bytes().get(..15).unwrap_or(m.subsystem.as_bytes()));
            img.put(inf + 40, m.device.as_bytes().get(..47).unwrap_or(m.device.as_bytes()));
            head = id;
        }
        if !msgs.is_empty() {
            img.put_u64(desc_at(head), sv(head, self.last_state));
        }
        // struct printk_ringbuffer
        img.put_u32(rb, self.count_bits);
        img.put_u64(rb + 8, descs);
        img.put_u64(rb + 16, infos);
        img.put_u64(rb + 24, head);
        img.put_u64(rb + 32, tail);
        img.put_u32(rb + 48, self.size_bits);
        img.put_u64(rb + 56, data);
        img.put_u64(rb + 64, lpos);
        img.put_u64(rb + 72, lpos.saturating_sub(size));
        if self.latched {
            // An odd latch sequence: the reader must take val[1].
            img.put_u32(clear, 3);
            img.put_u64(clear + 8, u64::MAX);
            img.put_u64(clear + 16, self.clear_seq);
        } else {
            img.put_u64(clear, self.clear_seq);
        }

        img.line("OSRELEASE=6.1.0-synthetic");
        img.line("PAGESIZE=4096");
        img.line(format!("SYMBOL(prb)={base:x}"));
        img.line(format!("SYMBOL(clear_seq)={clear:x}"));
        for l in RB_CORE {
            img.line(*l);
        }
        if self.caller_id_key {
            img.line("OFFSET(printk_info.caller_id)=20");
        }
        if self.dev_info_keys {
            for l in RB_DEV_INFO {
                img.line(*l);
            }
        }
        for l in RB_DATA_RING {
            img.line(*l);
        }
        if self.latched {
            img.line("SIZE(latched_seq)=24");
            img.line("OFFSET(latched_seq.val)=8");
        }
        let head_readable = matches!(self.last_state, STATE_COMMITTED | STATE_FINALIZED);
        let kept = live
            .iter()
            .filter(|&&(id, begin, _)| begin.is_some() && (id != head || head_readable))
            .map(|&(id, _, seq)| (id, seq))
            .collect();
        RbImage { image: img, rb, descs, infos, data, kept, head_id: head, tail_id: tail }
    }
}

/// A `log_buf` of variable-length `struct printk_log` records (3.5-5.9).
#[derive(Debug, Clone)]
pub struct PrintkLog {
    /// `log_buf_len`.
    pub buf_len: u32,
    /// `CONFIG_PRINTK_CALLER` (5.1+): a `u32 caller_id` in the header, and its key.
    pub caller_id: bool,
    /// Name the struct `log` (before 3.11) instead of `printk_log`.
    pub old_name: bool,
    /// Export `OFFSET(printk_log.dict_len)`.
    pub dict_len_key: bool,
    /// Record alignment (`LOG_ALIGN`: 4 or 8).
    pub align: u32,
}

impl Default for PrintkLog {
    fn default() -> PrintkLog {
        PrintkLog { buf_len: 1024, caller_id: false, old_name: false, dict_len_key: true, align: 8 }
    }
}

/// Where a built `printk_log` buffer put things.
#[derive(Debug, Clone)]
pub struct LogImage {
    /// The memory and VMCOREINFO.
    pub image: Image,
    /// The buffer.
    pub buf: u64,
    /// `log_first_idx`'s variable.
    pub first_idx: u64,
    /// `log_next_idx`'s variable.
    pub next_idx: u64,
    /// `clear_idx`'s variable.
    pub clear_idx: u64,
    /// Index of each message still in the buffer, and its number in `msgs`, oldest first.
    pub kept: Vec<(u32, usize)>,
    /// Header size.
    pub hdr: u32,
}

impl PrintkLog {
    /// Header size.
    pub fn hdr(&self) -> u32 {
        if self.caller_id {
            24
        } else {
            16
        }
    }

    /// Stores `msgs` as `log_store()` does (dropping the oldest when full, wrapping with a
    /// zero-length marker); `clear` is the message `dmesg -c` left `clear_idx` at.
    pub fn build(&self, msgs: &[Msg], base: u64, clear: usize) -> LogImage {
        let hdr = self.hdr();
        let len = self.buf_len;
        let buf = base + 0x1000;
        let mut img = Image::new(base, 0x1000 + len as usize);
        img.put_u64(base, buf);
        img.put_u32(base + 8, len);
        let (mut first, mut next) = (0u32, 0u32);
        // (idx, message number) of stored records, oldest first.
        let mut stored: Vec<(u32, usize)> = Vec::new();
        let mut clear_idx = 0u32;
        let rec_len = |img: &Image, idx: u32| -> u32 {
            let mut b = [0u8; 2];
            let _ = img.read(buf + u64::from(idx) + 8, &mut b);
            u32::from(u16::from_le_bytes(b))
        };
        let log_next = |img: &Image, idx: u32| -> u32 {
            match rec_len(img, idx) {
                0 => rec_len(img, 0),
                l => idx + l,
            }
        };
        for (i, m) in msgs.iter().enumerate() {
            let dict = dict_of(m);
            let mut size = hdr + m.text.len() as u32 + dict.len() as u32;
            size = size.next_multiple_of(self.align);
            // log_make_free_space()
            let has_space = |first: u32, next: u32, empty: bool| {
                let free = if next > first || empty { (len - next).max(first) } else { first - next };
                free >= size + hdr
            };
            while !stored.is_empty() && !has_space(first, next, false) {
                first = log_next(&img, first);
                stored.remove(0);
            }
            if next + size + hdr > len {
                img.put(buf + u64::from(next), &vec![0; hdr as usize]);
                next = 0;
            }
            let at = buf + u64::from(next);
            img.put_u64(at, m.ts_nsec);
            img.put_u16(at + 8, size as u16);
            img.put_u16(at + 10, m.text.len() as u16);
            img.put_u16(at + 12, dict.len() as u16);
            img.put(at + 14, &[m.facility, 2 | (m.level << 5)]);
            if self.caller_id {
                img.put_u32(at + 16, m.caller_id);
            }
            img.put(at + u64::from(hdr), &m.text);
            img.put(at + u64::from(hdr) + m.text.len() as u64, &dict);
            if i == clear {
                clear_idx = next;
            }
            stored.push((next, i));
            next += size;
        }
        match stored.first() {
            _ if clear >= msgs.len() => clear_idx = next,
            Some(&(idx, n)) if n > clear => clear_idx = idx,
            _ => {}
        }
        if stored.is_empty() {
            first = next;
        }
        let (fi, ni, ci) = (base + 0x10, base + 0x14, base + 0x18);
        img.put_u32(fi, first);
        img.put_u32(ni, next);
        img.put_u32(ci, clear_idx);
        let name = if self.old_name { "log" } else { "printk_log" };
        img.line("OSRELEASE=4.19.0-synthetic");
        img.line("PAGESIZE=4096");
        img.line(format!("SYMBOL(log_buf)={base:x}"));
        img.line(format!("SYMBOL(log_buf_len)={:x}", base + 8));
        img.line(format!("SYMBOL(log_first_idx)={fi:x}"));
        img.line(format!("SYMBOL(clear_idx)={ci:x}"));
        img.line(format!("SYMBOL(log_next_idx)={ni:x}"));
        img.line(format!("SIZE({name})={hdr}"));
        img.line(format!("OFFSET({name}.ts_nsec)=0"));
        img.line(format!("OFFSET({name}.len)=8"));
        img.line(format!("OFFSET({name}.text_len)=10"));
        if self.dict_len_key {
            img.line(format!("OFFSET({name}.dict_len)=12"));
        }
        if self.caller_id {
            img.line(format!("OFFSET({name}.caller_id)=16"));
        }
        LogImage { image: img, buf, first_idx: fi, next_idx: ni, clear_idx: ci, kept: stored, hdr }
    }
}

/// The dictionary `dev_printk()` stores after the text.
fn dict_of(m: &Msg) -> Vec<u8> {
    let mut d = Vec::new();
    if !m.subsystem.is_empty() {
        d.extend_from_slice(b"SUBSYSTEM=");
        d.extend_from_slice(m.subsystem.as_bytes());
    }
    if !m.device.is_empty() {
        if !d.is_empty() {
            d.push(0);
        }
        d.extend_from_slice(b"DEVICE=");
        d.extend_from_slice(m.device.as_bytes());
    }
    d
}

/// The plain character `log_buf` of kernels before 3.5.
#[derive(Debug, Clone)]
pub struct Plain {
    /// `log_buf_len` (a power of two).
    pub buf_len: u32,
    /// `OSRELEASE` (before 2.6.25 `log_end` is an `unsigned long`).
    pub release: String,
}

impl Default for Plain {
    fn default() -> Plain {
        Plain { buf_len: 256, release: "2.6.32-5-amd64".into() }
    }
}

impl Plain {
    /// Writes `text` through the ring as `emit_log_char()` does, at `base`.
    pub fn build(&self, text: &[u8], base: u64) -> Image {
        let buf = base + 0x1000;
        let mut img = Image::new(base, 0x1000 + self.buf_len as usize);
        img.put_u64(base, buf);
        img.put_u32(base + 8, self.buf_len);
        let mask = u64::from(self.buf_len) - 1;
        for (i, &c) in text.iter().enumerate() {
            img.put(buf + (i as u64 & mask), &[c]);
        }
        // `log_end` became an unsigned long in 2.6.25.
        let mut numbers = self.release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
        let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        if version < (2, 6, 25) {
            img.put_u64(base + 0x10, text.len() as u64);
        } else {
            // An unsigned int, with a neighbour variable after it that must not be read.
            img.put_u32(base + 0x10, text.len() as u32);
            img.put_u32(base + 0x14, 0xdead_beef);
        }
        img.line(format!("OSRELEASE={}", self.release));
        img.line("PAGESIZE=4096");
        img.line(format!("SYMBOL(log_buf)={base:x}"));
        img.line(format!("SYMBOL(log_end)={:x}", base + 0x10));
        img.line(format!("SYMBOL(log_buf_len)={:x}", base + 8));
        img
    }
}
