//! A compiled allowlist: the question "is this address on the list, and by
//! which entry?" answered without allocation.
//!
//! Two layouts, chosen by size (see `benches/decision.rs` for the figures):
//! - up to [`SMALL_LIST`] entries (every key list), a flat array of
//!   (network, mask) scanned in order — a few bytes per entry, which matters
//!   at a million keys; the first unexpired entry in list order matches;
//! - larger lists (API lists run to 1,000 entries) are cut into disjoint
//!   address ranges, each knowing the longest prefix covering it, found by a
//!   branch-free bisection of the range starts; the longest unexpired prefix
//!   matches. One bisection whatever the prefix lengths, hit or miss.
//!
//! Expired entries are skipped at lookup time, so an entry stops matching at
//! its instant whether or not the control plane has removed it yet.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

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
    /// Its label; `None` when it has none. Shared with the index, so a
    /// usage event can keep it without copying.
    pub label: Option<&'a Arc<str>>,
}

impl MatchedEntry<'_> {
    /// Its label as text ("" when none).
    pub fn label(&self) -> &str {
        self.label.map_or("", |l| l)
    }
}

/// An allowlist compiled for lookups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledList {
    v4: Family<u32>,
    v6: Family<u128>,
    /// Label and expiry per entry, indexed by the entry number stored in the
    /// layouts; empty when no entry has either, which is the common case for
    /// key lists and keeps them small.
    meta: Box<[Meta]>,
    report_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Meta {
    label: Option<Arc<str>>,
    expires_at: UnixMillis,
}

/// The entries of one address family.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Family<T> {
    /// (network, mask, entry number), in list order.
    Flat(Box<[(T, T, u32)]>),
    /// The address space cut into disjoint ranges, each knowing the longest
    /// prefix that covers it.
    Ranges(Ranges<T>),
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family::Flat(Box::default())
    }
}

/// No entry.
const NONE: u32 = u32::MAX;

/// Large lists: prefixes nest or are disjoint, so their bounds cut the
/// address space into ranges where the covering entries are one chain, from
/// the longest prefix up through the ones enclosing it. A lookup bisects the
/// range starts (a fixed number of steps, no data-dependent branches) and
/// reads the longest prefix of its range; an expired one hands over to its
/// enclosing prefix, which is what searching the lengths longest first gave.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ranges<T> {
    /// Range starts, ascending; the first is 0, so every address has a range.
    starts: Box<[T]>,
    /// Per range, the node of the longest prefix covering it, or [`NONE`].
    deepest: Box<[u32]>,
    nodes: Box<[Node<T>]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node<T> {
    net: T,
    mask: T,
    /// The same network, made once so a hit only copies it.
    cidr: IpNet,
    /// The entry number.
    idx: u32,
    /// The node of the next shorter prefix enclosing this one, or [`NONE`].
    parent: u32,
}

/// Integer address types the layouts work on.
trait Bits:
    Copy
    + Ord
    + std::ops::BitAnd<Output = Self>
    + std::ops::BitOr<Output = Self>
    + std::ops::Not<Output = Self>
{
    const ZERO: Self;
    /// The network `net`/`mask` as a CIDR.
    fn cidr(net: Self, mask: Self) -> IpNet;
    fn checked_next(self) -> Option<Self>;
}

impl Bits for u32 {
    const ZERO: u32 = 0;

    fn cidr(net: u32, mask: u32) -> IpNet {
        // Masks are built from valid prefixes, so the length is in range.
        IpNet::V4(Ipv4Net::new_assert(
            Ipv4Addr::from(net),
            mask.count_ones() as u8,
        ))
    }

    fn checked_next(self) -> Option<u32> {
        self.checked_add(1)
    }
}

impl Bits for u128 {
    const ZERO: u128 = 0;

    fn cidr(net: u128, mask: u128) -> IpNet {
        IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::from(net),
            mask.count_ones() as u8,
        ))
    }

    fn checked_next(self) -> Option<u128> {
        self.checked_add(1)
    }
}

