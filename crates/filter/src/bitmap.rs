//! A plain bitmap over page frame numbers.

/// One bit per page frame.
#[derive(Clone, PartialEq, Eq)]
pub struct PfnBitmap {
    words: Vec<u64>,
    len: u64,
}

impl std::fmt::Debug for PfnBitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PfnBitmap {{ {} bits, {} set }}", self.len, self.count())
    }
}

impl PfnBitmap {
    /// All clear, `len` frames.
    pub fn new(len: u64) -> PfnBitmap {
        PfnBitmap { words: vec![0; usize::try_from(len.div_ceil(64)).unwrap_or(0)], len }
    }

    /// Number of frames.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it covers no frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bit `pfn`.
    pub fn get(&self, pfn: u64) -> bool {
        pfn < self.len && self.words.get((pfn / 64) as usize).is_some_and(|w| w & (1 << (pfn % 64)) != 0)
    }

    /// Sets bit `pfn`.
    pub fn set(&mut self, pfn: u64) {
        if pfn < self.len {
            if let Some(w) = self.words.get_mut((pfn / 64) as usize) {
                *w |= 1 << (pfn % 64);
            }
        }
    }

    /// Clears bit `pfn`; returns whether it was set.
    pub fn clear(&mut self, pfn: u64) -> bool {
        let was = self.get(pfn);
        if let Some(w) = self.words.get_mut((pfn / 64) as usize) {
            *w &= !(1 << (pfn % 64));
        }
        was
    }

    /// Clears `[start, end)`; returns how many of its bits were set.
    pub fn clear_range(&mut self, start: u64, end: u64) -> u64 {
        let end = end.min(self.len);
        let mut cleared = 0;
        let mut pfn = start;
        while pfn < end {
            let bit = pfn % 64;
            let bits = (64 - bit).min(end - pfn);
            let mask = if bits == 64 { u64::MAX } else { ((1u64 << bits) - 1) << bit };
            if let Some(w) = self.words.get_mut((pfn / 64) as usize) {
                cleared += u64::from((*w & mask).count_ones());
                *w &= !mask;
            }
            pfn += bits;
        }
        cleared
    }

    /// Sets `[start, end)`.
    pub fn set_range(&mut self, start: u64, end: u64) {
        for pfn in start..end.min(self.len) {
            self.set(pfn);
        }
    }

    /// Number of set bits.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Set bits, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let base = i as u64 * 64;
            (0..64u64).filter(move |b| w & (1 << b) != 0).map(move |b| base + b)
        })
    }

    /// The bytes makedumpfile writes: bit `pfn % 8` of byte `pfn / 8`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.truncate(usize::try_from(self.len.div_ceil(8)).unwrap_or(0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_bytes_and_counts() {
        let mut b = PfnBitmap::new(70);
        b.set_range(3, 10);
        b.set(69);
        b.set(70);
        assert!(b.get(3) && b.get(9) && !b.get(10) && b.get(69) && !b.get(70));
        assert_eq!(b.count(), 8);
        assert!(b.clear(3));
        assert!(!b.clear(3));
        let mut c = b.clone();
        assert_eq!(c.clear_range(5, 200), 6);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![4]);
        let mut wide = PfnBitmap::new(300);
        wide.set_range(0, 300);
        assert_eq!(wide.clear_range(10, 138), 128);
        assert_eq!(wide.clear_range(0, 64), 10);
        assert_eq!(wide.count(), 300 - 138);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![4, 5, 6, 7, 8, 9, 69]);
        let bytes = b.to_bytes();
        assert_eq!(bytes.len(), 9);
        assert_eq!(bytes[0], 0b1111_0000);
        assert_eq!(bytes[1], 0b0000_0011);
        assert_eq!(bytes[8], 0b0010_0000);
    }
}
