//! How `--split` divides the pfns among its files (makedumpfile.md section 1.10): memory
//! is cut in splitblocks (1 GiB by default); file after file takes whole splitblocks until
//! it holds at least `dumpable / files` pages; the last file takes the rest, up to
//! max_mapnr. A file may be left with an empty range when the first ones took everything
//! (a small machine and large splitblocks), as makedumpfile does.

use vmcore_filter::PfnBitmap;

/// makedumpfile's default splitblock: 1 GiB.
pub const DEFAULT_SPLITBLOCK_BYTES: u64 = 1 << 30;

/// The `[start, end)` pfn range of each of `files` split files of `dumpable` (whose length
/// is max_mapnr), on boundaries of `block_pages` frames.
pub fn split_ranges(dumpable: &PfnBitmap, files: usize, block_pages: u64) -> Vec<(u64, u64)> {
    let max = dumpable.len();
    let block_pages = block_pages.max(1);
    let blocks = usize::try_from(max.div_ceil(block_pages)).unwrap_or(0);
    let mut per_block = vec![0u64; blocks];
    let mut total = 0u64;
    for pfn in dumpable.iter() {
        if let Some(c) = usize::try_from(pfn / block_pages).ok().and_then(|i| per_block.get_mut(i)) {
            *c += 1;
        }
        total += 1;
    }
    let target = total / files.max(1) as u64;
    let mut ranges = Vec::with_capacity(files);
    let mut start = 0u64;
    for i in 0..files {
        let end = if i + 1 == files {
            max
        } else {
            let mut end = start;
            let mut held = 0u64;
            while end < max && held < target {
                held += usize::try_from(end / block_pages).ok().and_then(|b| per_block.get(b)).copied().unwrap_or(0);
                end = (end + block_pages).min(max);
            }
            end
        };
        ranges.push((start, end));
        start = end;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitmap(len: u64, set: &[(u64, u64)]) -> PfnBitmap {
        let mut b = PfnBitmap::new(len);
        for &(s, e) in set {
            b.set_range(s, e);
        }
        b
    }

    #[test]
    fn ranges_tile_and_balance_on_block_boundaries() {
        let b = bitmap(1000, &[(0, 1000)]);
        let r = split_ranges(&b, 3, 100);
        assert_eq!(r, vec![(0, 400), (400, 800), (800, 1000)]);
        let r = split_ranges(&b, 4, 1);
        assert_eq!(r, vec![(0, 250), (250, 500), (500, 750), (750, 1000)]);
    }

    #[test]
    fn large_blocks_leave_the_later_files_empty() {
        let b = bitmap(131_019, &[(10, 5000), (60000, 70000)]);
        let r = split_ranges(&b, 3, 262_144);
        assert_eq!(r, vec![(0, 131_019), (131_019, 131_019), (131_019, 131_019)]);
    }

    #[test]
    fn sparse_memory_goes_by_dumpable_pages_not_frames() {
        let b = bitmap(1000, &[(0, 10), (900, 1000)]);
        let r = split_ranges(&b, 2, 10);
        // 110 pages, 55 each: the first file needs five blocks of the second run too.
        assert_eq!(r, vec![(0, 950), (950, 1000)]);
        let one = split_ranges(&b, 1, 10);
        assert_eq!(one, vec![(0, 1000)]);
    }
}
