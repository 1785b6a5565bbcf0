//! Flattened streams (`makedumpfile -F`) made from a finished dump file, and the
//! rearrangement `makedumpfile -R` does, as a reference for the readers.
//!
//! makedumpfile emits one chunk per positioned write, in program order rather than file
//! order, and may write the same bytes twice (the sub header when erase info exists). The
//! options here reproduce each of those traits on demand.

use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use vmcore_formats::raw::flat as raw;

/// The order chunks are emitted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOrder {
    /// Ascending file offsets.
    FileOrder,
    /// A permutation fixed by the seed.
    Shuffled(u64),
}

/// How [`flatten_with`] cuts and orders a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlattenOptions {
    /// Chunk length (the last chunk may be shorter); 64 KiB is makedumpfile's default
    /// cache size.
    pub chunk_size: usize,
    /// Emission order.
    pub order: ChunkOrder,
    /// Leave out all-zero chunks, so that holes of the file stay holes. The chunk holding
    /// the file's last byte is always emitted, to keep the file's length.
    pub skip_zero_chunks: bool,
    /// File ranges `(offset, len)` emitted again, with the same bytes, after all chunks.
    pub repeat: Vec<(u64, u64)>,
}

impl Default for FlattenOptions {
    fn default() -> FlattenOptions {
        FlattenOptions {
            chunk_size: 64 << 10,
            order: ChunkOrder::FileOrder,
            skip_zero_chunks: true,
            repeat: Vec::new(),
        }
    }
}

/// The flattened stream of `file`, cut into 64 KiB chunks (all-zero ones left out) in
/// `order`.
pub fn flatten(file: &[u8], order: ChunkOrder) -> Vec<u8> {
    flatten_with(file, &FlattenOptions { order, ..FlattenOptions::default() })
}

/// The 4096-byte stream header.
pub fn stream_header() -> Vec<u8> {
    let mut s = raw::SIGNATURE.to_vec();
    s.extend_from_slice(&raw::TYPE_FLAT_HEADER.to_be_bytes());
    s.extend_from_slice(&raw::VERSION_FLAT_HEADER.to_be_bytes());
    s.resize(raw::HEADER_SIZE as usize, 0);
    s
}

fn push_chunk(out: &mut Vec<u8>, offset: u64, data: &[u8]) {
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(data);
}

/// The flattened stream of `file` as `opts` says.
pub fn flatten_with(file: &[u8], opts: &FlattenOptions) -> Vec<u8> {
    let size = opts.chunk_size.max(1);
    let last = file.len().div_ceil(size).saturating_sub(1);
    let mut chunks: Vec<(usize, &[u8])> = file
        .chunks(size)
        .enumerate()
        .filter(|(i, c)| !opts.skip_zero_chunks || *i == last || c.iter().any(|&b| b != 0))
        .map(|(i, c)| (i * size, c))
        .collect();
    if let ChunkOrder::Shuffled(seed) = opts.order {
        SplitMix64::new(seed).shuffle(&mut chunks);
    }
    let mut out = stream_header();
    for (offset, data) in chunks {
        push_chunk(&mut out, offset as u64, data);
    }
    for &(offset, len) in &opts.repeat {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(file.len());
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)).min(file.len());
        if let Some(data) = file.get(start..end).filter(|d| !d.is_empty()) {
            push_chunk(&mut out, start as u64, data);
        }
    }
    out.extend_from_slice(&[0xff; 16]);
    out
}

/// A stream of exactly these chunks `(offset in the dump file, bytes)`, in this order, and
/// the end marker: for streams no real file gives (overlaps, odd orders).
pub fn stream_of(chunks: &[(u64, &[u8])]) -> Vec<u8> {
    let mut out = stream_header();
    for &(offset, data) in chunks {
        push_chunk(&mut out, offset, data);
    }
    out.extend_from_slice(&[0xff; 16]);
    out
}

