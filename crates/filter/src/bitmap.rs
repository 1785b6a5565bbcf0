//! Bitmaps over page frame numbers.
//!
//! A machine's bitmaps are mostly long runs: RAM present from end to end, free memory
//! excluded in large blocks. They are kept in chunks of 32768 frames, and a chunk whose
//! frames are all set or all clear takes no memory: a bitmap costs 4 KiB per 128 MiB of
//! RAM where set and clear frames mix, instead of 32 MiB per TiB whatever its content.
//! Chunks come in groups of 4096 (512 GiB of 4 KiB frames), which are uniform in turn until
//! a frame in them differs: a sparse physical address space (RAM at 2^47, say) or a huge
//! segment without data costs nothing either.
//!
//! A bitmap made with a [`BitmapStorage`] keeps at most its budget of mixed chunks in
//! memory and writes the others to a temporary file (see `spill`).

use std::sync::Arc;

use crate::spill::{BitmapStorage, Spill};

/// Frames per chunk.
const CHUNK_BITS: u64 = 1 << 15;
const CHUNK_WORDS: usize = (CHUNK_BITS / 64) as usize;
/// Bytes of a chunk in the bitmap makedumpfile writes.
const CHUNK_BYTES: u64 = CHUNK_BITS / 8;
/// Chunks per group.
const GROUP_CHUNKS: usize = 1 << 12;

type Words = [u64; CHUNK_WORDS];

static CLEAR: Chunk = Chunk::Clear;
static SET: Chunk = Chunk::Set;

/// GROUP_CHUNKS chunks.
#[derive(Clone)]
enum Group {
    Clear,
    /// Every frame of the group below the bitmap's length is set.
    Set,
    Chunks(Box<[Chunk]>),
}

/// Only a bitmap without storage is cloned as is: it has no `Spilled` chunk.
#[derive(Clone)]
enum Chunk {
    Clear,
    /// Every frame of the chunk below the bitmap's length is set.
    Set,
    /// Bits at and past the bitmap's length are always clear.
    Mixed(Box<Words>),
    /// Mixed, its words in the bitmap's temporary file.
    Spilled,
}

/// One bit per page frame.
pub struct PfnBitmap {
    groups: Vec<Group>,
    /// Number of chunks.
    chunks: usize,
    len: u64,
    spill: Option<Spill>,
}

impl std::fmt::Debug for PfnBitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PfnBitmap {{ {} bits, {} set }}", self.len, self.count())
    }
}

impl PartialEq for PfnBitmap {
    fn eq(&self, other: &PfnBitmap) -> bool {
        self.len == other.len
            && (0..self.chunks).all(|c| {
                matches!((self.chunk(c), other.chunk(c)), (Chunk::Clear, Chunk::Clear) | (Chunk::Set, Chunk::Set))
                    || self.load(c) == other.load(c)
            })
    }
}

impl Eq for PfnBitmap {}

impl Clone for PfnBitmap {
    /// A copy stored as the original is (its own temporary file, the same budget).
    fn clone(&self) -> PfnBitmap {
        let Some(spill) = &self.spill else {
            return PfnBitmap { groups: self.groups.clone(), chunks: self.chunks, len: self.len, spill: None };
        };
        let mut copy = PfnBitmap::spilling(self.len, &spill.storage);
        for (g, group) in self.groups.iter().enumerate() {
            match group {
                Group::Chunks(_) => {
                    for c in g * GROUP_CHUNKS..((g + 1) * GROUP_CHUNKS).min(self.chunks) {
                        let chunk = match self.chunk(c) {
                            Chunk::Clear => continue,
                            Chunk::Set => Chunk::Set,
                            Chunk::Mixed(_) | Chunk::Spilled => Chunk::Mixed(self.load(c)),
                        };
                        copy.replace_chunk(c, chunk);
                    }
                }
                uniform => {
                    if let Some(slot) = copy.groups.get_mut(g) {
                        *slot = uniform.clone();
                    }
                }
            }
        }
        // Chunks that could not be read back are clear in the copy too: it says so.
        if let (Some(lost), Some(spill)) = (self.lost(), &copy.spill) {
            spill.mark_lost(lost);
        }
        copy
    }
}

impl PfnBitmap {
    /// All clear, `len` frames, in memory.
    ///
    /// The filter refuses more than 2^40 frames (see `MAX_FRAMES` there), whose groups
    /// take 128 KiB.
    pub fn new(len: u64) -> PfnBitmap {
        let chunks = usize::try_from(len.div_ceil(CHUNK_BITS)).unwrap_or(usize::MAX);
        PfnBitmap { groups: vec![Group::Clear; chunks.div_ceil(GROUP_CHUNKS)], chunks, len, spill: None }
    }

