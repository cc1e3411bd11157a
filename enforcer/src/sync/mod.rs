//! The sync client: keeps the enforcer's index in step with the control plane.
//!
//! One session at a time: connect (rotating over the control-plane
//! addresses), say `Hello` with the revision in force, then apply snapshots
//! and deltas as they come (see `session`). Between sessions the last good
//! index keeps serving, and the client waits a jittered, growing backoff.

mod apply;
mod cache;
#[cfg(feature = "fault-injection")]
mod fault;
mod session;

pub(crate) use cache::SnapshotCache;

use std::{sync::Arc, time::Duration};

use ipgate_shared::{
    EnforcerId,
    proto::sync::v1::{StreamResponse, stream_response::Kind},
};
use tonic::Code;
use tracing::{Instrument, error, info, info_span, warn};

use crate::{backoff::Backoff, control_plane::ControlPlane, state::Enforcer};

use session::{Carry, End};

/// The shortest and longest waits after an update was refused (Nack): the
/// same bad update would come again, so the wait grows to minutes rather
/// than retrying it every few seconds.
const NACK_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));

/// Codes with which the control plane says "this enforcer, as configured,
/// will not be served": retrying fast cannot help, an operator must act.
const REFUSALS: [Code; 4] = [
    Code::InvalidArgument,
    Code::FailedPrecondition,
    Code::Unauthenticated,
    Code::PermissionDenied,
];

/// Keeps the index in sync until the task is aborted.
pub(crate) struct SyncClient {
    pub(crate) enforcer: Arc<Enforcer>,
    pub(crate) control_plane: ControlPlane,
    pub(crate) id: EnforcerId,
    pub(crate) backoff: Backoff,
    /// The snapshot cache file, when configured.
    pub(crate) cache: Option<SnapshotCache>,
}

impl SyncClient {
    /// Runs sessions forever, one after the other.
    pub(crate) async fn run(mut self) {
        #[cfg(feature = "fault-injection")]
        fault::announce();
        let mut cursor = 0usize;
        let mut carry = Carry {
            cache: self.cache.clone(),
            ..Carry::default()
        };
        if let Some(cache) = &self.cache {
            carry.database_id = warm_start(&self.enforcer, cache).await;
        }
        let mut nack_backoff = Backoff::new(NACK_BACKOFF.0, NACK_BACKOFF.1);
        loop {
            let (shown, client) = self.control_plane.client(cursor);
            let known = self.enforcer.revision().map_or(0, |r| r.get());
            let span = info_span!(
                "sync_session",
                enforcer = %self.id,
                control_plane = %shown,
                resumed_from = known,
            );
            let report = session::run(
                &self.enforcer,
                &self.control_plane,
                client,
                &self.id,
                &mut carry,
            )
            .instrument(span.clone())
            .await;
            // A session that got messages proves the connection works, but a
            // Nack or a protocol error would repeat at once: those back off.
            let failed = matches!(report.end, End::Invalid | End::Protocol);
            if report.progress && !failed {
                self.backoff.reset();
            }
            if report.applied && !failed {
                nack_backoff.reset();
            }
            // After a Nack, ask for a snapshot rather than the same deltas.
            carry.want_snapshot = matches!(report.end, End::Invalid);
            let serving = serving_note(&self.enforcer);
            let wait = span.in_scope(|| match &report.end {
                // After a gap the backoff was just reset, so this resumes
                // from our revision after its shortest step.
                End::Gap | End::Protocol => self.backoff.next_wait(),
                End::Invalid => {
                    let wait = nack_backoff.next_wait();
                    warn!("an update was refused; asking for a full snapshot in {wait:?}; meanwhile {serving}");
                    wait
                }
                End::Closed => {
                    info!("control plane closed the sync stream; reconnecting");
                    cursor = cursor.wrapping_add(1);
                    self.backoff.next_wait()
                }
                End::Failed(status) if REFUSALS.contains(&status.code()) => {
                    let wait = self.backoff.ceiling();
                    error!(
                        code = ?status.code(),
                        reason = status.message(),
                        token = %self.control_plane.shown_token(),
                        "control plane refused this enforcer; check --token and --id. \
                         Retrying every {wait:?}; meanwhile {serving}"
                    );
                    cursor = cursor.wrapping_add(1);
                    wait
                }
                End::Failed(status) => {
                    let wait = self.backoff.next_wait();
                    warn!(
                        code = ?status.code(),
                        reason = status.message(),
                        "sync stream failed; retrying in {wait:?}; meanwhile {serving}"
                    );
                    cursor = cursor.wrapping_add(1);
                    wait
                }
            });
            tokio::time::sleep(wait).await;
        }
    }
}

/// What requests get while the enforcer cannot sync.
fn serving_note(enforcer: &Enforcer) -> String {
    match enforcer.revision() {
        Some(revision) => format!("serving the last good index (revision {revision})"),
        None => "no index yet: requests are answered as not synced".to_owned(),
    }
}

/// Puts the snapshot cache's index in force, if the file is there and
/// sound: the database it came from, or "" when nothing was loaded.
async fn warm_start(enforcer: &Enforcer, cache: &SnapshotCache) -> String {
    let path = cache.path().display().to_string();
    let chunk = match cache.read().await {
        Ok(chunk) => chunk,
        Err(cache::CacheError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            info!(path, "no snapshot cache yet: waiting for the control plane");
            return String::new();
        }
        Err(error) => {
            warn!(path, %error, "ignoring the snapshot cache; waiting for the control plane");
            return String::new();
        }
    };
    // The file is checked as a snapshot from the wire would be: every
    // config validated, nothing swapped in unless all of it is sound.
    let message = StreamResponse {
        kind: Some(Kind::Snapshot(chunk)),
    };
    let mut applier = apply::Applier::new(String::new(), Some(cache.clone()));
    let outcome = applier.apply(None, vec![message]).await;
    match (outcome.index, outcome.stop) {
        (Some(index), None) => {
            let revision = index.revision();
            enforcer.install_cached(Arc::new(index));
            warn!(path, %revision, "serving the snapshot cache's index: stale until the control plane is reached");
            applier.database_id().to_owned()
        }
        (_, stop) => {
            warn!(path, reason = ?stop, "ignoring the snapshot cache; waiting for the control plane");
            String::new()
        }
    }
}
