//! Opening a dump file as a [`ReadAt`] source.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;

use vmcore_types::ReadAt;

/// A file opened for positioned reads: memory-mapped when it is a regular file that cannot
/// change under us, read with `pread` otherwise (/proc/kcore, /proc/vmcore, block devices).
#[derive(Debug)]
pub struct FileSource {
    file: File,
    map: Option<memmap2::Mmap>,
    size: u64,
}

impl FileSource {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> io::Result<FileSource> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let in_proc = path.starts_with("/proc");
        let size = if meta.file_type().is_block_device() { block_device_size(&file)? } else { meta.len() };
        let map = if meta.is_file() && !in_proc && size > 0 {
            // SAFETY: the mapping is read-only and private to this process. If another
            // process truncates the dump while we read it, an access past the new end
            // raises SIGBUS; dumps are written once and then only read, and /proc files
            // (which can change or are not mappable) are never mapped.
            #[allow(unsafe_code)]
            let m = unsafe { memmap2::Mmap::map(&file) };
            m.ok()
        } else {
            None
        };
        Ok(FileSource { file, map, size })
    }
}

fn block_device_size(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::End(0))
}

impl ReadAt for FileSource {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match &self.map {
            Some(m) => {
                let m: &[u8] = m;
                m.read_exact_at(buf, offset)
            }
            None => FileExt::read_exact_at(&self.file, buf, offset),
        }
    }
    fn size(&self) -> u64 {
        self.size
    }
}
