//! The kernel's compressed symbol table (`scripts/kallsyms.c` output) for a list of
//! symbols: `kallsyms_offsets` (x86_64 `CONFIG_KALLSYMS_ABSOLUTE_PERCPU`: per-CPU symbols
//! as non-negative absolute values, the others as `relative_base - 1 - address`),
//! `kallsyms_relative_base`, `kallsyms_num_syms`, `kallsyms_names` (length byte, then
//! token indices; the first expanded byte is the type letter), `kallsyms_markers`,
//! `kallsyms_token_table` and `kallsyms_token_index`, laid out in that order as a 6.1
//! kernel lays them out in .rodata.

use crate::error::{Error, Result};

/// One symbol: address, type letter, name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sym {
    /// Address (a small absolute value for per-CPU symbols).
    pub addr: u64,
    /// `T`, `t`, `D`, `d`, `R`, `B`, ...
    pub kind: char,
    /// Name.
    pub name: String,
}

/// Multi-character tokens, assigned to byte values no name uses.
const TOKENS: &[&str] = &[
    "synth_",
    "page_",
    "_base",
    "init_",
    "kallsyms_",
    "memory",
    "_table",
    "kernel",
    "printk",
    "__",
    "_t",
    "ing",
    "_s",
    "er",
    "re",
    "in",
    "on",
    "st",
    "at",
    "_p",
    "_c",
    "_m",
    "ck",
    "lo",
    "_free",
    "_alloc",
    "dump",
    "irq",
    "_lock",
];

