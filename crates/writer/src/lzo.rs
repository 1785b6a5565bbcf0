//! LZO1X-1 compression into a caller's buffer with a dictionary kept between pages.
//!
//! makedumpfile -l calls liblzo2's `lzo1x_1_compress`; the stream here is the same, byte
//! for byte (the tests check it against the lzo1x crate, a port of liblzo2, and the fixture
//! tests check whole dumps against makedumpfile's). The lzo1x crate allocates its 32 KiB
//! dictionary and its output for every call and bounds-checks every read of the search
//! loop; with one dictionary per thread and unchecked reads (each with its proof) this is
//! 13% faster on the fixtures' pages. The output goes into a buffer no longer than the page
//! (a stream that long is stored raw anyway, so compression stops there), and short literal
//! runs are copied 16 bytes at a time: another 11-16% on the 6.1 fixture's kept pages
//! (6.1-8.1 against 7.0-9.8 µs per page, run alternately), as fast as liblzo2 or faster.
//!
//! The stream (Linux Documentation/staging/lzo.rst): literal runs and matches alternate;
//! a run of 1-3 literals hides in the low bits of the preceding match; matches are coded
//! as M2 (length 3-8, offset up to 2 KiB), M3 (offset up to 16 KiB) or M4 (longer offsets),
//! and the stream ends with an M4 of offset 0.

/// Bits of the hash that indexes the dictionary (liblzo2's `D_BITS` for LZO1X-1).
const DICT_BITS: u32 = 14;
/// liblzo2 compresses longer inputs in pieces of at most this many bytes, each with a
/// fresh dictionary, so that positions fit the dictionary's 16-bit entries.
const MAX_PIECE: usize = 49152;
/// Bytes at the end of a piece that are never searched: room for the 8-byte comparisons.
const TAIL: usize = 20;

const M2_MAX_LEN: usize = 8;
const M2_MAX_OFFSET: usize = 0x0800;
const M3_MAX_LEN: usize = 33;
const M3_MAX_OFFSET: usize = 0x4000;
const M4_MAX_LEN: usize = 9;
const M3_MARKER: u8 = 32;
const M4_MARKER: u8 = 16;

/// Room past an output's limit for whole 16-byte literal copies.
const SLACK: usize = 16;

/// One thread's LZO1X-1 compressor.
pub(crate) struct Lzo1x1 {
    /// Hash of four bytes -> position of their last occurrence, relative to the piece.
    dict: Box<[u16; 1 << DICT_BITS]>,
}

impl Lzo1x1 {
    pub(crate) fn new() -> Lzo1x1 {
        Lzo1x1 { dict: Box::new([0u16; 1 << DICT_BITS]) }
    }

    /// Appends the LZO1X-1 stream of `src` to `out` and returns true if the stream is
    /// shorter than `limit`; otherwise returns false, with `out` as it was, as soon as that
    /// is certain (a page that does not shrink is stored raw).
    pub(crate) fn compress(&mut self, src: &[u8], out: &mut Vec<u8>, limit: usize) -> bool {
        // liblzo2's bound on the stream's length.
        let bound = src.len() + src.len() / 16 + 64 + 3;
        let base = out.len();
        out.resize(base + limit.min(bound) + SLACK, 0);
        let mut w = Out { buf: out.get_mut(base..).unwrap_or_default(), at: 0, limit };
        let done = self.compress_into(src, &mut w);
        let len = w.at;
        if !done || len >= limit {
            out.truncate(base);
            return false;
        }
        out.truncate(base + len);
        true
    }

    /// Writes the stream into `w`; false when it reached the limit first.
    fn compress_into(&mut self, src: &[u8], w: &mut Out<'_>) -> bool {
        // Literals not yet written: the bytes just before `start`.
        let mut pending = 0;
        let mut start = 0;
        let mut left = src.len();
        while left > TAIL {
            let len = left.min(MAX_PIECE);
            if pending + len < 32 {
                break;
            }
            self.dict.fill(0);
            let Some(rest) = self.compress_piece(src, start, len, pending, w) else { return false };
            pending = rest;
            start += len;
            left -= len;
        }
        pending += left;
        if pending > 0 {
            let literals = src.get(src.len() - pending..).unwrap_or_default();
            if w.at == 0 && pending <= 238 {
                // A stream may open with a bare literal run: its first byte is 17 + length.
                w.push(17 + pending as u8);
            } else {
                w.literal_count(pending);
            }
            w.extend(literals);
        }
        w.extend(&[M4_MARKER | 1, 0, 0]);
        true
    }

