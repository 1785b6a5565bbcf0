//! Flattened stream indexing and reads through the index.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vmcore_formats::flat::FlatView;
use vmcore_types::ReadAt;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = FlatView::index(data.to_vec()) {
        let mut buf = [0u8; 97];
        let size = v.size();
        for off in [0, size / 3, size.saturating_sub(97)] {
            let _ = v.read_exact_at(&mut buf, off);
        }
    }
});
