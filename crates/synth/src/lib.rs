//! Synthetic Linux crash dumps, for tests of the readers and of everything above them.
//!
//! * [`elf`]: ELF64 vmcores (what /proc/vmcore or `makedumpfile -E` gives), built from a
//!   list of notes and PT_LOADs and a callback that fills each page;
//! * [`kdump`]: a deliberately simple kdump-compressed writer that follows makedumpfile's
//!   byte layout field by field, for every header version, codec and byte order, with split
//!   files and cut-short (incomplete) files;
//! * [`flat`]: the flattened stream (`makedumpfile -F`) of a finished file;
//! * [`sample`]: the small deterministic x86_64 machine of the first tests (`--layout sample`);
//! * [`machine`]: synthetic kernels of several generations, of any size, with their ground
//!   truth (page classes per dump level, dmesg, layout), what the `vmcore-synth` binary writes;
//! * [`printk`]: the three printk buffers alone, in memory images, for the log readers' tests.
//!
//! The kdump, flattened and sample writers are not tuned for speed: they keep their output
//! obviously correct, so that a test failing against it points at the reader. The
//! [`machine`] ELF writer streams: it writes at disk speed with bounded memory.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod elf;
mod error;
pub mod flat;
pub mod kdump;
pub mod machine;
pub mod printk;
pub mod rng;
pub mod sample;

pub use error::{Error, Result};

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates `path` for writing, failing when it exists, readable by its owner only: dumps
/// hold a machine's whole memory, and a test tool must never overwrite a real one.
pub fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}
