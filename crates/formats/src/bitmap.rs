//! A kdump file's page bitmaps (bit `pfn % 8`, LSB first, of byte `pfn / 8`), read from
//! the file as they are needed.
//!
//! Each bitmap takes one bit per page frame of the dumped machine: 32 MiB per TiB of RAM,
//! both 64 MiB. Held in memory, they alone would pass the writer's memory bound when a
//! multi-terabyte dump is refiltered. So a bitmap keeps only a count of set bits per
//! block of [`BLOCK_BYTES`] (1/512 of its size) and a few recently used blocks; the count
//! makes `rank` (the index of a dumped page's descriptor) one block read away. Readers go
//! in pfn order, so nearly every query finds its block among those kept.

use std::sync::Mutex;

use vmcore_types::ReadAt;

use crate::error::{read_exact, Error, Result};

/// Bytes per block: 32768 page frames.
pub const BLOCK_BYTES: usize = 4096;
const BLOCK_BITS: u64 = BLOCK_BYTES as u64 * 8;
/// Blocks kept in memory per bitmap: the writer's threads each read near their own pfn.
const KEPT_BLOCKS: usize = 16;
/// Bytes read at a time while counting a bitmap's bits at open.
const SCAN_BYTES: usize = 256 * BLOCK_BYTES;
/// A block's bits are counted in words of 64 bytes, so a rank query counts at most 8
/// words inside its block.
const WORD_BYTES: usize = 64;

/// One bitmap of a kdump file, at a fixed offset of its source.
#[derive(Debug)]
pub struct FileBitmap {
    what: &'static str,
    offset: u64,
    nbits: u64,
    /// Set bits before each block, then the total.
    rank: Vec<u64>,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    blocks: Vec<Block>,
    /// The next block to replace once all places are taken.
    hand: usize,
}

#[derive(Debug)]
struct Block {
    index: u64,
    bytes: Box<[u8; BLOCK_BYTES]>,
    /// Set bits of the block before each of its 64-byte words.
    word_rank: [u16; BLOCK_BYTES / WORD_BYTES],
}

impl Block {
    fn rank_in(&self, bit: u64) -> u64 {
        let byte = (bit / 8) as usize;
        let word = byte / WORD_BYTES;
        let mut n = u64::from(self.word_rank.get(word).copied().unwrap_or(0));
        let bytes = self.bytes.get(word * WORD_BYTES..byte).unwrap_or_default();
        n += bytes.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
        let rem = (bit % 8) as u32;
        if rem != 0 {
            let low = (1u16 << rem) as u8 - 1;
            n += u64::from((self.bytes.get(byte).copied().unwrap_or(0) & low).count_ones());
        }
        n
    }

    fn get(&self, bit: u64) -> bool {
        self.bytes.get((bit / 8) as usize).is_some_and(|b| b & (1 << (bit % 8)) != 0)
    }
}

