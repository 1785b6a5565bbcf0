//! The VMCOREINFO note: the kernel's own description of itself for dump tools.
//!
//! It is text, one `KEY=VALUE` per line: `SYMBOL(name)=` hex address without `0x`,
//! `SIZE(type)=`, `OFFSET(type.member)=`, `LENGTH(name)=` and `NUMBER(name)=` decimal (some
//! `NUMBER`s are written `0x…`), plus plain keys such as `OSRELEASE`, `PAGESIZE`,
//! `KERNELOFFSET` (hex) and `CRASHTIME`. As in makedumpfile, the first line with a key wins
//! and keys nobody knows are kept.

use std::collections::HashMap;

/// Upper bound on a VMCOREINFO text: the kernel's buffer is one page; a text file given by
/// hand may be larger, but nothing real comes near this.
pub const MAX_VMCOREINFO: usize = 1 << 20;

/// Where the VMCOREINFO came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The ELF note of a vmcore or /proc/kcore.
    ElfNote,
    /// The copy in a kdump-compressed sub header.
    KdumpSubHeader,
    /// A text file given with `--vmcoreinfo`.
    File(String),
    /// Physical memory at the address /sys/kernel/vmcoreinfo gives (live kernels before
    /// 4.19, whose /proc/kcore has no note).
    SysKernel {
        /// Physical address of the note.
        paddr: u64,
    },
    /// The note the kernel keeps in its memory, found by searching a dump that carries no
    /// VMCOREINFO of its own.
    MemoryScan {
        /// Physical address of the note.
        paddr: u64,
        /// Where notes with another text are (none when the first was page-aligned).
        others: Vec<u64>,
    },
}

impl Source {
    /// Short name for reports.
    pub fn name(&self) -> String {
        match self {
            Source::ElfNote => "elf-note".into(),
            Source::KdumpSubHeader => "kdump-sub-header".into(),
            Source::File(p) => format!("file:{p}"),
            Source::SysKernel { paddr } => format!("sys-kernel-vmcoreinfo:{paddr:#x}"),
            Source::MemoryScan { paddr, .. } => format!("memory-scan:{paddr:#x}"),
        }
    }
}

/// What the kernel's utsname says, where VMCOREINFO points to it.
#[derive(Debug)]
pub(crate) enum Utsname {
    /// Its release (the third 65-byte field of `struct new_utsname`, after sysname and
    /// nodename), at the first place whose sysname reads "Linux".
    Release(String),
    /// Memory is there, but no sysname "Linux".
    NotThere,
    /// No place could be read: the first reason.
    Unreadable(String),
}

/// A parsed VMCOREINFO.
#[derive(Clone)]
pub struct VmcoreInfo {
    raw: Vec<u8>,
    lines: Vec<(String, String)>,
    index: HashMap<String, usize>,
    source: Source,
}

/// Errors of VMCOREINFO parsing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is larger than any VMCOREINFO.
    #[error("VMCOREINFO of {0} bytes is larger than the 1 MiB any kernel writes")]
    TooLarge(usize),
    /// A required key is missing or unreadable.
    #[error("VMCOREINFO has no valid {0}")]
    Missing(&'static str),
    /// Not one `KEY=VALUE` line.
    #[error("no VMCOREINFO in it: not one KEY=VALUE line (expected the text of a kernel's VMCOREINFO)")]
    Empty,
}

impl std::fmt::Debug for VmcoreInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VmcoreInfo {{ {} lines from {} }}", self.lines.len(), self.source.name())
    }
}

