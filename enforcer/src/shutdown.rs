//! The stop signal handed to every long-running task.

use tokio::sync::watch;

/// Resolves once `stop` turns true, or once its sender is gone (the
/// enforcer was dropped without a shutdown).
pub(crate) async fn requested(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}
