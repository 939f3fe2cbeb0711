//! Group fsync for log appends: one background thread that, whenever woken, takes every
//! pending waiter, runs ONE flush, and then tells all of them the outcome. The store's other
//! flushes (the vote, snapshots) wait on the same thread (`shared::Waiter`), so none of them
//! holds the database across an `.await` and a compaction can swap it at any time.
//!
//! An fsync costs about the same for one entry as for a hundred, so under load many Raft
//! appends share one: while a flush runs, new appends queue up, and the next flush covers all
//! of them.
//!
//! A thread rather than an async task: the flush is a blocking fsync that would otherwise tie
//! up a runtime worker, and a thread needs no runtime at open time. The thread ends when the
//! [`GroupFlusher`] is dropped; dropping waits for it, so that the database is closed (and its
//! file lock released) once the store's handles are gone.

use std::io;
use std::sync::mpsc;
use std::thread;

use openraft::storage::LogFlushed;
use orgplane_raft::TypeConfig;

use crate::error::StoreError;

/// Something waiting for a flush: told exactly once, after a flush that started after it was
/// queued.
pub(crate) trait FlushWaiter: Send + 'static {
    fn flush_done(self, result: io::Result<()>);
}

impl FlushWaiter for LogFlushed<TypeConfig> {
    fn flush_done(self, result: io::Result<()>) {
        self.log_io_completed(result);
    }
}

/// The handle of the flusher thread.
pub(crate) struct GroupFlusher<W: FlushWaiter> {
    /// `None` only while dropping: closing the channel is what stops the thread.
    waiters: Option<mpsc::Sender<W>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl<W: FlushWaiter> GroupFlusher<W> {
    /// Starts the thread. `flush` must make durable every write made before it is called.
    pub(crate) fn start(flush: impl FnMut() -> io::Result<()> + Send + 'static) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("orgplane-log-flusher".into())
            .spawn(move || run_group_flushes(&receiver, flush))
            .map_err(|source| StoreError::FlusherStart { source })?;
        Ok(GroupFlusher { waiters: Some(sender), thread: Some(thread) })
    }

    /// Queues `waiter` to be told after the next flush. The caller must have finished the writes
    /// the waiter is about before calling this: the flush that tells it starts after it is
    /// received, so it covers them.
    pub(crate) fn notify_after_next_flush(&self, waiter: W) -> Result<(), StoreError> {
        let waiters = self.waiters.as_ref().ok_or(StoreError::FlusherStopped)?;
        waiters.send(waiter).map_err(|_| StoreError::FlusherStopped)
    }
}

impl<W: FlushWaiter> Drop for GroupFlusher<W> {
    fn drop(&mut self) {
        // Closing the channel ends the loop once the queued waiters are told.
        drop(self.waiters.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the log flusher thread panicked");
            }
        }
    }
}

/// The thread's loop: block for one waiter, take every other queued one, flush once, tell them
/// all in the order they were queued.
fn run_group_flushes<W: FlushWaiter>(waiters: &mpsc::Receiver<W>, mut flush: impl FnMut() -> io::Result<()>) {
    while let Ok(first) = waiters.recv() {
        let mut group = vec![first];
        group.extend(waiters.try_iter());
        let result = flush();
        if let Err(e) = &result {
            tracing::error!(error = %e, waiters = group.len(), "log flush failed");
        }
        for waiter in group {
            waiter.flush_done(copy_result(&result));
        }
    }
}

/// `io::Error` is not `Clone`; each waiter gets its own error with the same kind and message.
fn copy_result(result: &io::Result<()>) -> io::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A waiter that reports its id and the outcome on a channel.
    struct Probe {
        id: usize,
        done: mpsc::Sender<(usize, Result<(), String>)>,
    }

    impl FlushWaiter for Probe {
        fn flush_done(self, result: io::Result<()>) {
            self.done.send((self.id, result.map_err(|e| e.to_string()))).unwrap();
        }
    }

    #[test]
    fn waiters_queued_during_a_flush_share_the_next_one() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let counted = flushes.clone();
        // The first flush blocks until released, so the test controls what queues behind it.
        let flusher = GroupFlusher::start(move || {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            }
            Ok(())
        })
        .unwrap();

        let (done_tx, done_rx) = mpsc::channel();
        flusher.notify_after_next_flush(Probe { id: 0, done: done_tx.clone() }).unwrap();
        started_rx.recv().unwrap();
        for id in 1..=5 {
            flusher.notify_after_next_flush(Probe { id, done: done_tx.clone() }).unwrap();
        }
        release_tx.send(()).unwrap();

        let told: Vec<_> = (0..6).map(|_| done_rx.recv().unwrap()).collect();
        assert_eq!(told, (0..6).map(|id| (id, Ok(()))).collect::<Vec<_>>());
        assert_eq!(flushes.load(Ordering::SeqCst), 2, "five waiters queued during one flush share one flush");
        drop(flusher);
        assert_eq!(flushes.load(Ordering::SeqCst), 2, "no flush without a waiter");
    }

    #[test]
    fn a_failed_flush_is_reported_to_every_waiter_of_its_group() {
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let mut first = true;
        let flusher = GroupFlusher::start(move || {
            if std::mem::take(&mut first) {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                return Ok(());
            }
            Err(io::Error::other("disk on fire"))
        })
        .unwrap();

        let (done_tx, done_rx) = mpsc::channel();
        flusher.notify_after_next_flush(Probe { id: 0, done: done_tx.clone() }).unwrap();
        started_rx.recv().unwrap();
        for id in 1..=3 {
            flusher.notify_after_next_flush(Probe { id, done: done_tx.clone() }).unwrap();
        }
        release_tx.send(()).unwrap();

        assert_eq!(done_rx.recv().unwrap(), (0, Ok(())));
        for id in 1..=3 {
            assert_eq!(done_rx.recv().unwrap(), (id, Err("disk on fire".to_string())));
        }
    }
}
