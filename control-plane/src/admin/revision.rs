//! `GetRevisionStatus`: is a revision live, i.e. has every expected
//! enforcer acknowledged it (or a later one)? The older, smaller view of
//! what `GetPropagation` tells (`propagation.rs`).

use ipgate_shared::{proto::admin::v1 as admin, time};

use super::{
    propagation::{self, fleet},
    service::AdminApi,
};
use crate::{status::RpcError, store::Principal};

/// The status of the revision asked about (the current one for 0), among
/// the caller's tenant's enforcers. Revisions are global: a revision that
/// changed only other tenants reaches these enforcers as an empty delta.
pub async fn status(
    api: &AdminApi,
    caller: &Principal,
    req: admin::GetRevisionStatusRequest,
) -> Result<admin::RevisionStatus, RpcError> {
    let current = api.store.current_revision().await?;
    let revision = propagation::asked(req.revision, current)?;
    let fleet = fleet(api, caller.tenant).await?;
    let summary = propagation::propagation(revision, current, &fleet);
    Ok(admin::RevisionStatus {
        revision: revision.get(),
        current_revision: current.get(),
        live: summary.live,
        enforcers_acked: summary.enforcers_acked,
        enforcers_connected: summary.enforcers_expected,
        enforcers: fleet
            .into_values()
            .map(|known| admin::EnforcerStatus {
                enforcer_id: known.record.id,
                acked_revision: known.record.acked.get(),
                connected: known.expected,
                last_seen: Some(time::to_timestamp(known.record.last_seen)),
            })
            .collect(),
    })
}
