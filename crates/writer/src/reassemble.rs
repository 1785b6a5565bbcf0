//! `vmcore reassemble` (makedumpfile --reassemble, makedumpfile.md section 1.10): the
//! files of a `--split` set joined into one kdump-compressed file.
//!
//! The parts are sorted by start pfn and must tile `[0, max_mapnr)` with the same header.
//! The new file takes the first part's header (marked incomplete if any part is), sub
//! header (split fields cleared), notes and bitmaps; then one descriptor table for all
//! dumpable pages, the shared zero page, and each part's page data, copied as stored (no
//! recompression). The result is the file a direct write would have made.

use std::sync::Arc;

use vmcore_formats::kdump::KdumpFile;
use vmcore_formats::raw::kdump::{self as raw, header as h, sub_header as sh};
use vmcore_types::ReadAt;

use crate::kdump::{mark_incomplete, Sink, WRITE_BUFFER};
use crate::output::{Output, OutputError};
use crate::{Error, Progress, Result, WriteReport};

const DESC: u64 = raw::PAGE_DESC_SIZE as u64;

/// Reads ahead in one source, for data read in ascending order.
struct Window {
    src: Arc<dyn ReadAt>,
    buf: Vec<u8>,
    at: u64,
    /// What a read behind the window gets: just its bytes. Refilling the window there
    /// would cost a whole window per read when a part's descriptors go back and forth.
    behind: Vec<u8>,
}

impl Window {
    fn new(src: Arc<dyn ReadAt>) -> Window {
        Window { src, buf: Vec::new(), at: 0, behind: Vec::new() }
    }

    /// `len` bytes at `offset`, or `None` when the source ends first.
    fn get(&mut self, offset: u64, len: usize) -> Result<Option<&[u8]>> {
        let end = offset.saturating_add(len as u64);
        if end > self.src.size() {
            return Ok(None);
        }
        if offset < self.at {
            self.behind.resize(len, 0);
            self.src
                .read_exact_at(&mut self.behind, offset)
                .map_err(|e| Error::Input(format!("reading at {offset:#x}: {e}")))?;
            return Ok(Some(&self.behind));
        }
        if end > self.at + self.buf.len() as u64 {
            let n = (self.src.size() - offset).min(WRITE_BUFFER.max(len) as u64) as usize;
            self.buf.resize(n, 0);
            self.src
                .read_exact_at(&mut self.buf, offset)
                .map_err(|e| Error::Input(format!("reading at {offset:#x}: {e}")))?;
            self.at = offset;
        }
        let from = (offset - self.at) as usize;
        Ok(self.buf.get(from..from + len))
    }
}

fn get_u(b: &[u8], off: usize, len: usize, be: bool) -> u64 {
    let Some(s) = b.get(off..off + len) else { return 0 };
    let mut v = 0u64;
    if be {
        for &x in s {
            v = (v << 8) | u64::from(x);
        }
    } else {
        for &x in s.iter().rev() {
            v = (v << 8) | u64::from(x);
        }
    }
    v
}

fn put_u(b: &mut [u8], off: usize, len: usize, v: u64, be: bool) {
    let Some(d) = b.get_mut(off..off + len) else { return };
    for (i, x) in d.iter_mut().enumerate() {
        let shift = if be { 8 * (len - 1 - i) } else { 8 * i };
        *x = (v >> shift) as u8;
    }
}

struct Part {
    name: String,
    src: Arc<dyn ReadAt>,
    file: KdumpFile<Arc<dyn ReadAt>>,
}

fn read_vec(src: &dyn ReadAt, offset: u64, len: u64, what: &str, name: &str) -> Result<Vec<u8>> {
    let mut v = vec![0u8; usize::try_from(len).map_err(|_| Error::Input(format!("{name}: {what} too large")))?];
    src.read_exact_at(&mut v, offset).map_err(|e| Error::Input(format!("{name}: reading the {what}: {e}")))?;
    Ok(v)
}

