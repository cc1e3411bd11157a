//! The change feed: one task tails the `changes` table and publishes each
//! committed revision, in order, to every sync session.
//!
//! The task wakes right after each local commit (the store's `committed`
//! watch) and polls about once a second as well, for revisions committed by
//! other control-plane replicas sharing the database.

use std::{sync::Arc, time::Duration};

use ipgate_shared::Revision;
use tokio::{
    sync::{broadcast, watch},
    task::JoinHandle,
    time::MissedTickBehavior,
};

use crate::store::{Backlog, Committed, Store};

/// How often the feed looks for revisions committed elsewhere.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Revisions a session may fall behind the feed before it is resynced with
/// a snapshot instead.
pub const BROADCAST_CAPACITY: usize = 1024;
/// Revisions read from the database per query.
const PAGE: u32 = 256;

/// Subscribe here for every revision committed from now on.
#[derive(Clone, Debug)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Arc<Committed>>,
    head: watch::Receiver<Revision>,
}

impl ChangeFeed {
    /// Starts tailing the change log from its current end; the task stops
    /// when `shutdown` turns true.
    pub async fn spawn(
        store: Arc<Store>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(ChangeFeed, JoinHandle<()>), crate::store::StoreError> {
        let start = store.current_revision().await?;
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (head_tx, head) = watch::channel(start);
        let task = Tail {
            store,
            sender: sender.clone(),
            head: head_tx,
            published: start,
        };
        let handle = tokio::spawn(task.run(shutdown));
        Ok((ChangeFeed { sender, head }, handle))
    }

    /// A receiver of every revision published after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.sender.subscribe()
    }

    /// The last revision published.
    pub fn head(&self) -> Revision {
        *self.head.borrow()
    }
}

/// The tailing task's state.
struct Tail {
    store: Arc<Store>,
    sender: broadcast::Sender<Arc<Committed>>,
    head: watch::Sender<Revision>,
    published: Revision,
}

impl Tail {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut committed = self.store.committed();
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                changed = committed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = poll.tick() => {}
            }
            if let Err(error) = self.catch_up().await {
                // The next wake-up or poll tries again.
                tracing::warn!(%error, "change feed cannot read the change log");
            }
        }
    }

    /// Publishes every revision committed since the last one published.
    async fn catch_up(&mut self) -> Result<(), crate::store::StoreError> {
        loop {
            match self.store.changes_after(self.published, PAGE).await? {
                Backlog::Changes(changes) if changes.is_empty() => return Ok(()),
                Backlog::Changes(changes) => {
                    let full_page = changes.len() >= PAGE as usize;
                    for change in changes {
                        self.publish(change);
                    }
                    if !full_page {
                        return Ok(());
                    }
                }
                Backlog::Compacted => {
                    // We fell behind the compaction (a long database outage):
                    // skip ahead; sessions see the gap and resync.
                    let current = self.store.current_revision().await?;
                    tracing::warn!(from = %self.published, to = %current, "change feed skipped compacted revisions");
                    self.published = current;
                    self.head.send_replace(current);
                    return Ok(());
                }
            }
        }
    }

    fn publish(&mut self, change: Committed) {
        let revision = change.revision;
        tracing::debug!(%revision, "publishing revision");
        // No subscribers is fine: nobody is waiting for this revision.
        let _ = self.sender.send(Arc::new(change));
        self.published = revision;
        self.head.send_replace(revision);
    }
}
