//! Where a dump goes: a file (positioned writes, a size limit, ENOSPC), or a flattened
//! stream (every positioned write becomes a chunk, as `makedumpfile -F`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use vmcore_formats::raw::flat;
use vmcore_types::ReadAt;

use crate::kdump::WRITE_BUFFER;

/// Why a write stopped.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The disk is full or the size limit is reached: the dump can be closed as incomplete.
    #[error("no space left for the dump (disk full or size limit)")]
    Full,
    /// Any other I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A destination of positioned writes.
pub trait Output: Send {
    /// Writes `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), OutputError>;
    /// Whether a header can be rewritten after the fact (files: yes; streams: no).
    fn can_rewrite(&self) -> bool;
    /// Whether what is never written at `offset` and past it reads as zero, so that
    /// writers may leave zeros out: true for a regular file past the length it had when
    /// opened (holes), false for streams and devices.
    fn unwritten_reads_zero(&self, _offset: u64) -> bool {
        false
    }
    /// What is written so far, for reading back (files: yes; streams: no). An output
    /// stopped early corrects its headers from it.
    fn written(&self) -> Option<Box<dyn ReadAt + '_>> {
        None
    }
    /// The first stretch `[start, end)` at or after `from` that holds written data, for
    /// skipping the holes of a sparse file when reading it back: None past the last. Where
    /// holes cannot be told apart, everything up to the end is one stretch.
    fn next_written(&self, from: u64) -> Option<(u64, u64)> {
        let size = self.written()?.size();
        (from < size).then_some((from, size))
    }
    /// Flushes. (No fsync: like makedumpfile, the dump is in the page cache when this
    /// returns, and kdump scripts run `sync` before rebooting.)
    fn finish(&mut self) -> io::Result<()>;
}

