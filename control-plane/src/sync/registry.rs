//! Enforcers connected to this replica, as each was last heard of: what
//! `GetPropagation` and `ListEnforcers` overlay on the database, and what
//! a write waiting for propagation watches.
//!
//! Sessions update it on every Hello, Ack, Nack and heartbeat; a flusher
//! task writes what changed to the `enforcers` table every
//! [`FLUSH_INTERVAL`] in one transaction, so every replica answers for the
//! whole fleet without one database write per ack.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use ipgate_shared::{EnforcerId, Revision};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};

use crate::store::{EnforcerRecord, NackRecord, Store, TenantId};

/// How often what changed is written to the database.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// An enforcer: ids are chosen per tenant.
type Key = (TenantId, EnforcerId);

/// The connected enforcers of this replica.
#[derive(Debug)]
pub struct Registry {
    replica: String,
    state: Mutex<State>,
    /// Woken on every ack, Nack and disconnect, for writes that wait.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    live: HashMap<Key, Live>,
    /// Keys whose record changed since the last flush.
    dirty: HashSet<Key>,
    /// Records of enforcers that went away since the last flush.
    departed: Vec<(TenantId, EnforcerRecord)>,
}

#[derive(Debug)]
struct Live {
    /// Open sessions under this id (a reconnect may overlap the old one).
    sessions: usize,
    record: EnforcerRecord,
}

/// What a session knows of its enforcer when it opens.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub address: String,
    pub version: String,
}

impl Registry {
    /// A registry for the replica named `replica` (shown in ListEnforcers).
    pub fn new(replica: impl Into<String>) -> Self {
        Registry {
            replica: replica.into(),
            state: Mutex::default(),
            changed: Notify::new(),
        }
    }

    /// Notes a session of `id`; it counts as connected until the returned
    /// guard is dropped. The revision its Hello claims counts only once the
    /// session has checked it against the database ([`Registry::ack`]).
    pub fn connect(
        self: &Arc<Self>,
        tenant: TenantId,
        id: EnforcerId,
        arrival: Arrival,
    ) -> Connection {
        let now = SystemTime::now();
        let key = (tenant, id);
        let mut state = self.lock();
        let replica = self.replica.clone();
        state
            .live
            .entry(key.clone())
            .and_modify(|l| {
                l.sessions += 1;
                l.record.last_seen = now;
                l.record.address.clone_from(&arrival.address);
                l.record.version.clone_from(&arrival.version);
            })
            .or_insert_with(|| Live {
                sessions: 1,
                record: EnforcerRecord {
                    id: key.1.to_string(),
                    acked: Revision::ZERO,
                    last_seen: now,
                    replica,
                    address: arrival.address,
                    version: arrival.version,
                    connected_since: Some(now),
                    events_buffered: 0,
                    events_dropped: 0,
                    nack: None,
                },
            });
        state.dirty.insert(key.clone());
        drop(state);
        Connection {
            registry: Arc::clone(self),
            key,
        }
    }

    /// Notes that `id` of `tenant` applied `revision`.
    pub fn ack(&self, tenant: TenantId, id: &EnforcerId, revision: Revision) {
        self.update(tenant, id, |r| r.acked = r.acked.max(revision));
        self.changed.notify_waiters();
    }

    /// Notes that `id` refused an update.
    pub fn nack(&self, tenant: TenantId, id: &EnforcerId, nack: NackRecord) {
        self.update(tenant, id, |r| r.nack = Some(nack));
        self.changed.notify_waiters();
    }

    /// Notes an enforcer's heartbeat.
    pub fn heartbeat(&self, tenant: TenantId, id: &EnforcerId, buffered: u64, dropped: u64) {
        self.update(tenant, id, |r| {
            r.events_buffered = buffered;
            r.events_dropped = dropped;
        });
    }

