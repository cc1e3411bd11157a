//! The compiled index an enforcer decides from: every API and every key,
//! their allowlists turned into flat integer arrays.
//!
//! An index is immutable once built; updates build a new one beside it
//! ([`Index::apply`] on a clone) so readers never lock and never see half an
//! update. Keys and APIs sit behind `Arc`s, so a clone copies pointers, not
//! allowlists.

mod list;

use std::sync::Arc;

// hashbrown's default hasher (foldhash) is several times faster than std's
// SipHash on these short keys. Lookups come from requests, but entries are
// made only by the control plane (key ids are random), so collision attacks
// on the table are not in a caller's hands.
use hashbrown::{HashMap, HashSet};

pub use list::{CompiledList, ListMatch, MatchedEntry, SMALL_LIST};

use crate::{
    api::{ApiConfig, ApiSlug, RouteRule, Scope},
    key::{KeyConfig, KeyId, SecretHash},
    revision::Revision,
    time::{self, NEVER, UnixMillis},
};

/// One change to the index: the full new state of an object, or its removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    PutApi(ApiConfig),
    DeleteApi(ApiSlug),
    PutKey(KeyConfig),
    DeleteKey(KeyId),
}

/// Every API and key an enforcer knows, at one revision.
#[derive(Clone, Debug, Default)]
pub struct Index {
    revision: Revision,
    apis: HashMap<ApiSlug, Arc<CompiledApi>>,
    keys: HashMap<KeyId, Arc<CompiledKey>>,
    /// One shared copy of each API slug that keys refer to: a million keys
    /// of one API hold a million pointers, not a million strings.
    slugs: HashSet<Arc<str>>,
}

impl Index {
    /// An index holding exactly these APIs and keys at `revision`.
    pub fn from_snapshot(
        revision: Revision,
        apis: impl IntoIterator<Item = ApiConfig>,
        keys: impl IntoIterator<Item = KeyConfig>,
    ) -> Index {
        let mut index = Index {
            revision,
            ..Index::default()
        };
        for api in apis {
            index.put_api(api);
        }
        for key in keys {
            index.put_key(key);
        }
        index
    }

    /// Applies the changes of one revision in place. Callers that share the
    /// index clone it first and swap the result in.
    pub fn apply(&mut self, revision: Revision, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            match change {
                Change::PutApi(api) => self.put_api(api),
                Change::DeleteApi(slug) => {
                    self.apis.remove(&slug);
                }
                Change::PutKey(key) => self.put_key(key),
                Change::DeleteKey(id) => {
                    self.keys.remove(&id);
                }
            }
        }
        self.revision = revision;
    }

    fn put_api(&mut self, api: ApiConfig) {
        let compiled = CompiledApi {
            enabled: api.enabled,
            allowlist: CompiledList::new(&api.allowlist),
            routes: api.routes,
        };
        self.apis.insert(api.slug, Arc::new(compiled));
    }

    fn put_key(&mut self, key: KeyConfig) {
        let api = match self.slugs.get(key.api.as_str()) {
            Some(slug) => Arc::clone(slug),
            None => {
                let slug: Arc<str> = key.api.as_str().into();
                self.slugs.insert(Arc::clone(&slug));
                slug
            }
        };
        let compiled = CompiledKey {
            api,
            secret_hash: key.secret_hash,
            scopes: key.scopes.into_boxed_slice(),
            expires_at: key.expires_at.map_or(NEVER, time::to_millis),
            allowlist: CompiledList::new(&key.allowlist),
            previous_secrets: key
                .previous_secrets
                .iter()
                .map(|p| (p.hash, time::to_millis(p.valid_until)))
                .collect(),
        };
        self.keys.insert(key.id, Arc::new(compiled));
    }

    /// The revision this index reflects.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The API with this slug.
    pub fn api(&self, slug: &str) -> Option<&CompiledApi> {
        self.apis.get(slug).map(Arc::as_ref)
    }

    /// The key with this id.
    pub fn key(&self, id: &KeyId) -> Option<&CompiledKey> {
        self.keys.get(id).map(Arc::as_ref)
    }

    /// How many APIs the index holds.
    pub fn api_count(&self) -> usize {
        self.apis.len()
    }

    /// How many keys the index holds.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// Two indexes are equal when they hold the same objects at the same
/// revision (the slug interner is a cache, not content).
impl PartialEq for Index {
    fn eq(&self, other: &Self) -> bool {
        self.revision == other.revision && self.apis == other.apis && self.keys == other.keys
    }
}

impl Eq for Index {}

/// An API ready for decisions.
#[derive(Debug, PartialEq, Eq)]
pub struct CompiledApi {
    pub(crate) enabled: bool,
    pub(crate) allowlist: CompiledList,
    pub(crate) routes: Vec<RouteRule>,
}

/// A key ready for decisions.
#[derive(Debug, PartialEq, Eq)]
pub struct CompiledKey {
    pub(crate) api: Arc<str>,
    pub(crate) secret_hash: SecretHash,
    pub(crate) scopes: Box<[Scope]>,
    pub(crate) expires_at: UnixMillis,
    pub(crate) allowlist: CompiledList,
    /// Rotated-out secrets and the instant each stops working.
    pub(crate) previous_secrets: Box<[(SecretHash, UnixMillis)]>,
}

impl CompiledKey {
    /// True when the key carries `scope`.
    pub(crate) fn has_scope(&self, scope: &Scope) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// True when `presented` is the key's secret, or a rotated-out one
    /// still within its grace period at `now`.
    pub(crate) fn accepts(&self, presented: &SecretHash, now: UnixMillis) -> bool {
        self.secret_hash.matches(presented)
            || self
                .previous_secrets
                .iter()
                .any(|(hash, until)| *until > now && hash.matches(presented))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowlist::Allowlist;

    #[test]
    fn apply_replaces_and_removes_objects() {
        let slug: ApiSlug = "orders".parse().unwrap();
        let api = ApiConfig {
            slug: slug.clone(),
            enabled: true,
            allowlist: Allowlist::default(),
            routes: vec![],
        };
        let mut index = Index::from_snapshot(Revision::new(1), [api.clone()], []);
        assert!(index.api("orders").is_some_and(|a| a.enabled));
        index.apply(
            Revision::new(2),
            [Change::PutApi(ApiConfig {
                enabled: false,
                ..api
            })],
        );
        assert_eq!(index.revision(), Revision::new(2));
        assert!(index.api("orders").is_some_and(|a| !a.enabled));
        index.apply(Revision::new(3), [Change::DeleteApi(slug)]);
        assert!(index.api("orders").is_none());
    }

    #[test]
    fn indexes_compare_by_content() {
        let api = ApiConfig {
            slug: "orders".parse().unwrap(),
            enabled: true,
            allowlist: Allowlist::default(),
            routes: vec![],
        };
        let whole = Index::from_snapshot(Revision::new(2), [api.clone()], []);
        let mut built = Index::from_snapshot(Revision::new(1), [], []);
        built.apply(Revision::new(2), [Change::PutApi(api.clone())]);
        assert_eq!(whole, built);
        built.apply(
            Revision::new(2),
            [Change::PutApi(ApiConfig {
                enabled: false,
                ..api
            })],
        );
        assert_ne!(whole, built);
    }
}
