//! Ordered parallel work with bounded memory: a producer hands jobs to N workers, each job
//! carries a one-shot channel whose receiver goes, in job order, to the single consumer.
//! The consumer therefore sees results in submission order whatever the thread count, and
//! the bounded queues keep at most `depth` jobs in flight, so a slow consumer (a disk, a
//! merge) stalls the producer instead of filling memory. The dump writer and the filter's
//! struct-page scan both run on it.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// What the consumer says after each result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next result.
    Continue,
    /// Stop: no more results are wanted.
    Stop,
}

/// Runs `work` over `jobs` on `threads` workers (each with state from `init`) and feeds the
/// results to `consume` in job order. With one thread everything runs on the caller's
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
    let depth = threads * 2;
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = sync_channel::<(J, SyncSender<R>)>(depth);
        let (order_tx, order_rx) = sync_channel::<Receiver<R>>(depth);
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let (init, work) = (&init, &work);
            scope.spawn(move || {
                let mut state = init();
                loop {
                    let next = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((job, reply)) = next else { return };
                    // The consumer may have stopped: then nobody listens, which is fine.
                    let _ = reply.send(work(&mut state, job));
                }
            });
        }
        scope.spawn(move || {
            for job in jobs {
                let (tx, rx) = sync_channel(1);
                if order_tx.send(rx).is_err() || job_tx.send((job, tx)).is_err() {
                    return;
                }
            }
        });
        for rx in order_rx.iter() {
            let Ok(result) = rx.recv() else { break };
            if let Flow::Stop = consume(result)? {
                break;
            }
        }
        // Dropping order_rx here stops the producer; the workers drain and exit.
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