/// Joins the split files `parts` (name, contents), in any order, into `out`.
pub fn reassemble(
    parts: Vec<(String, Arc<dyn ReadAt>)>,
    out: &mut dyn Output,
    progress: &dyn Progress,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<WriteReport> {
    let mut files = Vec::with_capacity(parts.len());
    for (name, src) in parts {
        let file = KdumpFile::parse(src.clone()).map_err(|e| Error::Input(format!("{name}: {e}")))?;
        if file.sub.split != Some(true) {
            return Err(Error::Input(format!("{name}: not a file of a --split set (its split flag is clear)")));
        }
        files.push(Part { name, src, file });
    }
    files.sort_by_key(|p| p.file.pfn_range().0);
    let first = files.first().ok_or_else(|| Error::Input("no split files given".into()))?;
    let bs = u64::from(first.file.page_size());
    let be = first.file.header.big_endian;
    let version = first.file.header.header_version;
    let named: Vec<(&str, &KdumpFile<Arc<dyn ReadAt>>)> = files.iter().map(|p| (p.name.as_str(), &p.file)).collect();
    vmcore_physmem::check_split_set(&named).map_err(|e| Error::Input(e.to_string()))?;
    let mut incomplete = files.iter().any(|p| p.file.is_incomplete());

    let sub_blocks = u64::from(first.file.header.sub_hdr_size);
    let desc_offset = (1 + sub_blocks + u64::from(first.file.header.bitmap_blocks)) * bs;
    let total = first.file.dumped_pages();
    let data_offset = desc_offset + total * DESC;
    let share_zero = first.file.sub.dump_level.unwrap_or(0) & 1 != 0;
    let status = first.file.header.status & !raw::DUMP_DH_COMPRESSED_INCOMPLETE;
    progress.set_total(total);

    // The header and the sub header's block of the first part, split fields cleared (the
    // rest of the sub header's blocks, notes and VMCOREINFO, is copied with the bitmaps).
    let head_len = bs * (1 + sub_blocks.min(1));
    let mut head = read_vec(&*first.src, 0, head_len, "header blocks", &first.name)?;
    put_u(&mut head, h::STATUS, 4, u64::from(status), be);
    let sub_at = bs as usize;
    if version >= 2 {
        put_u(&mut head, sub_at + sh::SPLIT, 4, 0, be);
        put_u(&mut head, sub_at + sh::START_PFN, 8, 0, be);
        put_u(&mut head, sub_at + sh::END_PFN, 8, 0, be);
    }
    if version >= 5 {
        put_u(&mut head, sub_at + sh::OFFSET_ERASEINFO, 8, 0, be);
        put_u(&mut head, sub_at + sh::SIZE_ERASEINFO, 8, 0, be);
    }
    if version >= 6 {
        put_u(&mut head, sub_at + sh::START_PFN_64, 8, 0, be);
        put_u(&mut head, sub_at + sh::END_PFN_64, 8, 0, be);
    }
    out.write_at(0, &head)?;
    // The rest of the sub header's blocks and both bitmaps, copied a buffer at a time.
    let mut at = head_len;
    while at < desc_offset {
        let n = (desc_offset - at).min(WRITE_BUFFER as u64);
        let chunk = read_vec(&*first.src, at, n, "sub header and bitmaps", &first.name)?;
        out.write_at(at, &chunk)?;
        at += n;
    }
    let new_zero = data_offset;
    let mut data_pos = data_offset;
    if share_zero {
        out.write_at(new_zero, &vec![0u8; bs as usize])?;
        data_pos += bs;
    }

    let mut sink = Sink::new(out, bs, desc_offset, data_pos, be);
    let mut full = false;
    let mut pages = 0u64;
    let mut lost = 0u64;
    // A part that turns out unreadable midway: what was copied stays a dump, marked
    // incomplete.
    let copied = (|| -> Result<()> {
        for p in &files {
            let part_desc = (1 + u64::from(p.file.header.sub_hdr_size) + u64::from(p.file.header.bitmap_blocks)) * bs;
            let part_zero = share_zero.then_some(part_desc + total * DESC);
            let count = p.file.dumpable_pages().map_err(|e| Error::Input(format!("{}: {e}", p.name)))?;
            let mut window = Window::new(p.src.clone());
            let mut descs = vec![0u8; 4096 * DESC as usize];
            let mut i = 0u64;
            while i < count {
                let n = (count - i).min(4096);
                let bytes = descs.get_mut(..(n * DESC) as usize).unwrap_or_default();
                let from = part_desc + i * DESC;
                // An incomplete part may end inside its table: what is missing was not written.
                let avail = usize::try_from(p.src.size().saturating_sub(from)).unwrap_or(usize::MAX).min(bytes.len());
                let (have, missing) = bytes.split_at_mut(avail);
                p.src
                    .read_exact_at(have, from)
                    .map_err(|e| Error::Input(format!("{}: reading descriptors: {e}", p.name)))?;
                missing.fill(0);
                for d in bytes.chunks(DESC as usize) {
                    let offset = get_u(d, 0, 8, be);
                    let size = get_u(d, 8, 4, be) as u32;
                    let flags = get_u(d, 12, 4, be) as u32;
                    if offset == 0 {
                        incomplete = true;
                        lost += 1;
                        sink.push_desc(0, 0, 0);
                    } else if Some(offset) == part_zero {
                        sink.push_desc(new_zero, size, flags);
                    } else if size == 0 || u64::from(size) > bs {
                        return Err(Error::Input(format!(
                            "{}: a page descriptor at {:#x} has size {size}, outside 1..={bs}",
                            p.name, from
                        )));
                    } else {
                        match window.get(offset, size as usize)? {
                            Some(data) => {
                                let new = sink.next_data_offset();
                                sink.push_data(data);
                                sink.push_desc(new, size, flags);
                            }
                            None if p.file.is_incomplete() => {
                                incomplete = true;
                                lost += 1;
                                sink.push_desc(0, 0, 0);
                            }
                            None => {
                                return Err(Error::Input(format!(
                                    "{}: page data at {offset:#x} (+{size}) lies past the end of the file",
                                    p.name
                                )))
                            }
                        }
                    }
                }
                i += n;
                pages += n;
                progress.advance(n);
                // Ctrl-C: the pages not reached make the file incomplete, marked below.
                if crate::stopped(stop) {
                    return Ok(());
                }
                if sink.wants_flush() {
                    match sink.flush() {
                        Ok(()) => {}
                        Err(OutputError::Full) => {
                            full = true;
                            return Ok(());
                        }
                        Err(OutputError::Io(e)) => return Err(Error::Output(e)),
                    }
                }
            }
        }
        Ok(())
    })();
    if let Err(cause) = copied {
        // Descriptors of pages an incomplete part lacked are written too, as zeros.
        return Err(sink.close_incomplete(status, cause, lost, total));
    }
    if !full {
        match sink.flush() {
            Ok(()) => {}
            Err(OutputError::Full) => full = true,
            Err(OutputError::Io(e)) => return Err(Error::Output(e)),
        }
    }
    let report_written = sink.descs_written;
    let mut end = sink.data_pos;
    drop(sink);

    // Erase information of every part, one after the other, after the pages.
    if !full && version >= 5 {
        // Written part by part (each holds up to 16 MiB), not gathered first.
        let start = end;
        for p in &files {
            let Some(e) = p.file.eraseinfo().map_err(|e| Error::Input(format!("{}: {e}", p.name)))? else { continue };
            match out.write_at(end, &e) {
                Ok(()) => end += e.len() as u64,
                Err(OutputError::Full) => {
                    full = true;
                    break;
                }
                Err(OutputError::Io(e)) => return Err(Error::Output(e)),
            }
        }
        if !full && end > start {
            let mut sub = head.get(sub_at..sub_at + sh::SIZE).unwrap_or_default().to_vec();
            put_u(&mut sub, sh::OFFSET_ERASEINFO, 8, start, be);
            put_u(&mut sub, sh::SIZE_ERASEINFO, 8, end - start, be);
            // Every page is written: a full disk here (copy-on-write) leaves a dump whose
            // erase information is not pointed at, not "no dump".
            out.write_at(bs, &sub).map_err(|e| match e {
                OutputError::Full => {
                    Error::Output(std::io::Error::other("no space to point the sub header at the erase information"))
                }
                OutputError::Io(e) => Error::Output(e),
            })?;
        }
        // Erase information cut short is not pointed at; the pages end where it began.
        if full {
            end = start;
        }
    }
    let report = WriteReport {
        pages: total,
        pages_written: report_written.saturating_sub(lost),
        zero_pages: 0,
        bytes: end,
        write_bytes: end,
        incomplete: incomplete || full || report_written < total || pages < total,
    };
    if report.incomplete {
        mark_incomplete(out, status, be)?;
    }
    out.finish().map_err(Error::Output)?;
    progress.finish();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_behind_the_window_get_their_bytes_and_keep_the_window() {
        let data: Vec<u8> = (0..3 * WRITE_BUFFER).map(|i| (i % 251) as u8).collect();
        let mut w = Window::new(Arc::new(data.clone()));
        let at = WRITE_BUFFER;
        assert_eq!(w.get(at as u64, 24).unwrap().unwrap(), &data[at..at + 24]);
        assert_eq!(w.get(100, 24).unwrap().unwrap(), &data[100..124]);
        assert_eq!(w.at, at as u64, "a read behind it leaves the window where it was");
        assert_eq!(w.get(at as u64 + 24, 24).unwrap().unwrap(), &data[at + 24..at + 48]);
        assert_eq!(w.get(data.len() as u64 - 10, 24).unwrap(), None);
    }
}
