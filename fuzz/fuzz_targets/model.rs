//! The kernel model on corrupted memory: layout detection, page-table walks, kallsyms,
//! the kernel log, page classification with -e's vmemmap pages, and writing the filtered dump (kdump-compressed
//! and ELF, as flattened streams), over a synthetic machine's ELF dump with a few bytes
//! overwritten.
//!
//! A whole dump is far too big for libFuzzer to mutate, and most of its bytes are never
//! read. So each machine is run once cleanly while recording which pages of the file are
//! read: those (headers, notes, page tables, kallsyms, the printk ring, struct pages) are
//! where the input's patches land. The input is a layout byte, then patches of
//! (page index u16, offset u16, length u8, bytes).
#![no_main]
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use vmcore_formats::elf::ElfCore;
use vmcore_kernel::printk::{read_log, Options as LogOptions};
use vmcore_kernel::vmcoreinfo::{Source, VmcoreInfo};
use vmcore_kernel::machine::Machine;
use vmcore_kernel::Dump;
use vmcore_physmem::Container;
use vmcore_synth::machine::{Layout, Machine as Synth, MachineSpec};
use vmcore_types::ReadAt;
use vmcore_writer::{write_elf, write_kdump, Codec, KdumpMeta, NoProgress, Output, OutputError, WriteOptions};

const PAGE: u64 = 4096;
const LAYOUTS: &[&str] = &["x86_64-6.1-l4", "x86_64-6.12-l5", "x86_64-5.4-l4", "x86_64-2.6.32-l4"];

/// A dump file in memory with patches over it; with `touched`, records the pages read.
#[derive(Debug)]
struct Patched {
    base: Arc<Vec<u8>>,
    patches: Vec<(u64, Vec<u8>)>,
    touched: Option<Mutex<BTreeSet<u64>>>,
}

impl ReadAt for Patched {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= self.base.len() as u64);
        let Some(end) = end else { return Err(std::io::ErrorKind::UnexpectedEof.into()) };
        buf.copy_from_slice(&self.base[offset as usize..end as usize]);
        if let Some(t) = &self.touched {
            let mut t = t.lock().unwrap();
            t.extend(offset / PAGE..end.div_ceil(PAGE));
        }
        for (at, bytes) in &self.patches {
            let (from, to) = ((*at).max(offset), (at + bytes.len() as u64).min(end));
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&bytes[(from - at) as usize..(to - at) as usize]);
            }
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.base.len() as u64
    }
}

/// Everything the model does with a dump, and with `write`, the writers after it; errors
/// are fine, panics and hangs are not.
fn exercise(src: Arc<Patched>, write: bool) {
    let Ok(core) = ElfCore::parse(&*src) else { return };
    // The ELF writer's counts (segments overlapping each other) half the time.
    let elf_output = src.patches.len() % 2 == 0;
    let vmcoreinfo = core
        .note(b"VMCOREINFO", 0)
        .and_then(|n| VmcoreInfo::parse(&n.desc, Source::ElfNote).ok());
    let container = Container::Elf { core, src, flattened: false, name: "fuzz".into() };
    let Ok(mem) = container.physmem(PAGE) else { return };
    let dump = Dump { paths: vec!["fuzz".into()], container, mem, vmcoreinfo };
    let Ok(machine) = Machine::new(&dump) else { return };
    if let Some(vi) = &dump.vmcoreinfo {
        let read = |addr: u64, buf: &mut [u8]| machine.kmem.read(addr, buf).map_err(|e| e.to_string());
        if let Ok(log) = read_log(vi, &read, &LogOptions { partial: false, live: false }) {
            for rec in log.records.iter() {
                std::hint::black_box(rec.text.len());
            }
        }
    }
    // Level 30: every struct page rule, without reading each page for zeros.
    let opts = vmcore_filter::Options { threads: 1, scan_zero_pages: false, elf_output, ..Default::default() };
    let Ok(mut filtered) = vmcore_filter::filter(&dump, &machine, 30, &opts) else { return };
    // -e walks the vmemmap's page tables and reads both bitmaps.
    if let Some(vi) = &dump.vmcoreinfo {
        let _ = vmcore_filter::exclude_unused_vmemmap(vi, &machine, &mut filtered, false);
    }
    if !write {
        return;
    }
    // Raw pages: the codecs have a target of their own, and compressing would slow every run.
    let wopts = WriteOptions { codec: Codec::Raw, threads: 1, stop: None };
    if let Ok(meta) = KdumpMeta::from_dump(&dump, &machine) {
        let _ = write_kdump(&mut SparseSink, &*dump.mem, &filtered, &meta, &wopts, &NoProgress);
    }
    if let Container::Elf { core, src, .. } = &dump.container {
        let vmcoreinfo = dump.vmcoreinfo.as_ref().map(|v| v.raw());
        let _ = write_elf(&mut SparseSink, core, &**src, &*dump.mem, &filtered, vmcoreinfo, &wopts, &NoProgress);
    }
}

/// A new file that keeps nothing. Sparse, as a dump file is: a segment claiming memory at
/// 2^50 makes bitmaps of 32 GiB, which a file leaves as holes (a flattened stream would
/// carry them, as makedumpfile's does).
struct SparseSink;

impl Output for SparseSink {
    fn write_at(&mut self, _: u64, data: &[u8]) -> Result<(), OutputError> {
        std::hint::black_box(data);
        Ok(())
    }
    fn can_rewrite(&self) -> bool {
        true
    }
    fn unwritten_reads_zero(&self, _: u64) -> bool {
        true
    }
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Base {
    file: Arc<Vec<u8>>,
    pages: Vec<u64>,
}

fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        LAYOUTS
            .iter()
            .map(|name| {
                let spec = MachineSpec::new(Layout::parse(name).unwrap(), 64 << 20, 1);
                let dir = std::env::temp_dir().join(format!("vmcore-fuzz-model-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join(name);
                let _ = std::fs::remove_file(&path);
                Synth::new(&spec).unwrap().write_elf(&path).unwrap();
                let file = Arc::new(std::fs::read(&path).unwrap());
                let _ = std::fs::remove_dir_all(&dir);
                let probe = Arc::new(Patched { base: file.clone(), patches: vec![], touched: Some(Mutex::default()) });
                // Without the writers, which read every kept page: patches land on what the model
                // reads, not spread over the pages' contents.
                exercise(probe.clone(), false);
                let pages: Vec<u64> = probe.touched.as_ref().unwrap().lock().unwrap().iter().copied().collect();
                eprintln!("model: {name}: {} bytes, {} pages read", file.len(), pages.len());
                Base { file, pages }
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, mut rest)) = data.split_first() else { return };
    let base = &bases()[which as usize % LAYOUTS.len()];
    let mut patches = Vec::new();
    while let [p0, p1, o0, o1, len, tail @ ..] = rest {
        let len = (*len as usize).min(tail.len());
        let page = base.pages[u16::from_le_bytes([*p0, *p1]) as usize % base.pages.len()];
        let at = page * PAGE + u64::from(u16::from_le_bytes([*o0, *o1])) % PAGE;
        patches.push((at, tail[..len].to_vec()));
        rest = &tail[len..];
    }
    exercise(Arc::new(Patched { base: base.file.clone(), patches, touched: None }), true);
});
