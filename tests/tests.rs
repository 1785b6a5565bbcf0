//! vmcore's integration tests, in one binary so they link once.
//!
//! * `fixtures`: the real kernel dumps of ../shared/fixtures, next to what the real tools
//!   (makedumpfile, drgn) said about them;
//! * `cli`: the `vmcore` binary's behaviour and exit codes;
//! * `corrupt`: bad input gives errors, never panics or hangs.
mod util;

mod arm64;
mod cli;
mod corrupt;
mod dmesg;
mod filter;
mod fixtures;
mod layout;
mod synthetic;
mod writer;
