//! `vmcore info`: what a dump is.

use std::fmt::Write;

use serde::Serialize;
use vmcore_kernel::Dump;
use vmcore_physmem::Container;

use crate::hex;
use crate::layout::{self as layout_report, LayoutReport};
use vmcore_kernel::machine::{Layout, Machine};

/// One physical range of the dump.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RangeReport {
    /// First address, hex.
    pub start: String,
    /// End address (exclusive), hex.
    pub end: String,
    /// Pages in the range.
    pub pages: u64,
}

/// kdump-compressed specifics.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KdumpReport {
    /// `header_version` (makedumpfile writes 6).
    pub header_version: i32,
    /// Dump level the file was written with.
    pub dump_level: Option<i32>,
    /// Page codec the header names ("zlib", "lzo", "snappy", "zstd", or "none").
    pub compression: String,
    /// Pages with data in the file (2nd bitmap).
    pub dumpable_pages: u64,
    /// RAM pages filtering left out (1st bitmap set, 2nd clear).
    pub excluded_pages: u64,
    /// The writer ran out of space or hit its size limit.
    pub incomplete: bool,
    /// Written with `-e`: the struct pages of excluded memory are left out too.
    pub excluded_vmemmap: bool,
    /// Files of a `--split` set (1 when not split).
    pub split_parts: usize,
    /// CPUs with a register note.
    pub nr_cpus: i32,
}

/// The `vmcore info` report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InfoReport {
    /// The file(s).
    pub files: Vec<String>,
    /// "elf", "kcore", "kdump", "kdump-split", or "flattened-" and one of those.
    pub format: String,
    /// "x86_64", "aarch64", ...
    pub arch: Option<String>,
    /// Kernel release (VMCOREINFO OSRELEASE, else the kdump header's utsname).
    pub release: Option<String>,
    /// VMCOREINFO BUILD-ID.
    pub build_id: Option<String>,
    /// Page size in bytes.
    pub page_size: u64,
    /// Crash time, seconds since the epoch (absent on a live system).
    pub crash_time: Option<i64>,
    /// One past the highest page frame the dump describes.
    pub max_pfn: u64,
    /// Physical ranges described.
    pub ranges: Vec<RangeReport>,
    /// Where the VMCOREINFO came from.
    pub vmcoreinfo_source: Option<String>,
    /// ELF cores: the writer stopped early (e_flags has makedumpfile's incomplete bit).
    pub elf_incomplete: bool,
    /// ELF cores: PT_LOAD segments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elf_segments: Option<usize>,
    /// Where the kernel put things, each value with the methods that found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<LayoutReport>,
    /// Symbols known: decoded from the dump's kallsyms, or from a list (System.map).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kallsyms: Option<usize>,
    /// Where the symbols came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbols_from: Option<String>,
    /// What could not be found and why (kallsyms not exported, ...).
    pub notes: Vec<String>,
    /// Disagreements between methods: something is wrong with the dump or a method.
    pub warnings: Vec<String>,
    /// kdump-compressed specifics, flattened into the top level of the JSON.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub kdump: Option<KdumpReport>,
}

impl InfoReport {
    /// Gathers the report from an opened dump.
    pub fn new(dump: &Dump, machine: Option<&Machine>) -> InfoReport {
        let info = dump.container.info();
        let vi = dump.vmcoreinfo.as_ref();
        let page_size = dump.mem.page_size();
        let ranges = dump
            .mem
            .ranges()
            .iter()
            .map(|r| RangeReport { start: hex(r.start), end: hex(r.end), pages: (r.end - r.start).div_ceil(page_size) })
            .collect();
        let (kdump, elf_segments, kdump_release, kdump_time) = match &dump.container {
            Container::Kdump { mem, .. } => match mem.primary() {
                Some(p) => {
                    let dumpable = mem.dumped_pages();
                    let present = mem.present_pages();
                    let report = KdumpReport {
                        header_version: p.header.header_version,
                        dump_level: p.sub.dump_level,
                        compression: p.compression().map_or("none", |c| c.name()).to_string(),
                        dumpable_pages: dumpable,
                        excluded_pages: present.saturating_sub(dumpable),
                        incomplete: mem.parts().iter().any(|p| p.is_incomplete()),
                        excluded_vmemmap: p.excludes_vmemmap(),
                        split_parts: mem.parts().len(),
                        nr_cpus: p.header.nr_cpus,
                    };
                    let rel = Some(p.header.utsname.release.clone()).filter(|r| !r.is_empty());
                    (Some(report), None, rel, Some(p.header.timestamp_sec).filter(|&t| t != 0))
                }
                None => (None, None, None, None),
            },
            Container::Elf { core, .. } => (None, Some(core.loads.len()), None, None),
        };
        let mut notes = machine.map(|m| m.notes.clone()).unwrap_or_default();
        if let Container::Elf { core, .. } = &dump.container {
            if core.folded_views > 0 {
                notes.push(format!(
                    "elf: {} more PT_LOADs are views of bytes these segments hold (QEMU's dump-guest-memory \
                     -p writes one per virtual mapping)",
                    core.folded_views
                ));
            }
        }
        InfoReport {
            files: dump.paths.iter().map(|p| p.display().to_string()).collect(),
            format: info.format,
            arch: machine.map(|m| m.arch.name().to_string()).or(info.arch),
            release: vi.and_then(|v| v.osrelease()).map(str::to_string).or(kdump_release),
            build_id: vi.and_then(|v| v.build_id()).map(str::to_string),
            page_size,
            crash_time: vi.and_then(|v| v.crash_time()).or(kdump_time),
            max_pfn: dump.mem.max_pfn(),
            ranges,
            vmcoreinfo_source: vi.map(|v| v.source().name()),
            elf_segments,
            elf_incomplete: matches!(&dump.container, Container::Elf { core, .. } if core.is_incomplete()),
            layout: None,
            kallsyms: machine.and_then(|m| m.symbols.as_ref()).map(|s| s.len()),
            symbols_from: machine.and_then(|m| m.symbols.as_ref()).map(|s| s.origin().to_string()),
            notes,
            warnings: Vec::new(),
            kdump,
        }
        .with_layout(machine)
    }

