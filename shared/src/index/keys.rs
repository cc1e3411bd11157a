//! The key table: every key of an index in flat arrays, cut into shards by
//! a prefix of the key id's hash.
//!
//! A shard is one flat table: fixed-size records (id, secret hash, expiry,
//! API number, where its entries are) sorted by the id's hash, its keys'
//! allowlist entries in two flat arrays (IPv4 and IPv6 network/mask pairs,
//! each key's entries in list order), and where each bucket of hashes
//! starts (about two records a bucket): a lookup reads one bucket start and
//! the records after it, with no empty slots to pay for.
//! No key holds a `String`, a `Box` or an `Arc` of its own unless it carries
//! something rare (scopes, rotated-out secrets, labelled or expiring
//! entries, more than [`INLINE_ENTRIES`] entries): that goes to a side
//! record.
//!
//! Shards sit behind `Arc`s: cloning the table copies [`SHARDS`] pointers,
//! and a change to one key rebuilds only that key's shard
//! ([`KeyTable::apply`]), which is a few thousand keys at 10^7.

use std::{net::IpAddr, sync::Arc};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::list::{CompiledList, ListMatch, MatchedEntry};
use crate::{
    api::Scope,
    entry::normalize_ip,
    key::{KeyConfig, KeyId, SecretHash},
    time::{self, NEVER, UnixMillis},
};

/// log2 of the number of shards.
const SHARD_BITS: u32 = 12;
/// log2 of the number of buckets a build sorts keys into first.
const COARSE_BITS: u32 = 6;
/// Number of shards: 10^7 keys make ~2,400 a shard.
pub const SHARDS: usize = 1 << SHARD_BITS;
/// Key lists up to this many entries, unlabelled and without expiry, are
/// stored inline in the shard's flat arrays.
pub const INLINE_ENTRIES: usize = 20;

const NONE: u32 = u32::MAX;

/// A put (`Some`, with the API's number) or removal (`None`) of a key.
pub(crate) type KeyChange = (KeyId, Option<(KeyConfig, u32)>);

/// The hash a key id is sharded and found by. Fixed (not seeded per
/// process), so every enforcer and the control plane agree on which shard
/// a key is in. Ids are random characters chosen by the control plane, so
/// their spread is not in a caller's hands.
pub(crate) fn id_hash(id: &KeyId) -> u64 {
    let bytes = id.as_bytes();
    let (a, b) = bytes.split_at(8);
    let a = u64::from_le_bytes(a.try_into().unwrap_or_default());
    let b = u64::from_le_bytes(b.try_into().unwrap_or_default());
    let h = (a ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ b.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// The shard holding `id`: the top bits of its hash.
pub(crate) fn shard_of(id: &KeyId) -> usize {
    (id_hash(id) >> (64 - SHARD_BITS)) as usize
}

/// The bucket of `hash` among `1 << bits`.
fn bucket_of(hash: u64, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (hash >> (64 - bits)) as usize
    }
}

/// The hash inside a shard: the bits below the shard prefix, so keys of one
/// shard spread over its buckets.
fn in_shard_hash(id: &KeyId) -> u64 {
    id_hash(id).rotate_left(SHARD_BITS)
}

/// One key, fixed size.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    id: KeyId,
    secret_hash: SecretHash,
    expires_at: UnixMillis,
    /// The API's number in the index's slug table.
    api: u32,
    /// First IPv4 and IPv6 entry in the shard's arrays.
    v4: u32,
    v6: u32,
    /// The side record, or [`NONE`].
    side: u32,
    n4: u8,
    n6: u8,
    report_only: bool,
}

/// What few keys carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Side {
    scopes: Box<[Scope]>,
    /// Rotated-out secrets and the instant each stops working.
    previous_secrets: Box<[(SecretHash, UnixMillis)]>,
    /// The allowlist, when it does not fit inline.
    list: Option<CompiledList>,
}

