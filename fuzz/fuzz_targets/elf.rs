//! ELF core parsing and physical reads through its segment map.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vmcore_formats::elf::ElfCore;
use vmcore_physmem::{ElfMem, PhysMem};
use vmcore_types::{Pfn, ReadAt};

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    if let Ok(core) = ElfCore::parse(&data) {
        let src: Arc<dyn ReadAt> = Arc::new(data);
        let mem = ElfMem::new(&core, src, 4096);
        let mut page = vec![0u8; 4096];
        for pfn in 0..mem.max_pfn().min(64) {
            let _ = mem.read_page(Pfn(pfn), &mut page);
        }
    }
});
