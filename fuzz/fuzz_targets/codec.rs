//! Every page codec on arbitrary input: errors, never panics, never a wrong length.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vmcore_formats::codec::Codec;

fuzz_target!(|data: &[u8]| {
    let mut out = vec![0u8; 4096];
    for codec in [Codec::Zlib, Codec::Lzo, Codec::Snappy, Codec::Zstd] {
        let _ = codec.decode(data, &mut out);
    }
});
