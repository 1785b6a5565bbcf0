//! Parsers for the files Linux crash dumps come in.
//!
//! * [`elf`]: ELF64 cores (/proc/vmcore, ELF vmcores, /proc/kcore),
//! * [`kdump`]: kdump-compressed files ("KDUMP   ", "DISKDUMP"), header versions 0-6,
//! * [`flat`]: flattened streams (`makedumpfile -F`), read in place through an index,
//! * [`codec`]: the page codecs (zlib, LZO1X, snappy, zstd).
//!
//! The parsers read through [`vmcore_types::ReadAt`] and never load page data up front;
//! every length taken from a header is checked against the file before it is allocated.
//! [`detect`] tells the formats apart by their first bytes.
#![deny(missing_docs)]

pub mod bitmap;
pub mod codec;
pub mod elf;
mod error;
pub mod flat;
pub mod kdump;
pub mod raw;
mod source;

pub use error::{Error, Result};
pub use source::FileSource;

use vmcore_types::ReadAt;

/// The container format of a dump file, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ELF64 core.
    Elf,
    /// kdump-compressed.
    Kdump,
    /// Flattened stream (of a kdump-compressed or ELF file).
    Flattened,
}

/// Tells the format of `src` from its magic bytes.
pub fn detect(src: &dyn ReadAt) -> Result<Format> {
    let mut head = [0u8; 16];
    let n = head.len().min(usize::try_from(src.size()).unwrap_or(usize::MAX));
    let head = head.get_mut(..n).unwrap_or_default();
    error::read_exact(src, head, 0, "file signature")?;
    if head.starts_with(b"\x7fELF") {
        Ok(Format::Elf)
    } else if kdump::is_kdump_signature(head) {
        Ok(Format::Kdump)
    } else if flat::is_flat_signature(head) {
        Ok(Format::Flattened)
    } else if head.starts_with(b"sadump") || head.get(..4) == Some(b"sadu") {
        Err(Error::Unsupported("sadump files".into()))
    } else if head.is_empty() {
        // QEMU leaves one when its dump job fails (win-dmp without VMCOREINFO, say).
        Err(Error::invalid("file signature", 0, "the file is empty: expected a dump"))
    } else {
        Err(Error::invalid(
            "file signature",
            0,
            format!(
                "{:02x?}: expected an ELF core, \"KDUMP   \", \"DISKDUMP\" or a \"makedumpfile\" flattened stream",
                head
            ),
        ))
    }
}
