//! Ordered parallel work with bounded memory: N threads take jobs in turn and the results
//! go, in job order, to a single consumer. The consumer therefore sees results in
//! submission order whatever the thread count, and at most [`AHEAD_PER_THREAD`] jobs per
//! thread are taken and not yet consumed, so a slow consumer (a disk, a merge) stalls the
//! workers instead of filling memory. The dump writer and the filter's two passes (the
//! struct-page scan and the zero-page check) run on it.
//!
//! The calling thread is one of the N: between its own jobs it hands the results that are
//! next in order to the consumer. A separate consumer thread would be one thread more than
//! the cores asked for: on two cores it preempted the workers for every job (37 thousand
//! context switches for the 16 GiB synthetic dump), and two threads used 11% more CPU time
//! than one for the same LZO dump.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// What the consumer says after each result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next result.
    Continue,
    /// Stop: no more results are wanted.
    Stop,
}

/// Jobs taken and results waiting, shared by the threads.
struct Queue<I, R> {
    jobs: I,
    /// No job left in `jobs`.
    exhausted: bool,
    /// Jobs taken so far: the next job's number.
    taken: u64,
    /// Results of jobs `taken - pending.len()` onwards, in job order; `None` while being
    /// worked on. The front is the next result for the consumer.
    pending: VecDeque<Option<R>>,
    /// The consumer stopped, failed or panicked: workers take no more jobs.
    stop: bool,
    /// A worker panicked: its result never comes, so the caller stops waiting (and the
    /// scope then passes the panic on).
    abandoned: bool,
}

impl<I: Iterator, R> Queue<I, R> {
    /// The next job and its number, if there is one and the in-flight bound allows it.
    fn take(&mut self, depth: usize) -> Option<(u64, I::Item)> {
        if self.exhausted || self.stop || self.pending.len() >= depth {
            return None;
        }
        let Some(job) = self.jobs.next() else {
            self.exhausted = true;
            return None;
        };
        let number = self.taken;
        self.taken += 1;
        self.pending.push_back(None);
        Some((number, job))
    }

    fn put(&mut self, number: u64, result: R) {
        let first = self.taken - self.pending.len() as u64;
        // Always present: a job's slot is removed only once its result was consumed.
        if let Some(slot) = number.checked_sub(first).and_then(|i| self.pending.get_mut(i as usize)) {
            *slot = Some(result);
        }
    }

    /// The next result in order, if it is done.
    fn next_result(&mut self) -> Option<R> {
        if self.pending.front().is_some_and(Option::is_some) {
            self.pending.pop_front().flatten()
        } else {
            None
        }
    }
}

/// The queue and the condition its waiters wait on: a result done (the caller waits for
/// the next one in order) or room freed (the workers wait for it), or a stop.
struct Shared<I, R> {
    queue: Mutex<Queue<I, R>>,
    changed: Condvar,
}

impl<I, R> Shared<I, R> {
    fn lock(&self) -> MutexGuard<'_, Queue<I, R>> {
        self.queue.lock().unwrap_or_else(Self::poisoned)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Queue<I, R>>) -> MutexGuard<'a, Queue<I, R>> {
        self.changed.wait(guard).unwrap_or_else(Self::poisoned)
    }

    /// A panic while the queue was held (only in `jobs.next()`) leaves the queue consistent
    /// but not the iterator: nobody may call `jobs.next()` again (a `Map` over a range would
    /// hand out the job after the one that panicked under the panicked job's number), so
    /// everyone stops.
    fn poisoned<'a>(e: PoisonError<MutexGuard<'a, Queue<I, R>>>) -> MutexGuard<'a, Queue<I, R>> {
        let mut queue = e.into_inner();
        queue.stop = true;
        queue.abandoned = true;
        queue
    }
}

/// Sets `stop` when the caller leaves, by error or panic too, so that no worker waits for
/// room that never comes.
struct StopOnExit<'a, I, R>(&'a Shared<I, R>);

impl<I, R> Drop for StopOnExit<'_, I, R> {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.changed.notify_all();
    }
}

/// Marks the queue abandoned when a worker unwinds, so that the caller does not wait for
/// its result.
struct AbandonOnPanic<'a, I, R>(&'a Shared<I, R>);

impl<I, R> Drop for AbandonOnPanic<'_, I, R> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.lock();
            queue.abandoned = true;
            queue.stop = true;
            drop(queue);
            self.0.changed.notify_all();
        }
    }
}

/// Jobs per thread that may be taken and not yet consumed. The consumer runs on a worker
/// and stalls the pipeline while it is in a system call (a write into the page cache, a
/// writeback request of several milliseconds): the other workers go on only as far as
/// this lets them. With 2, a two-thread LZO dump of the 16 GiB synthetic machine at -d 1
/// left a core idle 1.0-2.1 s of about 10; with 4, 0.4 s; with 8, 0.06-0.15 s, for
/// 4 MiB more peak RSS (the writer's jobs are 64 pages).
pub const AHEAD_PER_THREAD: usize = 8;

