//! Opening dump files: format detection, flattened streams, split sets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vmcore_formats::elf::{ElfCore, ElfKind, EM_AARCH64, EM_X86_64};
use vmcore_formats::flat::FlatView;
use vmcore_formats::kdump::KdumpFile;
use vmcore_formats::{detect, FileSource, Format};
use vmcore_types::ReadAt;

use crate::{ElfMem, Error, PhysMem, Result, SplitMem};

/// An opened dump file (or split set), before the page size is known.
#[derive(Debug)]
pub enum Container {
    /// An ELF core.
    Elf {
        /// Its headers and notes.
        core: ElfCore,
        /// The file (or the flattened stream seen as the file).
        src: Arc<dyn ReadAt>,
        /// Whether it came as a flattened stream.
        flattened: bool,
        /// The file's name, for errors.
        name: String,
    },
    /// One kdump-compressed file or a split set.
    Kdump {
        /// The files as physical memory.
        mem: Arc<SplitMem>,
        /// Whether it came as a flattened stream.
        flattened: bool,
    },
}

/// What the container says about the dump without the kernel's help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// "elf", "kcore", "kdump", or these with "flattened-" before them; "kdump-split" for
    /// a split set.
    pub format: String,
    /// Machine name as `uname -m` prints it, from ELF `e_machine` or the kdump utsname.
    pub arch: Option<String>,
}

/// Opens one file, seeing through a flattened stream.
fn open_one(path: &Path) -> std::result::Result<(Format, Arc<dyn ReadAt>, bool), vmcore_formats::Error> {
    let src: Arc<dyn ReadAt> = Arc::new(FileSource::open(path).map_err(vmcore_formats::Error::Open)?);
    match detect(&*src)? {
        Format::Flattened => {
            let view: Arc<dyn ReadAt> = Arc::new(FlatView::index(src)?);
            match detect(&*view).map_err(carried)? {
                Format::Flattened => {
                    Err(vmcore_formats::Error::Unsupported("a flattened stream inside a flattened stream".into()))
                }
                inner => Ok((inner, view, true)),
            }
        }
        f => Ok((f, src, false)),
    }
}

/// An error in the dump a flattened stream carries: its offsets are the dump's, which the
/// stream's chunks rebuild, not the stream's own.
fn carried(e: vmcore_formats::Error) -> vmcore_formats::Error {
    e.in_file("in the dump the flattened stream carries (offsets in that dump)")
}

/// Opens a dump: one file, or every file of a `--split` set.
pub fn open_container(paths: &[PathBuf]) -> Result<Container> {
    let in_file = |p: &PathBuf| {
        let name = p.display().to_string();
        move |e: vmcore_formats::Error| Error::Format(e.in_file(name))
    };
    let first = paths.first().ok_or_else(|| Error::Mismatch("no dump file given".into()))?;
    let (format, src, flattened) = open_one(first).map_err(in_file(first))?;
    let inner = |e| if flattened { carried(e) } else { e };
    match format {
        Format::Elf => {
            if paths.len() > 1 {
                return Err(Error::Mismatch(
                    "only kdump-compressed files come as split sets; an ELF core was given first".into(),
                ));
            }
            let core = ElfCore::parse(&*src).map_err(inner).map_err(in_file(first))?;
            Ok(Container::Elf { core, src, flattened, name: first.display().to_string() })
        }
        Format::Kdump => {
            let mut parts =
                vec![(first.display().to_string(), KdumpFile::parse(src).map_err(inner).map_err(in_file(first))?)];
            for p in paths.iter().skip(1) {
                let (f, src, _) = open_one(p).map_err(in_file(p))?;
                if f != Format::Kdump {
                    return Err(Error::Mismatch(format!(
                        "{}: not a kdump-compressed file, so not part of a split set",
                        p.display()
                    )));
                }
                parts.push((p.display().to_string(), KdumpFile::parse(src).map_err(in_file(p))?));
            }
            Ok(Container::Kdump { mem: Arc::new(SplitMem::new(parts)?), flattened })
        }
        Format::Flattened => Err(Error::Mismatch("unexpected flattened stream".into())),
    }
}

fn arch_of_machine(em: u16) -> Option<String> {
    match em {
        EM_X86_64 => Some("x86_64".into()),
        EM_AARCH64 => Some("aarch64".into()),
        _ => None,
    }
}

impl Container {
    /// Format and architecture.
    pub fn info(&self) -> ContainerInfo {
        match self {
            Container::Elf { core, flattened, .. } => {
                let base = if core.kind == ElfKind::Kcore { "kcore" } else { "elf" };
                ContainerInfo {
                    format: if *flattened { format!("flattened-{base}") } else { base.into() },
                    arch: arch_of_machine(core.machine),
                }
            }
            Container::Kdump { mem, flattened } => {
                let base = if mem.parts().len() > 1 { "kdump-split" } else { "kdump" };
                let machine = mem.primary().map(|p| p.header.utsname.machine.clone()).filter(|m| !m.is_empty());
                ContainerInfo {
                    format: if *flattened { format!("flattened-{base}") } else { base.into() },
                    arch: machine,
                }
            }
        }
    }

    /// The raw VMCOREINFO text the file carries: the ELF note, or the kdump sub header's
    /// copy.
    pub fn vmcoreinfo(&self) -> Result<Option<Vec<u8>>> {
        match self {
            Container::Elf { core, .. } => Ok(core.note(b"VMCOREINFO", 0).map(|n| n.desc.clone())),
            Container::Kdump { mem, .. } => match mem.primary() {
                Some(p) => Ok(p.vmcoreinfo().map_err(|e| e.in_file(mem.primary_name()))?),
                None => Ok(None),
            },
        }
    }

    /// Physical memory of the dump, for pages of `page_size` bytes. A kdump file knows its
    /// page size; a different one is an error.
    pub fn physmem(&self, page_size: u64) -> Result<Arc<dyn PhysMem>> {
        if !page_size.is_power_of_two() || page_size < 512 {
            return Err(Error::Mismatch(format!("page size {page_size}: expected a power of two of at least 512")));
        }
        match self {
            Container::Elf { core, src, name, .. } => {
                Ok(Arc::new(ElfMem::new(core, src.clone(), page_size).named(name.clone())))
            }
            Container::Kdump { mem, .. } => {
                if mem.page_size() != page_size {
                    return Err(Error::Mismatch(format!(
                        "{}: the kdump header's block_size {} (offset {:#x}) differs from the page size {page_size} (VMCOREINFO PAGESIZE)",
                        mem.primary_name(),
                        mem.page_size(),
                        vmcore_formats::raw::kdump::header::BLOCK_SIZE
                    )));
                }
                Ok(mem.clone())
            }
        }
    }
}