    /// Every enforcer of `tenant` this replica knows right now: those
    /// connected, and those that left since the last flush (connected
    /// nowhere), so a reader never misses one between the two.
    pub fn known(&self, tenant: TenantId) -> Vec<EnforcerRecord> {
        let state = self.lock();
        let live = state
            .live
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|(_, l)| l.record.clone());
        let departed = state
            .departed
            .iter()
            .filter(|(t, _)| *t == tenant)
            .map(|(_, r)| r.clone());
        departed.chain(live).collect()
    }

    /// How many of `tenant`'s enforcers connected here have not acked
    /// `revision`: cheap (no copies), for a waiting write to call on every
    /// ack before it looks at the whole fleet.
    pub fn behind(&self, tenant: TenantId, revision: Revision) -> usize {
        self.lock()
            .live
            .iter()
            .filter(|((t, _), l)| *t == tenant && l.record.acked < revision)
            .count()
    }

    /// Resolves at the next ack, Nack or disconnect. Create it before
    /// looking at the state, so nothing in between is missed.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Starts the task that writes what changed to the database every
    /// [`FLUSH_INTERVAL`], and once more when `shutdown` turns true.
    pub fn spawn_flusher(
        self: &Arc<Self>,
        store: Arc<Store>,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let registry = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let stopping = tokio::select! {
                    _ = tick.tick() => false,
                    _ = shutdown.wait_for(|stop| *stop) => true,
                };
                registry.flush(&store).await;
                if stopping {
                    return;
                }
            }
        })
    }

    /// Writes what changed since the last flush; what fails to be written
    /// is tried again at the next one.
    pub async fn flush(&self, store: &Store) {
        let batch = self.take_dirty();
        if batch.is_empty() {
            return;
        }
        if let Err(error) = store.record_enforcers(&batch).await {
            tracing::warn!(%error, enforcers = batch.len(), "cannot record enforcers' state; retrying");
            let mut state = self.lock();
            for (tenant, record) in batch {
                match record.id.parse::<EnforcerId>() {
                    Ok(id) if state.live.contains_key(&(tenant, id.clone())) => {
                        state.dirty.insert((tenant, id));
                    }
                    _ => state.departed.push((tenant, record)),
                }
            }
        }
    }

    fn take_dirty(&self) -> Vec<(TenantId, EnforcerRecord)> {
        let mut state = self.lock();
        let dirty = std::mem::take(&mut state.dirty);
        let departed = std::mem::take(&mut state.departed);
        let mut batch: Vec<(TenantId, EnforcerRecord)> = dirty
            .into_iter()
            .filter_map(|key| {
                let record = state.live.get(&key)?.record.clone();
                Some((key.0, record))
            })
            .collect();
        // One row per enforcer: one that left and came back is written as
        // it is now (a statement may not touch a row twice).
        for (tenant, record) in departed.into_iter().rev() {
            let back = |(t, r): &(TenantId, EnforcerRecord)| *t == tenant && r.id == record.id;
            if !batch.iter().any(back) {
                batch.push((tenant, record));
            }
        }
        batch
    }

    fn update(&self, tenant: TenantId, id: &EnforcerId, change: impl FnOnce(&mut EnforcerRecord)) {
        let key = (tenant, id.clone());
        let mut state = self.lock();
        if let Some(live) = state.live.get_mut(&key) {
            change(&mut live.record);
            live.record.last_seen = SystemTime::now();
            state.dirty.insert(key);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every
        // update is a few field writes.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One session's presence in the [`Registry`].
#[derive(Debug)]
pub struct Connection {
    registry: Arc<Registry>,
    key: Key,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut state = self.registry.lock();
        let Some(live) = state.live.get_mut(&self.key) else {
            return;
        };
        live.sessions = live.sessions.saturating_sub(1);
        if live.sessions == 0
            && let Some(Live { mut record, .. }) = state.live.remove(&self.key)
        {
            record.replica.clear();
            record.connected_since = None;
            state.dirty.remove(&self.key);
            state.departed.push((self.key.0, record));
        }
        drop(state);
        self.registry.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival() -> Arrival {
        Arrival {
            address: "127.0.0.1:1".into(),
            version: "test".into(),
        }
    }

    #[test]
    fn an_enforcer_is_connected_while_any_session_is() {
        let registry = Arc::new(Registry::new("r1"));
        let t = TenantId::DEFAULT;
        let id: EnforcerId = "e1".parse().unwrap();
        let first = registry.connect(t, id.clone(), arrival());
        let second = registry.connect(t, id.clone(), arrival());
        let other = registry.connect(TenantId(2), id.clone(), arrival());
        registry.ack(t, &id, Revision::new(5));
        registry.ack(t, &id, Revision::new(4));
        assert_eq!(registry.known(t)[0].acked, Revision::new(5));
        assert_eq!(registry.known(t)[0].replica, "r1");
        assert_eq!(registry.known(TenantId(2))[0].acked, Revision::ZERO);
        drop(first);
        assert_eq!(registry.known(t)[0].replica, "r1");
        drop(second);
        let known = registry.known(t);
        assert_eq!(known.len(), 1, "still shown until flushed");
        assert_eq!(known[0].replica, "", "but connected nowhere");
        drop(other);
    }

    #[test]
    fn a_departed_enforcer_is_flushed_as_connected_nowhere() {
        let registry = Arc::new(Registry::new("r1"));
        let id: EnforcerId = "e1".parse().unwrap();
        let session = registry.connect(TenantId::DEFAULT, id.clone(), arrival());
        registry.ack(TenantId::DEFAULT, &id, Revision::new(3));
        let batch = registry.take_dirty();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].1.replica, "r1");
        assert!(registry.take_dirty().is_empty(), "nothing changed since");
        drop(session);
        let batch = registry.take_dirty();
        assert_eq!(batch.len(), 1);
        assert_eq!(
            (batch[0].1.replica.as_str(), batch[0].1.acked),
            ("", Revision::new(3))
        );
        assert_eq!(batch[0].1.connected_since, None);

        // Gone and back before a flush: written once, as connected.
        let first = registry.connect(TenantId::DEFAULT, id.clone(), arrival());
        drop(first);
        let _again = registry.connect(TenantId::DEFAULT, id.clone(), arrival());
        let batch = registry.take_dirty();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].1.replica, "r1");
    }
}
