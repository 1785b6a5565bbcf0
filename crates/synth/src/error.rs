use std::io;

/// Errors of the synthetic dump writers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The description of the dump to write is inconsistent.
    #[error("invalid dump description: {0}")]
    Spec(String),
    /// A codec failed to compress a page.
    #[error("{codec} failed to compress page {pfn:#x}: {detail}")]
    Compress {
        /// Codec name.
        codec: &'static str,
        /// Page frame number.
        pfn: u64,
        /// What the compressor said.
        detail: String,
    },
    /// Writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    pub(crate) fn spec(detail: impl Into<String>) -> Error {
        Error::Spec(detail.into())
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
