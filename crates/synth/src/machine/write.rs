//! The streaming ELF writer: page data generated 2 MiB at a time (on two threads),
//! written with positioned writes of whole runs of non-zero pages, zero pages left as
//! holes, so a terabyte of mostly free memory costs little time and disk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

use super::phys::{Content, BLOCK, PAGE};
use super::Machine;
use crate::error::Result;

/// A piece of a PT_LOAD: its file offset, physical address and length.
#[derive(Debug, Clone, Copy)]
struct Piece {
    file_off: u64,
    paddr: u64,
    len: u64,
}

/// Fills `buf` with the piece's bytes; returns which pages hold data (not all zero).
fn generate(m: &Machine, p: Piece, buf: &mut Vec<u8>) -> Vec<bool> {
    let model = m.model();
    let pages = p.len.div_ceil(PAGE) as usize;
    if model.free_block(p.paddr / BLOCK) {
        return vec![false; pages];
    }
    buf.clear();
    buf.resize(p.len as usize, 0);
    let mut nonzero = Vec::with_capacity(p.len.div_ceil(PAGE) as usize);
    let mut page = [0u8; PAGE as usize];
    for (i, dst) in buf.chunks_mut(PAGE as usize).enumerate() {
        let pfn = p.paddr / PAGE + i as u64;
        let zero = match model.info(pfn).1 {
            Content::Zero => true,
            Content::Random | Content::Text => false,
            _ => model.page_is_zero(pfn),
        };
        if zero {
            nonzero.push(false);
            continue;
        }
        if dst.len() == PAGE as usize {
            model.fill_page(pfn, dst);
        } else {
            page.fill(0);
            model.fill_page(pfn, &mut page);
            dst.copy_from_slice(page.get(..dst.len()).unwrap_or_default());
        }
        nonzero.push(true);
    }
    nonzero
}

fn write_piece(file: &File, p: Piece, buf: &[u8], nonzero: &[bool]) -> std::io::Result<()> {
    let mut i = 0usize;
    while i < nonzero.len() {
        if !nonzero.get(i).copied().unwrap_or(false) {
            i += 1;
            continue;
        }
        let start = i;
        while nonzero.get(i).copied().unwrap_or(false) {
            i += 1;
        }
        let a = start * PAGE as usize;
        let b = (i * PAGE as usize).min(buf.len());
        if let Some(bytes) = buf.get(a..b) {
            file.write_all_at(bytes, p.file_off + a as u64)?;
        }
    }
    Ok(())
}

pub(crate) fn write_elf(m: &Machine, file: &File) -> Result<u64> {
    let elf = m.elf();
    let layout = elf.layout()?;
    file.set_len(0)?;
    file.write_all_at(&elf.header_bytes(&layout), 0)?;
    file.write_all_at(&elf.note_bytes()?, layout.note_offset)?;
    let mut pieces = Vec::new();
    for (l, &off) in elf.loads.iter().zip(&layout.load_offsets) {
        let mut done = 0u64;
        while done < l.filesz {
            let pa = l.paddr + done;
            let len = (l.filesz - done).min((pa / BLOCK + 1) * BLOCK - pa);
            pieces.push(Piece { file_off: off + done, paddr: pa, len });
            done += len;
        }
    }
    // Two generators (even and odd pieces), this thread writes in order.
    let workers = 2usize;
    std::thread::scope(|scope| -> Result<()> {
        let mut rxs = Vec::new();
        let mut backs = Vec::new();
        for w in 0..workers {
            let (tx, rx) = mpsc::sync_channel::<(Vec<u8>, Vec<bool>)>(2);
            let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
            let mine: Vec<Piece> = pieces.iter().copied().skip(w).step_by(workers).collect();
            scope.spawn(move || {
                for p in mine {
                    let mut buf = back_rx.try_recv().unwrap_or_default();
                    let nz = generate(m, p, &mut buf);
                    if tx.send((buf, nz)).is_err() {
                        return;
                    }
                }
            });
            rxs.push(rx);
            backs.push(back_tx);
        }
        for (i, p) in pieces.iter().enumerate() {
            let w = i % workers;
            let (Some(rx), Some(back)) = (rxs.get(w), backs.get(w)) else {
                break;
            };
            let (buf, nz) = rx.recv().map_err(|_| std::io::Error::other("page generator stopped"))?;
            write_piece(file, *p, &buf, &nz)?;
            let _ = back.send(buf);
        }
        Ok(())
    })?;
    file.set_len(layout.file_size)?;
    Ok(layout.file_size)
}
