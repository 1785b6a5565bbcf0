//! `vmcore mem-usage`: how the machine's memory is used, in makedumpfile's
//! `--mem-usage` table.

use serde::Serialize;
use vmcore_filter::Stats;

/// Pages per class.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Classes {
    /// Pages filled with zero.
    pub zero: u64,
    /// Cache pages without private flag.
    pub non_pri_cache: u64,
    /// Cache pages with private flag.
    pub pri_cache: u64,
    /// User process pages.
    pub user: u64,
    /// Free pages.
    pub free: u64,
    /// Dumpable kernel data: everything else.
    pub kern_data: u64,
}

/// The `mem-usage` report.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct MemUsage {
    /// Page size.
    pub page_size: u64,
    /// Pages the input describes.
    pub total_pages: u64,
    /// `total_pages * page_size`.
    pub total_bytes: u64,
    /// Pages per class.
    pub classes: Classes,
    /// Pages of RAM the input file does not hold (a filtered kdump file's excluded pages):
    /// they are classified by their struct pages like the others, but whether they were
    /// zero is unknown (they never count as zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_in_dump: Option<u64>,
}

impl MemUsage {
    /// The report of a level-31 filtering pass.
    pub fn new(stats: &Stats, page_size: u64, not_in_dump: Option<u64>) -> MemUsage {
        let total = stats.original_pages;
        let known = stats.zero
            + stats.non_pri_cache
            + stats.pri_cache
            + stats.user
            + stats.free
            + stats.hwpoison
            + stats.offline;
        MemUsage {
            page_size,
            total_pages: total,
            total_bytes: total * page_size,
            classes: Classes {
                zero: stats.zero,
                non_pri_cache: stats.non_pri_cache,
                pri_cache: stats.pri_cache,
                user: stats.user,
                free: stats.free,
                kern_data: total.saturating_sub(known),
            },
            not_in_dump,
        }
    }

    /// makedumpfile's table, byte for byte (including its trailing spaces and the blank
    /// line it ends with).
    pub fn render(&self) -> String {
        let c = &self.classes;
        format!(
            "\nTYPE\t\tPAGES\t\t\tEXCLUDABLE\tDESCRIPTION\n{}\n\
             ZERO\t\t{:<16}\tyes\t\tPages filled with zero\n\
             NON_PRI_CACHE\t{:<16}\tyes\t\tCache pages without private flag\n\
             PRI_CACHE\t{:<16}\tyes\t\tCache pages with private flag\n\
             USER\t\t{:<16}\tyes\t\tUser process pages\n\
             FREE\t\t{:<16}\tyes\t\tFree pages\n\
             KERN_DATA\t{:<16}\tno\t\tDumpable kernel data \n\n\
             page size:\t\t{:<16}\nTotal pages on system:\t{:<16}\nTotal size on system:\t{:<16} Byte\n\n",
            "-".repeat(70),
            c.zero,
            c.non_pri_cache,
            c.pri_cache,
            c.user,
            c.free,
            c.kern_data,
            self.page_size,
            self.total_pages,
            self.total_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_matches_makedumpfile_bytes() {
        // live/mem_usage.txt of the x86_64 6.12 fixture, as makedumpfile printed it.
        let expected = "\nTYPE\t\tPAGES\t\t\tEXCLUDABLE\tDESCRIPTION\n\
----------------------------------------------------------------------\n\
ZERO\t\t51955           \tyes\t\tPages filled with zero\n\
NON_PRI_CACHE\t10506           \tyes\t\tCache pages without private flag\n\
PRI_CACHE\t0               \tyes\t\tCache pages with private flag\n\
USER\t\t1243            \tyes\t\tUser process pages\n\
FREE\t\t52499           \tyes\t\tFree pages\n\
KERN_DATA\t26030           \tno\t\tDumpable kernel data \n\n\
page size:\t\t4096            \nTotal pages on system:\t142233          \n\
Total size on system:\t582586368        Byte\n\n";
        let stats = Stats {
            zero: 51955,
            non_pri_cache: 10506,
            user: 1243,
            free: 52499,
            total_pages: 142233 + 10,
            memory_hole: 10,
            original_pages: 142233,
            ..Stats::default()
        };
        let m = MemUsage::new(&stats, 4096, None);
        assert_eq!(m.classes.kern_data, 26030);
        assert_eq!(m.render(), expected);
    }
}