    /// Compresses `src[start..start + len]` given `pending` unwritten literals before it;
    /// returns the literals left unwritten at its end, or `None` once the output reached
    /// its limit.
    fn compress_piece(
        &mut self,
        src: &[u8],
        start: usize,
        len: usize,
        pending: usize,
        w: &mut Out<'_>,
    ) -> Option<usize> {
        let end = start + len;
        let search_end = end - TAIL;
        // Start of the unwritten literals, which may lie in the previous piece.
        let mut lit_start = start - pending;
        let mut pos = start + 4usize.saturating_sub(pending);
        pos += 1 + ((pos - start) >> 5);
        loop {
            // Find the next position whose four bytes were seen before, skipping faster
            // the longer the literal run grows (incompressible data passes quickly).
            let (candidate, here) = loop {
                if pos >= search_end {
                    return Some(end - lit_start);
                }
                // SAFETY: pos < search_end = end - TAIL and end <= src.len().
                #[allow(unsafe_code)]
                let word = unsafe { read_u32(src, pos) };
                // Shifted down to DICT_BITS bits: always inside the dictionary.
                let slot = (0x1824_429d_u32.wrapping_mul(word) >> (32 - DICT_BITS)) as usize;
                let entry = self.dict.get_mut(slot).map_or(0, |e| std::mem::replace(e, (pos - start) as u16));
                let candidate = start + usize::from(entry);
                // SAFETY: the dictionary was cleared when this piece began and since holds
                // only `pos - start` of earlier positions, so candidate <= pos < search_end.
                #[allow(unsafe_code)]
                let seen = unsafe { read_u32(src, candidate) };
                if word == seen {
                    break (candidate, pos);
                }
                pos += 1 + ((pos - lit_start.max(start)) >> 5);
            };

            w.literal_count(here - lit_start);
            // here < search_end = end - 20, so 15 bytes past the literals are in `src`.
            w.literals(src, lit_start, here);

            let mut length = 4;
            loop {
                // SAFETY: here + length < search_end + 4 = end - 16 on the first pass and
                // < search_end afterwards (checked below), and candidate < here, so both
                // eight-byte reads end inside `src`.
                #[allow(unsafe_code)]
                let diff = unsafe { read_u64(src, here + length) ^ read_u64(src, candidate + length) };
                if diff != 0 {
                    length += diff.trailing_zeros() as usize / 8;
                    break;
                }
                length += 8;
                if here + length >= search_end {
                    break;
                }
            }
            w.matched(length, here - candidate);
            if w.at >= w.limit {
                return None;
            }
            pos = here + length;
            lit_start = pos;
        }
    }
}

/// The output: a buffer [`SLACK`] bytes longer than the limit (or than the longest
/// stream). Writes past its end are dropped but counted, so a stream that does not fit
/// only shows as `at` reaching the limit.
struct Out<'a> {
    buf: &'a mut [u8],
    at: usize,
    limit: usize,
}