/// One shard: a flat table of keys.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shard {
    /// Sorted by id, so a shard's layout depends only on its keys.
    records: Box<[Record]>,
    nets4: Box<[(u32, u32)]>,
    nets6: Box<[(u128, u128)]>,
    sides: Box<[Side]>,
    /// log2 of the number of buckets.
    bits: u32,
    /// The first record of each bucket (the top `bits` of
    /// [`in_shard_hash`]), and the number of records last.
    starts: Box<[u32]>,
}

/// Builds one shard from records of an old one and new configs.
#[derive(Default)]
struct ShardBuilder {
    records: Vec<Record>,
    nets4: Vec<(u32, u32)>,
    nets6: Vec<(u128, u128)>,
    sides: Vec<Side>,
}

impl ShardBuilder {
    fn push_config(&mut self, key: &KeyConfig, api: u32) {
        let list = &key.allowlist;
        let entries = list.entries();
        let inline = entries.len() <= INLINE_ENTRIES
            && entries
                .iter()
                .all(|e| e.label().is_empty() && e.expires_at().is_none());
        let (v4, v6) = (self.nets4.len() as u32, self.nets6.len() as u32);
        let (mut n4, mut n6) = (0u8, 0u8);
        if inline {
            for entry in entries {
                match entry.cidr().net() {
                    IpNet::V4(n) => {
                        self.nets4
                            .push((u32::from(n.network()), u32::from(n.netmask())));
                        n4 += 1;
                    }
                    IpNet::V6(n) => {
                        self.nets6
                            .push((u128::from(n.network()), u128::from(n.netmask())));
                        n6 += 1;
                    }
                }
            }
        }
        let side = Side {
            scopes: key.scopes.clone().into_boxed_slice(),
            previous_secrets: key
                .previous_secrets
                .iter()
                .map(|p| (p.hash, time::to_millis(p.valid_until)))
                .collect(),
            list: (!inline).then(|| CompiledList::new(list)),
        };
        let side = if side == Side::default() {
            NONE
        } else {
            self.sides.push(side);
            (self.sides.len() - 1) as u32
        };
        self.records.push(Record {
            id: key.id,
            secret_hash: key.secret_hash,
            expires_at: key.expires_at.map_or(NEVER, time::to_millis),
            api,
            v4,
            v6,
            side,
            n4,
            n6,
            report_only: list.report_only(),
        });
    }

    /// The shard, records sorted by hash (then id); of two records with one
    /// id the later pushed wins.
    fn finish(self) -> Shard {
        let mut order: Vec<u32> = (0..self.records.len() as u32).collect();
        order.sort_by_cached_key(|&r| {
            let id = self.records[r as usize].id;
            (in_shard_hash(&id), id)
        });
        order.dedup_by(|later, earlier| {
            let same = self.records[*later as usize].id == self.records[*earlier as usize].id;
            if same {
                *earlier = (*earlier).max(*later);
            }
            same
        });
        let mut shard = ShardBuilder {
            records: Vec::with_capacity(order.len()),
            nets4: Vec::with_capacity(self.nets4.len()),
            nets6: Vec::with_capacity(self.nets6.len()),
            sides: Vec::with_capacity(self.sides.len()),
        };
        for r in order {
            shard.copy(self.parts(), &self.records[r as usize]);
        }
        // About two records a bucket.
        let bits = (shard.records.len() / 2)
            .max(1)
            .next_power_of_two()
            .trailing_zeros();
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        for (n, record) in (0u32..).zip(&shard.records) {
            let bucket = bucket_of(in_shard_hash(&record.id), bits);
            while starts.len() <= bucket {
                starts.push(n);
            }
        }
        starts.resize((1 << bits) + 1, shard.records.len() as u32);
        Shard {
            bits,
            starts: starts.into_boxed_slice(),
            records: shard.records.into_boxed_slice(),
            nets4: shard.nets4.into_boxed_slice(),
            nets6: shard.nets6.into_boxed_slice(),
            sides: shard.sides.into_boxed_slice(),
        }
    }

