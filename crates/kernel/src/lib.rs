//! The dumped kernel as vmcore understands it.
//!
//! Built on the physical-memory layer: [`vmcoreinfo`] parses the kernel's self-description,
//! [`dump::Dump`] opens a dump file with it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dump;
pub mod kallsyms;
pub mod layout;
pub mod machine;
pub mod mm;
pub mod printk;
pub mod symbol_list;
pub mod vmcoreinfo;
pub mod vmem;

pub use dump::{Dump, OpenOptions};
pub use vmcoreinfo::VmcoreInfo;
