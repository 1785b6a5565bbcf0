//! Flattened streams (`makedumpfile -F`) read in place: one pass over the chunk headers
//! builds an index from offsets of the real dump file to offsets in the stream, and
//! [`FlatView`] then serves positioned reads of the real file without rearranging it.

use std::collections::BTreeMap;
use std::io;

use vmcore_types::bytes::u64_at;
use vmcore_types::ReadAt;

use crate::error::{read_exact, Error, Result};
use crate::raw::flat as raw;

/// Whether `head` starts a flattened stream.
pub fn is_flat_signature(head: &[u8]) -> bool {
    head.starts_with(raw::SIGNATURE)
}

/// Most pieces (runs of the rearranged file, each from one chunk) a [`FlatView`] indexes.
/// Each takes about 50 bytes of map (1 Mi pieces measured 54 MiB of peak RSS), so the
/// index stays under 27 MiB. makedumpfile writes chunks of 32 KiB on average (the limit is
/// a stream of about 16 GiB) and `vmcore dump -F` chunks of up to 1 MiB; without a limit a
/// stream of one-byte chunks would take three times its own size in memory.
pub const MAX_PIECES: usize = 1 << 19;

/// Bytes of the rearranged file that no chunk writes, beyond which a stream must be at
/// least half data. makedumpfile skips only alignment padding (a few KiB).
const MAX_HOLES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy)]
struct Piece {
    /// End (exclusive) of the piece in the rearranged file.
    dst_end: u64,
    /// Where its first byte is in the stream.
    src: u64,
}

/// A flattened stream seen as the dump file it encodes. Bytes no chunk wrote read as
/// zeros, as they would in the file `makedumpfile -R` makes (it seeks over them).
#[derive(Debug)]
pub struct FlatView<R> {
    stream: R,
    /// Pieces keyed by their start in the rearranged file; they never overlap.
    pieces: BTreeMap<u64, Piece>,
    size: u64,
    chunks: u64,
}

impl<R: ReadAt> FlatView<R> {
    /// Indexes the chunks of `stream`. Later chunks overwrite earlier ones where they
    /// overlap, as they do when the stream is rearranged. A stream that needs more than
    /// [`MAX_PIECES`] index entries is an error that says to rearrange it first.
    pub fn index(stream: R) -> Result<FlatView<R>> {
        FlatView::index_at_most(stream, MAX_PIECES)
    }

    fn index_at_most(stream: R, max_pieces: usize) -> Result<FlatView<R>> {
        let mut head = [0u8; 32];
        read_exact(&stream, &mut head, 0, "flattened stream header")?;
        if !is_flat_signature(&head) {
            return Err(Error::invalid("flattened stream header", 0, "signature is not \"makedumpfile\""));
        }
        let ty = u64_at(&head, 16, true).unwrap_or(0) as i64;
        if ty != raw::TYPE_FLAT_HEADER {
            return Err(Error::invalid(
                "flattened stream header",
                16,
                format!("type {ty}, expected {}", raw::TYPE_FLAT_HEADER),
            ));
        }
        let total = stream.size();
        let mut pieces = BTreeMap::new();
        let mut pos = raw::HEADER_SIZE;
        let mut size = 0u64;
        // The chunk header that set `size`, named if the file is mostly holes.
        let mut last_chunk = 0u64;
        let mut chunks = 0u64;
        loop {
            let mut ch = [0u8; raw::CHUNK_HEADER_SIZE as usize];
            read_exact(&stream, &mut ch, pos, "flattened chunk header (the stream ends before its end marker)")?;
            let offset = u64_at(&ch, 0, true).unwrap_or(0) as i64;
            let len = u64_at(&ch, 8, true).unwrap_or(0) as i64;
            if offset == -1 && len == -1 {
                break;
            }
            if offset < 0 || len <= 0 {
                return Err(Error::invalid("flattened chunk header", pos, format!(
                    "offset {offset} size {len}; expected a non-negative offset and positive size, or the end marker -1 -1")));
            }
            let (dst, len) = (offset as u64, len as u64);
            let src = pos + raw::CHUNK_HEADER_SIZE;
            let src_end = src.checked_add(len).filter(|&e| e <= total).ok_or(Error::Truncated {
                what: "flattened chunk data",
                offset: src,
                len,
            })?;
            let dst_end = dst
                .checked_add(len)
                .ok_or_else(|| Error::invalid("flattened chunk header", pos, "offset + size overflows"))?;
            insert(&mut pieces, dst, Piece { dst_end, src });
            if pieces.len() > max_pieces {
                return Err(Error::invalid(
                    "flattened stream",
                    pos,
                    format!(
                        "more than {max_pieces} separate chunks: reading it in place would index them all \
                     in memory; rearrange it first (`vmcore rearrange IN OUT` or makedumpfile -R \
                     read it once, in bounded memory)"
                    ),
                ));
            }
            if dst_end > size {
                size = dst_end;
                last_chunk = pos;
            }
            chunks += 1;
            pos = src_end;
        }
        // Readers check the sizes in the dump's headers against the file's size; a file
        // that is mostly holes would let a few bytes of stream pass for terabytes.
        let covered: u64 = pieces.iter().map(|(&start, p)| p.dst_end - start).sum();
        if size - covered > covered.max(MAX_HOLES) {
            return Err(Error::invalid(
                "flattened chunk header",
                last_chunk,
                format!(
                    "the chunks fill {covered} bytes of a {size}-byte file; makedumpfile and vmcore write \
                 flattened dumps densely (at most {MAX_HOLES} bytes or half the file unwritten)"
                ),
            ));
        }
        Ok(FlatView { stream, pieces, size, chunks })
    }

