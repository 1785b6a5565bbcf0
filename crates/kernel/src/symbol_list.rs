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

/// More symbols than this is no kernel's list (distribution kernels have 100-250 thousand).
const MAX_LIST_SYMBOLS: usize = 4_000_000;

/// Why a symbol list cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct Error {
    /// The list's file.
    pub path: String,
    /// What was wrong.
    pub why: String,
}

/// Reads the list at `path` and checks it against the dump's VMCOREINFO. `this_boot`: the
/// list is known to be the dumped boot's own (the running kernel's /proc/kallsyms for its
/// /proc/kcore), so `_stext` where VMCOREINFO has it is check enough (a kernel without
/// CONFIG_KALLSYMS_ALL lists code only, and VMCOREINFO's other symbols are data).
pub fn read(path: &Path, vi: &VmcoreInfo, this_boot: bool) -> Result<Kallsyms, Error> {
    let shown = path.display().to_string();
    let fail = |why: String| Error { path: shown.clone(), why };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut text = Vec::new();
    file.take(MAX_LIST_BYTES + 1).read_to_end(&mut text).map_err(|e| fail(e.to_string()))?;
    if text.len() as u64 > MAX_LIST_BYTES {
        return Err(fail(format!("more than {MAX_LIST_BYTES} bytes: not a symbol list")));
    }
    parse(&text, &shown, vi, this_boot).map_err(fail)
}

/// Whether an address is one the kernel image moves with (KASLR): kernel-half addresses,
/// absolute symbols there too (x86_64's `init_per_cpu__*` are relocated). Per-CPU offsets
/// and constants (`__kcfi_typeid_*`) are small numbers, and stay.
fn moves(address: u64) -> bool {
    address >= 1 << 63
}

/// How the kernel orders symbols sharing an address (`scripts/kallsyms`), so that the
/// first, the one `addr2sym` answers, is the one the kernel prints: strong before weak,
/// then names that are no linker-script markers (`__start_*`, `__stop_*`, `__end_*`,
/// `__*_start`, `__*_end`), then fewer leading underscores. `nm -n` lists them by name,
/// which would put `__sched_text_start` before `__schedule`.
fn alias_rank(sym: &Symbol) -> (bool, bool, usize) {
    let name = sym.name.as_str();
    let inner = name.strip_prefix("__").unwrap_or_default();
    let marker = name.len() >= 8
        && (["start_", "stop_", "end_"].iter().any(|p| inner.starts_with(p))
            || !inner.is_empty() && (name.ends_with("_start") || name.ends_with("_end")));
    (matches!(sym.kind, 'w' | 'W' | 'v' | 'V'), marker, name.len() - name.trim_start_matches('_').len())
}