    fn with_layout(mut self, machine: Option<&Machine>) -> InfoReport {
        let (report, warnings) = match machine.map(|m| &m.layout) {
            Some(Layout::X86_64(l)) => layout_report::report(&l.values()),
            Some(Layout::Aarch64(l)) => layout_report::report(&l.values()),
            None => return self,
        };
        self.layout = Some(report);
        self.warnings.extend(warnings);
        self
    }

    /// The human rendering.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let none = || "-".to_string();
        let _ = writeln!(s, "file:              {}", self.files.join(" "));
        let _ = writeln!(s, "format:            {}", self.format);
        let _ = writeln!(s, "arch:              {}", self.arch.clone().unwrap_or_else(none));
        let _ = writeln!(s, "release:           {}", self.release.clone().unwrap_or_else(none));
        if let Some(b) = &self.build_id {
            let _ = writeln!(s, "build id:          {b}");
        }
        let _ = writeln!(s, "page size:         {}", self.page_size);
        let _ = writeln!(s, "crash time:        {}", self.crash_time.map_or_else(none, |t| t.to_string()));
        let _ = writeln!(s, "max pfn:           {:#x}", self.max_pfn);
        let _ = writeln!(s, "vmcoreinfo:        {}", self.vmcoreinfo_source.clone().unwrap_or_else(|| "none".into()));
        if let Some(n) = self.elf_segments {
            let _ = writeln!(s, "PT_LOAD segments:  {n}");
            if self.elf_incomplete {
                let _ = writeln!(s, "INCOMPLETE:        the writer stopped early; pages past the cut are missing");
            }
        }
        if let Some(k) = &self.kdump {
            let _ = writeln!(s, "header version:    {}", k.header_version);
            let _ = writeln!(s, "dump level:        {}", k.dump_level.map_or_else(none, |d| d.to_string()));
            let _ = writeln!(s, "compression:       {}", k.compression);
            let _ = writeln!(s, "dumpable pages:    {}", k.dumpable_pages);
            let _ = writeln!(s, "excluded pages:    {}", k.excluded_pages);
            if k.split_parts > 1 {
                let _ = writeln!(s, "split parts:       {}", k.split_parts);
            }
            if k.excluded_vmemmap {
                let _ = writeln!(s, "unused vmemmap:    left out (-e): struct pages of excluded memory are missing");
            }
            if k.incomplete {
                let _ = writeln!(s, "INCOMPLETE:        the writer stopped early; pages past the cut are missing");
            }
        }
        if let Some(n) = self.kallsyms {
            let from = self.symbols_from.as_deref().map(|f| format!(", from {f}")).unwrap_or_default();
            let _ = writeln!(s, "kallsyms:          {n} symbols{from}");
        }
        let _ = writeln!(s, "physical ranges:   {}", self.ranges.len());
        for r in &self.ranges {
            let _ = writeln!(s, "  {:>18} - {:<18} {:>10} pages", r.start, r.end, r.pages);
        }
        if let Some(l) = &self.layout {
            layout_report::render(l, &mut s);
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        for w in &self.warnings {
            let _ = writeln!(s, "WARNING: {w}");
        }
        s
    }
}
