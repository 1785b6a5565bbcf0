//! A small cache of decoded pages in front of compressed dumps, so that the many small
//! reads of page-table walks and struct-page scans decompress each page once.

use std::sync::Mutex;

const SLOTS: usize = 64;

/// One slot: the pfn it holds and the page.
type Slot = Mutex<Option<(u64, Box<[u8]>)>>;

/// Direct-mapped by pfn, one lock per slot so threads reading different pages do not
/// contend.
#[derive(Debug)]
pub(crate) struct PageCache {
    slots: Vec<Slot>,
}

impl PageCache {
    pub(crate) fn new() -> PageCache {
        PageCache { slots: (0..SLOTS).map(|_| Mutex::new(None)).collect() }
    }

    fn slot(&self, pfn: u64) -> Option<&Slot> {
        self.slots.get((pfn % SLOTS as u64) as usize)
    }

    /// Copies page `pfn` into `buf` if cached.
    pub(crate) fn get(&self, pfn: u64, buf: &mut [u8]) -> bool {
        let Some(slot) = self.slot(pfn) else {
            return false;
        };
        let Ok(guard) = slot.lock() else { return false };
        match &*guard {
            Some((p, data)) if *p == pfn && data.len() == buf.len() => {
                buf.copy_from_slice(data);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn put(&self, pfn: u64, data: &[u8]) {
        let Some(slot) = self.slot(pfn) else { return };
        if let Ok(mut guard) = slot.lock() {
            match &mut *guard {
                Some((p, buf)) if buf.len() == data.len() => {
                    *p = pfn;
                    buf.copy_from_slice(data);
                }
                other => *other = Some((pfn, data.into())),
            }
        }
    }
}
