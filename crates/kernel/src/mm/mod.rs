//! Memory management as dump tools see it: where each pfn's `struct page` is, and what
//! class of page it describes (makedumpfile's dump levels).

pub mod memmap;
pub mod page;

pub use memmap::{MemMap, Section};
pub use page::{Class, Decision, PageRules};

use crate::vmcoreinfo::VmcoreInfo;

/// The largest `SIZE(page)` taken as true. struct page is 64 bytes on common
/// configurations and stays under 128 with every debug option; buffers of a batch of
/// struct pages are sized by it, so a corrupt value must not be believed.
pub const MAX_STRUCT_PAGE_SIZE: u64 = 1024;

/// `SIZE(page)`: `Ok(None)` when VMCOREINFO lacks it, an error naming the value when it
/// cannot be a struct page's size.
fn struct_page_size(vi: &VmcoreInfo) -> Result<Option<u64>, String> {
    match vi.size("page") {
        None => Ok(None),
        Some(v) => match u64::try_from(v) {
            Ok(size @ 1..=MAX_STRUCT_PAGE_SIZE) => Ok(Some(size)),
            _ => Err(format!(
                "VMCOREINFO SIZE(page)={v} is not the size of a struct page (1 to {MAX_STRUCT_PAGE_SIZE} bytes)"
            )),
        },
    }
}
