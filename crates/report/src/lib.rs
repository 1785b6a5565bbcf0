//! Reports: each a `Serialize` struct that `--json` prints as is, with a human rendering
//! beside it, so that both always say the same thing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod filter;
pub mod info;
pub mod layout;
pub mod mem_usage;
pub mod vtop;

/// Formats an address or count the way kernel engineers read them.
pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}
