//! Opening a dump file as a [`ReadAt`] source.
//!
//! Reads are `pread`s into the caller's buffer. A memory map would save a copy, but every
//! page it touches counts in the resident set, and a dump writer in a kdump kernel must
//! keep its memory small whatever the dump size; the kernel's page cache does the caching.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;

use vmcore_types::ReadAt;

/// A file opened for positioned reads: a dump, /proc/kcore, /proc/vmcore or a device.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    size: u64,
}

impl FileSource {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> io::Result<FileSource> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let size = if meta.file_type().is_block_device() { block_device_size(&file)? } else { meta.len() };
        Ok(FileSource { file, size })
    }
}

fn block_device_size(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::End(0))
}

impl ReadAt for FileSource {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, offset)
    }
    fn size(&self) -> u64 {
        self.size
    }
}