impl Out<'_> {
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.buf.get_mut(self.at) {
            *slot = byte;
        }
        self.at += 1;
    }

    fn extend(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.at..self.at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.at += bytes.len();
    }

    /// Appends `src[from..to]`, where `src` has at least 15 more bytes after `to`: short
    /// runs, the usual ones, are copied 16 bytes at a time, past their end (the bytes
    /// beyond are overwritten next), instead of by a call to the C library's memcpy, which
    /// in musl costs more than the copy itself (the static build spent a third of its time
    /// there).
    fn literals(&mut self, src: &[u8], from: usize, to: usize) {
        let n = to - from;
        if n > 64 {
            return self.extend(src.get(from..to).unwrap_or_default());
        }
        let mut done = 0;
        while done < n {
            let (s, d) = (from + done, self.at + done);
            match (src.get(s..s + 16), self.buf.get_mut(d..d + 16)) {
                (Some(chunk), Some(dst)) => dst.copy_from_slice(chunk),
                _ => {
                    self.at += done;
                    return self.extend(src.get(s..to).unwrap_or_default());
                }
            }
            done += 16;
        }
        self.at += n;
    }

    /// Announces a run of `count` literals. Runs of 1-3 follow a match and go into the low
    /// bits of its second-to-last byte.
    fn literal_count(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        if count <= 3 {
            if let Some(byte) = self.at.checked_sub(2).and_then(|at| self.buf.get_mut(at)) {
                *byte |= count as u8;
            }
        } else if count <= 18 {
            self.push((count - 3) as u8);
        } else {
            self.push(0);
            self.long_count(count - 18);
        }
    }

    /// A count too large for its instruction's bits: zero bytes worth 255 each, then the rest.
    fn long_count(&mut self, mut rest: usize) {
        while rest > 255 {
            rest -= 255;
            self.push(0);
        }
        self.push(rest as u8);
    }

    fn matched(&mut self, length: usize, offset: usize) {
        if length <= M2_MAX_LEN && offset <= M2_MAX_OFFSET {
            let off = offset - 1;
            self.push((((length - 1) << 5) | ((off & 7) << 2)) as u8);
            self.push((off >> 3) as u8);
            return;
        }
        let (off, marker, max_len) = if offset <= M3_MAX_OFFSET {
            (offset - 1, M3_MARKER, M3_MAX_LEN)
        } else {
            let off = offset - 0x4000;
            (off, M4_MARKER | ((off >> 11) & 8) as u8, M4_MAX_LEN)
        };
        if length <= max_len {
            self.push(marker | (length - 2) as u8);
        } else {
            self.push(marker);
            self.long_count(length - max_len);
        }
        self.push((off << 2) as u8);
        self.push((off >> 6) as u8);
    }
}

/// The little-endian `u32` at `src[at..at + 4]`, without a bounds check: the search loop
/// is a third faster without them (the compressor's speed is the dump writer's).
///
/// # Safety
/// `at + 4 <= src.len()`.
#[allow(unsafe_code)]
unsafe fn read_u32(src: &[u8], at: usize) -> u32 {
    debug_assert!(at + 4 <= src.len());
    // SAFETY: the caller guarantees the four bytes are inside `src`; read_unaligned has no
    // alignment requirement and every bit pattern is a valid u32.
    u32::from_le(unsafe { std::ptr::read_unaligned(src.as_ptr().add(at).cast::<u32>()) })
}

