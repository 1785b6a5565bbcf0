//! Symbols from a text list, for kernels whose dumps carry no kallsyms tables (VMCOREINFO
//! names them from 6.0 on): a `System.map` (distributions ship it beside the kernel:
//! Ubuntu in linux-modules, RHEL in kernel-core) or, for the running kernel, its
//! `/proc/kallsyms`.
//!
//! Each line is `ADDRESS TYPE NAME`, as `nm` prints (`/proc/kallsyms` adds `\t[module]` to
//! module symbols, which are left out: they move with every load). A System.map holds link
//! addresses: under KASLR the kernel runs `offset` higher, taken from VMCOREINFO's
//! `SYMBOL(_stext)` against the list's `_stext`, else from `KERNELOFFSET`. Every other
//! `SYMBOL()` of VMCOREINFO the list names must then agree, or the list is another
//! kernel's (another build, or another boot's `/proc/kallsyms`) and is refused: its
//! addresses would name the wrong code and data without a word.

use std::io::Read;
use std::path::Path;

use crate::kallsyms::{Kallsyms, Origin, Symbol};
use crate::vmcoreinfo::VmcoreInfo;

/// A list longer than this is no symbol list (a System.map is 5-10 MB; /proc/kallsyms with
/// modules some 20 MB).
const MAX_LIST_BYTES: u64 = 256 << 20;

/// Why a symbol list cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct Error {
    /// The list's file.
    pub path: String,
    /// What was wrong.
    pub why: String,
}

/// Reads the list at `path` and checks it against the dump's VMCOREINFO.
pub fn read(path: &Path, vi: &VmcoreInfo) -> Result<Kallsyms, Error> {
    let shown = path.display().to_string();
    let fail = |why: String| Error { path: shown.clone(), why };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut text = Vec::new();
    file.take(MAX_LIST_BYTES + 1).read_to_end(&mut text).map_err(|e| fail(e.to_string()))?;
    if text.len() as u64 > MAX_LIST_BYTES {
        return Err(fail(format!("more than {MAX_LIST_BYTES} bytes: not a symbol list")));
    }
    parse(&text, &shown, vi).map_err(fail)
}

/// Whether an address is one the kernel image moves with (KASLR): kernel-half addresses,
/// but absolute symbols (`A`: constants, not places). Per-CPU offsets (small numbers) stay.
fn moves(address: u64, kind: char) -> bool {
    address >= 1 << 63 && !matches!(kind, 'A' | 'a')
}

