//! Property: a compiled allowlist answers exactly as a naive scan over its
//! entries would, for random prefixes and addresses (IPv4, IPv6 and
//! IPv4-mapped IPv6), with entries expiring around the lookup instant, in
//! both the small (flat) and large (ranges) layouts, down to which entry
//! wins where entries overlap: the first live one in list order in a small
//! list, the longest live prefix in a large one.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipgate_shared::{
    Allowlist, Cidr, Entry, Label,
    index::{CompiledList, ListMatch, SMALL_LIST},
    normalize_ip, time,
};
use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;

/// A handful of /16 bases (IPv4) and /40 bases (IPv6), so random prefixes
/// nest and overlap often and random addresses hit them.
const V4_BASES: [u32; 3] = [0xCB00_0000, 0xC633_0000, 0x2D00_0000];
const V6_BASES: [u128; 2] = [0x2001_0db8_0000 << 80, 0x2a00_1450_4000 << 80];

fn v4_addr() -> impl Strategy<Value = Ipv4Addr> {
    (0..V4_BASES.len(), any::<u16>())
        .prop_map(|(b, low)| Ipv4Addr::from(V4_BASES[b] | u32::from(low)))
}

fn v6_addr() -> impl Strategy<Value = Ipv6Addr> {
    (0..V6_BASES.len(), any::<u64>())
        .prop_map(|(b, low)| Ipv6Addr::from(V6_BASES[b] | u128::from(low >> 24)))
}

fn cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        (v4_addr(), 9u8..=32).prop_map(|(a, len)| Ipv4Net::new_assert(a, len).trunc().to_string()),
        (v6_addr(), 33u8..=128)
            .prop_map(|(a, len)| Ipv6Net::new_assert(a, len).trunc().to_string()),
    ]
    .prop_map(|s| s.parse::<Cidr>().expect("generated prefixes are valid"))
}

fn probe() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        v4_addr().prop_map(IpAddr::V4),
        v4_addr().prop_map(|a| IpAddr::V6(a.to_ipv6_mapped())),
        v6_addr().prop_map(IpAddr::V6),
    ]
}

const NOW: i64 = 1_800_000_000_000;

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    // Up to 120 entries: both sides of the flat/grouped threshold.
    prop::collection::vec((cidr(), prop::option::of(-3i64..3), 0u8..3), 0..120).prop_map(|raw| {
        let mut seen = HashSet::new();
        raw.into_iter()
            .filter(|(c, _, _)| seen.insert(*c))
            .enumerate()
            .map(|(i, (c, expiry, labelled))| {
                let label: Label = if labelled == 0 {
                    String::new()
                } else {
                    format!("entry {i}")
                }
                .parse()
                .expect("short label");
                Entry::new(c, label, expiry.map(|d| time::from_millis(NOW + d)))
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn compiled_lookup_agrees_with_a_naive_scan(
        entries in entries(),
        probes in prop::collection::vec(probe(), 1..40),
    ) {
        let compiled = CompiledList::new(&Allowlist::new(entries.clone(), false));
        for ip in probes {
            let now_ok = |e: &&Entry| e.expires_at().is_none_or(|t| time::to_millis(t) > NOW);
            let naive: Vec<(ipnet::IpNet, &str)> = entries
                .iter()
                .filter(|e| e.cidr().net().contains(&normalize_ip(ip)))
                .filter(now_ok)
                .map(|e| (e.cidr().net(), e.label()))
                .collect();
            match compiled.lookup(ip, NOW) {
                ListMatch::Empty => prop_assert!(entries.is_empty()),
                ListMatch::NotMatched => prop_assert!(naive.is_empty(), "{ip} should match one of {naive:?}"),
                ListMatch::Matched(m) => {
                    // Short lists: the first live entry in list order;
                    // long ones: the longest live prefix.
                    let expected = if entries.len() > SMALL_LIST {
                        naive.iter().max_by_key(|(net, _)| net.prefix_len())
                    } else {
                        naive.first()
                    };
                    prop_assert_eq!(Some(&(m.cidr, m.label())), expected, "{} matched {:?}, naive scan says {:?}", ip, m, naive);
                }
            }
        }
    }

    #[test]
    fn canonical_text_parses_back_to_itself(c in cidr()) {
        prop_assert_eq!(c.to_string().parse::<Cidr>(), Ok(c));
    }
}
