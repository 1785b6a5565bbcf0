//! Per-thread page compressors: one zlib stream per page (RFC 1950 header and adler32),
//! LZO1X-1, raw snappy blocks, zstd level 1 frames, as makedumpfile writes them.
//!
//! makedumpfile uses zlib level 1 through zlib's streaming API. Readers only need a valid
//! zlib stream per page, so `-c` uses libdeflate, which compresses a whole buffer at once:
//! on the x86_64 fixtures at -d 31 its level 2 takes 0.6x the time of makedumpfile -c and
//! its output is 1.4-3% smaller (zlib-rs, which the readers use, needed level 2 to reach
//! zlib level 1's ratio and was no faster). Measured with bench/write.sh.

use vmcore_formats::codec::Codec;

/// See the module comment.
const ZLIB_LEVEL: i32 = 2;

/// One thread's compressor; keeps its state between pages.
pub(crate) enum Compressor {
    Raw,
    Zlib(Box<libdeflater::Compressor>),
    #[cfg(feature = "lzo")]
    Lzo(crate::lzo::Lzo1x1),
    #[cfg(feature = "snappy")]
    Snappy(Box<snap::raw::Encoder>),
    #[cfg(feature = "zstd")]
    Zstd(Box<zstd::bulk::Compressor<'static>>),
}

impl Compressor {
    pub(crate) fn new(codec: Codec) -> Result<Compressor, String> {
        Ok(match codec {
            Codec::Raw => Compressor::Raw,
            Codec::Zlib => {
                let level = libdeflater::CompressionLvl::new(ZLIB_LEVEL).map_err(|e| format!("zlib level: {e:?}"))?;
                Compressor::Zlib(Box::new(libdeflater::Compressor::new(level)))
            }
            #[cfg(feature = "lzo")]
            Codec::Lzo => Compressor::Lzo(crate::lzo::Lzo1x1::new()),
            #[cfg(feature = "snappy")]
            Codec::Snappy => Compressor::Snappy(Box::new(snap::raw::Encoder::new())),
            #[cfg(feature = "zstd")]
            Codec::Zstd => Compressor::Zstd(Box::new(zstd::bulk::Compressor::new(1).map_err(|e| e.to_string())?)),
            #[allow(unreachable_patterns)]
            other => return Err(format!("this build of vmcore has no {} support", other.name())),
        })
    }

    /// Compresses `page` into `out` (cleared first). Returns false when the result is not
    /// smaller than the page, which is then stored raw.
    pub(crate) fn compress(&mut self, page: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        out.clear();
        match self {
            Compressor::Raw => return Ok(false),
            Compressor::Zlib(z) => {
                // Output that would not be smaller than the page is stored raw anyway, so a
                // buffer one byte short of the page lets libdeflate give up early.
                out.resize(page.len() - 1, 0);
                match z.zlib_compress(page, out) {
                    Ok(n) => out.truncate(n),
                    Err(libdeflater::CompressionError::InsufficientSpace) => return Ok(false),
                }
            }
            #[cfg(feature = "lzo")]
            Compressor::Lzo(lzo) => return Ok(lzo.compress(page, out, page.len())),
            #[cfg(feature = "snappy")]
            Compressor::Snappy(e) => {
                out.resize(snap::raw::max_compress_len(page.len()), 0);
                let n = e.compress(page, out).map_err(|e| e.to_string())?;
                out.truncate(n);
            }
            #[cfg(feature = "zstd")]
            Compressor::Zstd(z) => {
                out.reserve(zstd::zstd_safe::compress_bound(page.len()));
                z.compress_to_buffer(page, out).map_err(|e| e.to_string())?;
            }
        }
        Ok(out.len() < page.len())
    }
}
