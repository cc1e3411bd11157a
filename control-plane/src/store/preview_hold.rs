//! A test hook: a [`PreviewHold`] holds every lockout preview at its start,
//! so a test can show that a slow preview holds up nobody else's writes.

use std::{fmt, sync::Arc};

use tokio::sync::watch;

/// Lets a test hold lockout previews at their start, to show that a slow
/// preview holds up nobody else. Without a hold it costs one atomic read.
#[derive(Clone, Default)]
pub(super) struct PreviewGate(Arc<Gate>);

struct Gate {
    held: watch::Sender<bool>,
    waiting: watch::Sender<usize>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            held: watch::Sender::new(false),
            waiting: watch::Sender::new(0),
        }
    }
}

impl fmt::Debug for PreviewGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreviewGate")
            .field("held", &*self.0.held.borrow())
            .finish()
    }
}

impl PreviewGate {
    /// Holds previews until the returned guard is dropped.
    pub(super) fn hold(&self) -> PreviewHold {
        self.0.held.send_replace(true);
        PreviewHold(self.clone())
    }

    /// Waits while a [`PreviewHold`] is alive.
    pub(super) async fn pass(&self) {
        if !*self.0.held.borrow() {
            return;
        }
        self.0.waiting.send_modify(|n| *n += 1);
        let _ = self.0.held.subscribe().wait_for(|held| !held).await;
        self.0.waiting.send_modify(|n| *n -= 1);
    }
}

/// While alive, lockout previews wait at their start (a test hook).
#[derive(Debug)]
pub struct PreviewHold(PreviewGate);

impl PreviewHold {
    /// Resolves once a preview is waiting on this hold.
    pub async fn waiting(&self) {
        let _ = (self.0).0.waiting.subscribe().wait_for(|n| *n > 0).await;
    }
}

impl Drop for PreviewHold {
    fn drop(&mut self) {
        (self.0).0.held.send_replace(false);
    }
}
