//! Page bitmaps as makedumpfile stores them: bit `pfn % 8` (LSB first) of byte `pfn / 8`.

/// A bitmap over page frame numbers, with a rank index.
#[derive(Clone)]
pub struct Bitmap {
    bytes: Vec<u8>,
    nbits: u64,
    /// Set bits before each block of [`RANK_BLOCK_BYTES`] bytes.
    rank: Vec<u64>,
}

/// Bytes per rank block: 64 bytes = 512 pages, so a rank query counts at most 8 words.
const RANK_BLOCK_BYTES: usize = 64;

impl std::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitmap {{ {} bits, {} set }}", self.nbits, self.count_ones())
    }
}

impl Bitmap {
    /// A bitmap of `nbits` bits over `bytes`, with the index that makes [`Bitmap::rank`]
    /// cheap. Bits past `nbits` are cleared first, so that `rank` and `get` agree.
    pub fn new(bytes: Vec<u8>, nbits: u64) -> Bitmap {
        let mut b = Bitmap { bytes, nbits, rank: Vec::new() };
        b.clear_tail();
        let mut total = 0u64;
        let mut rank = Vec::with_capacity(b.bytes.len() / RANK_BLOCK_BYTES + 1);
        for block in b.bytes.chunks(RANK_BLOCK_BYTES) {
            rank.push(total);
            total += block.iter().map(|x| u64::from(x.count_ones())).sum::<u64>();
        }
        rank.push(total);
        b.rank = rank;
        b
    }

    fn clear_tail(&mut self) {
        let Ok(first) = usize::try_from(self.nbits / 8) else {
            return;
        };
        let rem = (self.nbits % 8) as u32;
        if let Some(byte) = self.bytes.get_mut(first) {
            *byte &= ((1u16 << rem) - 1) as u8;
        }
        for byte in self.bytes.iter_mut().skip(first + 1) {
            *byte = 0;
        }
    }

    /// Number of bits the bitmap covers.
    pub fn len(&self) -> u64 {
        self.nbits
    }

    /// Whether it covers no bits.
    pub fn is_empty(&self) -> bool {
        self.nbits == 0
    }

    /// Bit `pfn`; bits past the end are 0.
    pub fn get(&self, pfn: u64) -> bool {
        if pfn >= self.nbits {
            return false;
        }
        let Ok(i) = usize::try_from(pfn / 8) else {
            return false;
        };
        self.bytes.get(i).is_some_and(|b| b & (1 << (pfn % 8)) != 0)
    }

    /// Number of set bits below `pfn`.
    pub fn rank(&self, pfn: u64) -> u64 {
        let pfn = pfn.min(self.nbits);
        let byte = usize::try_from(pfn / 8).unwrap_or(usize::MAX);
        let block = byte / RANK_BLOCK_BYTES;
        let mut n = self.rank.get(block).copied().unwrap_or_else(|| self.rank.last().copied().unwrap_or(0));
        let start = block * RANK_BLOCK_BYTES;
        if let Some(bytes) = self.bytes.get(start..byte) {
            n += bytes.iter().map(|x| u64::from(x.count_ones())).sum::<u64>();
        }
        let rem = (pfn % 8) as u32;
        if rem != 0 {
            if let Some(b) = self.bytes.get(byte) {
                n += u64::from((b & ((1u16 << rem) as u8).wrapping_sub(1)).count_ones());
            }
        }
        n
    }

    /// Total set bits.
    pub fn count_ones(&self) -> u64 {
        self.rank(self.nbits)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsb_first_bit_order() {
        let b = Bitmap::new(vec![0b0000_0101, 0x80], 16);
        assert!(b.get(0) && !b.get(1) && b.get(2) && b.get(15) && !b.get(16));
        assert_eq!(b.rank(0), 0);
        assert_eq!(b.rank(3), 2);
        assert_eq!(b.rank(16), 3);
        assert_eq!(b.count_ones(), 3);
    }

    #[test]
    fn bits_past_the_length_do_not_count() {
        let b = Bitmap::new(vec![0xff, 0xff], 12);
        assert_eq!(b.count_ones(), 12);
        assert!(!b.get(12));
    }

    proptest! {
        #[test]
        fn rank_matches_a_naive_count(bytes in proptest::collection::vec(any::<u8>(), 0..400), cut in 0u64..4000) {
            let nbits = cut.min(bytes.len() as u64 * 8);
            let b = Bitmap::new(bytes.clone(), nbits);
            let mut naive = 0u64;
            for pfn in 0..=nbits {
                prop_assert_eq!(b.rank(pfn), naive);
                if pfn < nbits && (bytes[(pfn / 8) as usize] >> (pfn % 8)) & 1 == 1 { naive += 1; }
            }
        }
    }
}