impl VmcoreInfo {
    /// Parses VMCOREINFO text. Lines without `=` are kept as keys with an empty value;
    /// a NUL ends the text (the kernel's buffer is NUL-padded).
    pub fn parse(raw: &[u8], source: Source) -> Result<VmcoreInfo, Error> {
        if raw.len() > MAX_VMCOREINFO {
            return Err(Error::TooLarge(raw.len()));
        }
        let text_end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let text = String::from_utf8_lossy(raw.get(..text_end).unwrap_or_default());
        let mut lines = Vec::new();
        let mut index = HashMap::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            index.entry(k.to_string()).or_insert(lines.len());
            lines.push((k.to_string(), v.to_string()));
        }
        Ok(VmcoreInfo { raw: raw.to_vec(), lines, index, source })
    }

    /// The text exactly as the dump holds it.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Where it came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Every `(key, value)` line in order, unknown keys included.
    pub fn lines(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of the first line with `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.index.get(key).and_then(|&i| self.lines.get(i)).map(|(_, v)| v.as_str())
    }

    /// Keys on more than one line, each once, in order of their first line: the first
    /// line is the one read (a hand-edited file that appends a key changes nothing).
    pub fn repeated_keys(&self) -> Vec<&str> {
        // A line repeats its key when the index points at an earlier one; each key is
        // reported once (a set, not a search of the list: a corrupt note can repeat
        // hundreds of thousands of keys).
        let mut reported = std::collections::HashSet::new();
        self.lines
            .iter()
            .enumerate()
            .filter(|(i, (k, _))| self.index.get(k) != Some(i) && reported.insert(k.as_str()))
            .map(|(_, (k, _))| k.as_str())
            .collect()
    }

    /// Why `key` gives no usable value, for an error message: "no KEY", or "KEY=VALUE (not a
    /// usable value)" when it is there but does not parse or is out of range (long values
    /// cut, as a corrupt note can hold megabytes on one line).
    pub fn unusable(&self, key: &str) -> String {
        match self.get(key) {
            None => format!("no {key}"),
            Some(v) => format!("{key}={} (not a usable value)", shortened(v)),
        }
    }

    /// `OSRELEASE`.
    pub fn osrelease(&self) -> Option<&str> {
        self.get("OSRELEASE")
    }

    /// `BUILD-ID`.
    pub fn build_id(&self) -> Option<&str> {
        self.get("BUILD-ID")
    }

    /// `PAGESIZE`, when it is a power of two.
    pub fn page_size(&self) -> Option<u64> {
        parse_dec(self.get("PAGESIZE")?).and_then(|v| u64::try_from(v).ok()).filter(|v| v.is_power_of_two())
    }

    /// `CRASHTIME` (seconds since the epoch; absent in /proc/kcore).
    pub fn crash_time(&self) -> Option<i64> {
        parse_dec(self.get("CRASHTIME")?)
    }

    /// `KERNELOFFSET`: the KASLR offset of the kernel image (hex).
    pub fn kernel_offset(&self) -> Option<u64> {
        parse_hex(self.get("KERNELOFFSET")?)
    }

    /// `SYMBOL(name)`: an address.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        parse_hex(self.get(&format!("SYMBOL({name})"))?).filter(|&v| v != 0 && v != u64::MAX)
    }

    /// Where the dumped kernel's `struct new_utsname` (sysname, release, ...) may be, the
    /// likeliest first; a caller takes the first whose sysname reads "Linux".
    /// `system_utsname` before 2.6.19; then `init_uts_ns.name`, at
    /// `OFFSET(uts_namespace.name)` where the kernel exports it (a randomized layout can put
    /// it anywhere), otherwise after the 4-byte `kref` that led `struct uts_namespace`
    /// until its count moved into `ns_common` in 5.11 (makedumpfile reads only this one),
    /// or at its start, where later kernels have it.
    pub fn utsname_candidates(&self) -> Vec<u64> {
        if let Some(addr) = self.symbol("system_utsname") {
            return vec![addr];
        }
        let Some(ns) = self.symbol("init_uts_ns") else { return Vec::new() };
        match self.offset("uts_namespace.name").and_then(|o| u64::try_from(o).ok()) {
            Some(name) => vec![ns.wrapping_add(name)],
            None => vec![ns.wrapping_add(4), ns],
        }
    }

    /// What the kernel's utsname says at the first of [`Self::utsname_candidates`] whose
    /// sysname reads "Linux", each read through `read` (a kernel virtual address).
    pub(crate) fn utsname_release(&self, read: impl Fn(u64, &mut [u8]) -> Result<(), String>) -> Utsname {
        const FIELD: usize = 65;
        let mut read_any = false;
        let mut first_error = None;
        for addr in self.utsname_candidates() {
            let mut uts = [0u8; 3 * FIELD];
            if let Err(e) = read(addr, &mut uts) {
                first_error.get_or_insert(e);
                continue;
            }
            read_any = true;
            if let (true, Some(release)) = (uts.starts_with(b"Linux\0"), uts.get(2 * FIELD..)) {
                let len = release.iter().position(|&b| b == 0).unwrap_or(FIELD);
                return Utsname::Release(String::from_utf8_lossy(release.get(..len).unwrap_or_default()).into_owned());
            }
        }
        if read_any {
            Utsname::NotThere
        } else {
            Utsname::Unreadable(first_error.unwrap_or_else(|| "VMCOREINFO does not say where it is".into()))
        }
    }

    /// `SIZE(type)`.
    pub fn size(&self, name: &str) -> Option<i64> {
        self.signed("SIZE", name)
    }

    /// `OFFSET(type.member)`.
    pub fn offset(&self, name: &str) -> Option<i64> {
        self.signed("OFFSET", name)
    }

    /// `LENGTH(name)`.
    pub fn length(&self, name: &str) -> Option<i64> {
        self.signed("LENGTH", name)
    }

    /// `NUMBER(name)`, signed (`NUMBER(phys_base)` is negative when the kernel runs below
    /// its link address).
    pub fn number(&self, name: &str) -> Option<i64> {
        self.signed("NUMBER", name)
    }

    /// `NUMBER(name)` as the 64-bit pattern the kernel printed, for addresses and masks
    /// (`kimage_voffset`, `PHYS_OFFSET`, `VMALLOC_START`, and negative decimals).
    pub fn number_u64(&self, name: &str) -> Option<u64> {
        let v = self.get(&format!("NUMBER({name})"))?;
        parse_dec(v).map(|n| n as u64).or_else(|| parse_hex(v))
    }

    fn signed(&self, kind: &str, name: &str) -> Option<i64> {
        let v = self.get(&format!("{kind}({name})"))?;
        parse_dec(v).or_else(|| parse_hex(v).and_then(|n| i64::try_from(n).ok()))
    }
}

/// Whether the `OSRELEASE` version (`2.6.24-foo`, `3.4.0`) is before `than`; `None` when it
/// does not parse.
pub fn release_before(release: Option<&str>, than: (u32, u32, u32)) -> Option<bool> {
    let mut parts = release?.split(|c: char| !c.is_ascii_digit());
    let mut num = || parts.next().and_then(|p| p.parse::<u32>().ok());
    let major = num()?;
    let minor = num()?;
    let patch = num().unwrap_or(0);
    Some((major, minor, patch) < than)
}

/// A decimal integer, optionally negative; the whole string must be the number.
fn parse_dec(v: &str) -> Option<i64> {
    let v = v.trim_end();
    if v.starts_with("0x") || v.starts_with("0X") {
        return None;
    }
    v.parse::<i64>().ok()
}

/// A hex integer with or without `0x`.
fn parse_hex(v: &str) -> Option<u64> {
    let v = v.trim_end();
    let v = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")).unwrap_or(v);
    if v.is_empty() {
        return None;
    }
    u64::from_str_radix(v, 16).ok()
}

/// `value` for a message: at most 64 characters, the rest said to be cut.
pub fn shortened(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}... ({} bytes)", &value[..at], value.len()),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = b"OSRELEASE=6.1.0-56-amd64\nBUILD-ID=eb4f\nPAGESIZE=4096\n\
SYMBOL(init_uts_ns)=ffffffffa1ffb000\nSIZE(page)=64\nOFFSET(page.flags)=0\nLENGTH(mem_section)=262144\n\
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\nNUMBER(phys_base)=-325058560\nNUMBER(kimage_voffset)=0xffff800008000000\n\
KERNELOFFSET=1f400000\nCRASHTIME=1795685165\nFUTURE_KEY(x)=abc\nOSRELEASE=second\nNOVALUE\n\0\0\0";

    #[test]
    fn utsname_is_looked_for_where_each_kernel_generation_keeps_it() {
        let at = |text: &str| VmcoreInfo::parse(text.as_bytes(), Source::ElfNote).unwrap().utsname_candidates();
        assert_eq!(at("SYMBOL(init_uts_ns)=1000\nOFFSET(uts_namespace.name)=0\n"), [0x1000]);
        assert_eq!(at("SYMBOL(init_uts_ns)=1000\nOFFSET(uts_namespace.name)=24\n"), [0x1018]);
        assert_eq!(at("SYMBOL(init_uts_ns)=1000\n"), [0x1004, 0x1000]);
        assert_eq!(at("SYMBOL(system_utsname)=2000\nSYMBOL(init_uts_ns)=1000\n"), [0x2000]);
        assert!(at("OSRELEASE=6.1\n").is_empty());
    }

    #[test]
    fn typed_access_follows_the_kernel_formats() {
        let vi = VmcoreInfo::parse(TEXT, Source::ElfNote).unwrap();
        assert_eq!(vi.osrelease(), Some("6.1.0-56-amd64"), "first line wins");
        assert_eq!(vi.build_id(), Some("eb4f"));
        assert_eq!(vi.page_size(), Some(4096));
        assert_eq!(vi.symbol("init_uts_ns"), Some(0xffffffffa1ffb000));
        assert_eq!(vi.size("page"), Some(64));
        assert_eq!(vi.offset("page.flags"), Some(0));
        assert_eq!(vi.length("mem_section"), Some(262144));
        assert_eq!(vi.number("PAGE_BUDDY_MAPCOUNT_VALUE"), Some(-129));
        assert_eq!(vi.number_u64("phys_base"), Some(0xffffffffeca00000));
        assert_eq!(vi.number_u64("kimage_voffset"), Some(0xffff800008000000));
        assert_eq!(vi.kernel_offset(), Some(0x1f400000));
        assert_eq!(vi.crash_time(), Some(1795685165));
        assert_eq!(vi.get("FUTURE_KEY(x)"), Some("abc"), "unknown keys are kept");
        assert_eq!(vi.get("NOVALUE"), Some(""));
        assert_eq!(vi.symbol("missing"), None);
        assert_eq!(vi.raw(), TEXT);
        assert_eq!(vi.lines().count(), 15);
    }

    #[test]
    fn junk_values_are_absent_not_wrong() {
        let vi =
            VmcoreInfo::parse(b"PAGESIZE=4095\nSYMBOL(a)=zz\nSIZE(b)=12x\nSYMBOL(c)=0\n", Source::ElfNote).unwrap();
        assert_eq!(vi.page_size(), None);
        assert_eq!(vi.symbol("a"), None);
        assert_eq!(vi.size("b"), None);
        assert_eq!(vi.symbol("c"), None);
        assert!(matches!(VmcoreInfo::parse(&vec![b'a'; MAX_VMCOREINFO + 1], Source::ElfNote), Err(Error::TooLarge(_))));
    }
}