    /// All clear, `len` frames; the mixed chunks past `storage.memory` bytes go to a
    /// temporary file in `storage.dir`.
    pub fn spilling(len: u64, storage: &Arc<BitmapStorage>) -> PfnBitmap {
        let mut b = PfnBitmap::new(len);
        b.spill = Some(Spill::new(Arc::clone(storage), CHUNK_WORDS));
        b
    }

    /// All clear, `len` frames, stored as this one is.
    pub fn new_like(&self, len: u64) -> PfnBitmap {
        match &self.spill {
            Some(spill) => PfnBitmap::spilling(len, &spill.storage),
            None => PfnBitmap::new(len),
        }
    }

    /// What went wrong reading a chunk back from the temporary file, if anything did: its
    /// bits then read as clear, and whatever was made from them is wrong.
    pub fn lost(&self) -> Option<&str> {
        self.spill.as_ref().and_then(Spill::lost)
    }

    /// Why the bitmap could not spill (the directory is missing, the disk is full, ...),
    /// if that happened: it then holds its chunks in memory, past the budget.
    pub fn spill_stopped(&self) -> Option<&str> {
        self.spill.as_ref().and_then(Spill::stopped_by)
    }

    /// Mixed chunks in memory and in the temporary file (for tests).
    pub fn mixed_chunks(&self) -> (usize, usize) {
        let (mut resident, mut spilled) = (0, 0);
        for c in 0..self.chunks {
            match self.chunk(c) {
                Chunk::Mixed(_) => resident += 1,
                Chunk::Spilled => spilled += 1,
                _ => {}
            }
        }
        (resident, spilled)
    }

    /// Chunk `c` (all clear when its group was never written).
    fn chunk(&self, c: usize) -> &Chunk {
        match self.groups.get(c / GROUP_CHUNKS) {
            Some(Group::Chunks(chunks)) => chunks.get(c % GROUP_CHUNKS).unwrap_or(&CLEAR),
            Some(Group::Set) => &SET,
            _ => &CLEAR,
        }
    }

    /// Chunk `c` for writing, its group allocated if needed.
    fn chunk_mut(&mut self, c: usize) -> Option<&mut Chunk> {
        if c >= self.chunks {
            return None;
        }
        let group = self.groups.get_mut(c / GROUP_CHUNKS)?;
        let fill = match group {
            Group::Chunks(_) => None,
            Group::Clear => Some(Chunk::Clear),
            Group::Set => Some(Chunk::Set),
        };
        if let Some(fill) = fill {
            *group = Group::Chunks(vec![fill; GROUP_CHUNKS].into_boxed_slice());
        }
        match group {
            Group::Chunks(chunks) => chunks.get_mut(c % GROUP_CHUNKS),
            _ => None,
        }
    }

    /// Puts `new` in place of chunk `c`, keeping the count of chunks in memory, and
    /// writes older chunks out if that passes the budget.
    fn replace_chunk(&mut self, c: usize, new: Chunk) {
        let mixed = matches!(new, Chunk::Mixed(_));
        let Some(slot) = self.chunk_mut(c) else { return };
        let was_mixed = matches!(slot, Chunk::Mixed(_));
        *slot = new;
        if let Some(spill) = &mut self.spill {
            spill.resident = (spill.resident + usize::from(mixed)).saturating_sub(usize::from(was_mixed));
        }
        if mixed {
            self.evict(c);
        }
    }

    /// Puts `new` in place of group `g`.
    fn replace_group(&mut self, g: usize, new: Group) {
        let Some(slot) = self.groups.get_mut(g) else { return };
        let mixed = match slot {
            Group::Chunks(chunks) => chunks.iter().filter(|c| matches!(c, Chunk::Mixed(_))).count(),
            _ => 0,
        };
        *slot = new;
        if let Some(spill) = &mut self.spill {
            spill.resident = spill.resident.saturating_sub(mixed);
        }
    }