/// Parses `text` (the list at `path`) into a symbol table placed where VMCOREINFO says
/// the kernel runs.
pub fn parse(text: &[u8], path: &str, vi: &VmcoreInfo) -> Result<Kallsyms, String> {
    let mut listed: Vec<Symbol> = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(line);
        if line.trim().is_empty() || line.contains('[') {
            continue;
        }
        // `nm` prints undefined and weak symbols without an address: no places.
        if matches!(line.split_whitespace().collect::<Vec<_>>()[..], ["U" | "w" | "v", _]) {
            continue;
        }
        let mut words = line.split_whitespace();
        let parsed = (|| {
            let address = u64::from_str_radix(words.next()?, 16).ok()?;
            let mut kind = words.next()?.chars();
            let kind = kind.next().filter(|_| kind.next().is_none())?;
            let name = words.next()?;
            words.next().is_none().then(|| Symbol { address, name: name.to_string(), kind })
        })();
        let Some(sym) = parsed else {
            return Err(format!(
                "line {}: expected \"ADDRESS TYPE NAME\" (a System.map or /proc/kallsyms), found {:?}",
                n + 1,
                crate::vmcoreinfo::shortened(&line)
            ));
        };
        if listed.len() >= crate::kallsyms::MAX_SYMBOLS as usize {
            return Err(format!("more than {} symbols: not a kernel's list", crate::kallsyms::MAX_SYMBOLS));
        }
        // Undefined and weak symbols without an address are no places.
        if !(sym.address == 0 && matches!(sym.kind, 'U' | 'w' | 'v')) {
            listed.push(sym);
        }
    }
    if listed.is_empty() {
        return Err("no symbols".into());
    }
    if listed.iter().all(|s| s.address == 0) {
        return Err("every address is 0 (/proc/kallsyms read without root, or with kptr_restrict=2)".into());
    }
    let find = |name: &str| listed.iter().find(|s| s.name == name);
    let (offset, from) = match (vi.symbol("_stext"), find("_stext")) {
        (Some(runs), Some(linked)) => (runs.wrapping_sub(linked.address), "SYMBOL(_stext)"),
        _ => match vi.get("KERNELOFFSET").and_then(|v| u64::from_str_radix(v.trim(), 16).ok()) {
            Some(offset) => (offset, "KERNELOFFSET"),
            None => (0, "no KERNELOFFSET"),
        },
    };
    for sym in &mut listed {
        if moves(sym.address, sym.kind) {
            sym.address = sym.address.wrapping_add(offset);
        }
    }
    // Some SYMBOL()s hold what a pointer points to (mem_section under SPARSEMEM_EXTREME:
    // an allocation), not where the symbol is: only values inside the image are compared.
    let moved = listed.iter().filter(|s| moves(s.address, s.kind)).map(|s| s.address);
    let image = moved.clone().min().unwrap_or(0)..=moved.max().unwrap_or(0);
    let mut checked = 0usize;
    for (key, value) in vi.lines() {
        let Some(name) = key.strip_prefix("SYMBOL(").and_then(|k| k.strip_suffix(')')) else { continue };
        let Some(sym) = listed.iter().find(|s| s.name == name) else { continue };
        let Ok(stated) = u64::from_str_radix(value.trim(), 16) else { continue };
        if !image.contains(&stated) {
            continue;
        }
        if sym.address != stated {
            return Err(format!(
                "{name} is at {:#x} in this list moved by {offset:#x} ({from}), where VMCOREINFO has SYMBOL({name})={stated:#x}: \
                 the list is another kernel's (another build, or another boot's /proc/kallsyms)",
                sym.address
            ));
        }
        checked += usize::from(name != "_stext" || from != "SYMBOL(_stext)");
    }
    if checked == 0 {
        return Err("none of VMCOREINFO's SYMBOL()s is in the list: nothing shows it is this kernel's".into());
    }
    Ok(Kallsyms::from_list(listed, Origin::List { path: path.to_string(), offset, checked }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcoreinfo::Source;

    /// A kernel that runs 0x2ce00000 above its link addresses; mem_section is a pointer
    /// (SPARSEMEM_EXTREME), so VMCOREINFO holds the allocation it points to.
    const VMCOREINFO: &[u8] = b"OSRELEASE=5.4.0-test\nPAGESIZE=4096\nSYMBOL(_stext)=ffffffffade00000\n\
        SYMBOL(init_uts_ns)=ffffffffaf613440\nSYMBOL(mem_section)=ffff9a0d3ffd2000\nKERNELOFFSET=2ce00000\n";

    const MAP: &str = "0000000000000000 D __per_cpu_start\n\
        000000000000a000 D cpu_number\n\
        ffffffff81000000 T _text\n\
        ffffffff81000000 T _stext\n\
        ffffffff81000000 T startup_64\n\
        ffffffff81001000 t do_one_initcall\n\
        ffffffff82813440 D init_uts_ns\n\
        ffffffff83210000 B mem_section\n\
        0000000012345678 A __kcfi_typeid_x\n                 w __weak_undefined\n";

    fn vi() -> VmcoreInfo {
        VmcoreInfo::parse(VMCOREINFO, Source::ElfNote).unwrap()
    }

    #[test]
    fn a_map_is_moved_by_the_kaslr_offset_and_checked() {
        let k = parse(MAP.replace("                         w", "0000000000000000 w").as_bytes(), "System.map", &vi())
            .unwrap();
        assert_eq!(k.lookup("_stext"), Some(0xffff_ffff_ade0_0000));
        assert_eq!(k.lookup("init_uts_ns"), Some(0xffff_ffff_af61_3440));
        // Per-CPU offsets and absolute values stay; undefined weak symbols are dropped.
        assert_eq!(k.lookup("cpu_number"), Some(0xa000));
        assert_eq!(k.lookup("__kcfi_typeid_x"), Some(0x1234_5678));
        assert_eq!(k.lookup("__weak_undefined"), None);
        assert_eq!(k.origin(), &Origin::List { path: "System.map".into(), offset: 0x2ce0_0000, checked: 1 });
        // Of the names at one address, the first listed answers.
        assert_eq!(k.addr2sym(0xffff_ffff_ade0_0010).map(|(s, off, _)| (s.name.as_str(), off)), Some(("_text", 0x10)));
    }

    #[test]
    fn running_kernels_lists_skip_modules() {
        let live =
            "ffffffffade00000 T _stext\nffffffffaf613440 D init_uts_ns\nffffffffc0a01000 t mod_fn\t[virtio_blk]\n";
        let k = parse(live.as_bytes(), "/proc/kallsyms", &vi()).unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k.origin(), &Origin::List { path: "/proc/kallsyms".into(), offset: 0, checked: 1 });
    }

    #[test]
    fn another_kernels_map_is_refused() {
        let other = MAP.replace("ffffffff82813440 D init_uts_ns", "ffffffff82814440 D init_uts_ns");
        let err = parse(other.as_bytes(), "System.map", &vi()).unwrap_err();
        assert!(err.contains("init_uts_ns is at 0xffffffffaf614440") && err.contains("another kernel's"), "{err}");
        // Only _stext, which placed it: nothing checks it.
        let err = parse(b"ffffffff81000000 T _stext\n", "m", &vi()).unwrap_err();
        assert!(err.contains("nothing shows it is this kernel's"), "{err}");
    }

    #[test]
    fn what_is_no_symbol_list_says_where() {
        let err = parse(b"ffffffff81000000 T _stext\nnot a symbol line at all\n", "m", &vi()).unwrap_err();
        assert!(err.starts_with("line 2: expected \"ADDRESS TYPE NAME\""), "{err}");
        let zeros = "0000000000000000 T _stext\n0000000000000000 D init_uts_ns\n";
        assert!(parse(zeros.as_bytes(), "m", &vi()).unwrap_err().contains("every address is 0"));
        assert!(parse(b"\n\n", "m", &vi()).unwrap_err().contains("no symbols"));
        let dir = tempfile::tempdir().unwrap();
        let err = read(&dir.path().join("missing"), &vi()).unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("No such file"), "{err}");
    }
}
