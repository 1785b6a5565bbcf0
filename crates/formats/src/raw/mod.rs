//! On-disk definitions shared by the readers here and the writers above: the equivalent of
//! makedumpfile's `diskdump_mod.h` and `makedumpfile.h`.
pub mod flat;
pub mod kdump;
