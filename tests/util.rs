//! Shared test support: finding the real fixtures, decompressing them once, making kdump
//! files from them with the real makedumpfile.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The folder of real dumps, `../shared/fixtures` beside the repository (or
/// `$VMCORE_FIXTURES`).
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("VMCORE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    dir.is_dir().then_some(dir)
}

/// Names of the fixture folders, or none (after saying so loudly) when the folder is missing.
pub fn fixture_names() -> Vec<String> {
    let Some(dir) = fixtures_dir() else {
        eprintln!("\n*** ../shared/fixtures NOT FOUND: the real-dump tests are SKIPPED ***\n");
        return Vec::new();
    };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("read fixtures dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("vmcore.elf.zst").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A fixture: its folder, a folder for what is made from it once and kept between runs
/// (the decompressed vmcore, makedumpfile's files), and a scratch folder of this `Fixture`
/// value's own (each test makes its own) for the files one test writes.
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    pub work: PathBuf,
    pub scratch: Scratch,
}

/// A folder removed when dropped, unless a test failed: its files are then the evidence,
/// and the path is printed. The fixtures' tests write gigabytes in all, which would fill
/// the disk of a CI runner if every test kept its files.
pub struct Scratch(PathBuf);

impl Scratch {
    fn new_in(parent: &Path) -> Scratch {
        let dir = tempfile::Builder::new().prefix("scratch").tempdir_in(parent).expect("create scratch dir");
        Scratch(dir.keep())
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the failed test's files are kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

static PREPARE: Mutex<()> = Mutex::new(());

/// The fixture, when the fixtures are there.
pub fn fixture(name: &str) -> Option<Fixture> {
    fixture_names().iter().any(|n| n == name).then(|| Fixture::new(name))
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        let dir = fixtures_dir().expect("fixtures").join(name);
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures").join(name);
        std::fs::create_dir_all(&work).expect("create work dir");
        let scratch = Scratch::new_in(&work);
        Fixture { name: name.to_string(), dir, work, scratch }
    }

    pub fn is_x86_64(&self) -> bool {
        self.name.starts_with("x86_64")
    }

    /// The kernel's page size, from its VMCOREINFO as the fixture records it.
    pub fn page_size(&self) -> u64 {
        self.vmcoreinfo_value("PAGESIZE").expect("PAGESIZE in vmcoreinfo.txt").parse().expect("PAGESIZE")
    }

    /// Whether the kernel exports its kallsyms tables in VMCOREINFO (6.0+).
    pub fn has_kallsyms(&self) -> bool {
        self.vmcoreinfo_value("SYMBOL(kallsyms_names)").is_some()
    }

    /// Where `struct uts_namespace` holds the utsname: VMCOREINFO's offset (5.11+), else
    /// after the 4-byte kref that came first before 5.11.
    pub fn utsname_offset(&self) -> u64 {
        self.vmcoreinfo_value("OFFSET(uts_namespace.name)").map_or(4, |v| v.parse().unwrap())
    }

    /// The value of `KEY=` in the kernel's VMCOREINFO as the fixture records it, e.g.
    /// `PAGESIZE` or `NUMBER(VMALLOC_START)`.
    pub fn vmcoreinfo_value(&self, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.expected("vmcoreinfo.txt")).unwrap();
        let prefix = format!("{key}=");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map(str::to_string)
    }

    /// The kernel's major and minor version, from its OSRELEASE.
    pub fn kernel_version(&self) -> (u32, u32) {
        let release = self.vmcoreinfo_value("OSRELEASE").unwrap();
        let mut numbers = release.split(['.', '-']).map(|n| n.parse::<u32>().unwrap_or(0));
        (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
    }

    pub fn expected(&self, file: &str) -> PathBuf {
        self.dir.join("expected").join(file)
    }

    /// expected/dumpable_d31.txt: the pfn ranges `[start, end)` upstream makedumpfile keeps
    /// at -d 31.
    pub fn expected_d31(&self) -> Vec<(u64, u64)> {
        std::fs::read_to_string(self.expected("dumpable_d31.txt"))
            .unwrap()
            .lines()
            .map(|l| {
                let (a, b) = l.split_once(' ').unwrap();
                (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap())
            })
            .collect()
    }

    /// The decompressed vmcore.elf, made once.
    pub fn vmcore(&self) -> PathBuf {
        let out = self.work.join("vmcore.elf");
        let _guard = PREPARE.lock().unwrap_or_else(|e| e.into_inner());
        if !out.exists() {
            let input = std::fs::File::open(self.dir.join("vmcore.elf.zst")).expect("open vmcore.elf.zst");
            let tmp = self.work.join("vmcore.elf.tmp");
            let mut dec = zstd::stream::read::Decoder::new(input).expect("zstd decoder");
            dec.window_log_max(27).expect("window");
            let mut f = std::fs::File::create(&tmp).expect("create");
            std::io::copy(&mut dec, &mut f).expect("decompress vmcore.elf.zst");
            std::fs::rename(&tmp, &out).expect("rename");
        }
        out
    }

    /// A file made from vmcore.elf by the real makedumpfile with `args` (the input and
    /// output are appended; with `-F` the output is stdout). `None` when makedumpfile is
    /// not installed (fatal under CI, which installs it).
    pub fn makedumpfile(&self, out_name: &str, args: &[&str]) -> Option<PathBuf> {
        let vmcore = self.vmcore();
        let out = self.work.join(out_name);
        let _guard = PREPARE.lock().unwrap_or_else(|e| e.into_inner());
        if out.exists() {
            return Some(out);
        }
        if !have_makedumpfile() {
            return None;
        }
        let tmp = self.work.join(format!("{out_name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut cmd = Command::new("makedumpfile");
        cmd.args(args).arg(&vmcore);
        let status = if args.contains(&"-F") {
            let f = std::fs::File::create(&tmp).expect("create");
            cmd.stdout(f).stderr(std::process::Stdio::null()).status()
        } else {
            cmd.arg(&tmp).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status()
        }
        .expect("run makedumpfile");
        assert!(status.success(), "makedumpfile {args:?} failed: {status}");
        std::fs::rename(&tmp, &out).expect("rename");
        Some(out)
    }

    /// The files of `makedumpfile --split` into `n` parts.
    pub fn makedumpfile_split(&self, prefix: &str, n: usize, args: &[&str]) -> Option<Vec<PathBuf>> {
        let vmcore = self.vmcore();
        let outs: Vec<PathBuf> = (0..n).map(|i| self.work.join(format!("{prefix}.{i}"))).collect();
        let _guard = PREPARE.lock().unwrap_or_else(|e| e.into_inner());
        if outs.iter().all(|o| o.exists()) {
            return Some(outs);
        }
        if !have_makedumpfile() {
            return None;
        }
        for o in &outs {
            let _ = std::fs::remove_file(o);
        }
        let status = Command::new("makedumpfile")
            .args(args)
            .arg("--split")
            .arg(&vmcore)
            .args(&outs)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run makedumpfile");
        assert!(status.success(), "makedumpfile --split failed: {status}");
        Some(outs)
    }
}

pub fn have_makedumpfile() -> bool {
    let ok = Command::new("makedumpfile").arg("-v").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "makedumpfile is not installed, and CI must have it");
        eprintln!("\n*** makedumpfile NOT INSTALLED: tests against its files are SKIPPED ***\n");
    }
    ok
}

/// The `vmcore` binary under test.
pub fn vmcore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vmcore"))
}

/// Runs `vmcore` with `args`, returning (exit success, stdout, stderr).
pub fn run(args: &[&std::ffi::OsStr]) -> (bool, Vec<u8>, String) {
    let out = vmcore().args(args).output().expect("run vmcore");
    (out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `vmcore read --vmcoreinfo VMCOREINFO VMCORE ADDR LEN`: a read through an edited
/// VMCOREINFO.
pub fn read_with_vmcoreinfo(vmcoreinfo: &Path, vmcore: &Path, addr: &str, len: &str) -> (bool, Vec<u8>, String) {
    run(&[
        OsStr::new("read"),
        OsStr::new("--vmcoreinfo"),
        vmcoreinfo.as_os_str(),
        vmcore.as_os_str(),
        OsStr::new(addr),
        OsStr::new(len),
    ])
}

/// `vmcore vmcoreinfo VMCORE`: the text, to edit.
pub fn vmcoreinfo_text(vmcore: &Path) -> String {
    let (ok, text, err) = run(&[OsStr::new("vmcoreinfo"), vmcore.as_os_str()]);
    assert!(ok, "{err}");
    String::from_utf8(text).unwrap()
}

/// The layout value `key` of a `vmcore info --json` answer, as a number.
pub fn layout_value(info: &serde_json::Value, key: &str) -> u64 {
    let text = info["layout"][key]["value"].as_str().unwrap_or_else(|| panic!("no layout {key} in {info}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
}

/// Loud skip, or failure under CI.
pub fn missing(what: &str) {
    assert!(std::env::var_os("CI").is_none(), "{what} is not installed, and CI must have it");
    eprintln!("\n*** {what} NOT INSTALLED: the checks that need it are SKIPPED ***\n");
}

/// A python that imports `module`, or None (after a loud notice; a failure under CI).
pub fn python_with(module: &str) -> Option<&'static str> {
    for py in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(py).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success());
        if ok {
            return Some(py);
        }
    }
    missing(&format!("python module {module}"));
    None
}

/// A synthetic x86_64 machine (`vmcore-synth`'s) of `size` bytes of RAM and `layout`
/// (e.g. "x86_64-6.1-l4"), written as an ELF vmcore to `dir/name`.
pub fn synthetic_elf(dir: &std::path::Path, name: &str, layout: &str, size: u64, seed: u64) -> PathBuf {
    use vmcore_synth::machine::{Layout, Machine, MachineSpec};
    let spec = MachineSpec::new(Layout::parse(layout).expect("layout"), size, seed);
    let path = dir.join(name);
    Machine::new(&spec).expect("machine").write_elf(&path).expect("write the machine");
    path
}

/// Debian's arm64 makedumpfile, run under qemu-user (scripts/peers/arm64-makedumpfile puts
/// it there; scripts/test does as root): None, loudly, where it is missing, and a failure
/// under CI.
pub fn arm64_makedumpfile() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("peers").join("makedumpfile-arm64");
    if path.exists() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "CI must have the arm64 makedumpfile (scripts/peers/arm64-makedumpfile)");
    eprintln!(
        "\n*** NO arm64 makedumpfile (scripts/peers/arm64-makedumpfile): the arm64 comparisons are SKIPPED ***\n"
    );
    None
}
