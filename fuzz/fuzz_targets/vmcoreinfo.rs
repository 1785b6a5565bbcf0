//! VMCOREINFO text parsing and typed access.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vmcore_kernel::vmcoreinfo::{Source, VmcoreInfo};

fuzz_target!(|data: &[u8]| {
    if let Ok(vi) = VmcoreInfo::parse(data, Source::ElfNote) {
        let _ = (vi.page_size(), vi.kernel_offset(), vi.crash_time(), vi.osrelease());
        for (k, _) in vi.lines() {
            if let Some(name) = k.strip_prefix("NUMBER(").and_then(|r| r.strip_suffix(')')) {
                let _ = (vi.number(name), vi.number_u64(name));
            }
            if let Some(name) = k.strip_prefix("SYMBOL(").and_then(|r| r.strip_suffix(')')) {
                let _ = vi.symbol(name);
            }
        }
    }
});