/// Creates `path` for a dump: exclusively (an existing file is an error) unless `force`,
/// and with mode 0600 either way, since dumps hold secrets.
///
/// With `force`, an existing regular file is emptied and made 0600, but only after
/// checking that it is none of `inputs` (the files the dump is read from): overwriting
/// the only copy of a crash dump with its own beginning is not what `--force` asks for.
/// Anything else (a device, a FIFO) is written as it is, its mode untouched: making
/// /dev/null 0600 would break it for every other user.
pub fn create_dump_file(path: &Path, force: bool, inputs: &[&Path]) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).read(true).mode(0o600);
    if !force {
        let f = o.create_new(true).open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        return Ok(f);
    }
    let f = o.create(true).open(path)?;
    let meta = f.metadata()?;
    let same = |p: &Path| std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()));
    if let Some(input) = inputs.iter().copied().find(|p| same(p)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it is the same file as {}, which this command also uses: --force would destroy it",
                input.display()
            ),
        ));
    }
    if meta.file_type().is_file() {
        f.set_len(0)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Walks a table of `entry`-byte entries that starts at `start` in the dump being written
/// to `out` (a file read back after its stream stopped early), only where the file was
/// written: holes are skipped, so the work is bounded by what was written, whatever the
/// headers claim, and a buffer at a time. `fix(entry, whole, end)` may change an entry in
/// place and says whether it did; `whole`: all of the entry lies in one written stretch
/// (the rest reads as zeros); `end`: where the table ends, which `fix` may lower as the
/// entries tell (they are seen in order). Runs of changed entries are written back in
/// place, nothing else: the rest of the table may be holes, which a full disk would not
/// take. `what` names the work in errors.
pub(crate) fn fix_written_table(
    out: &mut dyn Output,
    start: u64,
    mut end: u64,
    entry: u64,
    what: &str,
    mut fix: impl FnMut(&mut [u8], bool, &mut u64) -> bool,
) -> crate::Result<()> {
    let failed = |e: String| crate::Error::Output(io::Error::other(format!("{what}: {e}")));
    let mut buf = vec![0u8; WRITE_BUFFER];
    let mut pos = start;
    while pos < end {
        let Some((data, data_end)) = out.next_written(pos) else { break };
        // Whole entries, counted from the table's start.
        let first = start + (data.max(pos) - start) / entry * entry;
        let stop = data_end.min(end);
        if first >= stop {
            pos = data_end.max(pos + 1);
            continue;
        }
        let n = (stop - first).div_ceil(entry).min(WRITE_BUFFER as u64 / entry);
        let table = buf.get_mut(..(n * entry) as usize).unwrap_or_default();
        let read = out.written().map_or(Ok(()), |file| {
            let have = usize::try_from(file.size().saturating_sub(first)).unwrap_or(usize::MAX).min(table.len());
            let (head, tail) = table.split_at_mut(have);
            tail.fill(0);
            file.read_exact_at(head, first)
        });
        read.map_err(|e| failed(format!("reading at {first:#x}: {e}")))?;
        let mut changed = Vec::with_capacity(n as usize);
        for (i, e) in table.chunks_exact_mut(entry as usize).enumerate() {
            let at = first + i as u64 * entry;
            if at >= end {
                break;
            }
            changed.push(fix(e, at >= data && at + entry <= data_end, &mut end));
        }
        let mut i = 0;
        while i < changed.len() {
            let run = i;
            while changed.get(i) == Some(&true) {
                i += 1;
            }
            if i == run {
                i += 1;
                continue;
            }
            let at = first + run as u64 * entry;
            let bytes = table.get(run * entry as usize..i * entry as usize).unwrap_or_default();
            out.write_at(at, bytes).map_err(|e| match e {
                OutputError::Full => failed(format!("the full disk took no rewrite of those at {at:#x}")),
                OutputError::Io(e) => failed(format!("rewriting those at {at:#x}: {e}")),
            })?;
        }
        pos = first + n * entry;
    }
    Ok(())
}

/// Bytes written between two requests to drop the dump's written-back pages from the page
/// cache. A dump is written once and not read back, yet left alone its pages fill the
/// cache: on a live machine they push out the workload's files, in a kdump kernel they
/// press on its few hundred MiB, and the kernel spends system time reclaiming them. Each
/// request also starts the writeback of what is dirty, so the cache holds about two rounds
/// of the dump. The request blocks while it submits that writeback, and the other threads
/// run out of queued jobs meanwhile: 32 MiB rounds left a core idle about 1.2 s of a
/// 16 GiB `-l -d 1` dump on two threads, 8 MiB rounds 0.8 s.
pub(crate) const DROP_BEHIND_EVERY: u64 = 8 << 20;

/// A dump file, optionally limited in size (`-L`). Its written pages are dropped from the
/// page cache as it grows, every 8 MiB.
#[derive(Debug)]
pub struct FileOutput {
    file: File,
    limit: Option<u64>,
    written_since_drop: u64,
    /// A regular file's length when opened: past it, the file reads zero where nothing is
    /// written. None for anything else (a block device keeps what it held).
    holes_from: Option<u64>,
}

impl FileOutput {
    /// Writes into `file`, never past `limit` bytes.
    pub fn new(file: File, limit: Option<u64>) -> FileOutput {
        let holes_from = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        FileOutput { file, limit, written_since_drop: 0, holes_from }
    }
}

impl Output for FileOutput {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), OutputError> {
        let end = offset.saturating_add(data.len() as u64);
        let (data, full) = match self.limit {
            Some(limit) if end > limit => {
                let keep = usize::try_from(limit.saturating_sub(offset)).unwrap_or(0).min(data.len());
                (data.get(..keep).unwrap_or_default(), true)
            }
            _ => (data, false),
        };
        if !data.is_empty() {
            self.file.write_all_at(data, offset).map_err(|e| {
                if e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull {
                    OutputError::Full
                } else {
                    OutputError::Io(e)
                }
            })?;
        }
        if full {
            return Err(OutputError::Full);
        }
        self.written_since_drop += data.len() as u64;
        if self.written_since_drop >= DROP_BEHIND_EVERY {
            self.written_since_drop = 0;
            // Starts writeback of what is dirty and drops what is already written back.
            // Failure (a pipe, a device without a page cache) costs nothing but the cache.
            let _ = rustix::fs::fadvise(&self.file, 0, None, rustix::fs::Advice::DontNeed);
        }
        Ok(())
    }

    fn can_rewrite(&self) -> bool {
        true
    }

    fn unwritten_reads_zero(&self, offset: u64) -> bool {
        self.holes_from.is_some_and(|from| offset >= from)
    }

    fn written(&self) -> Option<Box<dyn ReadAt + '_>> {
        Some(Box::new(WrittenFile(&self.file)))
    }

    fn next_written(&self, from: u64) -> Option<(u64, u64)> {
        use rustix::fs::{seek, SeekFrom};
        // (Seeking moves only the file offset, which the positioned writes do not use.)
        match seek(&self.file, SeekFrom::Data(from)) {
            Ok(start) => {
                let end = seek(&self.file, SeekFrom::Hole(start)).ok()?;
                (end > start).then_some((start, end))
            }
            // No data past `from`.
            Err(rustix::io::Errno::NXIO) => None,
            // A device, or a filesystem without SEEK_DATA: all of it is data.
            Err(_) => {
                let size = WrittenFile(&self.file).size();
                (from < size).then_some((from, size))
            }
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A dump file read back while it is written.
#[derive(Debug)]
struct WrittenFile<'a>(&'a File);

impl ReadAt for WrittenFile<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    /// A regular file's length, or a block device's size (whose `st_size` is 0).
    fn size(&self) -> u64 {
        rustix::fs::seek(self.0, rustix::fs::SeekFrom::End(0)).unwrap_or(0)
    }
}

