//! vmcore's integration tests, in one binary so they link once.
//!
//! * `fixtures`: the real kernel dumps of ../shared/fixtures, next to what the real tools
//!   (makedumpfile, drgn) said about them;
//! * `cli`: the `vmcore` binary's behaviour and exit codes;
//! * `corrupt`: bad input gives errors, never panics or hangs;
//! * `crash`: the crash utility reads the dumps vmcore writes (their kernel log);
//! * `arm64`: dumps written from the arm64 fixtures, read back;
//! * `dmesg`: the kernel log against makedumpfile's --dump-dmesg, every printk generation;
//! * `filter`: page classes against makedumpfile 1.7.9's reports and bitmaps;
//! * `layout`: layout values, kallsyms and virtual reads against drgn's;
//! * `synthetic`: machines made by vmcore-synth (kernel generations the fixtures lack);
//! * `vmemmap`: `-e` (unused vmemmap pages left out) against makedumpfile;
//! * `vtop`: page-table walks against makedumpfile's --vtop;
//! * `writer`: the dumps vmcore writes, read back by vmcore, the peers and makedumpfile.
mod util;

mod arm64;
mod cli;
mod corrupt;
mod crash;
mod dmesg;
mod filter;
mod fixtures;
mod layout;
mod qemu;
mod synthetic;
mod vmemmap;
mod vtop;
mod writer;