    /// Writes mixed chunks other than `keep` to the temporary file until the budget holds,
    /// taking them in pfn order from where the last eviction stopped.
    fn evict(&mut self, keep: usize) {
        let Some(spill) = &mut self.spill else { return };
        let mut looked = 0;
        while spill.resident > spill.budget && !spill.stopped() && looked <= self.chunks {
            let c = if spill.hand >= self.chunks { 0 } else { spill.hand };
            let Some(Group::Chunks(chunks)) = self.groups.get_mut(c / GROUP_CHUNKS) else {
                // The last group may hold fewer chunks: count only those.
                let next = ((c / GROUP_CHUNKS + 1) * GROUP_CHUNKS).min(self.chunks);
                looked += next - c;
                spill.hand = next;
                continue;
            };
            looked += 1;
            spill.hand = c + 1;
            let Some(slot) = chunks.get_mut(c % GROUP_CHUNKS) else { continue };
            if c == keep {
                continue;
            }
            if let Chunk::Mixed(words) = slot {
                if spill.write(c, &words[..]) {
                    *slot = Chunk::Spilled;
                    spill.resident -= 1;
                }
            }
        }
    }

    /// Number of frames.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it covers no frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frames of chunk `chunk` that are below the length.
    fn chunk_len(&self, chunk: usize) -> u64 {
        self.len.saturating_sub(chunk as u64 * CHUNK_BITS).min(CHUNK_BITS)
    }

    /// Word `word` of chunk `chunk`, as a mixed chunk would hold it.
    fn word(&self, chunk: usize, word: usize) -> u64 {
        match self.chunk(chunk) {
            Chunk::Set => ones(self.chunk_len(chunk).saturating_sub(word as u64 * 64)),
            Chunk::Mixed(words) => words.get(word).copied().unwrap_or(0),
            Chunk::Spilled => self.spill.as_ref().map_or(0, |s| s.read_word(chunk, word)),
            Chunk::Clear => 0,
        }
    }

    /// The words of chunk `chunk`, as a mixed chunk would hold them.
    fn load(&self, chunk: usize) -> Box<Words> {
        match (self.chunk(chunk), &self.spill) {
            (Chunk::Mixed(words), _) => words.clone(),
            (Chunk::Spilled, Some(spill)) => {
                let mut words = Box::new([0; CHUNK_WORDS]);
                spill.read(chunk, &mut words[..]);
                words
            }
            _ => Box::new(std::array::from_fn(|w| self.word(chunk, w))),
        }
    }

    /// The words of chunk `chunk`, made mixed (and kept in memory).
    fn words_mut(&mut self, chunk: usize) -> Option<&mut Words> {
        if !matches!(self.chunk(chunk), Chunk::Mixed(_)) {
            let words = self.load(chunk);
            self.replace_chunk(chunk, Chunk::Mixed(words));
        }
        match self.chunk_mut(chunk)? {
            Chunk::Mixed(words) => Some(words),
            _ => None,
        }
    }

    /// The end of the run of set bits that starts at `start`, at most `end` (`start`
    /// itself when that bit is clear). Whole set groups and chunks are passed at once, so
    /// a run over memory a segment claims without data costs its chunks, not its frames.
    pub fn set_run_end(&self, start: u64, end: u64) -> u64 {
        let end = end.min(self.len).max(start);
        let group_bits = CHUNK_BITS * GROUP_CHUNKS as u64;
        let mut pfn = start;
        while pfn < end {
            let (chunk, bit) = split(pfn);
            if matches!(self.groups.get(chunk / GROUP_CHUNKS), Some(Group::Set)) {
                pfn = (pfn / group_bits + 1) * group_bits;
                continue;
            }
            match self.chunk(chunk) {
                Chunk::Set => pfn = (chunk as u64 + 1) * CHUNK_BITS,
                Chunk::Clear => return pfn,
                Chunk::Mixed(_) | Chunk::Spilled => {
                    let clear = !self.word(chunk, bit / 64) >> (bit % 64);
                    if clear != 0 {
                        return (pfn + u64::from(clear.trailing_zeros())).min(end);
                    }
                    pfn = (pfn / 64 + 1) * 64;
                }
            }
        }
        end
    }

    /// Bit `pfn`.
    pub fn get(&self, pfn: u64) -> bool {
        let (chunk, bit) = split(pfn);
        pfn < self.len && self.word(chunk, bit / 64) & (1 << (bit % 64)) != 0
    }

    /// Sets bit `pfn`.
    pub fn set(&mut self, pfn: u64) {
        let (chunk, bit) = split(pfn);
        if pfn < self.len && !matches!(self.chunk(chunk), Chunk::Set) {
            if let Some(w) = self.words_mut(chunk).and_then(|words| words.get_mut(bit / 64)) {
                *w |= 1 << (bit % 64);
            }
        }
    }