/// The little-endian `u64` at `src[at..at + 8]`, without a bounds check.
///
/// # Safety
/// `at + 8 <= src.len()`.
#[allow(unsafe_code)]
unsafe fn read_u64(src: &[u8], at: usize) -> u64 {
    debug_assert!(at + 8 <= src.len());
    // SAFETY: as in read_u32, for eight bytes.
    u64::from_le(unsafe { std::ptr::read_unaligned(src.as_ptr().add(at).cast::<u64>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs that exercise every instruction: random bytes (long literal runs), runs of
    /// one byte (long matches), text-like repeats at short and long distances, and sizes
    /// around the piece boundary and the 20-byte tail.
    fn inputs() -> Vec<Vec<u8>> {
        let mut gen = vmcore_synth::rng::SplitMix64::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move || gen.next_u64();
        let mut all = Vec::new();
        for size in [0, 1, 3, 4, 17, 20, 21, 31, 32, 33, 100, 238, 239, 4096, 49152, 49153, 70_000, 150_000] {
            let random: Vec<u8> = (0..size).map(|_| next() as u8).collect();
            let zeros = vec![0u8; size];
            let mut mixed = Vec::with_capacity(size);
            while mixed.len() < size {
                let kind = next() % 4;
                let n = (next() % 300) as usize + 1;
                match kind {
                    0 => mixed.extend((0..n).map(|_| next() as u8)),
                    1 => mixed.extend(std::iter::repeat_n(next() as u8, n)),
                    _ if mixed.len() > 8 => {
                        let back = (next() as usize % mixed.len().min(if kind == 2 { 2048 } else { 49151 })) + 1;
                        let from = mixed.len() - back;
                        for i in 0..n {
                            mixed.push(mixed[from + i % back]);
                        }
                    }
                    _ => mixed.push(b'a'),
                }
            }
            mixed.truncate(size);
            all.extend([random, zeros, mixed]);
        }
        all
    }

    #[test]
    fn streams_equal_liblzo2s_lzo1x_1_and_decompress() {
        let mut lzo = Lzo1x1::new();
        let mut out = Vec::new();
        for input in inputs() {
            out.clear();
            assert!(lzo.compress(&input, &mut out, usize::MAX), "{} bytes: unlimited", input.len());
            let reference = lzo1x::compress(&input, lzo1x::CompressLevel::new(3));
            assert!(out == reference, "{} bytes: streams differ", input.len());
            let mut back = vec![0; input.len()];
            lzo1x::decompress(&out, &mut back).expect("decompresses");
            assert!(back == input, "{} bytes: round trip", input.len());
        }
    }

    /// Also: a stream is appended to what `out` holds, which a refused one leaves as it was.
    #[test]
    fn a_stream_reaching_the_limit_is_refused_and_one_below_is_whole() {
        let mut lzo = Lzo1x1::new();
        let prefix = b"earlier pages".to_vec();
        let mut whole = Vec::new();
        for input in inputs() {
            whole.clear();
            assert!(lzo.compress(&input, &mut whole, usize::MAX));
            let len = whole.len();
            let mut out = prefix.clone();
            assert!(!lzo.compress(&input, &mut out, len), "{} bytes, limit {len}", input.len());
            assert!(out == prefix, "{} bytes: a refused stream changed the output", input.len());
            assert!(lzo.compress(&input, &mut out, len + 1), "{} bytes, limit {}", input.len(), len + 1);
            assert!(out[..prefix.len()] == prefix[..] && out[prefix.len()..] == whole[..], "{} bytes", input.len());
            // A page of random bytes does not shrink, and gives up before the end.
            if input.len() == 4096 && len > 4096 {
                assert!(!lzo.compress(&input, &mut out, 4096));
            }
        }
    }

    /// A dump's thread compresses page after page with one dictionary, some pages giving up
    /// at the limit: each stream must still be the one a fresh compressor would write. A
    /// page given up on is followed by itself, whose bytes match what the dictionary holds.
    #[test]
    fn pages_in_sequence_each_give_liblzo2s_stream() {
        let pages: Vec<Vec<u8>> = inputs().into_iter().filter(|i| i.len() == 4096 || i.len() < 300).collect();
        let mut lzo = Lzo1x1::new();
        let mut out = Vec::new();
        for round in 0..20 {
            for (i, page) in pages.iter().enumerate() {
                let reference = lzo1x::compress(page, lzo1x::CompressLevel::new(3));
                if (i + round) % 2 == 0 {
                    assert!(!lzo.compress(page, &mut out, reference.len() / 2), "round {round}, page {i}: limited");
                }
                out.clear();
                assert!(lzo.compress(page, &mut out, usize::MAX), "round {round}, page {i}");
                assert!(out == reference, "round {round}, page {i} ({} bytes): streams differ", page.len());
            }
        }
    }

    proptest::proptest! {
        /// Inputs from a small alphabet, so that matches of every length and offset occur.
        #[test]
        fn any_input_gives_liblzo2s_stream(input in proptest::collection::vec(0u8..4, 0..20_000)) {
            let mut out = Vec::new();
            proptest::prop_assert!(Lzo1x1::new().compress(&input, &mut out, usize::MAX));
            proptest::prop_assert!(out == lzo1x::compress(&input, lzo1x::CompressLevel::new(3)));
        }
    }
}
