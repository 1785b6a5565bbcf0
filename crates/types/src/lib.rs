//! Shared vocabulary of the vmcore crates.
//!
//! Every layer reads through [`ReadAt`] (positioned, `&self`, so one opened dump can serve
//! many threads) and names addresses with the newtypes here, so that a physical address,
//! a page frame number and a file offset cannot be mixed up across crate boundaries.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::io;

pub mod ordered;

/// A physical address in the dumped machine.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u64);

/// A page frame number: a physical address divided by the dump's page size.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(pub u64);

impl PhysAddr {
    /// The page frame holding this address.
    pub fn pfn(self, page_shift: u32) -> Pfn {
        Pfn(self.0 >> page_shift)
    }
    /// Byte offset of this address inside its page.
    pub fn page_offset(self, page_size: u64) -> u64 {
        self.0 & (page_size - 1)
    }
}

impl Pfn {
    /// First physical address of this page frame, or `None` when it overflows 64 bits.
    pub fn to_phys(self, page_shift: u32) -> Option<PhysAddr> {
        self.0.checked_mul(1u64 << page_shift).map(PhysAddr)
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}
impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}
impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Positioned reads from a byte source: a mapped file, a file read with `pread`, or a view
/// (a flattened stream seen through its offset index).
///
/// | implementation | backing | `Sync` |
/// |---|---|---|
/// | `vmcore_formats::FileSource` (pread) | dump files, /proc/kcore, /proc/vmcore, devices | yes |
/// | `vmcore_formats::FlatView` | flattened stream, via chunk index | yes |
/// | `&[u8]`, `Vec<u8>` | memory (tests) | yes |
pub trait ReadAt: Send + Sync {
    /// Fill `buf` with the bytes at `offset`. Fails with `UnexpectedEof` when the source
    /// ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Size of the source in bytes (for /proc/kcore: the size stat reports).
    fn size(&self) -> u64;
}

impl fmt::Debug for dyn ReadAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadAt({} bytes)", self.size())
    }
}

fn read_slice_at(data: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let start = usize::try_from(offset).map_err(|_| eof())?;
    let end = start.checked_add(buf.len()).ok_or_else(eof)?;
    let src = data.get(start..end).ok_or_else(eof)?;
    buf.copy_from_slice(src);
    Ok(())
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the source")
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_slice_at(self, buf, offset)
    }
    fn size(&self) -> u64 {
        self.len() as u64
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_slice_at(self, buf, offset)
    }
    fn size(&self) -> u64 {
        self.len() as u64
    }
}

impl<T: ReadAt + ?Sized> ReadAt for std::sync::Arc<T> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
}

/// Reads a little- or big-endian integer out of a byte slice without indexing that can
/// panic: a short slice gives `None`.
pub mod bytes {
    /// `u8` at `off`.
    pub fn u8_at(b: &[u8], off: usize) -> Option<u8> {
        b.get(off).copied()
    }
    /// `u16` at `off`.
    pub fn u16_at(b: &[u8], off: usize, big_endian: bool) -> Option<u16> {
        let a: [u8; 2] = b.get(off..off.checked_add(2)?)?.try_into().ok()?;
        Some(if big_endian { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    }
    /// `u32` at `off`.
    pub fn u32_at(b: &[u8], off: usize, big_endian: bool) -> Option<u32> {
        let a: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }
    /// `u64` at `off`.
    pub fn u64_at(b: &[u8], off: usize, big_endian: bool) -> Option<u64> {
        let a: [u8; 8] = b.get(off..off.checked_add(8)?)?.try_into().ok()?;
        Some(if big_endian { u64::from_be_bytes(a) } else { u64::from_le_bytes(a) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_reads_stop_at_the_end() {
        let data = vec![1u8, 2, 3, 4];
        let mut buf = [0u8; 2];
        data.read_exact_at(&mut buf, 2).unwrap();
        assert_eq!(buf, [3, 4]);
        assert_eq!(data.read_exact_at(&mut buf, 3).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert!(data.read_exact_at(&mut buf, u64::MAX).is_err());
    }

    #[test]
    fn pfn_and_address_conversions() {
        assert_eq!(PhysAddr(0x12345).pfn(12), Pfn(0x12));
        assert_eq!(PhysAddr(0x12345).page_offset(4096), 0x345);
        assert_eq!(Pfn(0x12).to_phys(12), Some(PhysAddr(0x12000)));
        assert_eq!(Pfn(u64::MAX).to_phys(12), None);
        assert_eq!(bytes::u32_at(&[1, 0, 0, 0, 9], 0, false), Some(1));
        assert_eq!(bytes::u32_at(&[0, 0, 0, 1], 0, true), Some(1));
        assert_eq!(bytes::u64_at(&[0; 7], 0, false), None);
    }
}