/// Parses `text` (the list at `path`) into a symbol table placed where VMCOREINFO says
/// the kernel runs (`this_boot`: see [`read`]).
pub fn parse(text: &[u8], path: &str, vi: &VmcoreInfo, this_boot: bool) -> Result<Kallsyms, String> {
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
            let placeholder = if line.contains("The real System.map is in") {
                " (a placeholder: Debian ships the real System.map in the kernel's -dbg package)"
            } else {
                ""
            };
            return Err(format!(
                "line {}: expected \"ADDRESS TYPE NAME\" (a System.map or /proc/kallsyms), found {:?}{placeholder}",
                n + 1,
                crate::vmcoreinfo::shortened(&line)
            ));
        };
        if listed.len() >= MAX_LIST_SYMBOLS {
            return Err(format!("more than {MAX_LIST_SYMBOLS} symbols: not a kernel's list"));
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
    let linked_stext = listed.iter().find(|s| s.name == "_stext").map(|s| s.address);
    let stated_offset = vi.kernel_offset();
    let placed_by_stext = vi.symbol("_stext").zip(linked_stext);
    let (offset, from) = match (placed_by_stext, stated_offset) {
        (Some((runs, linked)), _) => (runs.wrapping_sub(linked), "SYMBOL(_stext)"),
        (None, Some(offset)) => (offset, "KERNELOFFSET"),
        (None, None) => (0, "no KERNELOFFSET"),
    };
    for sym in &mut listed {
        if moves(sym.address) {
            sym.address = sym.address.wrapping_add(offset);
        }
    }
    // Some SYMBOL()s hold what a pointer points to (mem_section under SPARSEMEM_EXTREME:
    // an allocation), not where the symbol is: only values inside the image are compared.
    let moved = listed.iter().filter(|s| moves(s.address)).map(|s| s.address);
    let image = moved.clone().min().unwrap_or(0)..=moved.max().unwrap_or(0);
    let mut ranked: Vec<(Symbol, usize)> = listed.into_iter().zip(0..).collect();
    ranked.sort_by(|(a, i), (b, j)| {
        a.address.cmp(&b.address).then_with(|| alias_rank(a).cmp(&alias_rank(b))).then(i.cmp(j))
    });
    // A list already at running addresses (a copy of the crashed boot's /proc/kallsyms)
    // moves by 0 under KASLR: no link map, no measure.
    let measured = placed_by_stext.is_some() && !this_boot && (offset != 0 || stated_offset.unwrap_or(0) == 0);
    let origin = |checked| Origin::List { path: path.to_string(), offset, measured, checked };
    let table = Kallsyms::from_list(ranked.into_iter().map(|(s, _)| s).collect(), origin(0));
    let mut checked = 0usize;
    for (key, _) in vi.lines() {
        let Some(name) = key.strip_prefix("SYMBOL(").and_then(|k| k.strip_suffix(')')) else { continue };
        let (Some(listed_at), Some(stated)) = (table.lookup(name), vi.symbol(name)) else { continue };
        if !image.contains(&stated) {
            continue;
        }
        if listed_at != stated {
            return Err(format!(
                "{name} is at {listed_at:#x} in this list moved by {offset:#x} ({from}), where VMCOREINFO has \
                 SYMBOL({name})={stated:#x}: the list is another kernel's (another build, or another boot's \
                 /proc/kallsyms)"
            ));
        }
        // _stext placed the list: it agrees by construction, unless the list is this boot's.
        checked += usize::from(name != "_stext" || placed_by_stext.is_none() || this_boot);
    }
    if checked == 0 {
        return Err("none of VMCOREINFO's SYMBOL()s is in the list: nothing shows it is this kernel's".into());
    }
    Ok(table.with_origin(origin(checked)))
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
        ffffffff81002000 t __sched_text_start\n\
        ffffffff81002000 T __schedule\n\
        ffffffff81003000 W arch_hook\n\
        ffffffff81003000 t arch_hook_impl\n\
        ffffffff82c79000 A init_per_cpu__gdt_page\n\
        0000000012345678 A __kcfi_typeid_x\n                 w __weak_undefined\n";

    fn vi() -> VmcoreInfo {
        VmcoreInfo::parse(VMCOREINFO, Source::ElfNote).unwrap()
    }

    #[test]
    fn a_map_is_moved_by_the_kaslr_offset_and_checked() {
        let k = parse(
            MAP.replace("                         w", "0000000000000000 w").as_bytes(),
            "System.map",
            &vi(),
            false,
        )
        .unwrap();
        assert_eq!(k.lookup("_stext"), Some(0xffff_ffff_ade0_0000));
        assert_eq!(k.lookup("init_uts_ns"), Some(0xffff_ffff_af61_3440));
        // Per-CPU offsets and absolute values stay; undefined weak symbols are dropped.
        assert_eq!(k.lookup("cpu_number"), Some(0xa000));
        assert_eq!(k.lookup("__kcfi_typeid_x"), Some(0x1234_5678));
        assert_eq!(k.lookup("__weak_undefined"), None);
        assert_eq!(
            k.origin(),
            &Origin::List { path: "System.map".into(), offset: 0x2ce0_0000, measured: true, checked: 1 }
        );
        // Absolute symbols in the image move with it.
        assert_eq!(k.lookup("init_per_cpu__gdt_page"), Some(0xffff_ffff_afa7_9000));
        // Of the names at one address, the kernel's choice: no linker-script marker, no
        // weak symbol, fewer leading underscores (then the first listed).
        let at = |addr: u64| k.addr2sym(addr).map(|(s, off, _)| (s.name.clone(), off));
        assert_eq!(at(0xffff_ffff_ade0_2010), Some(("__schedule".into(), 0x10)));
        assert_eq!(at(0xffff_ffff_ade0_3000), Some(("arch_hook_impl".into(), 0)));
        assert_eq!(at(0xffff_ffff_ade0_0010), Some(("startup_64".into(), 0x10)));
    }

    /// A kernel without CONFIG_KALLSYMS_ALL lists code only: of VMCOREINFO's symbols, just
    /// _stext, which places a map and so proves nothing; the running kernel's own list
    /// (procfs says it is this boot's) is taken on it.
    #[test]
    fn a_code_only_list_is_taken_only_from_this_boot() {
        let code = "ffffffffade00000 T _stext\nffffffffade01000 t do_one_initcall\n";
        let err = parse(code.as_bytes(), "System.map", &vi(), false).unwrap_err();
        assert!(err.contains("nothing shows it is this kernel's"), "{err}");
        let k = parse(code.as_bytes(), "/proc/kallsyms", &vi(), true).unwrap();
        assert_eq!(k.origin(), &Origin::List { path: "/proc/kallsyms".into(), offset: 0, measured: false, checked: 1 });
    }

    /// A copy of the crashed boot's /proc/kallsyms given as a map: its addresses are the
    /// running ones, moved by 0, which is no measure of the KASLR offset.
    #[test]
    fn a_list_of_running_addresses_measures_no_kaslr_offset() {
        let running = "ffffffffade00000 T _stext\nffffffffaf613440 D init_uts_ns\n";
        let k = parse(running.as_bytes(), "kallsyms.copy", &vi(), false).unwrap();
        assert_eq!(k.origin(), &Origin::List { path: "kallsyms.copy".into(), offset: 0, measured: false, checked: 1 });
    }

    #[test]
    fn running_kernels_lists_skip_modules() {
        let live =
            "ffffffffade00000 T _stext\nffffffffaf613440 D init_uts_ns\nffffffffc0a01000 t mod_fn\t[virtio_blk]\n";
        let k = parse(live.as_bytes(), "/proc/kallsyms", &vi(), false).unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k.origin(), &Origin::List { path: "/proc/kallsyms".into(), offset: 0, measured: false, checked: 1 });
    }

    #[test]
    fn another_kernels_map_is_refused() {
        let other = MAP.replace("ffffffff82813440 D init_uts_ns", "ffffffff82814440 D init_uts_ns");
        let err = parse(other.as_bytes(), "System.map", &vi(), false).unwrap_err();
        assert!(err.contains("init_uts_ns is at 0xffffffffaf614440") && err.contains("another kernel's"), "{err}");
        // Only _stext, which placed it: nothing checks it.
        let err = parse(b"ffffffff81000000 T _stext\n", "m", &vi(), false).unwrap_err();
        assert!(err.contains("nothing shows it is this kernel's"), "{err}");
    }

    #[test]
    fn what_is_no_symbol_list_says_where() {
        let err = parse(b"ffffffff81000000 T _stext\nnot a symbol line at all\n", "m", &vi(), false).unwrap_err();
        assert!(err.starts_with("line 2: expected \"ADDRESS TYPE NAME\""), "{err}");
        let zeros = "0000000000000000 T _stext\n0000000000000000 D init_uts_ns\n";
        assert!(parse(zeros.as_bytes(), "m", &vi(), false).unwrap_err().contains("every address is 0"));
        assert!(parse(b"\n\n", "m", &vi(), false).unwrap_err().contains("no symbols"));
        let dir = tempfile::tempdir().unwrap();
        let err = read(&dir.path().join("missing"), &vi(), false).unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("No such file"), "{err}");
    }
}
