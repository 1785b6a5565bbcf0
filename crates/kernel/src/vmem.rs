//! Reading the dumped kernel's virtual memory.
//!
//! Three ways to a physical address, tried in this order: the kernel image's linear map
//! (`vaddr - image start + image phys`, no table needed, so it works before the page
//! tables are found), the direct map (`vaddr - page_offset_base`, once that is known and
//! only over the RAM the dump describes), and a page-table walk for everything else
//! (vmalloc, vmemmap, modules). A walk is always available through [`KernelMem::walk`], so
//! tests can check the shortcuts against it.

use std::sync::Arc;

use vmcore_physmem::{PhysMem, ReadOptions};
use vmcore_translate::Walker;
use vmcore_types::PhysAddr;

/// A linear piece of the kernel's virtual address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearMap {
    /// First virtual address.
    pub vstart: u64,
    /// Size in bytes.
    pub size: u64,
    /// Physical address of `vstart`.
    pub pstart: u64,
}

impl LinearMap {
    /// The physical address of `vaddr`, if it is inside the map.
    pub fn translate(&self, vaddr: u64) -> Option<u64> {
        let off = vaddr.checked_sub(self.vstart)?;
        (off < self.size).then(|| self.pstart.wrapping_add(off))
    }
}

/// Errors of virtual reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address does not translate.
    #[error(transparent)]
    Translate(#[from] vmcore_translate::Error),
    /// It translates, but the physical memory is not in the dump.
    #[error("virtual address {vaddr:#x} (physical {paddr:#x}): {cause}")]
    Phys {
        /// The virtual address.
        vaddr: u64,
        /// Its physical address.
        paddr: u64,
        /// Why the physical read failed.
        cause: vmcore_physmem::Error,
    },
    /// Neither a linear map nor page tables cover the address.
    #[error("virtual address {0:#x}: no page tables known yet and outside the kernel image map")]
    NoTranslation(u64),
}

/// The kernel's virtual memory.
#[derive(Debug, Clone)]
pub struct KernelMem {
    mem: Arc<dyn PhysMem>,
    image: Option<LinearMap>,
    /// `[_text, _end)`, where the image map is known to be mapped. Once page tables are
    /// known, the rest of the image window is translated by them: the kernel unmaps what
    /// its image does not use, and modules may live there (below 2.6.32's 512 MiB).
    image_extent: Option<(u64, u64)>,
    direct: Option<LinearMap>,
    walker: Option<Arc<Walker>>,
}

impl KernelMem {
    /// Virtual memory through the kernel image map only (bootstrap: enough to read
    /// variables and kallsyms before the page tables are known).
    pub fn new(mem: Arc<dyn PhysMem>, image: Option<LinearMap>) -> KernelMem {
        KernelMem { mem, image, image_extent: None, direct: None, walker: None }
    }

    /// Where the image is: `[_text, _end)`.
    pub fn with_image_extent(mut self, start: u64, end: u64) -> KernelMem {
        self.image_extent = Some((start, end));
        self
    }

    /// Adds page tables.
    pub fn with_walker(mut self, walker: Arc<Walker>) -> KernelMem {
        self.walker = Some(walker);
        self
    }

    /// Adds the direct-map shortcut.
    pub fn with_direct_map(mut self, direct: LinearMap) -> KernelMem {
        self.direct = Some(direct);
        self
    }

    /// Physical memory underneath.
    pub fn phys(&self) -> &Arc<dyn PhysMem> {
        &self.mem
    }

    /// The page-table walker, once known.
    pub fn walker(&self) -> Option<&Arc<Walker>> {
        self.walker.as_ref()
    }

    /// The kernel image's linear map.
    pub fn image_map(&self) -> Option<LinearMap> {
        self.image
    }

    /// The physical address of `vaddr`.
    pub fn translate(&self, vaddr: u64) -> Result<u64, Error> {
        let in_image = match (&self.walker, self.image_extent) {
            (None, _) => true,
            (Some(_), Some((start, end))) => (start..end).contains(&vaddr),
            (Some(_), None) => false,
        };
        if let Some(p) = self.image.filter(|_| in_image).and_then(|m| m.translate(vaddr)) {
            return Ok(p);
        }
        if let Some(p) = self.direct.and_then(|m| m.translate(vaddr)) {
            return Ok(p);
        }
        self.walk(vaddr)
    }

    /// The physical address of `vaddr` by walking the page tables, no shortcut.
    pub fn walk(&self, vaddr: u64) -> Result<u64, Error> {
        let w = self.walker.as_ref().ok_or(Error::NoTranslation(vaddr))?;
        Ok(w.translate(vaddr)?.paddr)
    }

    /// Reads `buf.len()` bytes at `vaddr`, page by page.
    pub fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.read_with(vaddr, buf, ReadOptions::default())
    }

    /// [`read`](Self::read) with `opts` for the physical reads (excluded pages as zeros).
    pub fn read_with(&self, vaddr: u64, buf: &mut [u8], opts: ReadOptions) -> Result<(), Error> {
        let page = self.mem.page_size();
        let mut done = 0usize;
        while done < buf.len() {
            let v = vaddr.wrapping_add(done as u64);
            let n = ((page - (v & (page - 1))) as usize).min(buf.len() - done);
            let paddr = self.translate(v)?;
            let dst = buf.get_mut(done..done + n).unwrap_or_default();
            self.mem.read(PhysAddr(paddr), dst, opts).map_err(|cause| Error::Phys { vaddr: v, paddr, cause })?;
            done += n;
        }
        Ok(())
    }

    /// A little-endian `u64` at `vaddr`.
    pub fn read_u64(&self, vaddr: u64) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        self.read(vaddr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}
