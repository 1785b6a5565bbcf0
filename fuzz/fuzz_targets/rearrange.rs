//! `rearrange` of a flattened stream into a sparse in-memory disk: whole, cut at half its
//! length, and onto a disk with room for half the blocks the whole took. The last two make
//! it mark the file incomplete and then read it back to zero the descriptors (kdump) or
//! cut the program headers (ELF) that point at data that never arrived.
#![no_main]
use std::collections::BTreeMap;
use std::io;

use libfuzzer_sys::fuzz_target;
use vmcore_types::ReadAt;
use vmcore_writer::{rearrange, NoProgress, Output, OutputError};

const BLOCK: u64 = 4096;
/// Blocks a disk holds at most: 64 MiB, whatever the stream's offsets claim.
const MOST_BLOCKS: usize = 16384;

/// A sparse file of 4 KiB blocks that fills up at `cap` blocks.
struct Disk {
    blocks: BTreeMap<u64, Box<[u8; BLOCK as usize]>>,
    size: u64,
    cap: usize,
}

impl Disk {
    fn new(cap: usize) -> Disk {
        Disk { blocks: BTreeMap::new(), size: 0, cap: cap.min(MOST_BLOCKS) }
    }
}

impl Output for Disk {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), OutputError> {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset.checked_add(done as u64).ok_or(OutputError::Full)?;
            let (index, within) = (at / BLOCK, (at % BLOCK) as usize);
            if !self.blocks.contains_key(&index) && self.blocks.len() >= self.cap {
                return Err(OutputError::Full);
            }
            let block = self.blocks.entry(index).or_insert_with(|| Box::new([0; BLOCK as usize]));
            let n = (BLOCK as usize - within).min(data.len() - done);
            block[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
            self.size = self.size.max(at + n as u64);
        }
        Ok(())
    }
    fn can_rewrite(&self) -> bool {
        true
    }
    fn unwritten_reads_zero(&self, _: u64) -> bool {
        true
    }
    fn written(&self) -> Option<Box<dyn ReadAt + '_>> {
        Some(Box::new(Written(self)))
    }
    fn next_written(&self, from: u64) -> Option<(u64, u64)> {
        let (&first, _) = self.blocks.range(from / BLOCK..).next()?;
        let mut end = first + 1;
        while self.blocks.contains_key(&end) {
            end += 1;
        }
        Some(((first * BLOCK).max(from), (end * BLOCK).min(self.size)))
    }
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Written<'a>(&'a Disk);

impl ReadAt for Written<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > self.0.size) {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let within = (at % BLOCK) as usize;
            let n = (BLOCK as usize - within).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.0.blocks.get(&(at / BLOCK)) {
                Some(block) => dst.copy_from_slice(&block[within..within + n]),
                None => dst.fill(0),
            }
            done += n;
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.0.size
    }
}

fuzz_target!(|data: &[u8]| {
    let mut whole = Disk::new(MOST_BLOCKS);
    let _ = rearrange(&mut &data[..], &mut whole, &NoProgress, None);
    let mut cut = Disk::new(MOST_BLOCKS);
    let _ = rearrange(&mut &data[..data.len() / 2], &mut cut, &NoProgress, None);
    let mut small = Disk::new(whole.blocks.len() / 2);
    let _ = rearrange(&mut &data[..], &mut small, &NoProgress, None);
});
