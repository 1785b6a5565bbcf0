//! Bitmap chunks past a memory budget, kept in an unlinked temporary file.
//!
//! A machine with terabytes of RAM whose kept and excluded pages interleave everywhere
//! needs 32 MiB of bitmap per TiB, more than a kdump kernel can spare. The chunks past the
//! budget go to a file on the output's filesystem (not to /tmp, which in a kdump
//! initramfs is RAM), and are read back when a pass comes to them. Every pass goes
//! through the frames in order, so the chunks written out first are those a pass left
//! behind longest ago.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Bytes per word of a chunk.
const WORD_BYTES: usize = 8;

/// Where bitmaps keep the chunks that do not fit their memory budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitmapStorage {
    /// Directory of the temporary files.
    pub dir: PathBuf,
    /// Bytes of mixed chunks each bitmap keeps in memory (at least one chunk).
    pub memory: u64,
}

/// One bitmap's temporary file and the accounting of its chunks in memory.
pub(crate) struct Spill {
    pub(crate) storage: Arc<BitmapStorage>,
    /// Words per chunk.
    chunk_words: usize,
    /// Mixed chunks kept in memory at most.
    pub(crate) budget: usize,
    /// Mixed chunks in memory now.
    pub(crate) resident: usize,
    /// Next chunk the eviction looks at (a clock hand: it goes round in pfn order).
    pub(crate) hand: usize,
    /// Created at the first eviction.
    file: Option<File>,
    /// Why the file could not be created or written: the bitmap stays in memory from then
    /// on.
    stopped_by: Option<String>,
    /// The first chunk that could not be read back.
    lost: OnceLock<String>,
}

impl Spill {
    pub(crate) fn new(storage: Arc<BitmapStorage>, chunk_words: usize) -> Spill {
        let chunk_bytes = (chunk_words * WORD_BYTES) as u64;
        let budget = usize::try_from(storage.memory / chunk_bytes).unwrap_or(usize::MAX).max(1);
        Spill {
            storage,
            chunk_words,
            budget,
            resident: 0,
            hand: 0,
            file: None,
            stopped_by: None,
            lost: OnceLock::new(),
        }
    }

    /// Writes chunk `chunk`'s words; false when they must stay in memory.
    pub(crate) fn write(&mut self, chunk: usize, words: &[u64]) -> bool {
        if self.stopped() {
            return false;
        }
        let mut bytes = vec![0u8; self.chunk_words * WORD_BYTES];
        for (b, w) in bytes.chunks_exact_mut(WORD_BYTES).zip(words) {
            b.copy_from_slice(&w.to_le_bytes());
        }
        let pos = self.offset(chunk);
        if self.file.is_none() {
            match create_temp(&self.storage.dir) {
                Ok(f) => self.file = Some(f),
                Err(e) => self.stopped_by = Some(format!("{}: {e}", self.storage.dir.display())),
            }
        }
        let written = self.file.as_ref().map_or(Ok(()), |f| f.write_all_at(&bytes, pos));
        if let Err(e) = written {
            self.stopped_by = Some(format!("{}: {e}", self.storage.dir.display()));
        }
        !self.stopped()
    }

    /// Whether spilling has stopped.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped_by.is_some()
    }

    /// Why spilling stopped, if it did.
    pub(crate) fn stopped_by(&self) -> Option<&str> {
        self.stopped_by.as_deref()
    }

    /// Reads chunk `chunk`'s words back into `words`; clear if that fails (see `lost`).
    pub(crate) fn read(&self, chunk: usize, words: &mut [u64]) {
        let mut bytes = vec![0u8; self.chunk_words * WORD_BYTES];
        self.read_bytes(chunk, 0, &mut bytes);
        for (w, b) in words.iter_mut().zip(bytes.chunks_exact(WORD_BYTES)) {
            *w = u64::from_le_bytes(b.try_into().unwrap_or_default());
        }
    }

    /// Word `word` of chunk `chunk`.
    pub(crate) fn read_word(&self, chunk: usize, word: usize) -> u64 {
        let mut bytes = [0u8; WORD_BYTES];
        self.read_bytes(chunk, word * WORD_BYTES, &mut bytes);
        u64::from_le_bytes(bytes)
    }

    /// Where chunk `chunk` lies in the file.
    fn offset(&self, chunk: usize) -> u64 {
        chunk as u64 * (self.chunk_words * WORD_BYTES) as u64
    }

    fn read_bytes(&self, chunk: usize, at: usize, out: &mut [u8]) {
        let pos = self.offset(chunk) + at as u64;
        let result = match &self.file {
            Some(f) => f.read_exact_at(out, pos),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no file")),
        };
        if let Err(e) = result {
            out.fill(0);
            self.lost.get_or_init(|| {
                format!(
                    "reading back bitmap chunk {chunk} at offset {pos:#x} of a temporary file in {}: {e}",
                    self.storage.dir.display()
                )
            });
        }
    }

    pub(crate) fn lost(&self) -> Option<&str> {
        self.lost.get().map(String::as_str)
    }

    /// Records that chunks copied from another bitmap were lost there.
    pub(crate) fn mark_lost(&self, why: &str) {
        self.lost.get_or_init(|| why.to_string());
    }
}

/// An unlinked file in `dir`, mode 0600: O_TMPFILE, or a new name removed at once where
/// the filesystem lacks it.
fn create_temp(dir: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).mode(0o600);
    match options.clone().custom_flags(libc::O_TMPFILE).open(dir) {
        Ok(f) => return Ok(f),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR | libc::EOPNOTSUPP | libc::EINVAL)) => {}
        Err(e) => return Err(e),
    }
    for n in 0..100 {
        let path = dir.join(format!(".vmcore-bitmap-{}-{n}", std::process::id()));
        match options.clone().create_new(true).open(&path) {
            Ok(f) => {
                std::fs::remove_file(&path)?;
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary name"))
}
