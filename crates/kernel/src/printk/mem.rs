//! Bounded reads of dumped memory for the log readers.

use vmcore_types::bytes::{u32_at, u64_at};

use super::{Error, ReadMem};

/// A failed read of a [`Window`]: where, and why (shared, so failing again is cheap).
#[derive(Debug, Clone)]
pub struct Failure {
    /// First address of the read.
    pub addr: u64,
    /// The reader's message.
    pub cause: std::rc::Rc<str>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}: {}", self.addr, self.cause)
    }
}

/// Bytes a [`Window`] reads at once.
pub const CHUNK: usize = 64 << 10;

/// Reads `buf.len()` bytes at `addr`.
pub fn read_exact(mem: ReadMem<'_>, addr: u64, buf: &mut [u8], what: &str) -> Result<(), Error> {
    mem(addr, buf).map_err(|cause| Error::Read { what: what.into(), addr, cause })
}

/// A little-endian `u64` at `addr`.
pub fn read_u64(mem: ReadMem<'_>, addr: u64, what: &str) -> Result<u64, Error> {
    let mut b = [0u8; 8];
    read_exact(mem, addr, &mut b, what)?;
    Ok(u64::from_le_bytes(b))
}

/// A little-endian `u32` at `addr`.
pub fn read_u32(mem: ReadMem<'_>, addr: u64, what: &str) -> Result<u32, Error> {
    let mut b = [0u8; 4];
    read_exact(mem, addr, &mut b, what)?;
    Ok(u32::from_le_bytes(b))
}

/// A `u64` field of a buffer read from the dump (0 past its end: callers check layouts
/// against the struct sizes first).
pub fn le64(b: &[u8], off: usize) -> u64 {
    u64_at(b, off, false).unwrap_or(0)
}

/// A `u32` field.
pub fn le32(b: &[u8], off: usize) -> u32 {
    u32_at(b, off, false).unwrap_or(0)
}

/// A `u16` field.
pub fn le16(b: &[u8], off: usize) -> u16 {
    vmcore_types::bytes::u16_at(b, off, false).unwrap_or(0)
}

/// A `u8` field.
pub fn byte(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// A read-through cache over one region of memory (an array, a ring): reads [`CHUNK`]
/// bytes at a time so that walking a ring costs a few large reads, not one per record.
/// Where a chunk cannot be read (a page excluded by filtering), it falls back to exact
/// reads of what is asked, so one bad page costs only the records on it.
pub struct Window<'a> {
    mem: ReadMem<'a>,
    base: u64,
    len: u64,
    start: u64,
    data: Vec<u8>,
    bad: Option<(u64, u64)>,
    dead: Option<(u64, std::rc::Rc<str>)>,
}

/// Granularity at which memory is missing from a dump (its smallest page size).
const PAGE: u64 = 4096;

impl std::fmt::Debug for Window<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Window {{ base: {:#x}, len: {:#x} }}", self.base, self.len)
    }
}

impl<'a> Window<'a> {
    /// The region `[base, base + len)`.
    pub fn new(mem: ReadMem<'a>, base: u64, len: u64) -> Window<'a> {
        Window { mem, base, len, start: 0, data: Vec::new(), bad: None, dead: None }
    }

    /// Size of the region.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `n` bytes at offset `off` of the region; an error names the address and the cause
    /// (also when the range leaves the region).
    pub fn get(&mut self, off: u64, n: usize) -> Result<&[u8], Failure> {
        let end = off.checked_add(n as u64).filter(|&e| e <= self.len).ok_or_else(|| Failure {
            addr: self.base.wrapping_add(off),
            cause: format!("{n} bytes at offset {off:#x} leave the {:#x}-byte region at {:#x}", self.len, self.base)
                .into(),
        })?;
        let cached_end = self.start + self.data.len() as u64;
        if off < self.start || end > cached_end {
            let addr = self.base.wrapping_add(off);
            // A page known to be unreadable fails again without asking (a corrupt ring
            // can point millions of descriptors at one missing page).
            if let Some((page, why)) = &self.dead {
                if addr / PAGE == *page && addr.wrapping_add((n as u64).saturating_sub(1)) / PAGE == *page {
                    return Err(Failure { addr, cause: why.clone() });
                }
            }
            let in_bad = self.bad.is_some_and(|(s, e)| off < e && end > s);
            let want = if in_bad { n as u64 } else { (n.max(CHUNK) as u64).min(self.len - off) };
            self.data.clear();
            self.data.resize(want as usize, 0);
            if let Err(e) = (self.mem)(addr, &mut self.data) {
                if want == n as u64 {
                    self.data.clear();
                    return Err(self.fail(addr, n, e));
                }
                self.bad = Some((off, off + want));
                self.data.truncate(n);
                if let Err(e) = (self.mem)(addr, &mut self.data) {
                    self.data.clear();
                    return Err(self.fail(addr, n, e));
                }
            }
            self.start = off;
        }
        let from = (off - self.start) as usize;
        self.data
            .get(from..from + n)
            .ok_or_else(|| Failure { addr: self.base.wrapping_add(off), cause: "window bookkeeping".into() })
    }

    /// Remembers the page of a failed read that stays inside one page.
    fn fail(&mut self, addr: u64, n: usize, e: String) -> Failure {
        if n > 0 && addr / PAGE == addr.wrapping_add((n as u64).saturating_sub(1)) / PAGE {
            // Said of the page, since later reads of it name other addresses.
            let page = addr / PAGE;
            self.dead = Some((page, format!("its page {:#x} cannot be read ({e})", page * PAGE).into()));
        }
        Failure { addr, cause: e.into() }
    }
}