    /// Number of data chunks in the stream.
    pub fn chunk_count(&self) -> u64 {
        self.chunks
    }
}

/// Inserts a piece, cutting away whatever older pieces it covers.
fn insert(pieces: &mut BTreeMap<u64, Piece>, dst: u64, new: Piece) {
    let overlapping: Vec<u64> =
        pieces.range(..new.dst_end).rev().take_while(|(_, p)| p.dst_end > dst).map(|(&k, _)| k).collect();
    for start in overlapping {
        let Some(old) = pieces.remove(&start) else {
            continue;
        };
        if start < dst {
            pieces.insert(start, Piece { dst_end: dst, src: old.src });
        }
        if old.dst_end > new.dst_end {
            pieces.insert(new.dst_end, Piece { dst_end: old.dst_end, src: old.src + (new.dst_end - start) });
        }
    }
    pieces.insert(dst, new);
}

impl<R: ReadAt> ReadAt for FlatView<R> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the flattened dump"))?;
        buf.fill(0);
        // Pieces that overlap [offset, end): the last one starting at or before offset,
        // then every one starting inside.
        let first = self.pieces.range(..=offset).next_back().map(|(&k, _)| k).unwrap_or(offset);
        for (&start, piece) in self.pieces.range(first..end) {
            let lo = start.max(offset);
            let hi = piece.dst_end.min(end);
            if lo >= hi {
                continue;
            }
            let dst = buf
                .get_mut((lo - offset) as usize..(hi - offset) as usize)
                .ok_or_else(|| io::Error::other("flattened index out of range"))?;
            self.stream.read_exact_at(dst, piece.src + (lo - start))?;
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

    fn stream(chunks: &[(i64, &[u8])], end: bool) -> Vec<u8> {
        let mut s = raw::SIGNATURE.to_vec();
        s.extend_from_slice(&1i64.to_be_bytes());
        s.extend_from_slice(&1i64.to_be_bytes());
        s.resize(raw::HEADER_SIZE as usize, 0);
        for (off, data) in chunks {
            s.extend_from_slice(&off.to_be_bytes());
            s.extend_from_slice(&(data.len() as i64).to_be_bytes());
            s.extend_from_slice(data);
        }
        if end {
            s.extend_from_slice(&[0xff; 16]);
        }
        s
    }

    #[test]
    fn rearranges_out_of_order_and_overwritten_chunks() {
        let s = stream(&[(8, b"world"), (0, b"hello"), (2, b"XY"), (20, b"z")], true);
        let v = FlatView::index(s).unwrap();
        assert_eq!(v.size(), 21);
        assert_eq!(v.chunk_count(), 4);
        let mut all = vec![0u8; 21];
        v.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(&all, b"heXYo\0\0\0world\0\0\0\0\0\0\0z");
        let mut mid = [0u8; 4];
        v.read_exact_at(&mut mid, 3).unwrap();
        assert_eq!(&mid, b"Yo\0\0");
        assert!(v.read_exact_at(&mut mid, 19).is_err());
    }

    #[test]
    fn a_stream_of_more_pieces_than_the_limit_is_an_error_naming_the_remedy() {
        let data: Vec<(i64, &[u8])> = (0..5).map(|i| (i * 2, &b"a"[..])).collect();
        let v = FlatView::index_at_most(stream(&data, true), 5).unwrap();
        assert_eq!(v.chunk_count(), 5);
        // Chunks that only overwrite earlier ones add no piece.
        let mut again = data.clone();
        again.extend((0..5).map(|i| (i * 2, &b"b"[..])));
        assert!(FlatView::index_at_most(stream(&again, true), 5).is_ok());
        let mut more = data;
        more.push((10, b"c"));
        let err = FlatView::index_at_most(stream(&more, true), 5).unwrap_err().to_string();
        // The sixth chunk's header: after the 4096-byte header and five 17-byte chunks.
        assert!(err.contains("more than 5 separate chunks") && err.contains("0x1055"), "{err}");
        assert!(err.contains("vmcore rearrange"), "{err}");
    }

    #[test]
    fn a_file_of_mostly_holes_is_an_error_naming_the_chunk_that_made_it() {
        // The holes may be up to 1 MiB, or as large as the data.
        let big = vec![7u8; 3 << 19];
        assert!(FlatView::index(stream(&[(0, b"head"), (1 << 20, b"tail")], true)).is_ok());
        assert!(FlatView::index(stream(&[(0, &big), (3 << 20, b"x")], true)).is_ok());
        // A header and one byte at 32 TiB (the ends of a file whose headers would then
        // pass any check against its size).
        let err = FlatView::index(stream(&[(0, b"head"), (1 << 45, b"x")], true)).unwrap_err().to_string();
        assert!(err.contains("fill 5 bytes of a 35184372088833-byte file") && err.contains("0x1014"), "{err}");
    }

    #[test]
    fn trailing_garbage_after_the_end_marker_is_ignored() {
        let mut s = stream(&[(0, b"abc")], true);
        s.extend_from_slice(&[0x55; 100]);
        assert_eq!(FlatView::index(s).unwrap().size(), 3);
    }

    #[test]
    fn a_stream_that_ends_early_is_an_error_naming_the_offset() {
        let s = stream(&[(0, b"abc")], false);
        let err = FlatView::index(s).unwrap_err().to_string();
        assert!(err.contains("end marker") && err.contains("0x1013"), "{err}");
        let mut s = stream(&[(0, b"abcdef")], true);
        s.truncate(4096 + 16 + 3);
        let err = FlatView::index(s).unwrap_err().to_string();
        assert!(err.contains("chunk data"), "{err}");
        let s = stream(&[(-5, b"abc")], true);
        assert!(FlatView::index(s).unwrap_err().to_string().contains("offset -5"));
    }
}
