use std::io;

/// Errors of the format parsers. Each names the offset in the file and what was expected
/// there; the path is added by [`Error::in_file`] at the place that opened the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened.
    #[error("cannot open: {0}")]
    Open(io::Error),
    /// An I/O error other than a short read.
    #[error("I/O error at offset {offset:#x} while reading {what}: {cause}")]
    Io {
        /// What was being read.
        what: &'static str,
        /// File offset of the read.
        offset: u64,
        /// The OS error.
        cause: io::Error,
    },
    /// The file ends before a structure that its headers promise.
    #[error("truncated: expected {what} ({len} bytes) at offset {offset:#x}, but the file ends first")]
    Truncated {
        /// The structure that is missing.
        what: &'static str,
        /// Where it should be.
        offset: u64,
        /// How many bytes were wanted.
        len: u64,
    },
    /// A header field holds a value no valid file has.
    #[error("invalid {what} at offset {offset:#x}: {detail}")]
    Invalid {
        /// The structure or field.
        what: &'static str,
        /// Where it is.
        offset: u64,
        /// What is wrong with it and what was expected.
        detail: String,
    },
    /// The file is of a kind this build does not read.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A compressed page did not decompress to exactly one page.
    #[error("pfn {pfn:#x}: {codec} data at offset {offset:#x} ({len} bytes) is corrupt: {detail}")]
    Decompress {
        /// Page frame number.
        pfn: u64,
        /// Codec named by the page descriptor.
        codec: &'static str,
        /// File offset of the compressed data.
        offset: u64,
        /// Stored length.
        len: u32,
        /// What the decompressor said.
        detail: String,
    },
    /// Context: the file the error happened in.
    #[error("{path}: {inner}")]
    InFile {
        /// The file.
        path: String,
        /// The underlying error.
        inner: Box<Error>,
    },
}

impl Error {
    /// Wraps the error with the path of the file it happened in.
    pub fn in_file(self, path: impl Into<String>) -> Error {
        Error::InFile { path: path.into(), inner: Box::new(self) }
    }

    /// Classifies an I/O error of a read of `len` bytes of `what` at `offset`: a short read
    /// becomes [`Error::Truncated`].
    pub fn from_io(what: &'static str, offset: u64, len: u64, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            Error::Truncated { what, offset, len }
        } else {
            Error::Io { what, offset, cause: source }
        }
    }

    pub(crate) fn invalid(what: &'static str, offset: u64, detail: impl Into<String>) -> Error {
        Error::Invalid { what, offset, detail: detail.into() }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Reads exactly `buf.len()` bytes at `offset`, turning a short read into
/// [`Error::Truncated`] that names `what`.
pub(crate) fn read_exact(
    src: &dyn vmcore_types::ReadAt,
    buf: &mut [u8],
    offset: u64,
    what: &'static str,
) -> Result<()> {
    src.read_exact_at(buf, offset).map_err(|e| Error::from_io(what, offset, buf.len() as u64, e))
}

/// Reads `len` bytes at `offset` into a new buffer, after checking that the source is long
/// enough, so that a corrupt length never allocates more than the file holds.
pub(crate) fn read_vec(src: &dyn vmcore_types::ReadAt, offset: u64, len: u64, what: &'static str) -> Result<Vec<u8>> {
    let end = offset.checked_add(len).ok_or(Error::Truncated { what, offset, len })?;
    if end > src.size() {
        return Err(Error::Truncated { what, offset, len });
    }
    let n = usize::try_from(len).map_err(|_| Error::Truncated { what, offset, len })?;
    let mut buf = vec![0u8; n];
    read_exact(src, &mut buf, offset, what)?;
    Ok(buf)
}
