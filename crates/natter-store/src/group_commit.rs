//! Group commit: one task (or thread) takes every write waiting in its queue and commits them
//! together, so a busy store pays for one transaction per batch instead of one per write.
//!
//! A batch forms by itself: while one commits, the next writes queue up behind it. Nobody
//! waits for a batch to fill, so a lone write costs what it did without batching.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// The most writes committed in one transaction.
const BATCH_MAX: usize = 256;

/// Where a job's result goes.
pub(super) type Reply<R> = oneshot::Sender<Result<R, StoreError>>;

/// The queue of one group-committing task. Cloning shares the task.
pub(super) struct GroupCommit<J> {
    /// Where jobs wait for the task that batches them.
    queue: mpsc::Sender<J>,
}

impl<J> Clone for GroupCommit<J> {
    /// Another handle on the same queue (without `J: Clone`, which a derive would ask).
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<J: Send + 'static> GroupCommit<J> {
    /// Starts the task. `commit` writes a batch and answers each job through the [`Reply`]
    /// the job carries. The task ends when the last handle is dropped. A batch whose `commit`
    /// panics is logged and dropped (see [`dropped_if_panicked`]) and the task goes on.
    pub(super) fn spawn<F, Fut>(commit: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (queue, mut jobs) = mpsc::channel::<J>(BATCH_MAX * 16);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH_MAX);
            while jobs.recv_many(&mut batch, BATCH_MAX).await > 0 {
                let jobs = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_MAX));
                dropped_if_panicked(AssertUnwindSafe(commit(jobs)).catch_unwind().await);
            }
        });
        Self { queue }
    }

    /// Starts a thread named `name` that does the same for a `commit` that blocks (a
    /// synchronous database connection): it sleeps until jobs come, takes all that wait, and
    /// commits them with no hand-off per job. The thread ends when the last handle is dropped,
    /// and goes on after a batch that panics, as the task does.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(super) fn on_thread(
        name: &str,
        mut commit: impl FnMut(Vec<J>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (queue, mut jobs) = mpsc::channel::<J>(BATCH_MAX * 16);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut batch = Vec::with_capacity(BATCH_MAX);
                while jobs.blocking_recv_many(&mut batch, BATCH_MAX) > 0 {
                    let jobs = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_MAX));
                    dropped_if_panicked(std::panic::catch_unwind(AssertUnwindSafe(|| {
                        commit(jobs);
                    })));
                }
            })?;
        Ok(Self { queue })
    }

    /// Queues the job `job` makes around its reply, and waits for its batch to commit.
    pub(super) async fn submit<R, W>(
        &self,
        job: impl FnOnce(Reply<R>) -> W,
    ) -> Result<R, StoreError>
    where
        J: From<W>,
    {
        let (reply, result) = oneshot::channel();
        // The task only stops with the store; a reply is dropped unanswered only by a panic.
        let stopped = || StoreError::Unavailable("the store is closing or failed".into());
        self.queue
            .send(J::from(job(reply)))
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

/// Logs a batch that panicked. Its unanswered replies were dropped with it, which tells their
/// callers that the store failed.
fn dropped_if_panicked(committed: std::thread::Result<()>) {
    if committed.is_err() {
        tracing::error!("a store batch panicked; its callers were told it failed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::Semaphore;

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_waiting_behind_a_commit_form_the_next_batch() {
        let batches = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let gate = Arc::new(Semaphore::new(0));
        let group = {
            let (batches, gate) = (Arc::clone(&batches), Arc::clone(&gate));
            GroupCommit::spawn(move |jobs: Vec<(u32, Reply<u32>)>| {
                batches
                    .lock()
                    .unwrap()
                    .push(jobs.iter().map(|(job, _)| *job).collect());
                let gate = Arc::clone(&gate);
                async move {
                    gate.acquire().await.unwrap().forget();
                    for (job, reply) in jobs {
                        let _ = reply.send(Ok(job * 10));
                    }
                }
            })
        };
        let submit = |job| {
            let group = group.clone();
            tokio::spawn(async move { group.submit(|reply| (job, reply)).await.unwrap() })
        };
        // The first job commits alone and is held there...
        let first = submit(0);
        while batches.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        // ...while five more queue up behind it.
        let rest: Vec<_> = (1..=5).map(submit).collect();
        while group.queue.max_capacity() - group.queue.capacity() < 5 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), 0);
        for (job, handle) in (1..=5).zip(rest) {
            assert_eq!(
                handle.await.unwrap(),
                job * 10,
                "each caller gets its own result"
            );
        }
        assert_eq!(*batches.lock().unwrap(), vec![vec![0], vec![1, 2, 3, 4, 5]]);
    }

    #[tokio::test]
    async fn a_batch_that_panics_fails_its_callers_and_the_task_goes_on() {
        let group = GroupCommit::spawn(|jobs: Vec<(u32, Reply<u32>)>| async move {
            for (job, reply) in jobs {
                assert_ne!(job, 0, "a bug in the commit");
                let _ = reply.send(Ok(job * 10));
            }
        });
        let failed = group.submit(|reply| (0, reply)).await;
        assert!(
            matches!(failed, Err(StoreError::Unavailable(_))),
            "told it failed: {failed:?}"
        );
        assert_eq!(group.submit(|reply| (1, reply)).await.unwrap(), 10);
    }
}