    /// Appends a record of `from` with its entries and side record.
    fn copy(&mut self, from: Parts<'_>, record: &Record) {
        let Parts {
            nets4,
            nets6,
            sides,
        } = from;
        let mut record = record.clone();
        let v4 = record.v4 as usize..record.v4 as usize + usize::from(record.n4);
        let v6 = record.v6 as usize..record.v6 as usize + usize::from(record.n6);
        record.v4 = self.nets4.len() as u32;
        record.v6 = self.nets6.len() as u32;
        self.nets4.extend_from_slice(&nets4[v4]);
        self.nets6.extend_from_slice(&nets6[v6]);
        if let Some(side) = sides.get(record.side as usize) {
            self.sides.push(side.clone());
            record.side = (self.sides.len() - 1) as u32;
        }
        self.records.push(record);
    }
}

/// The arrays a record's offsets point into.
struct Parts<'a> {
    nets4: &'a [(u32, u32)],
    nets6: &'a [(u128, u128)],
    sides: &'a [Side],
}

impl ShardBuilder {
    fn parts(&self) -> Parts<'_> {
        Parts {
            nets4: &self.nets4,
            nets6: &self.nets6,
            sides: &self.sides,
        }
    }
}

impl Shard {
    fn parts(&self) -> Parts<'_> {
        Parts {
            nets4: &self.nets4,
            nets6: &self.nets6,
            sides: &self.sides,
        }
    }

    fn get(&self, id: &KeyId) -> Option<&Record> {
        let bucket = bucket_of(in_shard_hash(id), self.bits);
        let from = *self.starts.get(bucket)? as usize;
        let to = *self.starts.get(bucket + 1)? as usize;
        self.records.get(from..to)?.iter().find(|r| r.id == *id)
    }

    fn len(&self) -> usize {
        self.records.len()
    }
}

/// Every key of an index.
#[derive(Clone, Debug)]
pub(crate) struct KeyTable {
    shards: Box<[Arc<Shard>]>,
    len: usize,
}

impl Default for KeyTable {
    fn default() -> Self {
        let empty = Arc::new(Shard::default());
        KeyTable {
            shards: (0..SHARDS).map(|_| Arc::clone(&empty)).collect(),
            len: 0,
        }
    }
}

impl KeyTable {
    /// A table of these keys, each with its API's number; of two keys with
    /// one id the later wins.
    pub(crate) fn build(keys: impl IntoIterator<Item = (KeyConfig, u32)>) -> Self {
        // Two passes: keys first go to 64 buckets by the top bits of their
        // hash, then each bucket is split into its 64 shards. Writing to
        // 4,096 places at once from a stream of 10^7 keys misses the TLB on
        // nearly every write; 64 at a time does not.
        let keys = keys.into_iter();
        let fanout = 1 << (SHARD_BITS - COARSE_BITS);
        let share = keys.size_hint().0 / SHARDS * 9 / 8;
        let builder = |records: usize| ShardBuilder {
            records: Vec::with_capacity(records),
            nets4: Vec::with_capacity(records * 4),
            ..ShardBuilder::default()
        };
        let mut buckets: Vec<ShardBuilder> = (0..1 << COARSE_BITS)
            .map(|_| builder(share * fanout))
            .collect();
        for (key, api) in keys {
            buckets[(id_hash(&key.id) >> (64 - COARSE_BITS)) as usize].push_config(&key, api);
        }
        let mut shards: Vec<Arc<Shard>> = Vec::with_capacity(SHARDS);
        for bucket in buckets {
            let mut fine: Vec<ShardBuilder> = (0..fanout).map(|_| builder(share)).collect();
            for record in &bucket.records {
                fine[shard_of(&record.id) % fanout].copy(bucket.parts(), record);
            }
            drop(bucket);
            shards.extend(fine.into_iter().map(|b| Arc::new(b.finish())));
        }
        let shards = shards.into_boxed_slice();
        let len = shards.iter().map(|s| s.len()).sum();
        KeyTable { shards, len }
    }