    /// Clears bit `pfn`; returns whether it was set.
    pub fn clear(&mut self, pfn: u64) -> bool {
        if !self.get(pfn) {
            return false;
        }
        let (chunk, bit) = split(pfn);
        if let Some(w) = self.words_mut(chunk).and_then(|words| words.get_mut(bit / 64)) {
            *w &= !(1 << (bit % 64));
        }
        true
    }

    /// Sets `[start, end)`.
    pub fn set_range(&mut self, start: u64, end: u64) {
        self.fill_range(start, end, true);
    }

    /// Clears `[start, end)`; returns how many of its bits were set.
    pub fn clear_range(&mut self, start: u64, end: u64) -> u64 {
        self.fill_range(start, end, false)
    }

    /// Sets or clears `[start, end)`; returns how many bits changed.
    fn fill_range(&mut self, start: u64, end: u64, value: bool) -> u64 {
        let end = end.min(self.len);
        let mut changed = 0;
        let group_bits = CHUNK_BITS * GROUP_CHUNKS as u64;
        let mut pfn = start;
        while pfn < end {
            if pfn % group_bits == 0 && end >= (pfn + group_bits).min(self.len) {
                let g = (pfn / group_bits) as usize;
                let group_len = self.len.saturating_sub(pfn).min(group_bits);
                let before = self.group_count(g);
                changed += if value { group_len - before } else { before };
                self.replace_group(g, if value { Group::Set } else { Group::Clear });
                pfn += group_len;
                continue;
            }
            let (chunk, bit) = split(pfn);
            let chunk_end = (chunk as u64 + 1) * CHUNK_BITS;
            let stop = end.min(chunk_end);
            if bit == 0 && stop - pfn == self.chunk_len(chunk) {
                changed +=
                    if value { self.chunk_len(chunk) - self.chunk_count(chunk) } else { self.chunk_count(chunk) };
                let uniform = if value { Chunk::Set } else { Chunk::Clear };
                // Clearing a chunk of a group never written allocates nothing.
                if value || !matches!(self.chunk(chunk), Chunk::Clear) {
                    self.replace_chunk(chunk, uniform);
                }
            } else if !matches!(self.chunk(chunk), Chunk::Set if value)
                && !matches!(self.chunk(chunk), Chunk::Clear if !value)
            {
                let Some(words) = self.words_mut(chunk) else { break };
                let mut b = bit as u64;
                let stop_bit = stop - chunk as u64 * CHUNK_BITS;
                while b < stop_bit {
                    let n = (64 - b % 64).min(stop_bit - b);
                    let mask = ones(n) << (b % 64);
                    if let Some(w) = words.get_mut((b / 64) as usize) {
                        changed += u64::from(if value { !*w & mask } else { *w & mask }.count_ones());
                        if value {
                            *w |= mask;
                        } else {
                            *w &= !mask;
                        }
                    }
                    b += n;
                }
            }
            pfn = stop;
        }
        changed
    }

    /// Set bits of chunk `chunk`.
    fn chunk_count(&self, chunk: usize) -> u64 {
        match self.chunk(chunk) {
            Chunk::Set => self.chunk_len(chunk),
            Chunk::Mixed(words) => words.iter().map(|w| u64::from(w.count_ones())).sum(),
            Chunk::Spilled => self.load(chunk).iter().map(|w| u64::from(w.count_ones())).sum(),
            Chunk::Clear => 0,
        }
    }

    /// Set bits of group `g`.
    fn group_count(&self, g: usize) -> u64 {
        let first = g * GROUP_CHUNKS;
        match self.groups.get(g) {
            Some(Group::Set) => {
                self.len.saturating_sub(first as u64 * CHUNK_BITS).min(CHUNK_BITS * GROUP_CHUNKS as u64)
            }
            Some(Group::Chunks(_)) => {
                (first..(first + GROUP_CHUNKS).min(self.chunks)).map(|c| self.chunk_count(c)).sum()
            }
            _ => 0,
        }
    }

    /// Number of set bits.
    pub fn count(&self) -> u64 {
        (0..self.groups.len()).map(|g| self.group_count(g)).sum()
    }

