//! The compiled index an enforcer decides from: every API and every key,
//! their allowlists turned into flat integer arrays.
//!
//! An index is immutable once built; updates build a new one beside it
//! ([`Index::apply`] on a clone) so readers never lock and never see half an
//! update. A clone copies three pointers: the API map, the key table and
//! the slug table each sit behind an `Arc`, and a revision copies only the
//! parts it changes. So a revision that changes nothing costs O(1), one
//! that changes an API copies the map of `Arc`ed APIs, and one that changes
//! a key copies the table's shard pointers and rebuilds that key's shard
//! alone (see `keys.rs`).

mod keys;
mod list;

use std::sync::Arc;

// hashbrown's default hasher (foldhash) is several times faster than std's
// SipHash on these short keys. Lookups come from requests, but entries are
// made only by the control plane (key ids are random), so collision attacks
// on the table are not in a caller's hands.
use hashbrown::HashMap;

pub use keys::{INLINE_ENTRIES, KeyRef as CompiledKey, SHARDS};
pub use list::{CompiledList, ListMatch, MatchedEntry, SMALL_LIST};

use keys::KeyTable;

use crate::{
    api::{ApiConfig, ApiSlug, RouteRule},
    key::{KeyConfig, KeyId},
    revision::Revision,
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
    apis: Arc<HashMap<ApiSlug, Arc<CompiledApi>>>,
    keys: Arc<KeyTable>,
    /// Each API slug that keys refer to, once: keys hold its number.
    slugs: Arc<Slugs>,
}

/// API slugs by number, and numbers by slug. Never shrinks: a number once
/// handed out names the same slug for the life of the process.
#[derive(Clone, Debug, Default)]
struct Slugs {
    names: Vec<Arc<str>>,
    numbers: HashMap<Arc<str>, u32>,
}

impl Slugs {
    /// The slug's number, handed out on first sight.
    fn number(&mut self, slug: &str) -> u32 {
        if let Some(n) = self.numbers.get(slug) {
            return *n;
        }
        let n = self.names.len() as u32;
        let name: Arc<str> = slug.into();
        self.names.push(Arc::clone(&name));
        self.numbers.insert(name, n);
        n
    }
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
        let slugs = Arc::make_mut(&mut index.slugs);
        index.keys = Arc::new(KeyTable::build(keys.into_iter().map(|key| {
            let api = slugs.number(key.api.as_str());
            (key, api)
        })));
        index
    }

    /// Applies the changes of one revision in place. Callers that share the
    /// index clone it first and swap the result in: only the parts the
    /// changes touch are copied, and of the keys only the shards they fall
    /// in are rebuilt. No changes cost O(1).
    pub fn apply(&mut self, revision: Revision, changes: impl IntoIterator<Item = Change>) {
        let mut keys = Vec::new();
        for change in changes {
            match change {
                Change::PutApi(api) => self.put_api(api),
                Change::DeleteApi(slug) => {
                    if self.apis.contains_key(&slug) {
                        Arc::make_mut(&mut self.apis).remove(&slug);
                    }
                }
                Change::PutKey(key) => {
                    let api = self.slug_number(key.api.as_str());
                    keys.push((key.id, Some((key, api))));
                }
                Change::DeleteKey(id) => keys.push((id, None)),
            }
        }
        if !keys.is_empty() {
            Arc::make_mut(&mut self.keys).apply(keys);
        }
        self.revision = revision;
    }

    fn put_api(&mut self, api: ApiConfig) {
        let n = self.slug_number(api.slug.as_str());
        let compiled = CompiledApi {
            slug: Arc::clone(&self.slugs.names[n as usize]),
            enabled: api.enabled,
            allowlist: CompiledList::new(&api.allowlist),
            routes: api.routes,
        };
        Arc::make_mut(&mut self.apis).insert(api.slug, Arc::new(compiled));
    }

    /// The slug's number, copying the slug table only for a new slug.
    fn slug_number(&mut self, slug: &str) -> u32 {
        match self.slugs.numbers.get(slug) {
            Some(&n) => n,
            None => Arc::make_mut(&mut self.slugs).number(slug),
        }
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
    pub fn key(&self, id: &KeyId) -> Option<CompiledKey<'_>> {
        self.keys.get(id, &self.slugs.names)
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
        self.revision == other.revision
            && self.apis == other.apis
            && self
                .keys
                .same_keys(&self.slugs.names, &other.keys, &other.slugs.names)
    }
}

impl Eq for Index {}

/// An API ready for decisions.
#[derive(Debug, PartialEq, Eq)]
pub struct CompiledApi {
    /// The slug, shared with the index's slug table: a usage event keeps
    /// it without copying.
    pub(crate) slug: Arc<str>,
    pub(crate) enabled: bool,
    pub(crate) allowlist: CompiledList,
    pub(crate) routes: Vec<RouteRule>,
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
    fn changes_to_a_clone_leave_the_original_whole() {
        let api = |slug: &str, enabled| ApiConfig {
            slug: slug.parse().unwrap(),
            enabled,
            allowlist: Allowlist::default(),
            routes: vec![],
        };
        let new = crate::key::NewKey::generate();
        let key = KeyConfig {
            id: new.id,
            api: "orders".parse().unwrap(),
            secret_hash: crate::key::SecretHash::of(&new.secret),
            scopes: vec![],
            expires_at: None,
            allowlist: Allowlist::default(),
            previous_secrets: vec![],
        };
        let old = Index::from_snapshot(Revision::new(1), [api("orders", true)], [key.clone()]);
        let before = old.clone();

        let mut empty = old.clone();
        empty.apply(Revision::new(2), []);
        assert_eq!(empty.revision(), Revision::new(2));
        assert_eq!((empty.api_count(), empty.key_count()), (1, 1));

        let mut changed = old.clone();
        changed.apply(
            Revision::new(2),
            [
                Change::PutApi(api("orders", false)),
                Change::PutApi(api("billing", true)),
                Change::DeleteKey(key.id),
                Change::DeleteApi("missing".parse().unwrap()),
            ],
        );
        assert!(changed.api("orders").is_some_and(|a| !a.enabled));
        assert!(changed.api("billing").is_some());
        assert!(changed.key(&key.id).is_none());

        assert_eq!(old, before, "the original is untouched");
        assert!(old.api("orders").is_some_and(|a| a.enabled));
        assert!(old.api("billing").is_none());
        assert_eq!(old.key(&key.id).map(|k| k.api()), Some("orders"));
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

    #[test]
    fn keys_compare_by_content_whatever_order_their_apis_came_in() {
        let key = |api: &str| {
            let new = crate::key::NewKey::generate();
            KeyConfig {
                id: new.id,
                api: api.parse().unwrap(),
                secret_hash: crate::key::SecretHash::of(&new.secret),
                scopes: vec![],
                expires_at: None,
                allowlist: Allowlist::default(),
                previous_secrets: vec![],
            }
        };
        let (a, b) = (key("orders"), key("billing"));
        let whole = Index::from_snapshot(Revision::new(2), [], [a.clone(), b.clone()]);
        let mut built = Index::from_snapshot(Revision::new(1), [], []);
        built.apply(
            Revision::new(2),
            [Change::PutKey(b.clone()), Change::PutKey(a.clone())],
        );
        assert_eq!(whole, built);
        assert_eq!(built.key_count(), 2);
        assert_eq!(built.key(&a.id).map(|k| k.api()), Some("orders"));
        built.apply(Revision::new(2), [Change::DeleteKey(a.id)]);
        assert_ne!(whole, built);
        assert!(built.key(&a.id).is_none());
    }
}
