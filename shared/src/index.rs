//! The compiled index an enforcer decides from: every API and every key,
//! their allowlists turned into flat integer arrays.
//!
//! An index is immutable once built; updates build a new one beside it
//! ([`Index::apply`] on a clone) so readers never lock and never see half an
//! update. Keys and APIs sit behind `Arc`s, so a clone copies pointers, not
//! allowlists.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use crate::{
    allowlist::Allowlist,
    api::{ApiConfig, ApiSlug, RouteRule, Scope},
    entry::normalize_ip,
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
        let compiled = CompiledKey {
            api: key.api,
            secret_hash: key.secret_hash,
            scopes: key.scopes.into_boxed_slice(),
            expires_at: key.expires_at.map_or(NEVER, time::to_millis),
            allowlist: CompiledList::new(&key.allowlist),
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

/// An API ready for decisions.
#[derive(Debug)]
pub struct CompiledApi {
    pub(crate) enabled: bool,
    pub(crate) allowlist: CompiledList,
    pub(crate) routes: Vec<RouteRule>,
}

/// A key ready for decisions.
#[derive(Debug)]
pub struct CompiledKey {
    pub(crate) api: ApiSlug,
    pub(crate) secret_hash: SecretHash,
    pub(crate) scopes: Box<[Scope]>,
    pub(crate) expires_at: UnixMillis,
    pub(crate) allowlist: CompiledList,
}

impl CompiledKey {
    /// True when the key carries `scope`.
    pub(crate) fn has_scope(&self, scope: &Scope) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// What an allowlist says about one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListMatch<'a> {
    /// The list has no entries: every address passes.
    Empty,
    /// An unexpired entry covers the address; its label ("" when none).
    Matched(&'a str),
    /// No unexpired entry covers the address.
    NotMatched,
}

/// An allowlist compiled to integer networks and masks, per family.
#[derive(Debug, Default)]
pub struct CompiledList {
    v4: Box<[Net<u32>]>,
    v6: Box<[Net<u128>]>,
    report_only: bool,
}

#[derive(Debug)]
struct Net<T> {
    addr: T,
    mask: T,
    expires_at: UnixMillis,
    label: Box<str>,
}

impl CompiledList {
    /// Compiles a validated list.
    pub fn new(list: &Allowlist) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for entry in list.entries() {
            let expires_at = entry.expires_at().map_or(NEVER, time::to_millis);
            let label: Box<str> = entry.label().into();
            match entry.cidr().net() {
                ipnet::IpNet::V4(n) => v4.push(Net {
                    addr: u32::from(n.network()),
                    mask: u32::from(n.netmask()),
                    expires_at,
                    label,
                }),
                ipnet::IpNet::V6(n) => v6.push(Net {
                    addr: u128::from(n.network()),
                    mask: u128::from(n.netmask()),
                    expires_at,
                    label,
                }),
            }
        }
        CompiledList {
            v4: v4.into_boxed_slice(),
            v6: v6.into_boxed_slice(),
            report_only: list.report_only(),
        }
    }

    /// True when the list only reports and never blocks.
    pub fn report_only(&self) -> bool {
        self.report_only
    }

    /// Number of entries (expired ones included).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True when the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks `ip` up at instant `now`. Entries past their expiry never match,
    /// whether or not the control plane has removed them yet.
    pub fn lookup(&self, ip: IpAddr, now: UnixMillis) -> ListMatch<'_> {
        if self.is_empty() {
            return ListMatch::Empty;
        }
        let hit = match normalize_ip(ip) {
            IpAddr::V4(a) => find(&self.v4, u32::from(a), now),
            IpAddr::V6(a) => find(&self.v6, u128::from(a), now),
        };
        hit.map_or(ListMatch::NotMatched, ListMatch::Matched)
    }
}

fn find<T>(nets: &[Net<T>], addr: T, now: UnixMillis) -> Option<&str>
where
    T: Copy + PartialEq + std::ops::BitAnd<Output = T>,
{
    nets.iter()
        .find(|n| addr & n.mask == n.addr && n.expires_at > now)
        .map(|n| &*n.label)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::entry::{Entry, Label};

    fn entry(cidr: &str, label: &str, expires_at: Option<SystemTime>) -> Entry {
        Entry::new(
            cidr.parse().unwrap(),
            label.parse::<Label>().unwrap(),
            expires_at,
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_empty_list_says_empty() {
        let list = CompiledList::new(&Allowlist::default());
        assert_eq!(list.lookup(ip("203.0.113.5"), 0), ListMatch::Empty);
    }

    #[test]
    fn lookups_match_by_family_and_prefix() {
        let list = CompiledList::new(&Allowlist::new(
            vec![
                entry("203.0.113.0/24", "office", None),
                entry("2001:db8::/48", "v6", None),
            ],
            false,
        ));
        assert_eq!(
            list.lookup(ip("203.0.113.77"), 0),
            ListMatch::Matched("office")
        );
        assert_eq!(
            list.lookup(ip("::ffff:203.0.113.77"), 0),
            ListMatch::Matched("office")
        );
        assert_eq!(list.lookup(ip("203.0.114.1"), 0), ListMatch::NotMatched);
        assert_eq!(
            list.lookup(ip("2001:db8:0:1::5"), 0),
            ListMatch::Matched("v6")
        );
        assert_eq!(list.lookup(ip("2001:db8:1::5"), 0), ListMatch::NotMatched);
        // IPv4-compatible is not IPv4.
        assert_eq!(list.lookup(ip("::203.0.113.77"), 0), ListMatch::NotMatched);
    }

    #[test]
    fn expired_entries_stop_matching_at_their_instant() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let list = CompiledList::new(&Allowlist::new(
            vec![entry("203.0.113.5", "temp", Some(at))],
            false,
        ));
        let at_ms = time::to_millis(at);
        assert_eq!(
            list.lookup(ip("203.0.113.5"), at_ms - 1),
            ListMatch::Matched("temp")
        );
        assert_eq!(list.lookup(ip("203.0.113.5"), at_ms), ListMatch::NotMatched);
    }

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
}