    /// Set bits, ascending.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_range(0, self.len)
    }

    /// Set bits in `[start, end)`, ascending.
    pub fn iter_range(&self, start: u64, end: u64) -> Iter<'_> {
        let end = end.min(self.len);
        let word = start / 64;
        let (chunk, bit) = split(word * 64);
        let mut words = WordReader::new(self);
        let bits = if start < end { words.word(chunk, bit / 64) & !ones(start % 64) } else { 0 };
        Iter { words, word, bits, end }
    }

    /// The first byte at or after byte `offset` of [`fill_bytes`](Self::fill_bytes)'s
    /// that may be non-zero, found by skipping whole clear chunks and groups: a bitmap over
    /// a sparse physical address space is written in time proportional to its runs, not
    /// to the memory it claims. `u64::MAX` when there is none.
    pub fn next_nonzero_byte(&self, offset: u64) -> u64 {
        let mut c = usize::try_from(offset / CHUNK_BYTES).unwrap_or(usize::MAX);
        while c < self.chunks {
            match self.groups.get(c / GROUP_CHUNKS) {
                Some(Group::Clear) => c = (c / GROUP_CHUNKS + 1) * GROUP_CHUNKS,
                Some(Group::Chunks(_)) if matches!(self.chunk(c), Chunk::Clear) => c += 1,
                _ => return offset.max(c as u64 * CHUNK_BYTES),
            }
        }
        u64::MAX
    }

    /// The bytes makedumpfile writes (bit `pfn % 8` of byte `pfn / 8`) from byte `offset`
    /// on, into `out`; bytes past the bitmap are zero.
    pub fn fill_bytes(&self, offset: u64, out: &mut [u8]) {
        let mut words = WordReader::new(self);
        let mut done = 0;
        while done < out.len() {
            let at = offset + done as u64;
            let (chunk, bit) = split(at * 8);
            // Uniform chunks (most of a machine's) are filled whole.
            let uniform = match self.chunk(chunk) {
                Chunk::Clear => Some(0),
                Chunk::Set if self.chunk_len(chunk) == CHUNK_BITS => Some(0xff),
                _ => None,
            };
            if let (Some(fill), 0) = (uniform, bit) {
                let n = (CHUNK_BYTES as usize).min(out.len() - done);
                out.get_mut(done..done + n).unwrap_or_default().fill(fill);
                done += n;
                continue;
            }
            let word = words.word(chunk, bit / 64) >> (bit % 64);
            let n = (8 - (at % 8) as usize).min(out.len() - done);
            for (k, byte) in out.iter_mut().skip(done).take(n).enumerate() {
                *byte = (word >> (8 * k)) as u8;
            }
            done += n;
        }
    }
}

/// (chunk, bit within it) of `pfn`.
fn split(pfn: u64) -> (usize, usize) {
    (usize::try_from(pfn / CHUNK_BITS).unwrap_or(usize::MAX), (pfn % CHUNK_BITS) as usize)
}

/// A word with its low `n` bits set (all 64 for n >= 64).
fn ones(n: u64) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Reads a bitmap's words in order: a spilled chunk is read back once, not word by word.
struct WordReader<'a> {
    bitmap: &'a PfnBitmap,
    /// The last spilled chunk read back.
    spilled: Option<(usize, Box<Words>)>,
}

impl<'a> WordReader<'a> {
    fn new(bitmap: &'a PfnBitmap) -> WordReader<'a> {
        WordReader { bitmap, spilled: None }
    }

    fn word(&mut self, chunk: usize, word: usize) -> u64 {
        if !matches!(self.bitmap.chunk(chunk), Chunk::Spilled) {
            return self.bitmap.word(chunk, word);
        }
        if self.spilled.as_ref().is_none_or(|(c, _)| *c != chunk) {
            self.spilled = Some((chunk, self.bitmap.load(chunk)));
        }
        self.spilled.as_ref().and_then(|(_, words)| words.get(word)).copied().unwrap_or(0)
    }
}

impl std::fmt::Debug for WordReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordReader").finish_non_exhaustive()
    }
}

/// The set bits of a [`PfnBitmap`], ascending.
#[derive(Debug)]
pub struct Iter<'a> {
    words: WordReader<'a>,
    /// Index of the word `bits` comes from.
    word: u64,
    /// Its set bits not returned yet.
    bits: u64,
    /// No bit at or past it is returned.
    end: u64,
}