    /// Applies puts (`Some`) and removals (`None`) of keys, the last change
    /// to an id winning, rebuilding only the shards they fall in.
    pub(crate) fn apply(&mut self, changes: Vec<KeyChange>) {
        let mut by_shard: Vec<(usize, KeyChange)> = changes
            .into_iter()
            .map(|change| (shard_of(&change.0), change))
            .collect();
        // Stable: the changes to one id stay in order.
        by_shard.sort_by_key(|(shard, _)| *shard);
        let mut changes = by_shard.into_iter().peekable();
        while let Some((shard, change)) = changes.next() {
            let mut batch = vec![change];
            while let Some((_, change)) = changes.next_if(|(s, _)| *s == shard) {
                batch.push(change);
            }
            let old = &self.shards[shard];
            let mut builder = ShardBuilder::default();
            for record in old.records.iter() {
                if batch.iter().all(|(id, _)| *id != record.id) {
                    builder.copy(old.parts(), record);
                }
            }
            for (n, (id, put)) in batch.iter().enumerate() {
                let last = batch[n + 1..].iter().all(|(later, _)| later != id);
                if let (true, Some((key, api))) = (last, put) {
                    builder.push_config(key, *api);
                }
            }
            let rebuilt = builder.finish();
            self.len = self.len - old.len() + rebuilt.len();
            self.shards[shard] = Arc::new(rebuilt);
        }
    }

    /// The key `id`, its API named from `slugs`.
    pub(crate) fn get<'a>(&'a self, id: &KeyId, slugs: &'a [Arc<str>]) -> Option<KeyRef<'a>> {
        let shard = &*self.shards[shard_of(id)];
        shard
            .get(id)
            .map(|record| KeyRef::new(shard, record, slugs))
    }

    /// True when both tables hold the same keys, each table's API numbers
    /// named from its own slug table.
    pub(crate) fn same_keys(
        &self,
        slugs: &[Arc<str>],
        other: &KeyTable,
        other_slugs: &[Arc<str>],
    ) -> bool {
        self.len == other.len
            && self.shards.iter().zip(other.shards.iter()).all(|(a, b)| {
                a.records.len() == b.records.len()
                    && a.records
                        .iter()
                        .zip(b.records.iter())
                        .all(|(x, y)| KeyRef::new(a, x, slugs) == KeyRef::new(b, y, other_slugs))
            })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// One key of the table, ready for decisions.
#[derive(Clone, Copy, Debug)]
pub struct KeyRef<'a> {
    /// The API's slug.
    api: &'a str,
    record: &'a Record,
    nets4: &'a [(u32, u32)],
    nets6: &'a [(u128, u128)],
    side: Option<&'a Side>,
}

impl PartialEq for KeyRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        let strip = |r: &Record| (r.id, r.secret_hash, r.expires_at, r.report_only);
        self.api == other.api
            && strip(self.record) == strip(other.record)
            && self.nets4 == other.nets4
            && self.nets6 == other.nets6
            && self.side == other.side
    }
}

impl<'a> KeyRef<'a> {
    fn new(shard: &'a Shard, record: &'a Record, slugs: &'a [Arc<str>]) -> Self {
        let v4 = record.v4 as usize;
        let v6 = record.v6 as usize;
        KeyRef {
            api: slugs.get(record.api as usize).map_or("", |s| s),
            record,
            nets4: &shard.nets4[v4..v4 + usize::from(record.n4)],
            nets6: &shard.nets6[v6..v6 + usize::from(record.n6)],
            side: shard.sides.get(record.side as usize),
        }
    }

