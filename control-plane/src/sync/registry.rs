//! Enforcers connected to this control plane, and the revision each has
//! applied: what `GetRevisionStatus` answers "is it live?" from.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use ipgate_shared::{EnforcerId, Revision};

use crate::store::TenantId;

/// An enforcer: ids are chosen per tenant.
type Key = (TenantId, EnforcerId);

/// The connected enforcers.
#[derive(Debug, Default)]
pub struct Registry {
    connected: Mutex<HashMap<Key, Connected>>,
}

/// One connected enforcer as last heard of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connected {
    /// Open sessions under this id (a reconnect may overlap the old one).
    pub sessions: usize,
    /// Highest revision it said it applied.
    pub acked: Revision,
    pub last_seen: SystemTime,
}

impl Registry {
    /// Notes a session of `id`, which has applied `known`; it counts as
    /// connected until the returned guard is dropped.
    pub fn connect(
        self: &Arc<Self>,
        tenant: TenantId,
        id: EnforcerId,
        known: Revision,
    ) -> Connection {
        let now = SystemTime::now();
        let id = (tenant, id);
        self.lock()
            .entry(id.clone())
            .and_modify(|c| {
                c.sessions += 1;
                c.acked = c.acked.max(known);
                c.last_seen = now;
            })
            .or_insert(Connected {
                sessions: 1,
                acked: known,
                last_seen: now,
            });
        Connection {
            registry: Arc::clone(self),
            id,
        }
    }

    /// Notes that `id` of `tenant` applied `revision`.
    pub fn ack(&self, tenant: TenantId, id: &EnforcerId, revision: Revision) {
        if let Some(c) = self.lock().get_mut(&(tenant, id.clone())) {
            c.acked = c.acked.max(revision);
            c.last_seen = SystemTime::now();
        }
    }

    /// Every connected enforcer of `tenant`.
    pub fn connected(&self, tenant: TenantId) -> HashMap<EnforcerId, Connected> {
        self.lock()
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|((_, id), c)| (id.clone(), *c))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Connected>> {
        // The map stays consistent even if a holder panicked: every update
        // is a single field write.
        self.connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One session's presence in the [`Registry`].
#[derive(Debug)]
pub struct Connection {
    registry: Arc<Registry>,
    id: Key,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut map = self.registry.lock();
        if let Some(c) = map.get_mut(&self.id) {
            c.sessions = c.sessions.saturating_sub(1);
            if c.sessions == 0 {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enforcer_is_connected_while_any_session_is() {
        let registry = Arc::new(Registry::default());
        let t = TenantId::DEFAULT;
        let id: EnforcerId = "e1".parse().unwrap();
        let first = registry.connect(t, id.clone(), Revision::new(3));
        let second = registry.connect(t, id.clone(), Revision::new(2));
        let other = registry.connect(TenantId(2), id.clone(), Revision::new(1));
        registry.ack(t, &id, Revision::new(5));
        assert_eq!(registry.connected(t)[&id].acked, Revision::new(5));
        assert_eq!(registry.connected(TenantId(2))[&id].acked, Revision::new(1));
        drop(first);
        assert_eq!(registry.connected(t)[&id].sessions, 1);
        drop(second);
        assert!(registry.connected(t).is_empty());
        drop(other);
    }
}