impl FileBitmap {
    /// The bitmap of `nbits` bits at `offset` of `src`, which must hold all of it. Reads
    /// it once, a bounded piece at a time, to count its bits. Bits past `nbits` read as
    /// clear whatever the file has there.
    pub fn open(src: &dyn ReadAt, offset: u64, nbits: u64, what: &'static str) -> Result<FileBitmap> {
        let bytes = nbits.div_ceil(8);
        let end = offset.checked_add(bytes).ok_or(Error::Truncated { what, offset, len: bytes })?;
        if end > src.size() {
            return Err(Error::Truncated { what, offset, len: bytes });
        }
        // Grown as the bits are read, not sized by the header's claim.
        let mut rank = Vec::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; SCAN_BYTES];
        let mut at = 0u64;
        while at < bytes {
            let n = (bytes - at).min(SCAN_BYTES as u64) as usize;
            let piece = buf.get_mut(..n).unwrap_or_default();
            read_exact(src, piece, offset + at, what)?;
            clear_past(piece, at, nbits);
            for block in piece.chunks(BLOCK_BYTES) {
                rank.push(total);
                total += count_ones(block);
            }
            at += n as u64;
        }
        rank.push(total);
        Ok(FileBitmap { what, offset, nbits, rank, kept: Mutex::default() })
    }

    /// Number of bits it covers.
    pub fn len(&self) -> u64 {
        self.nbits
    }

    /// Whether it covers no bits.
    pub fn is_empty(&self) -> bool {
        self.nbits == 0
    }

    /// Total set bits.
    pub fn count_ones(&self) -> u64 {
        self.rank.last().copied().unwrap_or(0)
    }

    /// Set bits in block `index` (0 past the end).
    fn ones_in(&self, index: u64) -> u64 {
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        match (self.rank.get(i), self.rank.get(i.saturating_add(1))) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        }
    }

    /// Bits in block `index`: the last block may be short.
    fn bits_in(&self, index: u64) -> u64 {
        self.nbits.saturating_sub(index * BLOCK_BITS).min(BLOCK_BITS)
    }

    /// Bit `pfn`; bits past the end are clear.
    pub fn get(&self, src: &dyn ReadAt, pfn: u64) -> Result<bool> {
        if pfn >= self.nbits {
            return Ok(false);
        }
        let index = pfn / BLOCK_BITS;
        match self.ones_in(index) {
            0 => Ok(false),
            n if n == self.bits_in(index) => Ok(true),
            _ => self.with_block(src, index, |b| b.get(pfn % BLOCK_BITS)),
        }
    }

    /// Number of set bits below `pfn`.
    pub fn rank(&self, src: &dyn ReadAt, pfn: u64) -> Result<u64> {
        let pfn = pfn.min(self.nbits);
        let index = pfn / BLOCK_BITS;
        let before = self.rank.get(usize::try_from(index).unwrap_or(usize::MAX)).copied();
        let Some(before) = before else { return Ok(self.count_ones()) };
        let bit = pfn % BLOCK_BITS;
        Ok(before
            + match self.ones_in(index) {
                0 => 0,
                n if n == self.bits_in(index) => bit,
                _ if bit == 0 => 0,
                _ => self.with_block(src, index, |b| b.rank_in(bit))?,
            })
    }

    /// The rank of `pfn` (set bits below it) if its bit is set, else `None`: what a
    /// descriptor lookup needs, from one block where `get` and `rank` would each find it.
    pub fn rank_if_set(&self, src: &dyn ReadAt, pfn: u64) -> Result<Option<u64>> {
        if pfn >= self.nbits {
            return Ok(None);
        }
        let index = pfn / BLOCK_BITS;
        let Some(&before) = self.rank.get(usize::try_from(index).unwrap_or(usize::MAX)) else { return Ok(None) };
        let bit = pfn % BLOCK_BITS;
        Ok(match self.ones_in(index) {
            0 => None,
            n if n == self.bits_in(index) => Some(before + bit),
            _ => self.with_block(src, index, |b| b.get(bit).then(|| before + b.rank_in(bit)))?,
        })
    }

    /// Calls `f` with each run `[start, end)` of set bits, in order.
    pub fn for_each_run(&self, src: &dyn ReadAt, mut f: impl FnMut(u64, u64)) -> Result<()> {
        let mut run: Option<u64> = None;
        let mut bytes = Box::new([0u8; BLOCK_BYTES]);
        let blocks = self.nbits.div_ceil(BLOCK_BITS);
        let mut flush = |run: &mut Option<u64>, end: u64| {
            if let Some(start) = run.take() {
                f(start, end);
            }
        };
        for index in 0..blocks {
            let base = index * BLOCK_BITS;
            let bits = self.bits_in(index);
            let ones = self.ones_in(index);
            if ones == 0 {
                flush(&mut run, base);
                continue;
            }
            if ones == bits {
                run.get_or_insert(base);
                continue;
            }
            self.read_block(src, index, &mut bytes)?;
            for (i, &byte) in bytes.iter().enumerate().take(bits.div_ceil(8) as usize) {
                let at = base + i as u64 * 8;
                match byte {
                    0 => flush(&mut run, at),
                    0xff => {
                        run.get_or_insert(at);
                    }
                    _ => {
                        for bit in 0..8 {
                            if byte & (1 << bit) != 0 {
                                run.get_or_insert(at + bit);
                            } else {
                                flush(&mut run, at + bit);
                            }
                        }
                    }
                }
            }
        }
        flush(&mut run, self.nbits);
        Ok(())
    }

    /// Whether this bitmap (of `src`) and `other` (of `other_src`) have the same bits.
    pub fn same_bits(&self, src: &dyn ReadAt, other: &FileBitmap, other_src: &dyn ReadAt) -> Result<bool> {
        if self.nbits != other.nbits || self.rank != other.rank {
            return Ok(false);
        }
        let mut a = Box::new([0u8; BLOCK_BYTES]);
        let mut b = Box::new([0u8; BLOCK_BYTES]);
        for index in 0..self.nbits.div_ceil(BLOCK_BITS) {
            let ones = self.ones_in(index);
            if ones == 0 || ones == self.bits_in(index) {
                continue;
            }
            self.read_block(src, index, &mut a)?;
            other.read_block(other_src, index, &mut b)?;
            if a != b {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads block `index`, clearing bits past the end.
    fn read_block(&self, src: &dyn ReadAt, index: u64, bytes: &mut [u8; BLOCK_BYTES]) -> Result<()> {
        let start = index * BLOCK_BYTES as u64;
        let len = self.nbits.div_ceil(8).saturating_sub(start).min(BLOCK_BYTES as u64) as usize;
        bytes.fill(0);
        let piece = bytes.get_mut(..len).unwrap_or_default();
        read_exact(src, piece, self.offset + start, self.what)?;
        clear_past(piece, start, self.nbits);
        Ok(())
    }

    /// Runs `f` on block `index`, reading it into the kept blocks if it is not there.
    fn with_block<T>(&self, src: &dyn ReadAt, index: u64, f: impl FnOnce(&Block) -> T) -> Result<T> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(block) = kept.blocks.iter().find(|b| b.index == index) {
            return Ok(f(block));
        }
        let mut block = if kept.blocks.len() < KEPT_BLOCKS {
            Block { index, bytes: Box::new([0; BLOCK_BYTES]), word_rank: [0; BLOCK_BYTES / WORD_BYTES] }
        } else {
            let hand = kept.hand;
            kept.hand = (hand + 1) % KEPT_BLOCKS;
            kept.blocks.swap_remove(hand)
        };
        block.index = index;
        self.read_block(src, index, &mut block.bytes)?;
        let mut n = 0u16;
        for (rank, word) in block.word_rank.iter_mut().zip(block.bytes.chunks(WORD_BYTES)) {
            *rank = n;
            n += count_ones(word) as u16;
        }
        let result = f(&block);
        kept.blocks.push(block);
        Ok(result)
    }
}

fn count_ones(bytes: &[u8]) -> u64 {
    bytes.iter().map(|b| u64::from(b.count_ones())).sum()
}

/// Clears the bits of `piece`, which starts at byte `start` of a bitmap, from bit `nbits`.
fn clear_past(piece: &mut [u8], start: u64, nbits: u64) {
    let first_bit = start * 8;
    for (i, byte) in piece.iter_mut().enumerate() {
        let bit = first_bit + i as u64 * 8;
        if bit + 8 <= nbits {
            continue;
        }
        *byte &= if bit >= nbits { 0 } else { ((1u16 << (nbits - bit)) - 1) as u8 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn open(bytes: &[u8], offset: usize, nbits: u64) -> (Vec<u8>, FileBitmap) {
        let mut file = vec![0xa5u8; offset];
        file.extend_from_slice(bytes);
        file.extend_from_slice(&[0xff; 3]);
        let bitmap = FileBitmap::open(&file, offset as u64, nbits, "test bitmap").expect("opens");
        (file, bitmap)
    }

    #[test]
    fn lsb_first_bit_order() {
        let (file, b) = open(&[0b0000_0101, 0x80], 7, 16);
        let src: &dyn ReadAt = &file;
        let get = |pfn| b.get(src, pfn).expect("reads");
        assert!(get(0) && !get(1) && get(2) && get(15) && !get(16));
        assert_eq!(b.rank(src, 0).ok(), Some(0));
        assert_eq!(b.rank(src, 3).ok(), Some(2));
        assert_eq!(b.rank(src, 16).ok(), Some(3));
        assert_eq!(b.count_ones(), 3);
    }

    #[test]
    fn bits_past_the_length_do_not_count() {
        let (file, b) = open(&[0xff, 0xff], 0, 12);
        assert_eq!(b.count_ones(), 12);
        assert_eq!(b.get(&file, 12).ok(), Some(false));
    }

    #[test]
    fn a_bitmap_the_file_does_not_hold_is_an_error_naming_it() {
        let file = vec![0u8; 100];
        let err = FileBitmap::open(&file, 90, 100, "2nd bitmap").expect_err("13 bytes past 90 of 100");
        assert!(err.to_string().contains("2nd bitmap"), "{err}");
    }

    #[test]
    fn a_multi_terabyte_bitmap_keeps_a_small_index() {
        // 4 TiB of 4 KiB pages: a 128 MiB bitmap, counted from a sparse source.
        struct Sparse;
        impl ReadAt for Sparse {
            fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
                for (i, b) in buf.iter_mut().enumerate() {
                    // One set bit per 1 MiB of bitmap.
                    *b = u8::from((offset + i as u64) % (1 << 20) == 0);
                }
                Ok(())
            }
            fn size(&self) -> u64 {
                1 << 40
            }
        }
        let nbits = 1u64 << 30;
        let b = FileBitmap::open(&Sparse, 0, nbits, "big").expect("opens");
        assert_eq!(b.count_ones(), 128);
        assert_eq!(b.rank.len(), (nbits / BLOCK_BITS) as usize + 1);
        assert_eq!(b.rank(&Sparse, 8 << 20).ok(), Some(1));
        assert_eq!(b.rank(&Sparse, (8 << 20) + 1).ok(), Some(2));
        let mut runs = Vec::new();
        b.for_each_run(&Sparse, |s, e| runs.push((s, e))).expect("reads");
        assert_eq!(runs.len(), 128);
        assert_eq!(runs[1], (8 << 20, (8 << 20) + 1));
    }

    /// Queries jumping between more blocks than are kept, so that blocks are replaced and
    /// read again: every answer still equals a naive count.
    #[test]
    fn queries_over_more_blocks_than_are_kept() {
        let blocks = KEPT_BLOCKS * 2 + 7;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let bytes: Vec<u8> = (0..blocks * BLOCK_BYTES).map(|_| next() as u8 & next() as u8).collect();
        let nbits = bytes.len() as u64 * 8 - 5;
        let (file, b) = open(&bytes, 3, nbits);
        let src: &dyn ReadAt = &file;
        // Set bits before each byte.
        let mut before = vec![0u64];
        for &byte in &bytes {
            before.push(before.last().copied().unwrap_or(0) + u64::from(byte.count_ones()));
        }
        for _ in 0..20_000 {
            let pfn = next() % (nbits + 1);
            let (byte, bit) = ((pfn / 8) as usize, pfn % 8);
            let low = u64::from((bytes.get(byte).copied().unwrap_or(0) & ((1u16 << bit) - 1) as u8).count_ones());
            assert_eq!(b.rank(src, pfn).ok(), Some(before[byte] + low), "rank {pfn}");
            let set = pfn < nbits && bytes[byte] >> bit & 1 == 1;
            assert_eq!(b.get(src, pfn).ok(), Some(set), "bit {pfn}");
            assert_eq!(b.rank_if_set(src, pfn).ok(), Some(set.then_some(before[byte] + low)), "rank if set {pfn}");
        }
        assert!(b.kept.lock().map(|k| k.blocks.len() == KEPT_BLOCKS).unwrap_or(false));
    }

    proptest! {
        /// Bits, ranks and runs equal a naive reading of the bytes, across blocks that are
        /// clear, full and mixed, whatever order the queries come in.
        #[test]
        fn queries_match_a_naive_reading(
            pattern in proptest::collection::vec((0u8..3, any::<u8>()), 1..12),
            cut in 0u64..(12 * BLOCK_BITS),
            probes in proptest::collection::vec(any::<u64>(), 0..200),
        ) {
            let mut bytes = Vec::new();
            for &(kind, seed) in &pattern {
                let fill = |i: usize| match kind {
                    0 => 0,
                    1 => 0xff,
                    _ => (i as u8).wrapping_mul(seed | 1).rotate_left(u32::from(seed % 8)),
                };
                bytes.extend((0..BLOCK_BYTES).map(fill));
            }
            let nbits = cut.min(bytes.len() as u64 * 8);
            let (file, b) = open(&bytes, 5, nbits);
            let src: &dyn ReadAt = &file;
            let bit = |pfn: u64| pfn < nbits && bytes[(pfn / 8) as usize] >> (pfn % 8) & 1 == 1;
            let mut naive_rank = vec![0u64];
            for pfn in 0..nbits {
                naive_rank.push(naive_rank[pfn as usize] + u64::from(bit(pfn)));
            }
            prop_assert_eq!(b.count_ones(), naive_rank[nbits as usize]);
            for &p in &probes {
                let pfn = p % (nbits + 10);
                prop_assert_eq!(b.get(src, pfn).ok(), Some(bit(pfn)));
                prop_assert_eq!(b.rank(src, pfn).ok(), Some(naive_rank[pfn.min(nbits) as usize]));
                let if_set = bit(pfn).then(|| naive_rank[pfn as usize]);
                prop_assert_eq!(b.rank_if_set(src, pfn).ok(), Some(if_set));
            }
            let mut runs = Vec::new();
            b.for_each_run(src, |s, e| runs.push((s, e))).expect("reads");
            let mut naive_runs = Vec::new();
            let mut start = None;
            for pfn in 0..=nbits {
                match (bit(pfn), start) {
                    (true, None) => start = Some(pfn),
                    (false, Some(s)) => { naive_runs.push((s, pfn)); start = None; }
                    _ => {}
                }
            }
            prop_assert_eq!(runs, naive_runs);
            prop_assert!(b.same_bits(src, &b, src).expect("reads"));
        }
    }
}
