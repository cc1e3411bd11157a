//! `GetRevisionStatus`: is a revision live, i.e. has every connected
//! enforcer acknowledged it (or a later one)?

use std::{collections::BTreeMap, time::SystemTime};

use ipgate_shared::{Revision, proto::admin::v1 as admin, time};

use super::service::AdminApi;
use crate::{invalid::InvalidRequest, status::RpcError, store::Principal};

/// The status of the revision asked about (the current one for 0), among
/// the caller's tenant's enforcers. Revisions are global: a revision that
/// changed only other tenants reaches these enforcers as an empty delta.
pub async fn status(
    api: &AdminApi,
    caller: &Principal,
    req: admin::GetRevisionStatusRequest,
) -> Result<admin::RevisionStatus, RpcError> {
    let admin::GetRevisionStatusRequest { revision } = req;
    let asked = (revision != 0).then_some(Revision::new(revision));
    let (store, registry) = (&*api.store, &*api.registry);
    let current = store.current_revision().await?;
    let revision = asked.unwrap_or(current);
    if revision > current {
        return Err(InvalidRequest::field(
            "revision",
            format!("revision {revision} is ahead of the current revision {current}"),
        )
        .into());
    }

    // Known enforcers from the database, overlaid with the live sessions of
    // this process (which may hold acks the database has not seen yet).
    let mut enforcers: BTreeMap<String, (Revision, SystemTime, bool)> = store
        .enforcers(caller.tenant)
        .await?
        .into_iter()
        .map(|e| (e.id, (e.acked, e.last_seen, false)))
        .collect();
    for (id, live) in registry.connected(caller.tenant) {
        let entry = enforcers
            .entry(id.to_string())
            .or_insert((live.acked, live.last_seen, true));
        entry.0 = entry.0.max(live.acked);
        entry.1 = entry.1.max(live.last_seen);
        entry.2 = true;
    }

    let connected = enforcers.values().filter(|(_, _, c)| *c).count();
    let acked = enforcers
        .values()
        .filter(|(a, _, c)| *c && *a >= revision)
        .count();
    Ok(admin::RevisionStatus {
        revision: revision.get(),
        current_revision: current.get(),
        live: acked == connected,
        enforcers_acked: u32::try_from(acked).unwrap_or(u32::MAX),
        enforcers_connected: u32::try_from(connected).unwrap_or(u32::MAX),
        enforcers: enforcers
            .into_iter()
            .map(
                |(id, (acked, last_seen, connected))| admin::EnforcerStatus {
                    enforcer_id: id,
                    acked_revision: acked.get(),
                    connected,
                    last_seen: Some(time::to_timestamp(last_seen)),
                },
            )
            .collect(),
    })
}
