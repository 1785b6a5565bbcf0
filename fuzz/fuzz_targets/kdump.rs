//! kdump-compressed headers, bitmaps, descriptors and page decoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vmcore_formats::kdump::KdumpFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = KdumpFile::parse(data.to_vec()) {
        let mut page = vec![0u8; k.page_size() as usize];
        let _ = k.vmcoreinfo();
        let _ = k.notes();
        for pfn in 0..k.max_mapnr().min(256) {
            let _ = k.read_page(pfn, &mut page);
        }
    }
});