impl<T: Bits> Ranges<T> {
    fn build(mut nets: Vec<(T, T, u32)>) -> Self {
        // By network, enclosing (shorter) prefixes first; of two equal
        // prefixes the later entry encloses the earlier, so the earlier wins.
        nets.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(b.2.cmp(&a.2)));
        let last = |n: &Node<T>| n.net | !n.mask;
        let mut nodes: Vec<Node<T>> = Vec::with_capacity(nets.len());
        let mut bounds: Vec<T> = Vec::with_capacity(2 * nets.len() + 1);
        bounds.push(T::ZERO);
        let mut stack: Vec<u32> = Vec::new();
        for (net, mask, idx) in nets {
            while stack
                .last()
                .is_some_and(|&top| last(&nodes[top as usize]) < net)
            {
                stack.pop();
            }
            let node = Node {
                net,
                mask,
                cidr: T::cidr(net, mask),
                idx,
                parent: stack.last().copied().unwrap_or(NONE),
            };
            bounds.push(net);
            bounds.extend(last(&node).checked_next());
            stack.push(nodes.len() as u32);
            nodes.push(node);
        }
        bounds.sort_unstable();
        bounds.dedup();
        // Sweep the starts; the stack holds the prefixes covering the
        // current one, longest on top.
        stack.clear();
        let mut next = 0;
        let deepest = bounds
            .iter()
            .map(|&start| {
                while stack
                    .last()
                    .is_some_and(|&top| last(&nodes[top as usize]) < start)
                {
                    stack.pop();
                }
                while next < nodes.len() && nodes[next].net == start {
                    stack.push(next as u32);
                    next += 1;
                }
                stack.last().copied().unwrap_or(NONE)
            })
            .collect();
        Ranges {
            starts: bounds.into_boxed_slice(),
            deepest,
            nodes: nodes.into_boxed_slice(),
        }
    }

    /// The position of the range holding `addr`.
    #[inline]
    fn range_of(&self, addr: T) -> usize {
        let starts = &*self.starts;
        let mut base = 0;
        let mut len = starts.len();
        while len > 1 {
            let half = len / 2;
            // Compiles to a conditional move: the loop runs the same steps
            // for every address, so nothing is mispredicted.
            base = if starts[base + half] <= addr {
                base + half
            } else {
                base
            };
            len -= half;
        }
        base
    }

    fn find(&self, addr: T, live: impl Fn(u32) -> bool) -> Option<(u32, IpNet)> {
        let mut node = *self.deepest.get(self.range_of(addr))?;
        while let Some(n) = self.nodes.get(node as usize) {
            if live(n.idx) {
                return Some((n.idx, n.cidr));
            }
            node = n.parent;
        }
        None
    }
}

impl<T: Bits> Family<T> {
    fn build(nets: Vec<(T, T, u32)>, large: bool) -> Self {
        if large {
            Family::Ranges(Ranges::build(nets))
        } else {
            Family::Flat(nets.into_boxed_slice())
        }
    }

    fn len(&self) -> usize {
        match self {
            Family::Flat(nets) => nets.len(),
            Family::Ranges(ranges) => ranges.nodes.len(),
        }
    }

    /// The entry covering `addr` that `live` accepts: its number and network.
    fn find(&self, addr: T, live: impl Fn(u32) -> bool) -> Option<(u32, IpNet)> {
        match self {
            Family::Flat(nets) => nets
                .iter()
                .find(|(net, mask, idx)| addr & *mask == *net && live(*idx))
                .map(|(net, mask, idx)| (*idx, T::cidr(*net, *mask))),
            Family::Ranges(ranges) => ranges.find(addr, live),
        }
    }
}

impl CompiledList {
    /// Compiles a validated list.
    pub fn new(list: &Allowlist) -> Self {
        let entries = list.entries();
        let large = entries.len() > SMALL_LIST;
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
                    label: (!e.label().is_empty()).then(|| e.label().into()),
                    expires_at: e.expires_at().map_or(NEVER, time::to_millis),
                })
                .collect()
        } else {
            Box::default()
        };
        CompiledList {
            v4: Family::build(v4, large),
            v6: Family::build(v6, large),
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
                label: self.meta(idx).and_then(|m| m.label.as_ref()),
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
            ListMatch::Matched(m) => format!("{} {}", m.label(), m.cidr),
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
        assert!(matches!(list.v4, Family::Ranges(_)));
        let at_ms = time::to_millis(at);
        assert_eq!(hit(&list, "203.0.113.5", at_ms - 1), "host 203.0.113.5/32");
        assert_eq!(hit(&list, "203.0.113.5", at_ms), "net 203.0.113.0/24");
        assert_eq!(hit(&list, "198.51.42.9", 0), " 198.51.42.0/24");
        assert_eq!(hit(&list, "198.51.142.9", 0), "-");
        assert_eq!(hit(&list, "2001:db8::9", 0), "v6 2001:db8::/64");
    }
}
