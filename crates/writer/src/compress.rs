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

    /// Appends the compressed `page` to `out` and returns true, or returns false with `out`
    /// as it was when the result would not be smaller than the page, which is then stored
    /// raw. Compressing in place saves a copy of every page's output.
    pub(crate) fn compress(&mut self, page: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        let base = out.len();
        fn tail(out: &mut Vec<u8>, room: usize) -> &mut [u8] {
            let base = out.len();
            out.resize(base + room, 0);
            out.get_mut(base..).unwrap_or_default()
        }
        let len = match self {
            Compressor::Raw => return Ok(false),
            Compressor::Zlib(z) => {
                // Output that would not be smaller than the page is stored raw anyway, so
                // room one byte short of the page lets libdeflate give up early.
                match z.zlib_compress(page, tail(out, page.len() - 1)) {
                    Ok(n) => n,
                    Err(libdeflater::CompressionError::InsufficientSpace) => page.len(),
                }
            }
            #[cfg(feature = "lzo")]
            Compressor::Lzo(lzo) => return Ok(lzo.compress(page, out, page.len())),
            #[cfg(feature = "snappy")]
            Compressor::Snappy(e) => {
                e.compress(page, tail(out, snap::raw::max_compress_len(page.len()))).map_err(|e| e.to_string())?
            }
            #[cfg(feature = "zstd")]
            Compressor::Zstd(z) => z
                .compress_to_buffer(page, tail(out, zstd::zstd_safe::compress_bound(page.len())))
                .map_err(|e| e.to_string())?,
        };
        if len < page.len() {
            out.truncate(base + len);
            Ok(true)
        } else {
            out.truncate(base);
            Ok(false)
        }
    }
}
