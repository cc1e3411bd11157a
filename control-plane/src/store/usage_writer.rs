//! The usage log's writers. Every ingest is a job on one queue; each
//! worker takes the jobs waiting, up to [`GROUP_EVENTS`] events, and
//! stores them in one transaction of its [`Sink`], so batches that arrive
//! together share one commit (and its fsync) and the pages they touch are
//! written once. Each caller is answered only after its commit: an
//! acknowledged batch is durable.
//!
//! A group that fails is retried job by job, so one bad batch fails alone.
//! Retention runs through the same queue, one bounded chunk a job, so a
//! delete never holds the log's write lock for longer than a chunk.

use std::{future::Future, sync::Arc};

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    error::{StoreError, StoreResult},
    records::{Stored, TenantId, UsageBatch},
};

/// Most events one group commits together.
pub(super) const GROUP_EVENTS: usize = 16_000;
/// Ingests that may wait for a worker; past that, callers wait to queue,
/// which slows enforcers' `ReportEvents` rather than growing memory.
const QUEUE: usize = 64;

/// The statements both sinks run as they are: small enough that SQLite's
/// by-name lookup of `$n` parameters costs nothing worth avoiding.
pub(super) mod sql {
    /// A batch id, stored once: a conflict means a retry.
    pub const INSERT_BATCH: &str = "INSERT INTO usage_batches (id, enforcer_id, received_at, \
         events, dropped_allowed, dropped_blocked) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO NOTHING";
    /// The gap a batch that dropped events leaves.
    pub const INSERT_GAP: &str = "INSERT INTO usage_gaps (tenant_id, batch_id, enforcer_id, \
         first_ms, last_ms, dropped_allowed, dropped_blocked) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    /// Gaps go with the events of their time.
    pub const PRUNE_GAPS: &str = "DELETE FROM usage_gaps WHERE id IN \
         (SELECT id FROM usage_gaps WHERE last_ms < $1 LIMIT $2)";
    /// Batch ids are kept as long as events of their age: a retry older
    /// than that could not be told from a new batch anyway.
    pub const PRUNE_BATCHES: &str = "DELETE FROM usage_batches WHERE id IN \
         (SELECT id FROM usage_batches WHERE received_at < $1 LIMIT $2)";
}

/// One backend's way of writing the usage log.
pub(super) trait Sink: Send + 'static {
    /// Stores `group` in one transaction: one answer a batch, in order; a
    /// batch id stored before (in this group too) is `Duplicate`.
    fn store(
        &mut self,
        group: &[(TenantId, &UsageBatch)],
    ) -> impl Future<Output = StoreResult<Vec<Stored>>> + Send;

    /// Deletes at most `limit` rows of each of the log's tables older than
    /// `before_ms`, in one short transaction.
    fn prune_chunk(
        &mut self,
        before_ms: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<PruneChunk>> + Send;
}

/// What one retention chunk deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PruneChunk {
    /// Events deleted.
    pub events: u64,
    /// True when a table had `limit` rows to delete: there may be more.
    pub more: bool,
}

enum Job {
    Store {
        tenant: TenantId,
        batch: UsageBatch,
        done: oneshot::Sender<StoreResult<Stored>>,
    },
    Prune {
        before_ms: i64,
        limit: u32,
        done: oneshot::Sender<StoreResult<PruneChunk>>,
    },
}

/// The queue's sending end, shared by every caller.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts one worker a sink, all taking jobs from one queue.
    pub(super) fn start<S: Sink>(sinks: Vec<S>) -> Writer {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for sink in sinks {
            tokio::spawn(work(sink, Arc::clone(&queue)));
        }
        Writer { jobs }
    }

    /// Stores `batch` under `tenant` once its group has committed.
    pub(super) async fn store(&self, tenant: TenantId, batch: UsageBatch) -> StoreResult<Stored> {
        self.ask(|done| Job::Store {
            tenant,
            batch,
            done,
        })
        .await
    }

    /// Deletes one chunk of at most `limit` rows older than `before_ms`.
    pub(super) async fn prune_chunk(&self, before_ms: i64, limit: u32) -> StoreResult<PruneChunk> {
        self.ask(|done| Job::Prune {
            before_ms,
            limit,
            done,
        })
        .await
    }

    /// Queues the job `job` makes with its answer's sender; waits for the
    /// answer.
    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Job,
    ) -> StoreResult<T> {
        let (done, answer) = oneshot::channel();
        self.jobs.send(job(done)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The workers are gone: the store is closing. Callers see the database
/// as unavailable, and enforcers retry.
fn stopped() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

type Queue = Arc<Mutex<mpsc::Receiver<Job>>>;

/// One store job of a group: its batch and whom to answer.
struct Pending {
    tenant: TenantId,
    batch: UsageBatch,
    done: oneshot::Sender<StoreResult<Stored>>,
}

async fn work<S: Sink>(mut sink: S, queue: Queue) {
    while let Some((group, prune)) = next_group(&queue).await {
        if !group.is_empty() {
            commit(&mut sink, group).await;
        }
        if let Some(Job::Prune {
            before_ms,
            limit,
            done,
        }) = prune
        {
            let _ = done.send(sink.prune_chunk(before_ms, limit).await);
        }
    }
}

/// The jobs waiting, up to a group's worth of events, and a prune job met
/// on the way (run after the group); `None` once every writer is gone.
async fn next_group(queue: &Queue) -> Option<(Vec<Pending>, Option<Job>)> {
    let mut queue = queue.lock().await;
    let mut group = Vec::new();
    let mut events = 0;
    let mut next = queue.recv().await?;
    loop {
        match next {
            Job::Store {
                tenant,
                batch,
                done,
            } => {
                events += batch.events.len().max(1);
                group.push(Pending {
                    tenant,
                    batch,
                    done,
                });
            }
            prune @ Job::Prune { .. } => return Some((group, Some(prune))),
        }
        if events >= GROUP_EVENTS {
            return Some((group, None));
        }
        match queue.try_recv() {
            Ok(job) => next = job,
            Err(_) => return Some((group, None)),
        }
    }
}

/// Commits `group` together, or job by job when that fails, and answers
/// every caller.
async fn commit<S: Sink>(sink: &mut S, group: Vec<Pending>) {
    let together: Vec<(TenantId, &UsageBatch)> =
        group.iter().map(|p| (p.tenant, &p.batch)).collect();
    let result = sink.store(&together).await;
    drop(together);
    match result {
        Ok(stored) if stored.len() == group.len() => {
            for (pending, stored) in group.into_iter().zip(stored) {
                let _ = pending.done.send(Ok(stored));
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some(pending) = group.into_iter().next() {
                let _ = pending.done.send(Err(e));
            }
        }
        _ => {
            for pending in group {
                let result = sink
                    .store(&[(pending.tenant, &pending.batch)])
                    .await
                    .and_then(|stored| {
                        stored.first().copied().ok_or_else(|| {
                            StoreError::Corrupt("the usage log stored no answer".into())
                        })
                    });
                let _ = pending.done.send(result);
            }
        }
    }
}
