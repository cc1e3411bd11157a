//! A test hook: a [`PreviewHold`] holds one tenant's lockout previews at
//! their start, so a test can show that a slow preview holds up nobody
//! else's writes.

use std::{fmt, sync::Arc};

use tokio::sync::watch;

use super::records::TenantId;

/// Where lockout previews may be held. Without a hold a preview passes
/// after one read of a watch.
#[derive(Clone, Default)]
pub(super) struct PreviewGate(Arc<Gate>);

struct Gate {
    /// The tenant whose previews wait, if any.
    held: watch::Sender<Option<TenantId>>,
    /// How many previews are waiting.
    waiting: watch::Sender<usize>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            held: watch::Sender::new(None),
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
    /// Holds `tenant`'s previews until the returned guard is dropped.
    pub(super) fn hold(&self, tenant: TenantId) -> PreviewHold {
        self.0.held.send_replace(Some(tenant));
        PreviewHold(self.clone())
    }

    /// Waits while a [`PreviewHold`] on `tenant` is alive.
    pub(super) async fn pass(&self, tenant: TenantId) {
        if *self.0.held.borrow() != Some(tenant) {
            return;
        }
        self.0.waiting.send_modify(|n| *n += 1);
        let _ = self
            .0
            .held
            .subscribe()
            .wait_for(|held| *held != Some(tenant))
            .await;
        self.0.waiting.send_modify(|n| *n -= 1);
    }
}

/// While alive, one tenant's lockout previews wait at their start.
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
        (self.0).0.held.send_replace(None);
    }
}
