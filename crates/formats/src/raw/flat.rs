//! The flattened stream of `makedumpfile -F`: a 4096-byte header, then chunks of
//! `{i64 offset; i64 size}` (big-endian) followed by `size` bytes that belong at `offset`
//! of the real dump file, ended by a header of `-1, -1`.

/// Signature: "makedumpfile" padded with NULs to 16 bytes.
pub const SIGNATURE: &[u8; 16] = b"makedumpfile\0\0\0\0";
/// Size of the stream header.
pub const HEADER_SIZE: u64 = 4096;
/// `type` field of the stream header (big-endian i64 at offset 16).
pub const TYPE_FLAT_HEADER: i64 = 1;
/// `version` field (big-endian i64 at offset 24).
pub const VERSION_FLAT_HEADER: i64 = 1;
/// Size of a chunk header.
pub const CHUNK_HEADER_SIZE: u64 = 16;
