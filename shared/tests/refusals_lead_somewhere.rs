//! Property: no refused entry sends the operator into another refusal. A
//! suggested network is accepted under the same rules, and a range refused
//! as too broad has an accepted range of the minimum prefix inside it —
//! with private ranges refused or allowed, for addresses in and around the
//! internal ranges.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipgate_shared::{
    CidrError, EntryError, RawEntry, allowlist::ListRules, entry::MIN_IPV6_PREFIX,
};
use ipnet::IpNet;
use proptest::prelude::*;

/// Networks the addresses are drawn from: the internal ranges, a neighbour
/// of each, and the whole space.
const V4_AROUND: &[(u32, u8)] = &[
    (0x0A00_0000, 8),  // 10.0.0.0/8
    (0x0B00_0000, 8),  // 11.0.0.0/8
    (0xAC10_0000, 12), // 172.16.0.0/12
    (0xAC00_0000, 8),  // 172.0.0.0/8
    (0xC0A8_0000, 16), // 192.168.0.0/16
    (0x6440_0000, 10), // 100.64.0.0/10
    (0xA9FE_0000, 16), // 169.254.0.0/16
    (0x0000_0000, 7),  // 0.0.0.0/7
    (0xE000_0000, 3),  // 224.0.0.0/3
    (0x0000_0000, 0),  // everything
];
const V6_AROUND: &[(u128, u8)] = &[
    (0xfc00 << 112, 6), // fc00::/6 (unique-local and its neighbour)
    (0xfe00 << 112, 7), // fe00::/7 (link-local, site-local, multicast)
    (0x2001_0db8 << 96, 32),
    (0, 120), // around ::
];

fn v4_input() -> impl Strategy<Value = String> {
    (prop::sample::select(V4_AROUND), any::<u32>(), 0u8..=32).prop_map(|((base, len), low, p)| {
        let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        format!("{}/{p}", Ipv4Addr::from((base & !host) | (low & host)))
    })
}

fn v6_input() -> impl Strategy<Value = String> {
    // Nine bits below the minimum prefix at most, so a too-broad range has
    // at most 2^9 minimum-prefix ranges inside to look through.
    let broadest = MIN_IPV6_PREFIX - 9;
    (
        prop::sample::select(V6_AROUND),
        any::<u128>(),
        broadest..=128,
    )
        .prop_map(|((base, len), low, p)| {
            let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            format!("{}/{p}", Ipv6Addr::from((base & !host) | (low & host)))
        })
}

fn accepted(rules: ListRules, cidr: &str) -> bool {
    rules
        .entry(&raw(cidr), std::time::SystemTime::now())
        .is_ok()
}

fn raw(cidr: &str) -> RawEntry {
    RawEntry {
        cidr: cidr.to_owned(),
        ..RawEntry::default()
    }
}

fn check(input: &str, allow_private_ranges: bool) -> Result<(), TestCaseError> {
    let rules = ListRules {
        allow_private_ranges,
        ..ListRules::for_apis()
    };
    let now = std::time::SystemTime::now();
    match rules.entry(&raw(input), now) {
        Ok(_) => {}
        Err(EntryError::Cidr(CidrError::HostBitsSet { suggested, .. })) => {
            prop_assert!(
                accepted(rules, &suggested),
                "{input} suggests {suggested}, which is refused (allow {allow_private_ranges})"
            );
        }
        Err(EntryError::Cidr(CidrError::TooBroad { min, .. })) => {
            let net: IpNet = input
                .parse::<IpNet>()
                .map(|n| n.trunc())
                .map_err(|e| TestCaseError::fail(format!("{input}: {e}")))?;
            let narrower = net
                .subnets(min)
                .map_err(|e| TestCaseError::fail(format!("{input}: {e}")))?;
            let mut narrower = narrower.map(|n| n.to_string());
            prop_assert!(
                narrower.any(|n| accepted(rules, &n)),
                "{input} is too broad, and every /{min} inside it is refused (allow {allow_private_ranges})"
            );
        }
        Err(EntryError::InternalRange { .. }) => {
            prop_assert!(
                !allow_private_ranges,
                "{input}: refused as internal while allowed"
            );
        }
        Err(other) => prop_assert!(false, "{input}: unexpected {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn ipv4_refusals_lead_somewhere(input in v4_input(), allow in any::<bool>()) {
        check(&input, allow)?;
    }

    #[test]
    fn ipv6_refusals_lead_somewhere(input in v6_input(), allow in any::<bool>()) {
        check(&input, allow)?;
    }
}
