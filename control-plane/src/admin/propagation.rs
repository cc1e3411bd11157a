//! The operator's view of the fleet: `GetPropagation`, `ListEnforcers`,
//! and writes that wait until they are in force everywhere
//! (`wait_for_propagation`).
//!
//! What every replica recorded in the `enforcers` table is overlaid with
//! this replica's live sessions, which may hold acks the table has not seen
//! yet. An enforcer is *expected* when it is connected to some replica and
//! was heard from within [`EXPECTED_WITHIN`] (it heartbeats every 5 s), or
//! when it refused an update it has not got past since and was heard from
//! within [`STUCK_WITHIN`]: between its retries it is connected nowhere,
//! but it is stuck, and an operator must see it.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use ipgate_shared::{Revision, proto::admin::v1 as admin, time};
use tokio::time::Instant;

use super::service::AdminApi;
use crate::{
    invalid::InvalidRequest,
    status::RpcError,
    store::{EnforcerRecord, Principal, TenantId},
    sync::registry::FLUSH_INTERVAL,
};

/// How recently an enforcer must have been heard from to be expected.
pub const EXPECTED_WITHIN: Duration = Duration::from_secs(30);
/// How long an enforcer stuck on a refused update stays expected while
/// it backs off between retries (its longest wait is 5 minutes).
pub const STUCK_WITHIN: Duration = Duration::from_secs(600);
/// The longest `wait_for_propagation.deadline`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// One enforcer as the fleet knows it.
#[derive(Clone, Debug)]
pub struct Known {
    pub record: EnforcerRecord,
    pub expected: bool,
}

/// Every enforcer of `tenant`, by id: the database overlaid with this
/// replica's sessions.
pub async fn fleet(api: &AdminApi, tenant: TenantId) -> Result<BTreeMap<String, Known>, RpcError> {
    let stored = api.store.enforcers(tenant).await?;
    Ok(overlay(
        stored,
        api.registry.known(tenant),
        SystemTime::now(),
    ))
}

fn overlay(
    stored: Vec<EnforcerRecord>,
    live: Vec<EnforcerRecord>,
    now: SystemTime,
) -> BTreeMap<String, Known> {
    let mut all: BTreeMap<String, EnforcerRecord> =
        stored.into_iter().map(|e| (e.id.clone(), e)).collect();
    for record in live {
        let acked = all
            .get(&record.id)
            .map_or(record.acked, |e| e.acked.max(record.acked));
        let nack = record
            .nack
            .clone()
            .or_else(|| all.get(&record.id).and_then(|e| e.nack.clone()));
        all.insert(
            record.id.clone(),
            EnforcerRecord {
                acked,
                nack,
                ..record
            },
        );
    }
    all.into_iter()
        .map(|(id, record)| {
            let heard = now
                .duration_since(record.last_seen)
                .unwrap_or(Duration::ZERO);
            let stuck = record
                .nack
                .as_ref()
                .is_some_and(|n| n.revision > record.acked);
            let expected = (!record.replica.is_empty() && heard <= EXPECTED_WITHIN)
                || (stuck && heard <= STUCK_WITHIN);
            (id, Known { record, expected })
        })
        .collect()
}

/// `GetPropagation`.
pub async fn get(
    api: &AdminApi,
    caller: &Principal,
    req: admin::GetPropagationRequest,
) -> Result<admin::Propagation, RpcError> {
    let current = api.store.current_revision().await?;
    let revision = asked(req.revision, current)?;
    let fleet = fleet(api, caller.tenant).await?;
    Ok(propagation(revision, current, &fleet))
}

/// The revision asked about: 0 means the current one; one ahead of it is refused.
pub fn asked(revision: u64, current: Revision) -> Result<Revision, RpcError> {
    let revision = if revision == 0 {
        current
    } else {
        Revision::new(revision)
    };
    if revision > current {
        return Err(InvalidRequest::field(
            "revision",
            format!("revision {revision} is ahead of the current revision {current}"),
        )
        .into());
    }
    Ok(revision)
}

/// Where `revision` stands among `fleet`.
pub fn propagation(
    revision: Revision,
    current: Revision,
    fleet: &BTreeMap<String, Known>,
) -> admin::Propagation {
    let (mut expected, mut acked) = (0u32, 0u32);
    let (mut lagging, mut nacked) = (Vec::new(), Vec::new());
    for known in fleet.values().filter(|k| k.expected) {
        expected += 1;
        let record = &known.record;
        if record.acked >= revision {
            acked += 1;
        } else if record
            .nack
            .as_ref()
            .is_some_and(|n| n.revision > record.acked && n.revision <= revision)
        {
            nacked.push(enforcer(known, current));
        } else {
            lagging.push(enforcer(known, current));
        }
    }
    admin::Propagation {
        revision: revision.get(),
        current_revision: current.get(),
        live: expected > 0 && acked == expected,
        enforcers_expected: expected,
        enforcers_acked: acked,
        lagging,
        nacked,
        deadline_exceeded: false,
    }
}

