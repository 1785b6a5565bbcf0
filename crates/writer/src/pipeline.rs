//! Job outputs reused between the writer's parallel jobs (the jobs themselves run on
//! `vmcore_types::ordered`).

use std::sync::Mutex;

/// Job outputs the consumer is done with, for the workers to fill again. Without it each
/// job's output is fresh memory, and with several threads glibc hands freed memory back to
/// the kernel between jobs: a two-thread LZO dump of the 6.1 fixture at -d 1 took 4905
/// page faults, 1601 with it.
#[derive(Debug)]
pub(crate) struct Recycler<T> {
    free: Mutex<Vec<T>>,
    keep: usize,
}

impl<T> Recycler<T> {
    /// Keeps at most `keep` spare values.
    pub(crate) fn new(keep: usize) -> Recycler<T> {
        Recycler { free: Mutex::new(Vec::with_capacity(keep)), keep }
    }

    /// A spare value, or a new one from `make`.
    pub(crate) fn take(&self, make: impl FnOnce() -> T) -> T {
        self.free.lock().ok().and_then(|mut free| free.pop()).unwrap_or_else(make)
    }

    pub(crate) fn give(&self, value: T) {
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.keep {
                free.push(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recycler_hands_back_what_it_was_given_up_to_its_limit() {
        let r = Recycler::new(2);
        for v in [1, 2, 3] {
            r.give(v);
        }
        assert_eq!(r.take(|| 0), 2);
        assert_eq!(r.take(|| 0), 1);
        assert_eq!(r.take(|| 0), 0, "the third value was not kept");
    }
}
