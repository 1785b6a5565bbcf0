//! A small translation cache, so that scanning millions of pages walks each table once.

use std::sync::Mutex;

const SLOTS: usize = 1024;

/// Direct-mapped by virtual page number; one lock per slot.
#[derive(Debug)]
pub(crate) struct Tlb {
    slots: Vec<Mutex<Option<(u64, u64, u64)>>>,
}

impl Tlb {
    pub(crate) fn new() -> Tlb {
        Tlb { slots: (0..SLOTS).map(|_| Mutex::new(None)).collect() }
    }

    /// (physical address of the page's mapping start, mapping size) for the page holding
    /// `vpage` (a virtual address with its page offset cleared).
    pub(crate) fn get(&self, vpage: u64, page_shift: u32) -> Option<(u64, u64)> {
        let slot = self.slots.get(((vpage >> page_shift) as usize) % SLOTS)?;
        let guard = slot.lock().ok()?;
        match *guard {
            Some((v, p, size)) if v == vpage => Some((p, size)),
            _ => None,
        }
    }

    pub(crate) fn put(&self, vpage: u64, page_shift: u32, ppage: u64, size: u64) {
        if let Some(slot) = self.slots.get(((vpage >> page_shift) as usize) % SLOTS) {
            if let Ok(mut g) = slot.lock() {
                *g = Some((vpage, ppage, size));
            }
        }
    }
}