/// `ListEnforcers`.
pub async fn list(
    api: &AdminApi,
    caller: &Principal,
    _req: admin::ListEnforcersRequest,
) -> Result<admin::ListEnforcersResponse, RpcError> {
    let current = api.store.current_revision().await?;
    let fleet = fleet(api, caller.tenant).await?;
    Ok(admin::ListEnforcersResponse {
        enforcers: fleet.values().map(|k| enforcer(k, current)).collect(),
        current_revision: current.get(),
    })
}

/// One enforcer as the admin API shows it.
pub fn enforcer(known: &Known, current: Revision) -> admin::Enforcer {
    let e = &known.record;
    admin::Enforcer {
        id: e.id.clone(),
        replica: e.replica.clone(),
        address: e.address.clone(),
        version: e.version.clone(),
        acked_revision: e.acked.get(),
        lag: current.get().saturating_sub(e.acked.get()),
        connected_since: e.connected_since.map(time::to_timestamp),
        last_heartbeat: Some(time::to_timestamp(e.last_seen)),
        events_buffered: e.events_buffered,
        events_dropped: e.events_dropped,
        last_nack: e.nack.as_ref().map(|n| admin::EnforcerNack {
            revision: n.revision.get(),
            reason: n.reason.clone(),
            time: Some(time::to_timestamp(n.at)),
        }),
        expected: known.expected,
    }
}

/// Waits until `revision` is live among `tenant`'s expected enforcers, or
/// until `deadline` has passed, and says where it stands.
pub async fn wait(
    api: &AdminApi,
    tenant: TenantId,
    revision: Revision,
    deadline: Duration,
) -> Result<admin::Propagation, RpcError> {
    let until = Instant::now() + deadline;
    // Enforcers on other replicas are read from the database, which their
    // replica updates every FLUSH_INTERVAL: no point reading it more often.
    let mut stored = api.store.enforcers(tenant).await?;
    let mut stored_at = Instant::now();
    let mut first = true;
    loop {
        let changed = api.registry.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        // Every ack wakes this loop; looking at the whole fleet is worth it
        // only once this replica's own enforcers all have the revision (or
        // to see the database's side now and then).
        let due = stored_at.elapsed() >= FLUSH_INTERVAL;
        let out_of_time = Instant::now() >= until;
        if first || due || out_of_time || api.registry.behind(tenant, revision) == 0 {
            first = false;
            if due {
                stored = api.store.enforcers(tenant).await?;
                stored_at = Instant::now();
            }
            let current = api.store.current_revision().await?;
            let fleet = overlay(
                stored.clone(),
                api.registry.known(tenant),
                SystemTime::now(),
            );
            let mut status = propagation(revision, current, &fleet);
            if status.live {
                return Ok(status);
            }
            if out_of_time {
                status.deadline_exceeded = true;
                return Ok(status);
            }
        }
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep(FLUSH_INTERVAL) => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

/// A write request that may ask to wait for propagation.
pub trait WaitingWrite {
    /// Takes the request's `wait_for_propagation`.
    fn take_wait(&mut self) -> Option<admin::WaitForPropagation>;
    /// True for a dry run, which commits nothing to wait for.
    fn dry_run(&self) -> bool;
}

/// A write response that carries its revision and may carry a receipt.
pub trait Receipt {
    /// The revision the write committed at.
    fn revision(&self) -> u64;
    /// Attaches where that revision stands.
    fn attach(&mut self, propagation: admin::Propagation);
}

/// How long a request asks to wait, checked before anything is written.
pub fn requested(req: &mut impl WaitingWrite) -> Result<Option<Duration>, RpcError> {
    let Some(wait) = req.take_wait() else {
        return Ok(None);
    };
    if req.dry_run() {
        return Ok(None);
    }
    let field = "wait_for_propagation.deadline";
    let deadline = wait
        .deadline
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            InvalidRequest::field(field, "a deadline above 0 is required, e.g. \"5s\"")
        })?;
    if deadline > MAX_WAIT {
        return Err(
            InvalidRequest::field(field, format!("at most {} s", MAX_WAIT.as_secs())).into(),
        );
    }
    Ok(Some(deadline))
}

impl AdminApi {
    /// The write's result, after waiting for it to propagate when asked.
    /// The write is committed either way.
    pub(super) async fn waited<R: Receipt>(
        &self,
        caller: &Principal,
        deadline: Option<Duration>,
        result: Result<R, RpcError>,
    ) -> Result<R, RpcError> {
        let Some(deadline) = deadline else {
            return result;
        };
        let mut response = result?;
        let revision = Revision::new(response.revision());
        let status = wait(self, caller.tenant, revision, deadline).await?;
        if status.deadline_exceeded {
            tracing::info!(%revision, lagging = status.lagging.len(), nacked = status.nacked.len(), "write not live everywhere by its deadline");
        }
        response.attach(status);
        Ok(response)
    }
}

