//! Memory management as dump tools see it: where each pfn's `struct page` is, and what
//! class of page it describes (makedumpfile's dump levels).

pub mod memmap;
pub mod page;

pub use memmap::{MemMap, Section};
pub use page::{Class, Decision, PageRules};