    /// The slug of the key's API.
    pub(crate) fn api(&self) -> &'a str {
        self.api
    }

    /// When the key stops working.
    pub(crate) fn expires_at(&self) -> UnixMillis {
        self.record.expires_at
    }

    /// True when the key carries `scope`.
    pub(crate) fn has_scope(&self, scope: &Scope) -> bool {
        self.side
            .is_some_and(|s| s.scopes.iter().any(|x| x == scope))
    }

    /// True when `presented` is the key's secret, or a rotated-out one
    /// still within its grace period at `now`.
    pub(crate) fn accepts(&self, presented: &SecretHash, now: UnixMillis) -> bool {
        self.record.secret_hash.matches(presented)
            || self.side.is_some_and(|s| {
                s.previous_secrets
                    .iter()
                    .any(|(hash, until)| *until > now && hash.matches(presented))
            })
    }

    /// True when the key's list only reports and never blocks.
    pub(crate) fn report_only(&self) -> bool {
        self.record.report_only
    }

    /// Looks `ip` up in the key's list at instant `now`: the first entry
    /// in list order that covers it, as [`CompiledList::lookup`] does.
    pub(crate) fn lookup(&self, ip: IpAddr, now: UnixMillis) -> ListMatch<'a> {
        if let Some(list) = self.side.and_then(|s| s.list.as_ref()) {
            return list.lookup(ip, now);
        }
        if self.nets4.is_empty() && self.nets6.is_empty() {
            return ListMatch::Empty;
        }
        let cidr = match normalize_ip(ip) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.nets4
                    .iter()
                    .find(|(net, mask)| a & mask == *net)
                    .map(|&(net, mask)| {
                        IpNet::V4(Ipv4Net::new_assert(net.into(), mask.count_ones() as u8))
                    })
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.nets6
                    .iter()
                    .find(|(net, mask)| a & mask == *net)
                    .map(|&(net, mask)| {
                        IpNet::V6(Ipv6Net::new_assert(net.into(), mask.count_ones() as u8))
                    })
            }
        };
        match cidr {
            Some(cidr) => ListMatch::Matched(MatchedEntry { cidr, label: None }),
            None => ListMatch::NotMatched,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{
        allowlist::Allowlist,
        entry::{Entry, Label},
        key::{NewKey, PreviousSecret},
    };

    fn entry(cidr: &str, label: &str, expires_at: Option<SystemTime>) -> Entry {
        Entry::new(
            cidr.parse().unwrap(),
            label.parse::<Label>().unwrap(),
            expires_at,
        )
    }

    fn key(cidrs: &[&str]) -> KeyConfig {
        let new = NewKey::generate();
        KeyConfig {
            id: new.id,
            api: "orders".parse().unwrap(),
            secret_hash: SecretHash::of(&new.secret),
            scopes: vec![],
            expires_at: None,
            allowlist: Allowlist::new(cidrs.iter().map(|c| entry(c, "", None)).collect(), false),
            previous_secrets: vec![],
        }
    }

    fn hit(key: KeyRef<'_>, ip: &str) -> String {
        match key.lookup(ip.parse().unwrap(), 0) {
            ListMatch::Matched(m) => format!("{} {}", m.label(), m.cidr),
            ListMatch::NotMatched => "-".into(),
            ListMatch::Empty => "empty".into(),
        }
    }

    const SLUGS: &[Arc<str>] = &[];

    #[test]
    fn inline_lists_match_the_first_entry_in_list_order() {
        let k = key(&["203.0.113.0/24", "203.0.113.5", "2001:db8::/48"]);
        let table = KeyTable::build([(k.clone(), 0)]);
        let got = table.get(&k.id, SLUGS).unwrap();
        assert!(got.side.is_none());
        assert_eq!(hit(got, "203.0.113.5"), " 203.0.113.0/24");
        assert_eq!(hit(got, "::ffff:203.0.113.5"), " 203.0.113.0/24");
        assert_eq!(hit(got, "2001:db8::1"), " 2001:db8::/48");
        assert_eq!(hit(got, "198.51.100.1"), "-");
        let empty = key(&[]);
        let table = KeyTable::build([(empty.clone(), 0)]);
        assert_eq!(
            hit(table.get(&empty.id, SLUGS).unwrap(), "198.51.100.1"),
            "empty"
        );
    }

    #[test]
    fn rare_parts_go_to_a_side_record() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut k = key(&[]);
        k.allowlist = Allowlist::new(vec![entry("203.0.113.5", "temp", Some(at))], true);
        k.scopes = vec!["orders:read".parse().unwrap()];
        let old = NewKey::generate();
        k.previous_secrets = vec![PreviousSecret {
            hash: SecretHash::of(&old.secret),
            valid_until: at,
        }];
        let table = KeyTable::build([(k.clone(), 0)]);
        let got = table.get(&k.id, SLUGS).unwrap();
        let at_ms = time::to_millis(at);
        assert!(got.report_only());
        assert!(got.has_scope(&"orders:read".parse().unwrap()));
        assert!(!got.has_scope(&"orders:write".parse().unwrap()));
        assert!(got.accepts(&SecretHash::of(&old.secret), at_ms - 1));
        assert!(!got.accepts(&SecretHash::of(&old.secret), at_ms));
        match got.lookup("203.0.113.5".parse().unwrap(), at_ms - 1) {
            ListMatch::Matched(m) => {
                assert_eq!(m.cidr, "203.0.113.5/32".parse::<IpNet>().unwrap());
                assert_eq!(m.label(), "temp");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            got.lookup("203.0.113.5".parse().unwrap(), at_ms),
            ListMatch::NotMatched
        );
    }

    #[test]
    fn changes_rebuild_only_their_shards_and_match_a_fresh_build() {
        let keys: Vec<KeyConfig> = (0..5000)
            .map(|i| key(&[&format!("198.51.{}.0/24", i % 256)]))
            .collect();
        let mut table = KeyTable::build(keys.iter().cloned().map(|k| (k, 0)));
        assert_eq!(table.len(), 5000);
        let before = table.clone();

        let mut changed = keys[7].clone();
        changed.allowlist = Allowlist::new(vec![entry("203.0.113.0/24", "", None)], false);
        let added = key(&["192.0.2.1"]);
        table.apply(vec![
            (keys[3].id, None),
            (changed.id, Some((keys[7].clone(), 0))),
            (changed.id, Some((changed.clone(), 0))),
            (added.id, Some((added.clone(), 1))),
            (added.id, None),
            (added.id, Some((added.clone(), 1))),
        ]);
        assert_eq!(table.len(), 5000);
        assert!(table.get(&keys[3].id, SLUGS).is_none());
        assert_eq!(
            hit(table.get(&changed.id, SLUGS).unwrap(), "203.0.113.9"),
            " 203.0.113.0/24"
        );
        assert_eq!(table.get(&added.id, SLUGS).unwrap().record.api, 1);

        let touched = [
            shard_of(&keys[3].id),
            shard_of(&changed.id),
            shard_of(&added.id),
        ];
        for (n, (a, b)) in before.shards.iter().zip(table.shards.iter()).enumerate() {
            assert_eq!(Arc::ptr_eq(a, b), !touched.contains(&n), "shard {n}");
        }

        let mut expected: Vec<(KeyConfig, u32)> = keys
            .iter()
            .filter(|k| k.id != keys[3].id && k.id != changed.id)
            .cloned()
            .map(|k| (k, 0))
            .collect();
        expected.push((changed.clone(), 0));
        expected.push((added.clone(), 1));
        let fresh = KeyTable::build(expected);
        let slugs: Vec<Arc<str>> = vec!["a".into(), "b".into()];
        assert!(table.same_keys(&slugs, &fresh, &slugs));
        assert!(!table.same_keys(&slugs, &before, &slugs));
    }

    #[test]
    fn the_later_of_two_keys_with_one_id_wins() {
        let first = key(&["192.0.2.1"]);
        let mut second = first.clone();
        second.allowlist = Allowlist::default();
        let table = KeyTable::build([(first.clone(), 0), (second, 0)]);
        assert_eq!(table.len(), 1);
        assert_eq!(
            hit(table.get(&first.id, SLUGS).unwrap(), "192.0.2.1"),
            "empty"
        );
    }
}
