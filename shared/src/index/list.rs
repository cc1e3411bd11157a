//! A compiled allowlist: the question "is this address on the list, and by
//! which entry?" answered without allocation.
//!
//! Two layouts, chosen by size (see `benches/decision.rs` for the figures):
//! - up to [`SMALL_LIST`] entries (every key list), a flat array of
//!   (network, mask) scanned in order — a few bytes per entry, which matters
//!   at a million keys;
//! - larger lists (API lists run to 1,000 entries) are grouped by prefix
//!   length, each group a sorted array searched by bisection, longest prefix
//!   first. The cost grows with the number of distinct prefix lengths, not
//!   with the number of entries.
//!
//! Expired entries are skipped at lookup time, so an entry stops matching at
//! its instant whether or not the control plane has removed it yet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::{
    allowlist::Allowlist,
    entry::normalize_ip,
    time::{self, NEVER, UnixMillis},
};

/// Lists up to this many entries use the flat layout.
pub const SMALL_LIST: usize = 32;

/// What an allowlist says about one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListMatch<'a> {
    /// The list has no entries: every address passes.
    Empty,
    /// An unexpired entry covers the address.
    Matched(MatchedEntry<'a>),
    /// No unexpired entry covers the address.
    NotMatched,
}

/// The entry that let an address through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchedEntry<'a> {
    pub cidr: IpNet,
    /// Its label ("" when none).
    pub label: &'a str,
}

/// An allowlist compiled for lookups.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CompiledList {
    v4: Family<u32>,
    v6: Family<u128>,
    /// Label and expiry per entry, indexed by the entry number stored in the
    /// layouts; empty when no entry has either, which is the common case for
    /// key lists and keeps them small.
    meta: Box<[Meta]>,
    report_only: bool,
}

#[derive(Debug, PartialEq, Eq)]
struct Meta {
    label: Box<str>,
    expires_at: UnixMillis,
}

/// The entries of one address family.
#[derive(Debug, PartialEq, Eq)]
enum Family<T> {
    /// (network, mask, entry number), in list order.
    Flat(Box<[(T, T, u32)]>),
    /// Groups by prefix length, longest first.
    Grouped(Box<[Group<T>]>),
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family::Flat(Box::default())
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Group<T> {
    mask: T,
    /// (network, entry number), sorted by network.
    nets: Box<[(T, u32)]>,
}

/// Integer address types the layouts work on.
trait Bits: Copy + Ord + std::ops::BitAnd<Output = Self> {
    /// The network `net`/`mask` as a CIDR.
    fn cidr(net: Self, mask: Self) -> IpNet;
}

impl Bits for u32 {
    fn cidr(net: u32, mask: u32) -> IpNet {
        // Masks are built from valid prefixes, so the length is in range.
        IpNet::V4(Ipv4Net::new_assert(
            Ipv4Addr::from(net),
            mask.count_ones() as u8,
        ))
    }
}

impl Bits for u128 {
    fn cidr(net: u128, mask: u128) -> IpNet {
        IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::from(net),
            mask.count_ones() as u8,
        ))
    }
}

impl<T: Bits> Family<T> {
    fn build(mut nets: Vec<(T, T, u32)>, grouped: bool) -> Self {
        if !grouped {
            return Family::Flat(nets.into_boxed_slice());
        }
        // Longest prefix (largest mask) first, then by network for bisection.
        nets.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut groups: Vec<(T, Vec<(T, u32)>)> = Vec::new();
        for (net, mask, idx) in nets {
            match groups.last_mut() {
                Some((m, members)) if *m == mask => members.push((net, idx)),
                _ => groups.push((mask, vec![(net, idx)])),
            }
        }
        let groups: Vec<Group<T>> = groups
            .into_iter()
            .map(|(mask, nets)| Group {
                mask,
                nets: nets.into_boxed_slice(),
            })
            .collect();
        Family::Grouped(groups.into_boxed_slice())
    }

    fn len(&self) -> usize {
        match self {
            Family::Flat(nets) => nets.len(),
            Family::Grouped(groups) => groups.iter().map(|g| g.nets.len()).sum(),
        }
    }

    /// The first entry covering `addr` that `live` accepts: its number and network.
    fn find(&self, addr: T, live: impl Fn(u32) -> bool) -> Option<(u32, IpNet)> {
        match self {
            Family::Flat(nets) => nets
                .iter()
                .find(|(net, mask, idx)| addr & *mask == *net && live(*idx))
                .map(|(net, mask, idx)| (*idx, T::cidr(*net, *mask))),
            Family::Grouped(groups) => groups.iter().find_map(|g| {
                let masked = addr & g.mask;
                g.nets
                    .binary_search_by(|(net, _)| net.cmp(&masked))
                    .ok()
                    .map(|pos| g.nets[pos].1)
                    .filter(|idx| live(*idx))
                    .map(|idx| (idx, T::cidr(masked, g.mask)))
            }),
        }
    }
}