/// Implements [`WaitingWrite`]: `Name: field` for a request with its own
/// `validate_only`, `Name: options` for one with `AllowlistWriteOptions`.
macro_rules! waiting_write {
    (@dry $r:ident, field) => { $r.validate_only };
    (@dry $r:ident, options) => { $r.options.as_ref().is_some_and(|o| o.validate_only) };
    ($($request:ident: $how:ident;)*) => {$(
        impl WaitingWrite for admin::$request {
            fn take_wait(&mut self) -> Option<admin::WaitForPropagation> {
                self.wait_for_propagation.take()
            }
            fn dry_run(&self) -> bool {
                waiting_write!(@dry self, $how)
            }
        }
    )*};
}

waiting_write! {
    CreateApiRequest: field;
    UpdateApiRequest: field;
    DeleteApiRequest: field;
    SetApiAllowlistRequest: options;
    AddApiAllowlistEntriesRequest: options;
    RemoveApiAllowlistEntriesRequest: options;
    UpdateApiAllowlistEntryRequest: options;
    CreateApiKeyRequest: field;
    UpdateApiKeyRequest: field;
    RevokeApiKeyRequest: field;
    RotateApiKeyRequest: field;
    SetApiKeyAllowlistRequest: options;
    AddApiKeyAllowlistEntriesRequest: options;
    RemoveApiKeyAllowlistEntriesRequest: options;
    UpdateApiKeyAllowlistEntryRequest: options;
}

/// Implements [`Receipt`]: `Name` for a response with its own `revision`,
/// `Name: object` for one whose `object` (an API or a key) carries it.
macro_rules! receipt {
    (@revision $r:ident) => { $r.revision };
    (@revision $r:ident, $object:ident) => { $r.$object.as_ref().map_or(0, |o| o.revision) };
    ($($response:ident $(: $object:ident)?;)*) => {$(
        impl Receipt for admin::$response {
            fn revision(&self) -> u64 {
                receipt!(@revision self $(, $object)?)
            }
            fn attach(&mut self, propagation: admin::Propagation) {
                self.propagation = Some(propagation);
            }
        }
    )*};
}

receipt! {
    Api;
    DeleteApiResponse;
    ApiAllowlistResponse: api;
    CreateApiKeyResponse: key;
    ApiKey;
    RotateApiKeyResponse: key;
    ApiKeyAllowlistResponse: key;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NackRecord;

    fn record(id: &str, acked: u64, replica: &str, seen_ago: Duration) -> EnforcerRecord {
        EnforcerRecord {
            id: id.into(),
            acked: Revision::new(acked),
            last_seen: SystemTime::now() - seen_ago,
            replica: replica.into(),
            address: String::new(),
            version: String::new(),
            connected_since: None,
            events_buffered: 0,
            events_dropped: 0,
            nack: None,
        }
    }

    #[test]
    fn no_enforcer_is_not_live() {
        let p = propagation(Revision::new(3), Revision::new(3), &BTreeMap::new());
        assert!(!p.live);
        assert_eq!(p.enforcers_expected, 0);
    }

    #[test]
    fn expected_enforcers_are_connected_and_recently_heard() {
        let now = SystemTime::now();
        let stored = vec![
            record("acked", 5, "r2", Duration::from_secs(1)),
            record("behind", 4, "r2", Duration::from_secs(1)),
            record("gone", 1, "", Duration::from_secs(1)),
            EnforcerRecord {
                nack: Some(NackRecord {
                    revision: Revision::new(5),
                    reason: "bad".into(),
                    at: now,
                }),
                ..record("stuck-between-retries", 4, "", Duration::from_secs(90))
            },
            record("silent", 1, "r2", Duration::from_secs(60)),
            EnforcerRecord {
                nack: Some(NackRecord {
                    revision: Revision::new(5),
                    reason: "changes[0].put_api.allowlist.entries[0].cidr: bad".into(),
                    at: now,
                }),
                ..record("refused", 4, "r2", Duration::from_secs(1))
            },
        ];
        // This replica's session has a fresher ack than the database.
        let live = vec![record("behind", 5, "r1", Duration::ZERO)];
        let fleet = overlay(stored, live, now);
        let p = propagation(Revision::new(5), Revision::new(6), &fleet);
        assert_eq!((p.enforcers_expected, p.enforcers_acked), (4, 2));
        assert!(!p.live);
        assert!(p.lagging.is_empty());
        let nacked: Vec<&str> = p.nacked.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(nacked, ["refused", "stuck-between-retries"]);
        assert_eq!(p.nacked[0].lag, 2);
        assert_eq!(fleet["behind"].record.replica, "r1");
    }
}