/// The tables and where each starts, relative to the start of the blob.
#[derive(Debug, Clone)]
pub struct Tables {
    /// All tables, concatenated with 8-byte alignment.
    pub blob: Vec<u8>,
    /// `(name, offset in blob)` of each table, in order.
    pub offsets: Vec<(&'static str, usize)>,
}

fn align8(v: &mut Vec<u8>) {
    v.resize(v.len().next_multiple_of(8), 0);
}

/// Encodes `syms` (sorted here by address, then name). `percpu_limit`: addresses below it
/// are per-CPU offsets. `relative_base` is the lowest other address.
pub fn encode(syms: &[Sym], percpu_limit: u64) -> Result<(Tables, Vec<Sym>)> {
    let mut syms = syms.to_vec();
    syms.sort_by(|a, b| a.addr.cmp(&b.addr).then_with(|| a.name.cmp(&b.name)));
    let relative_base = syms
        .iter()
        .map(|s| s.addr)
        .filter(|&a| a >= percpu_limit)
        .min()
        .ok_or_else(|| Error::spec("kallsyms: no symbol above the per-CPU area"))?;
    // Token table: every byte a name uses stands for itself; the others get a token.
    let mut used = [false; 256];
    let mut mark = |b: u8| {
        if let Some(u) = used.get_mut(b as usize) {
            *u = true;
        }
    };
    for s in &syms {
        mark(s.kind as u8);
        s.name.bytes().for_each(&mut mark);
    }
    let is_used = |b: u8| used.get(b as usize).copied().unwrap_or(false);
    let mut tokens: Vec<Vec<u8>> = (0..256u32).map(|b| vec![b as u8]).collect();
    let mut free = (0..=255u8).filter(|&b| !is_used(b));
    for t in TOKENS {
        if t.bytes().all(is_used) {
            if let Some(tok) = free.next().and_then(|b| tokens.get_mut(b as usize)) {
                *tok = t.as_bytes().to_vec();
            }
        }
    }
    // Unused single bytes keep themselves; a token may not contain NUL.
    if let Some(t0) = tokens.get_mut(0) {
        if *t0 == [0] {
            *t0 = b"_0".to_vec();
        }
    }
    let mut by_len: Vec<(usize, &Vec<u8>)> = tokens.iter().enumerate().filter(|(_, t)| t.len() > 1).collect();
    by_len.sort_by_key(|(_, t)| std::cmp::Reverse(t.len()));

    let n = syms.len();
    let mut offsets = Vec::with_capacity(n * 4);
    let mut names = Vec::new();
    let mut markers = Vec::new();
    for (i, s) in syms.iter().enumerate() {
        let off: i32 = if s.addr < percpu_limit {
            i32::try_from(s.addr).map_err(|_| Error::spec("kallsyms: per-CPU address too large"))?
        } else {
            let d = s.addr - relative_base;
            let v = -1i64 - d as i64;
            i32::try_from(v).map_err(|_| Error::spec(format!("kallsyms: {} is too far from the base", s.name)))?
        };
        offsets.extend_from_slice(&off.to_le_bytes());
        if i % 256 == 0 {
            markers.extend_from_slice(&(names.len() as u32).to_le_bytes());
        }
        let mut full = vec![s.kind as u8];
        full.extend_from_slice(s.name.as_bytes());
        let mut comp = Vec::new();
        let mut pos = 0;
        while pos < full.len() {
            let rest = full.get(pos..).unwrap_or_default();
            match by_len.iter().find(|(_, t)| rest.starts_with(t)) {
                Some((b, t)) => {
                    comp.push(*b as u8);
                    pos += t.len();
                }
                None => {
                    comp.push(rest.first().copied().unwrap_or(0));
                    pos += 1;
                }
            }
        }
        if comp.len() >= 128 {
            return Err(Error::spec(format!("kallsyms: name {} too long", s.name)));
        }
        names.push(comp.len() as u8);
        names.extend_from_slice(&comp);
    }
    let mut token_table = Vec::new();
    let mut token_index = Vec::new();
    for t in &tokens {
        token_index.extend_from_slice(&(token_table.len() as u16).to_le_bytes());
        token_table.extend_from_slice(t);
        token_table.push(0);
    }
    let mut blob = Vec::new();
    let mut at = Vec::new();
    for (name, bytes) in [
        ("kallsyms_offsets", offsets),
        ("kallsyms_relative_base", relative_base.to_le_bytes().to_vec()),
        ("kallsyms_num_syms", (n as u64).to_le_bytes().to_vec()),
        ("kallsyms_names", names),
        ("kallsyms_markers", markers),
        ("kallsyms_token_table", token_table),
        ("kallsyms_token_index", token_index),
    ] {
        align8(&mut blob);
        at.push((name, blob.len()));
        blob.extend_from_slice(&bytes);
    }
    align8(&mut blob);
    Ok((Tables { blob, offsets: at }, syms))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the tables back, as kernel/kallsyms.c reads them.
    fn decode(t: &Tables) -> Vec<(u64, String)> {
        let off = |name: &str| t.offsets.iter().find(|(n, _)| *n == name).unwrap().1;
        let b = &t.blob;
        let n = u32::from_le_bytes(b[off("kallsyms_num_syms")..][..4].try_into().unwrap()) as usize;
        let base = u64::from_le_bytes(b[off("kallsyms_relative_base")..][..8].try_into().unwrap());
        let ti = off("kallsyms_token_index");
        let tt = off("kallsyms_token_table");
        let token = |i: u8| {
            let s = u16::from_le_bytes(b[ti + 2 * i as usize..][..2].try_into().unwrap()) as usize;
            let start = tt + s;
            let end = b[start..].iter().position(|&c| c == 0).unwrap() + start;
            b[start..end].to_vec()
        };
        let mut pos = off("kallsyms_names");
        let mut out = Vec::new();
        for i in 0..n {
            let len = b[pos] as usize;
            let mut name = Vec::new();
            for &c in &b[pos + 1..pos + 1 + len] {
                name.extend(token(c));
            }
            pos += 1 + len;
            let o = i32::from_le_bytes(b[off("kallsyms_offsets") + 4 * i..][..4].try_into().unwrap());
            let addr = if o >= 0 { o as u64 } else { base.wrapping_sub(1).wrapping_sub(o as i64 as u64) };
            out.push((addr, String::from_utf8(name[1..].to_vec()).unwrap()));
        }
        out
    }

    #[test]
    fn tables_decode_back() {
        let mut syms = vec![
            Sym { addr: 0, kind: 'D', name: "fixed_percpu_data".into() },
            Sym { addr: 0x2ec40, kind: 'D', name: "runqueues".into() },
            Sym { addr: 0xffff_ffff_a000_0000, kind: 'T', name: "_text".into() },
            Sym { addr: 0xffff_ffff_a1e1_0000, kind: 'D', name: "init_top_pgt".into() },
            Sym { addr: 0xffff_ffff_a181_5740, kind: 'D', name: "page_offset_base".into() },
        ];
        for i in 0..700u64 {
            syms.push(Sym { addr: 0xffff_ffff_a000_1000 + i * 64, kind: 't', name: format!("synth_fn_{i}_alloc") });
        }
        let (t, sorted) = encode(&syms, 0x10_0000).unwrap();
        let got = decode(&t);
        assert_eq!(got.len(), syms.len());
        for (g, s) in got.iter().zip(&sorted) {
            assert_eq!((g.0, g.1.as_str()), (s.addr, s.name.as_str()));
        }
        let names_len = t.offsets[4].1 - t.offsets[3].1;
        let raw: usize = syms.iter().map(|s| s.name.len() + 2).sum();
        assert!(names_len < raw, "tokens compress: {names_len} < {raw}");
    }
}