/// A flattened stream on any writer (stdout for `-F`).
#[derive(Debug)]
pub struct FlatOutput<W: Write + Send> {
    w: W,
    started: bool,
    sent: u64,
}

impl<W: Write + Send> FlatOutput<W> {
    /// A stream on `w`.
    pub fn new(w: W) -> FlatOutput<W> {
        FlatOutput { w, started: false, sent: 0 }
    }

    /// Bytes of the stream so far, its headers included: makedumpfile's "Write bytes"
    /// of a flattened dump.
    pub fn stream_len(&self) -> u64 {
        self.sent
    }

    /// The writer, after [`Output::finish`].
    pub fn into_inner(self) -> W {
        self.w
    }

    fn start(&mut self) -> io::Result<()> {
        if !self.started {
            let mut head = vec![0u8; flat::HEADER_SIZE as usize];
            if let Some(sig) = head.get_mut(..16) {
                sig.copy_from_slice(flat::SIGNATURE);
            }
            if let Some(t) = head.get_mut(16..24) {
                t.copy_from_slice(&flat::TYPE_FLAT_HEADER.to_be_bytes());
            }
            if let Some(v) = head.get_mut(24..32) {
                v.copy_from_slice(&flat::VERSION_FLAT_HEADER.to_be_bytes());
            }
            self.w.write_all(&head)?;
            self.sent += flat::HEADER_SIZE;
            self.started = true;
        }
        Ok(())
    }
}

impl<W: Write + Send> Output for FlatOutput<W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), OutputError> {
        self.start()?;
        if data.is_empty() {
            return Ok(());
        }
        let off = i64::try_from(offset).map_err(|_| io::Error::other("offset beyond the flattened format"))?;
        self.w.write_all(&off.to_be_bytes())?;
        self.w.write_all(&(data.len() as i64).to_be_bytes())?;
        self.w.write_all(data)?;
        self.sent += flat::CHUNK_HEADER_SIZE + data.len() as u64;
        Ok(())
    }

    fn can_rewrite(&self) -> bool {
        false
    }

    fn finish(&mut self) -> io::Result<()> {
        self.start()?;
        self.w.write_all(&[0xff; flat::CHUNK_HEADER_SIZE as usize])?;
        self.sent += flat::CHUNK_HEADER_SIZE;
        self.w.flush()
    }
}
