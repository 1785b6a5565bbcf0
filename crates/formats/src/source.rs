//! Opening a dump file as a [`ReadAt`] source.
//!
//! Reads are `pread`s into the caller's buffer, except on /proc/vmcore. A memory map of a
//! regular file would save a copy, but every page it touches counts in the resident set,
//! and the file could change or shrink under the map. /proc/vmcore is different: it maps
//! the crashed kernel's memory itself (no page cache, nothing in the resident set), that
//! memory never changes, and a `pread` of it costs the kernel a temporary mapping per page.
//! So /proc/vmcore is read through a few maps of [`WINDOW`] bytes, as makedumpfile does.
//!
//! /proc/kcore is read by one thread at a time: the kernel copies kernel memory through one
//! bounce page per open file (`file->private_data` in fs/proc/kcore.c), so two concurrent
//! reads of one descriptor can each return the other's bytes. `mem-usage` on a live VM
//! classified 4% of the pages wrongly before reads were serialised.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;
use std::sync::Mutex;

use vmcore_types::ReadAt;

/// Bytes of /proc/vmcore mapped at a time: the kernel builds the page tables of the whole
/// window when it is mapped, so a window is not larger than the reads need.
pub const WINDOW: u64 = 4 << 20;
/// Windows kept mapped: enough for each writer thread to read its own run of pages.
const WINDOWS: usize = 8;

/// A file opened for positioned reads: a dump, /proc/kcore, /proc/vmcore or a device.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    size: u64,
    /// Present for /proc/vmcore (see the module comment).
    maps: Option<Mutex<Windows>>,
    /// Present for /proc/kcore: held during each read (see the module comment).
    one_reader: Option<Mutex<()>>,
}

/// Mapped windows, most recently used last.
#[derive(Debug, Default)]
struct Windows {
    maps: Vec<(u64, memmap2::Mmap)>,
    /// Mapping failed once (a kernel without vmcore mmap): `pread` from then on.
    failed: bool,
}

impl FileSource {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> io::Result<FileSource> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let size = if meta.file_type().is_block_device() { block_device_size(&file)? } else { meta.len() };
        let canonical = path.canonicalize().ok();
        let is = |proc_file: &str| canonical.as_deref() == Some(Path::new(proc_file));
        Ok(FileSource {
            file,
            size,
            maps: is("/proc/vmcore").then(Mutex::default),
            // Also procfs mounted elsewhere (a container's /host/proc): any file named
            // kcore is read serially, which costs a regular file only speed.
            one_reader: (is("/proc/kcore") || path.file_name().is_some_and(|n| n == "kcore")).then(Mutex::default),
        })
    }

    /// Reads through the window that holds `[offset, offset + buf.len())`, mapping it if
    /// needed. Returns false when the range is not mappable (past the end, or the kernel
    /// refuses): the caller then reads it with `pread`.
    fn read_mapped(&self, maps: &Mutex<Windows>, buf: &mut [u8], offset: u64) -> bool {
        let start = offset / WINDOW * WINDOW;
        let end = offset.saturating_add(buf.len() as u64);
        if end > self.size || end > start + WINDOW {
            return false;
        }
        let Ok(mut w) = maps.lock() else { return false };
        if w.failed {
            return false;
        }
        let i = match w.maps.iter().position(|(s, _)| *s == start) {
            Some(i) => i,
            None => {
                let len = WINDOW.min(self.size - start);
                // SAFETY: this file is /proc/vmcore (checked in open). It is the crashed
                // kernel's memory and the ELF headers the kernel built for it: neither is
                // written while the kdump kernel runs, and the file never shrinks, so the
                // mapped bytes stay valid and unchanged for as long as the map exists (no
                // SIGBUS, no data race). The map is read-only.
                #[allow(unsafe_code)]
                let map = unsafe { memmap2::MmapOptions::new().offset(start).len(len as usize).map(&self.file) };
                match map {
                    Ok(map) => {
                        if w.maps.len() == WINDOWS {
                            w.maps.remove(0);
                        }
                        w.maps.push((start, map));
                        w.maps.len() - 1
                    }
                    Err(_) => {
                        w.failed = true;
                        return false;
                    }
                }
            }
        };
        let from = (offset - start) as usize;
        let Some(bytes) = w.maps.get(i).and_then(|(_, m)| m.get(from..from + buf.len())) else { return false };
        buf.copy_from_slice(bytes);
        // Most recently used last, so that the oldest window goes first.
        let used = w.maps.remove(i);
        w.maps.push(used);
        true
    }
}

fn block_device_size(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::End(0))
}

impl ReadAt for FileSource {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if let Some(lock) = &self.one_reader {
            let _reading = lock.lock().unwrap_or_else(|e| e.into_inner());
            return FileExt::read_exact_at(&self.file, buf, offset);
        }
        let Some(maps) = &self.maps else { return FileExt::read_exact_at(&self.file, buf, offset) };
        // Window by window, so that a run of pages across a window boundary is mapped too.
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset.saturating_add(done as u64);
            let n = usize::try_from((at / WINDOW + 1) * WINDOW - at).unwrap_or(usize::MAX).min(buf.len() - done);
            let piece = buf.get_mut(done..done + n).unwrap_or_default();
            if !self.read_mapped(maps, piece, at) {
                FileExt::read_exact_at(&self.file, piece, at)?;
            }
            done += n;
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapped path on a regular file (only /proc/vmcore uses it for real; the test file
    /// is not changed while mapped): every read equals the pread, within and across
    /// windows, at the end of the file, and with more windows in use than are kept.
    #[test]
    fn mapped_reads_equal_preads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let size = 3 * WINDOW + 12345;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let mut src = FileSource::open(&path).expect("open");
        assert!(src.maps.is_none(), "a regular file is read with pread");
        src.maps = Some(Mutex::default());
        let cases = [(0u64, 4096usize), (WINDOW - 100, 200), (WINDOW, 64 << 10), (size - 10, 10), (2 * WINDOW + 5, 1)];
        for round in 0..2 {
            for &(off, len) in cases.iter().chain(&[(WINDOW * 3 - 4096, 8192)]) {
                let mut buf = vec![0u8; len];
                src.read_exact_at(&mut buf, off).expect("read");
                let want = data.get(off as usize..off as usize + len).expect("in file");
                assert!(buf == want, "round {round}: {len} bytes at {off:#x}");
            }
        }
        let maps = src.maps.as_ref().and_then(|m| m.lock().ok()).map(|w| (w.maps.len(), w.failed));
        assert_eq!(maps, Some((4, false)), "windows 0-3 mapped once each, none failed");
        let mut across = vec![0u8; 3 * WINDOW as usize];
        src.read_exact_at(&mut across, 100).expect("read across windows");
        assert!(across == data[100..100 + across.len()], "a read across three windows");
        let mut past = [0u8; 2];
        assert!(src.read_exact_at(&mut past, size - 1).is_err(), "past the end");
    }
}
