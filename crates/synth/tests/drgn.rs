//! drgn reads the symbols of a synthetic 6.x image from its own kallsyms tables (named by
//! VMCOREINFO, no debuginfo), walks its page tables to the layout variables, and finds
//! what the truth says.
//!
//! drgn is found as the Python module `drgn` of `$VMCORE_DRGN_PYTHON` (default `python3`):
//! `python3 -m venv /tmp/drgn && /tmp/drgn/bin/pip install drgn` and
//! `VMCORE_DRGN_PYTHON=/tmp/drgn/bin/python`. Without it the test prints a loud SKIPPED
//! notice (also under CI, which does not install drgn).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

use vmcore_synth::machine::{Layout, Machine, MachineSpec};

const SCRIPT: &str = r#"
import sys, drgn
from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
finder = load_vmlinux_kallsyms(prog)
prog.register_symbol_finder("vmlinux_kallsyms", finder, enable_index=0)
print("count", len(prog.symbols()))
for name in sys.argv[2:]:
    s = prog.symbol(name)
    print(name, hex(s.address), hex(prog.read_u64(s.address)))
print("banner", prog.read(prog.symbol("linux_banner").address, 256).split(b"\n")[0].decode())
"#;

fn python() -> Option<String> {
    let py = std::env::var("VMCORE_DRGN_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py).args(["-c", "import drgn"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "*** SKIPPED: no drgn for {py} (pip install drgn, then VMCORE_DRGN_PYTHON=that python); the synthetic \
             kallsyms are not checked against drgn ***"
        );
    }
    ok.then_some(py)
}

#[test]
fn drgn_reads_the_synthetic_kallsyms_and_variables() {
    let Some(py) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("read.py");
    std::fs::write(&script, SCRIPT).unwrap();
    for (name, seed) in
        [("x86_64-6.1-l4", 1u64), ("x86_64-6.1-l5", 2), ("x86_64-6.12-l4", 3), ("x86_64-6.12-l5-nokaslr", 4)]
    {
        let m = Machine::new(&MachineSpec::new(Layout::parse(name).unwrap(), 96 << 20, seed)).unwrap();
        let image = dir.path().join(name);
        m.write_elf(&image).unwrap();
        let truth = m.truth(&[31]);
        let vars = ["page_offset_base", "vmalloc_base", "vmemmap_base", "phys_base"];
        let o = Command::new(&py).arg(&script).arg(&image).args(vars).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{name}: {}{out}", String::from_utf8_lossy(&o.stderr));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], format!("count {}", truth.kallsyms.unwrap()), "{name}");
        let layout = serde_json::to_value(&truth.layout).unwrap();
        for (line, var) in lines[1..].iter().zip(vars) {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f[0], var);
            assert_eq!(f[1], truth.symbols[var], "{name}: address of {var}");
            assert_eq!(f[2], layout[var].as_str().unwrap(), "{name}: value of {var}");
        }
        assert_eq!(lines[5], format!("banner Linux version {} (synth@vmcore-synth) (gcc (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC synthetic", truth.release));
    }
}