impl CompiledList {
    /// Compiles a validated list.
    pub fn new(list: &Allowlist) -> Self {
        let entries = list.entries();
        let grouped = entries.len() > SMALL_LIST;
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (idx, entry) in (0u32..).zip(entries) {
            match entry.cidr().net() {
                ipnet::IpNet::V4(n) => {
                    v4.push((u32::from(n.network()), u32::from(n.netmask()), idx))
                }
                ipnet::IpNet::V6(n) => {
                    v6.push((u128::from(n.network()), u128::from(n.netmask()), idx))
                }
            }
        }
        let needs_meta = entries
            .iter()
            .any(|e| !e.label().is_empty() || e.expires_at().is_some());
        let meta = if needs_meta {
            entries
                .iter()
                .map(|e| Meta {
                    label: e.label().into(),
                    expires_at: e.expires_at().map_or(NEVER, time::to_millis),
                })
                .collect()
        } else {
            Box::default()
        };
        CompiledList {
            v4: Family::build(v4, grouped),
            v6: Family::build(v6, grouped),
            meta,
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

    /// Looks `ip` up at instant `now`.
    pub fn lookup(&self, ip: IpAddr, now: UnixMillis) -> ListMatch<'_> {
        if self.is_empty() {
            return ListMatch::Empty;
        }
        let live = |idx: u32| self.meta(idx).is_none_or(|m| m.expires_at > now);
        let hit = match normalize_ip(ip) {
            IpAddr::V4(a) => self.v4.find(u32::from(a), live),
            IpAddr::V6(a) => self.v6.find(u128::from(a), live),
        };
        match hit {
            Some((idx, cidr)) => ListMatch::Matched(MatchedEntry {
                cidr,
                label: self.meta(idx).map_or("", |m| &m.label),
            }),
            None => ListMatch::NotMatched,
        }
    }

    fn meta(&self, idx: u32) -> Option<&Meta> {
        self.meta.get(idx as usize)
    }
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

    /// The matched entry as text: "label cidr", or "-" when none matched.
    fn hit(list: &CompiledList, ip: &str, now: UnixMillis) -> String {
        match list.lookup(ip.parse().unwrap(), now) {
            ListMatch::Matched(m) => format!("{} {}", m.label, m.cidr),
            ListMatch::NotMatched => "-".into(),
            ListMatch::Empty => "empty".into(),
        }
    }

    #[test]
    fn an_empty_list_says_empty() {
        let list = CompiledList::new(&Allowlist::default());
        assert_eq!(hit(&list, "203.0.113.5", 0), "empty");
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
        assert_eq!(hit(&list, "203.0.113.77", 0), "office 203.0.113.0/24");
        assert_eq!(
            hit(&list, "::ffff:203.0.113.77", 0),
            "office 203.0.113.0/24"
        );
        assert_eq!(hit(&list, "203.0.114.1", 0), "-");
        assert_eq!(hit(&list, "2001:db8:0:1::5", 0), "v6 2001:db8::/48");
        assert_eq!(hit(&list, "2001:db8:1::5", 0), "-");
        // IPv4-compatible is not IPv4.
        assert_eq!(hit(&list, "::203.0.113.77", 0), "-");
    }

    #[test]
    fn unlabelled_lists_carry_no_meta() {
        let list = CompiledList::new(&Allowlist::new(vec![entry("203.0.113.5", "", None)], false));
        assert!(list.meta.is_empty());
        assert_eq!(hit(&list, "203.0.113.5", 0), " 203.0.113.5/32");
    }

    #[test]
    fn expired_entries_stop_matching_at_their_instant() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let list = CompiledList::new(&Allowlist::new(
            vec![entry("203.0.113.5", "temp", Some(at))],
            false,
        ));
        let at_ms = time::to_millis(at);
        assert_eq!(hit(&list, "203.0.113.5", at_ms - 1), "temp 203.0.113.5/32");
        assert_eq!(hit(&list, "203.0.113.5", at_ms), "-");
    }

    #[test]
    fn large_lists_fall_back_to_a_shorter_live_prefix() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut entries: Vec<Entry> = (0..100)
            .map(|i| entry(&format!("198.51.{i}.0/24"), "", None))
            .collect();
        entries.push(entry("203.0.113.5", "host", Some(at)));
        entries.push(entry("203.0.113.0/24", "net", None));
        entries.push(entry("2001:db8::/64", "v6", None));
        let list = CompiledList::new(&Allowlist::new(entries, false));
        assert!(matches!(list.v4, Family::Grouped(_)));
        let at_ms = time::to_millis(at);
        assert_eq!(hit(&list, "203.0.113.5", at_ms - 1), "host 203.0.113.5/32");
        assert_eq!(hit(&list, "203.0.113.5", at_ms), "net 203.0.113.0/24");
        assert_eq!(hit(&list, "198.51.42.9", 0), " 198.51.42.0/24");
        assert_eq!(hit(&list, "198.51.142.9", 0), "-");
        assert_eq!(hit(&list, "2001:db8::9", 0), "v6 2001:db8::/64");
    }
}