/// Runs `work` over `jobs` on `threads` threads (each with state from `init`), the calling
/// thread one of them, and feeds the results to `consume` in job order, on the calling
/// thread. Returns the consumer's error, if any.
pub fn ordered<J, R, S, E>(
    jobs: impl Iterator<Item = J> + Send,
    threads: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, J) -> R + Sync,
    mut consume: impl FnMut(R) -> Result<Flow, E>,
) -> Result<(), E>
where
    J: Send,
    R: Send,
{
    if threads <= 1 {
        let mut state = init();
        for job in jobs {
            if let Flow::Stop = consume(work(&mut state, job))? {
                break;
            }
        }
        return Ok(());
    }
    let depth = threads.saturating_mul(AHEAD_PER_THREAD);
    let shared = Shared {
        queue: Mutex::new(Queue {
            jobs,
            exhausted: false,
            taken: 0,
            pending: VecDeque::new(),
            stop: false,
            abandoned: false,
        }),
        changed: Condvar::new(),
    };
    std::thread::scope(|scope| {
        let _stop = StopOnExit(&shared);
        for _ in 1..threads {
            let (init, work, shared) = (&init, &work, &shared);
            scope.spawn(move || {
                let _abandon = AbandonOnPanic(shared);
                let mut state = init();
                loop {
                    let mut queue = shared.lock();
                    let (number, job) = loop {
                        if let Some(next) = queue.take(depth) {
                            break next;
                        }
                        if queue.stop || queue.exhausted {
                            return;
                        }
                        queue = shared.wait(queue);
                    };
                    drop(queue);
                    let result = work(&mut state, job);
                    shared.lock().put(number, result);
                    shared.changed.notify_all();
                }
            });
        }
        let mut state = init();
        loop {
            let mut queue = shared.lock();
            if let Some(result) = queue.next_result() {
                drop(queue);
                // Room for a worker waiting for it.
                shared.changed.notify_all();
                if let Flow::Stop = consume(result)? {
                    return Ok(());
                }
                continue;
            }
            if let Some((number, job)) = queue.take(depth) {
                drop(queue);
                let result = work(&mut state, job);
                shared.lock().put(number, result);
                continue;
            }
            if queue.abandoned || (queue.exhausted && queue.pending.is_empty()) {
                return Ok(());
            }
            // The next result is a worker's, still at work, and there is no room to start
            // another job.
            drop(shared.wait(queue));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn results_arrive_in_order_for_any_thread_count() {
        for threads in [1, 2, 3, 8] {
            let mut seen = Vec::new();
            let r: Result<(), ()> = ordered(
                0..1000u64,
                threads,
                || 0u64,
                |count, j| {
                    *count += 1;
                    // Uneven work so that workers finish out of order.
                    if j % 7 == 0 {
                        std::thread::yield_now();
                    }
                    j * 2
                },
                |r| {
                    seen.push(r);
                    Ok(Flow::Continue)
                },
            );
            assert!(r.is_ok());
            assert_eq!(seen, (0..1000).map(|j| j * 2).collect::<Vec<_>>(), "{threads} threads");
        }
    }

    /// A slow consumer lets the workers run `AHEAD_PER_THREAD * threads` jobs ahead of it,
    /// and no more.
    #[test]
    fn jobs_ahead_of_the_consumer_reach_the_bound_and_no_more() {
        use std::sync::atomic::AtomicUsize;
        for threads in [2, 3] {
            let taken = AtomicUsize::new(0);
            let (mut consumed, mut most_ahead) = (0usize, 0usize);
            let r: Result<(), ()> = ordered(
                (0..100u64).inspect(|_| {
                    taken.fetch_add(1, Ordering::SeqCst);
                }),
                threads,
                || (),
                |_, j| j,
                |_| {
                    // Time for the workers to fill the queue.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    most_ahead = most_ahead.max(taken.load(Ordering::SeqCst) - consumed - 1);
                    consumed += 1;
                    Ok(Flow::Continue)
                },
            );
            assert!(r.is_ok());
            assert_eq!(consumed, 100);
            assert_eq!(most_ahead, AHEAD_PER_THREAD * threads, "{threads} threads");
        }
    }

    /// A worker's panic reaches the caller instead of leaving it waiting for the result.
    #[test]
    fn a_panic_in_a_worker_reaches_the_caller() {
        for threads in [2, 3] {
            let caller = std::thread::current().id();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ordered(
                    0..1000u64,
                    threads,
                    || (),
                    |_, j| {
                        if std::thread::current().id() != caller {
                            panic!("job {j} failed");
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        j
                    },
                    |_| Ok::<_, ()>(Flow::Continue),
                )
            }));
            assert!(outcome.is_err(), "{threads} threads");
        }
    }

    #[test]
    fn the_consumer_can_stop_early_and_report_errors() {
        let mut n = 0;
        let r: Result<(), &str> = ordered(
            0..u64::MAX,
            4,
            || (),
            |_, j| j,
            |j| {
                n += 1;
                Ok(if j == 10 { Flow::Stop } else { Flow::Continue })
            },
        );
        assert!(r.is_ok());
        assert_eq!(n, 11);
        let r: Result<(), &str> =
            ordered(0..100u64, 3, || (), |_, j| j, |j| if j == 5 { Err("bad") } else { Ok(Flow::Continue) });
        assert_eq!(r, Err("bad"));
    }

    /// State whose drop is slow: it runs on a panicking worker between the poisoned
    /// queue's unlock and `AbandonOnPanic`, widening that window.
    struct SlowDrop;
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            if std::thread::panicking() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }

    #[test]
    fn a_panic_in_the_jobs_iterator_on_a_worker_does_not_shift_later_results() {
        for threads in [2, 3, 8] {
            let caller = std::thread::current().id();
            let fired = AtomicBool::new(false);
            let mut seen = Vec::new();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ordered(
                    (0..200u64).inspect(|&j| {
                        if j >= 3 && std::thread::current().id() != caller && !fired.swap(true, Ordering::SeqCst) {
                            panic!("job {j} cannot be made");
                        }
                    }),
                    threads,
                    || SlowDrop,
                    |_, j| {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                        j
                    },
                    |j| {
                        seen.push(j);
                        Ok::<_, ()>(Flow::Continue)
                    },
                )
            }));
            assert!(outcome.is_err(), "{threads} threads");
            assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>(), "{threads} threads");
        }
    }
}
