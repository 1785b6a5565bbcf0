//! kdump-compressed headers, bitmaps (bits, ranks, runs), descriptors and page decoding.
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
        let _ = k.dumpable_pages();
        let _ = k.same_dumped_pages(&k);
        let (mut present, mut dumped) = (0u64, 0u64);
        if k.for_each_present_run(|s, e| present += e - s).is_ok() {
            assert_eq!(present, k.present_pages(), "runs and counts of the 1st bitmap");
        }
        if k.for_each_dumped_run(|s, e| dumped += e - s).is_ok() {
            assert_eq!(dumped, k.dumped_pages(), "runs and counts of the 2nd bitmap");
        }
    }
});
