//! System.map and /proc/kallsyms lists, checked against a VMCOREINFO: the input is the
//! VMCOREINFO text, a NUL, then the list.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vmcore_kernel::symbol_list;
use vmcore_kernel::vmcoreinfo::{Source, VmcoreInfo};

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == 0) else { return };
    let (info, list) = (&data[..split], &data[split + 1..]);
    let Ok(vi) = VmcoreInfo::parse(info, Source::ElfNote) else { return };
    for this_boot in [false, true] {
        if let Ok(k) = symbol_list::parse(list, "fuzz", &vi, this_boot) {
            for s in k.symbols().iter().take(64) {
                let _ = (k.lookup(&s.name), k.addr2sym(s.address.wrapping_add(1)));
            }
        }
    }
});
