//! Page codecs of the kdump-compressed format.

use crate::raw::kdump::{
    DUMP_DH_COMPRESSED_LZO, DUMP_DH_COMPRESSED_SNAPPY, DUMP_DH_COMPRESSED_ZLIB, DUMP_DH_COMPRESSED_ZSTD,
};

thread_local! {
    // One inflate state per thread, reset per page: allocating its 32 KiB window for every
    // page costs more than the page's decompression.
    static ZLIB: std::cell::RefCell<flate2::Decompress> = std::cell::RefCell::new(flate2::Decompress::new(true));
}

/// How one stored page is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Stored as is.
    Raw,
    /// A complete zlib stream (RFC 1950).
    Zlib,
    /// LZO1X.
    Lzo,
    /// A raw snappy block.
    Snappy,
    /// A zstd frame.
    Zstd,
}

impl Codec {
    /// The codec a page descriptor's `flags` name, or `None` for an invalid combination.
    pub fn from_page_flags(flags: u32) -> Option<Codec> {
        match flags
            & (DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO | DUMP_DH_COMPRESSED_SNAPPY | DUMP_DH_COMPRESSED_ZSTD)
        {
            0 => Some(Codec::Raw),
            DUMP_DH_COMPRESSED_ZLIB => Some(Codec::Zlib),
            DUMP_DH_COMPRESSED_LZO => Some(Codec::Lzo),
            DUMP_DH_COMPRESSED_SNAPPY => Some(Codec::Snappy),
            DUMP_DH_COMPRESSED_ZSTD => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// The codec named in a dump header's `status`, if any.
    pub fn from_header_status(status: u32) -> Option<Codec> {
        Codec::from_page_flags(status).filter(|c| *c != Codec::Raw)
    }

    /// The name makedumpfile's documentation uses.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Raw => "none",
            Codec::Zlib => "zlib",
            Codec::Lzo => "lzo",
            Codec::Snappy => "snappy",
            Codec::Zstd => "zstd",
        }
    }

    /// Whether this build has the codec (lzo, snappy and zstd are cargo features).
    pub fn is_supported(self) -> bool {
        match self {
            Codec::Raw | Codec::Zlib => true,
            Codec::Lzo => cfg!(feature = "lzo"),
            Codec::Snappy => cfg!(feature = "snappy"),
            Codec::Zstd => cfg!(feature = "zstd"),
        }
    }

    /// Decodes `input` into `out`, which must be filled exactly.
    pub fn decode(self, input: &[u8], out: &mut [u8]) -> Result<(), String> {
        match self {
            Codec::Raw => {
                if input.len() != out.len() {
                    return Err(format!("raw page of {} bytes, expected {}", input.len(), out.len()));
                }
                out.copy_from_slice(input);
                Ok(())
            }
            Codec::Zlib => ZLIB.with(|z| {
                let mut z = z.borrow_mut();
                z.reset(true);
                let status = z.decompress(input, out, flate2::FlushDecompress::Finish).map_err(|e| e.to_string())?;
                if status != flate2::Status::StreamEnd || z.total_out() != out.len() as u64 {
                    return Err(format!(
                        "decompressed to {} bytes without the stream end, expected {}",
                        z.total_out(),
                        out.len()
                    ));
                }
                Ok(())
            }),
            #[cfg(feature = "lzo")]
            Codec::Lzo => {
                lzo1x::decompress(input, out).map_err(|e| format!("{e} (expected exactly {} bytes)", out.len()))
            }
            #[cfg(feature = "snappy")]
            Codec::Snappy => {
                let n = snap::raw::decompress_len(input).map_err(|e| e.to_string())?;
                if n != out.len() {
                    return Err(format!("snappy block holds {n} bytes, expected {}", out.len()));
                }
                snap::raw::Decoder::new().decompress(input, out).map(|_| ()).map_err(|e| e.to_string())
            }
            #[cfg(feature = "zstd")]
            Codec::Zstd => {
                let n = zstd::bulk::decompress_to_buffer(input, out).map_err(|e| e.to_string())?;
                if n != out.len() {
                    return Err(format!("zstd frame holds {n} bytes, expected {}", out.len()));
                }
                Ok(())
            }
            #[allow(unreachable_patterns)]
            other => Err(format!("this build of vmcore has no {} support", other.name())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn page() -> Vec<u8> {
        (0..4096u32).map(|i| (i % 7) as u8).collect()
    }

    #[test]
    fn every_codec_round_trips_one_page_and_rejects_wrong_sizes() {
        let p = page();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&p).unwrap();
        let encoded = [
            (Codec::Zlib, z.finish().unwrap()),
            (Codec::Lzo, lzo1x::compress(&p, lzo1x::CompressLevel::new(3))),
            (Codec::Snappy, snap::raw::Encoder::new().compress_vec(&p).unwrap()),
            (Codec::Zstd, zstd::bulk::compress(&p, 1).unwrap()),
            (Codec::Raw, p.clone()),
        ];
        for (codec, data) in encoded {
            let mut out = vec![0u8; 4096];
            codec.decode(&data, &mut out).unwrap();
            assert_eq!(out, p, "{codec:?}");
            let mut short = vec![0u8; 2048];
            assert!(codec.decode(&data, &mut short).is_err(), "{codec:?} accepted a wrong page size");
            let mut out = vec![0u8; 4096];
            let cut = &data[..data.len() / 2];
            assert!(codec.decode(cut, &mut out).is_err(), "{codec:?} accepted truncated data");
        }
    }

    #[test]
    fn flags_name_one_codec() {
        assert_eq!(Codec::from_page_flags(0), Some(Codec::Raw));
        assert_eq!(Codec::from_page_flags(0x20), Some(Codec::Zstd));
        assert_eq!(Codec::from_page_flags(0x3), None);
        assert_eq!(Codec::from_header_status(0x8 | 0x2), Some(Codec::Lzo));
    }
}