impl Iterator for Iter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let words_per_chunk = CHUNK_WORDS as u64;
        let words_per_group = words_per_chunk * GROUP_CHUNKS as u64;
        while self.bits == 0 {
            self.word += 1;
            if self.word.saturating_mul(64) >= self.end {
                return None;
            }
            let (chunk, bit) = split(self.word * 64);
            let bitmap = self.words.bitmap;
            if matches!(bitmap.groups.get(chunk / GROUP_CHUNKS), Some(Group::Clear)) {
                // A group never written: skip to its last word.
                self.word = (self.word / words_per_group + 1) * words_per_group - 1;
                continue;
            }
            if matches!(bitmap.chunk(chunk), Chunk::Clear) {
                self.word = (self.word / words_per_chunk + 1) * words_per_chunk - 1;
                continue;
            }
            self.bits = self.words.word(chunk, bit / 64);
        }
        let pfn = self.word * 64 + u64::from(self.bits.trailing_zeros());
        self.bits &= self.bits - 1;
        (pfn < self.end).then_some(pfn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: &PfnBitmap) -> Vec<u8> {
        let mut out = vec![0u8; b.len().div_ceil(8) as usize];
        b.fill_bytes(0, &mut out);
        out
    }

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
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![4, 5, 6, 7, 8, 9, 69]);
        assert_eq!(b.iter_range(6, 70).collect::<Vec<_>>(), vec![6, 7, 8, 9, 69]);
        assert_eq!(b.iter_range(5, 9).collect::<Vec<_>>(), vec![5, 6, 7, 8]);
        assert_eq!(b.iter_range(10, 69).count(), 0);
        let bytes = bytes(&b);
        assert_eq!(bytes.len(), 9);
        assert_eq!(bytes[0], 0b1111_0000);
        assert_eq!(bytes[1], 0b0000_0011);
        assert_eq!(bytes[8], 0b0010_0000);
    }

    /// Whole chunks become uniform and cost nothing; partial ranges and single bits across
    /// chunk boundaries behave as on a plain bitmap, including the last partial chunk.
    #[test]
    fn chunks_agree_with_a_plain_bitmap() {
        agrees_with_a_plain_bitmap(PfnBitmap::new);
    }

    /// The same with one mixed chunk in memory: the others go to the temporary file and
    /// come back, and the results do not change.
    #[test]
    fn spilled_chunks_agree_with_a_plain_bitmap() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(BitmapStorage { dir: dir.path().to_path_buf(), memory: 4096 });
        let spilled = agrees_with_a_plain_bitmap(|len| PfnBitmap::spilling(len, &storage));
        assert!(spilled > 0);
        // The temporary file has no name.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// Runs the same operations on `make(len)` and on a plain bitmap; returns how many
    /// chunks the bitmap had spilled at most.
    fn agrees_with_a_plain_bitmap(make: impl Fn(u64) -> PfnBitmap) -> usize {
        let len = 3 * CHUNK_BITS + 1000;
        let mut b = make(len);
        let mut most_spilled = 0;
        let mut plain = vec![false; len as usize];
        let set = |b: &mut PfnBitmap, plain: &mut Vec<bool>, s: u64, e: u64, v: bool| {
            let changed = (s..e.min(len)).filter(|&p| plain[p as usize] != v).count() as u64;
            assert_eq!(b.fill_range(s, e, v), changed, "{s}..{e} {v}");
            for p in s..e.min(len) {
                plain[p as usize] = v;
            }
            assert!(b.mixed_chunks().0 <= b.spill.as_ref().map_or(usize::MAX, |s| s.budget));
        };
        set(&mut b, &mut plain, 0, len + 50, true);
        assert!(matches!(b.chunk(0), Chunk::Set) && matches!(b.chunk(3), Chunk::Set));
        assert_eq!(b.count(), len);
        assert!(bytes(&b).iter().all(|&x| x == 0xff));
        set(&mut b, &mut plain, CHUNK_BITS - 5, 2 * CHUNK_BITS + 7, false);
        assert!(matches!(b.chunk(1), Chunk::Clear) && matches!(b.chunk(2), Chunk::Mixed(_) | Chunk::Spilled));
        set(&mut b, &mut plain, CHUNK_BITS + 100, CHUNK_BITS + 300, true);
        set(&mut b, &mut plain, 3 * CHUNK_BITS + 999, len, false);
        most_spilled = most_spilled.max(b.mixed_chunks().1);
        assert!(b.clear(5) && !b.clear(5));
        plain[5] = false;
        b.set(CHUNK_BITS + 1);
        plain[(CHUNK_BITS + 1) as usize] = true;
        assert_eq!(b.count(), plain.iter().filter(|&&v| v).count() as u64);
        let expected: Vec<u64> = (0..len).filter(|&p| plain[p as usize]).collect();
        assert_eq!(b.iter().collect::<Vec<_>>(), expected);
        assert!((0..len + 10).all(|p| b.get(p) == plain.get(p as usize).copied().unwrap_or(false)));
        for start in (0..len + 3).step_by(7) {
            for end in [start, start + 1, start + 300, CHUNK_BITS + 100, 2 * CHUNK_BITS + 7, len, len + 9] {
                let run = (start..end.min(len)).take_while(|&p| plain[p as usize]).count() as u64;
                assert_eq!(b.set_run_end(start, end), (start + run).min(end.max(start)), "{start}..{end}");
            }
        }
        let mut expected_bytes = vec![0u8; len.div_ceil(8) as usize];
        for &p in &expected {
            expected_bytes[(p / 8) as usize] |= 1 << (p % 8);
        }
        assert!(bytes(&b) == expected_bytes);
        let mut tail = [0xffu8; 4];
        b.fill_bytes(len.div_ceil(8) - 1, &mut tail);
        assert_eq!(tail, [expected_bytes[expected_bytes.len() - 1], 0, 0, 0]);
        most_spilled = most_spilled.max(b.mixed_chunks().1);
        // The same bits through another history are equal, and so is a copy.
        let mut other = make(len);
        for &p in &expected {
            other.set(p);
        }
        assert!(other == b);
        let copy = b.clone();
        other.set(CHUNK_BITS + 50);
        assert!(other != b);
        assert!(copy == b);
        assert_eq!(b.lost(), None);
        most_spilled
    }

    /// 2^40 frames (4 PiB of 4 KiB pages) with RAM at both ends: only the groups written
    /// are allocated, and iterating skips the rest.
    #[test]
    fn a_sparse_address_space_costs_only_what_is_written() {
        let len = 1u64 << 40;
        let mut b = PfnBitmap::new(len);
        assert_eq!(b.groups.len(), 8192);
        b.set_range(0, 3 * CHUNK_BITS);
        b.set_range(len - 100, len);
        b.clear(1);
        assert_eq!(b.groups.iter().filter(|g| matches!(g, Group::Chunks(_))).count(), 2);
        assert_eq!(b.count(), 3 * CHUNK_BITS - 1 + 100);
        let tail: Vec<u64> = b.iter_range(3 * CHUNK_BITS - 2, len).collect();
        assert_eq!(tail.len(), 2 + 100);
        assert_eq!(tail[2], len - 100);
        // Bytes to write: the first three chunks, then nothing until the last one.
        assert_eq!(b.next_nonzero_byte(5), 5);
        assert_eq!(b.next_nonzero_byte(3 * CHUNK_BYTES), (len - 100) / CHUNK_BITS * CHUNK_BYTES);
        assert_eq!(b.next_nonzero_byte(len / 8 - 1), len / 8 - 1);
        assert_eq!(b.next_nonzero_byte(len / 8), u64::MAX);
        assert_eq!(b.clear_range(1 << 35, 1 << 39), 0);
        assert_eq!(b.groups.iter().filter(|g| matches!(g, Group::Chunks(_))).count(), 2);
        // A segment over most of it: whole groups set, only its ends hold chunks.
        assert_eq!(b.fill_range(100, len - 1000, true), len - 1000 - 3 * CHUNK_BITS);
        assert_eq!(b.groups.iter().filter(|g| matches!(g, Group::Chunks(_))).count(), 2);
        assert_eq!(b.count(), len - 1000 + 100 - 1);
        assert!(b.get(1 << 39) && !b.get(1) && b.get(len - 1));
        // Its run is found in time for its chunks: 2^40 bits one by one would take minutes.
        assert_eq!(b.set_run_end(2, len), len - 1000);
        assert_eq!(b.set_run_end(1 << 39, 1 << 39 | 5), 1 << 39 | 5);
        assert_eq!(b.set_run_end(1, len), 1);
        b.clear(1 << 38);
        assert_eq!(b.set_run_end(2, len), 1 << 38);
        assert_eq!(b.clear_range(0, len), len - 1000 + 100 - 2);
        assert_eq!(b.count(), 0);
        assert_eq!(b.iter().next(), None);
    }

    /// Empties this process's unnamed files in `dir`, as a failing disk would lose them.
    fn lose_spill_files(dir: &std::path::Path) -> usize {
        let mut n = 0;
        for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(dir)) {
                std::fs::OpenOptions::new().write(true).open(fd.path()).unwrap().set_len(0).unwrap();
                n += 1;
            }
        }
        n
    }

    /// A chunk that cannot be read back is reported by the bitmap and by its copies, never
    /// taken for clear bits in silence.
    #[test]
    fn chunks_that_cannot_be_read_back_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(BitmapStorage { dir: dir.path().to_path_buf(), memory: 4096 });
        let mut b = PfnBitmap::spilling(4 * CHUNK_BITS, &storage);
        for c in 0..4 {
            b.set(c * CHUNK_BITS + 1);
        }
        assert_eq!(b.mixed_chunks(), (1, 3));
        assert_eq!(b.lost(), None);
        assert_eq!(lose_spill_files(dir.path()), 1);
        let copy = b.clone();
        assert!(b.lost().is_some_and(|why| why.contains("bitmap chunk 0") && why.contains("offset 0x0")));
        assert!(copy.lost().is_some(), "the copy has {} of 4 bits", copy.count());
    }

    /// Random operations over two groups and a short third, copies included: the count of
    /// chunks in memory stays true and within the budget (also when the last group is
    /// uniform and holds fewer chunks), and the bits equal those of a bitmap in memory.
    #[test]
    fn spilling_across_groups_keeps_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let group_bits = CHUNK_BITS * GROUP_CHUNKS as u64;
        let len = 2 * group_bits + 5 * CHUNK_BITS + 77;
        let mut gen = vmcore_synth::rng::SplitMix64::new(0x1234_5678_9abc_def1);
        let mut rng = move || gen.next_u64();
        for budget in [1u64, 2, 3] {
            let storage = Arc::new(BitmapStorage { dir: dir.path().to_path_buf(), memory: budget * 4096 });
            let mut spilling = PfnBitmap::spilling(len, &storage);
            let mut memory = PfnBitmap::new(len);
            for _ in 0..400 {
                let start = match rng() % 3 {
                    0 => (rng() % 3) * group_bits,
                    1 => (rng() % (len / CHUNK_BITS + 1)) * CHUNK_BITS,
                    _ => rng() % len,
                }
                .saturating_sub(rng() % 3);
                let n = [rng() % 100, rng() % (3 * CHUNK_BITS), group_bits + rng() % (2 * CHUNK_BITS)]
                    [(rng() % 3) as usize];
                match rng() % 5 {
                    0 => assert_eq!(
                        spilling.fill_range(start, start + n, true),
                        memory.fill_range(start, start + n, true)
                    ),
                    1 => assert_eq!(spilling.clear_range(start, start + n), memory.clear_range(start, start + n)),
                    2 => {
                        spilling.set(start);
                        memory.set(start);
                    }
                    3 => assert_eq!(spilling.clear(start), memory.clear(start)),
                    _ => spilling = spilling.clone(),
                }
                let resident = spilling.spill.as_ref().map_or(0, |s| s.resident);
                assert_eq!(resident, spilling.mixed_chunks().0, "budget {budget}: count of chunks in memory");
                assert!(resident <= budget as usize, "budget {budget}: {resident} chunks in memory");
            }
            assert!(spilling == memory);
            assert!(spilling.iter().eq(memory.iter()));
            assert_eq!(spilling.count(), memory.count());
            assert_eq!(spilling.lost(), None);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any sequence of range and bit operations over six chunks gives the same bits,
        /// counts and bytes with a budget of one or two chunks as in memory.
        #[test]
        fn a_spilling_bitmap_equals_one_in_memory(
            budget in 1u64..3,
            ops in proptest::collection::vec((0u8..4, 0u64..6 * CHUNK_BITS, 0u64..3 * CHUNK_BITS), 1..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let storage = Arc::new(BitmapStorage { dir: dir.path().to_path_buf(), memory: budget * 4096 });
            let len = 6 * CHUNK_BITS - 77;
            let mut spilling = PfnBitmap::spilling(len, &storage);
            let mut memory = PfnBitmap::new(len);
            for (op, start, n) in ops {
                match op {
                    0 => proptest::prop_assert_eq!(spilling.fill_range(start, start + n, true), memory.fill_range(start, start + n, true)),
                    1 => proptest::prop_assert_eq!(spilling.clear_range(start, start + n), memory.clear_range(start, start + n)),
                    2 => { spilling.set(start); memory.set(start); }
                    _ => proptest::prop_assert_eq!(spilling.clear(start), memory.clear(start)),
                }
                proptest::prop_assert!(spilling.mixed_chunks().0 <= budget as usize);
                proptest::prop_assert_eq!(spilling.get(start), memory.get(start));
            }
            proptest::prop_assert_eq!(spilling.count(), memory.count());
            proptest::prop_assert!(spilling.iter().eq(memory.iter()));
            proptest::prop_assert!(spilling.iter_range(CHUNK_BITS + 3, 4 * CHUNK_BITS).eq(memory.iter_range(CHUNK_BITS + 3, 4 * CHUNK_BITS)));
            proptest::prop_assert!(bytes(&spilling) == bytes(&memory));
            proptest::prop_assert!(spilling == memory);
            proptest::prop_assert_eq!(spilling.lost(), None);
        }
    }
}