/// What `makedumpfile -R` makes of a stream: each chunk written at its offset, later
/// chunks over earlier ones, gaps left as zeros.
pub fn rearrange(stream: &[u8]) -> Result<Vec<u8>> {
    let bad = |what: &str| Error::spec(format!("flattened stream: {what}"));
    let head = stream.get(..raw::HEADER_SIZE as usize).ok_or_else(|| bad("shorter than its header"))?;
    if !head.starts_with(raw::SIGNATURE) {
        return Err(bad("no \"makedumpfile\" signature"));
    }
    let be64 = |at: usize| -> Option<i64> { Some(i64::from_be_bytes(stream.get(at..at + 8)?.try_into().ok()?)) };
    if be64(16) != Some(raw::TYPE_FLAT_HEADER) {
        return Err(bad("type is not 1"));
    }
    let mut out = Vec::new();
    let mut pos = raw::HEADER_SIZE as usize;
    loop {
        let (Some(offset), Some(len)) = (be64(pos), be64(pos + 8)) else {
            return Err(bad("ends before its end marker"));
        };
        if offset == -1 && len == -1 {
            return Ok(out);
        }
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(bad("negative chunk offset or size"));
        };
        let data = stream.get(pos + 16..pos + 16 + len).ok_or_else(|| bad("chunk data cut short"))?;
        if out.len() < offset + len {
            out.resize(offset + len, 0);
        }
        if let Some(dst) = out.get_mut(offset..offset + len) {
            dst.copy_from_slice(data);
        }
        pos += 16 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmcore_formats::flat::FlatView;
    use vmcore_types::ReadAt;

    fn file() -> Vec<u8> {
        let mut f = vec![0u8; 300_000];
        for (i, b) in f.iter_mut().enumerate().take(70_000) {
            *b = (i % 13) as u8;
        }
        f[200_000] = 7;
        f[299_999] = 0; // the last chunk is zero but must keep the length
        f
    }

    fn view_bytes(stream: Vec<u8>) -> (Vec<u8>, u64) {
        let v = FlatView::index(stream).unwrap();
        let mut all = vec![0u8; v.size() as usize];
        v.read_exact_at(&mut all, 0).unwrap();
        (all, v.chunk_count())
    }

    #[test]
    fn stream_header_and_end_marker() {
        let s = flatten(b"abc", ChunkOrder::FileOrder);
        assert_eq!(&s[..16], b"makedumpfile\0\0\0\0");
        assert_eq!(&s[16..32], &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(s[32..4096].iter().all(|&b| b == 0));
        assert_eq!(&s[4096..4112], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(&s[4112..4115], b"abc");
        assert_eq!(&s[4115..], &[0xff; 16]);
    }

    #[test]
    fn every_order_rearranges_to_the_file() {
        let f = file();
        for order in [ChunkOrder::FileOrder, ChunkOrder::Shuffled(1), ChunkOrder::Shuffled(99)] {
            let s = flatten(&f, order);
            assert_eq!(rearrange(&s).unwrap(), f);
            let (bytes, chunks) = view_bytes(s);
            assert_eq!(bytes, f);
            // Chunks 0, 1 (data), 3 (one byte), 4 (last); 2 is all zero.
            assert_eq!(chunks, 4);
        }
        let shuffled = flatten(&f, ChunkOrder::Shuffled(1));
        assert_ne!(shuffled, flatten(&f, ChunkOrder::FileOrder));
        assert_eq!(shuffled, flatten(&f, ChunkOrder::Shuffled(1)));
    }

    #[test]
    fn repeated_ranges_and_small_chunks() {
        let f = file();
        let opts = FlattenOptions {
            chunk_size: 4096,
            order: ChunkOrder::Shuffled(5),
            skip_zero_chunks: false,
            repeat: vec![(4096, 104), (0, 10)],
        };
        let s = flatten_with(&f, &opts);
        assert_eq!(rearrange(&s).unwrap(), f);
        let (bytes, chunks) = view_bytes(s);
        assert_eq!(bytes, f);
        assert_eq!(chunks, 300_000u64.div_ceil(4096) + 2);
        assert!(rearrange(&flatten(&[], ChunkOrder::FileOrder)).unwrap().is_empty());
    }

    proptest::proptest! {
        /// Overlapping chunks in any order: the reader's index must agree with a plain
        /// rearrangement, for the whole file and for reads that straddle pieces.
        #[test]
        fn overlapping_chunks_read_like_their_rearrangement(
            chunks in proptest::collection::vec((0u64..2000, 1usize..300, proptest::prelude::any::<u8>()), 1..40),
            reads in proptest::collection::vec((0u64..2300, 0usize..400), 1..20),
        ) {
            let data: Vec<(u64, Vec<u8>)> = chunks
                .iter()
                .map(|&(off, len, seed)| {
                    let mut v = vec![0u8; len];
                    SplitMix64::new(u64::from(seed) + off).fill(&mut v);
                    (off, v)
                })
                .collect();
            let refs: Vec<(u64, &[u8])> = data.iter().map(|(o, v)| (*o, v.as_slice())).collect();
            let stream = stream_of(&refs);
            let want = rearrange(&stream).unwrap();
            let view = FlatView::index(stream).unwrap();
            proptest::prop_assert_eq!(view.size(), want.len() as u64);
            proptest::prop_assert_eq!(view.chunk_count(), chunks.len() as u64);
            for (off, len) in reads {
                let mut buf = vec![0u8; len];
                let got = view.read_exact_at(&mut buf, off);
                match want.get(off as usize..off as usize + len) {
                    Some(expect) => {
                        proptest::prop_assert!(got.is_ok());
                        proptest::prop_assert_eq!(buf.as_slice(), expect);
                    }
                    None => proptest::prop_assert!(got.is_err()),
                }
            }
        }
    }
}
