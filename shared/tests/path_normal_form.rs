//! Properties of `path::normalize` over random paths (bounded): it never
//! panics; what it gives back is in normal form (no `//`, no dot segments,
//! nothing decodable left encoded, uppercase hex) and comes back unchanged
//! when normalised again; every spelling of a path under `/admin` is either
//! refused or still covered by a rule on `/admin`; and wherever neither
//! merging slashes nor one of ipgate's own refusals is involved, it agrees
//! with an independent RFC 3986 normaliser (fluent-uri's).

use std::borrow::Cow;

use fluent_uri::{
    Uri,
    normalize::{NormalizeError, Normalizer},
};
use ipgate_shared::{
    BadPath, RouteRule,
    path::{normalize, route_segments},
};
use proptest::prelude::*;

/// Pieces that make paths interesting: separators, dots (plain and
/// encoded), percent signs and hex digits, parameters, case, reserved and
/// non-ASCII characters.
fn pathish() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/", "/", "/", ".", ".", "..", "%", "2", "e", "E", "f", "5", "c", "a", "A", "Z", "%2e",
        "%2E", "%2f", "%5C", "%61", "%7e", "%25", "%252e", "%3b", "%3A", "%C3%A9", ";", ":", "@",
        "\\", "~", "é", " ", "%00", "?", "#", "{", "x",
    ]);
    prop::collection::vec(piece, 0..32).prop_map(|p| format!("/{}", p.concat()))
}

/// The same, with no characters fluent-uri's parser refuses and nothing
/// ipgate refuses for reasons of its own.
fn rfc_pathish() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/", "/", ".", ".", "..", "a", "B", "%2e", "%2E", "%61", "%7e", "%7E", "%3a", "%C3%a9",
        "~", ":", "@", "x",
    ]);
    prop::collection::vec(piece, 0..24).prop_map(|p| format!("/{}", p.concat()))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Every way the output could still hide a bypass of a naive prefix rule.
fn assert_normal_form(input: &str, out: &str) -> Result<(), TestCaseError> {
    prop_assert!(out.starts_with('/'), "{input:?} -> {out:?}");
    prop_assert!(!out.contains("//"), "{input:?} -> {out:?} has //");
    let segments: Vec<&str> = out[1..].split('/').collect();
    for s in &segments {
        prop_assert!(
            *s != "." && *s != "..",
            "{input:?} -> {out:?} has a dot segment"
        );
    }
    let bytes = out.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        prop_assert!(b.is_ascii_graphic(), "{input:?} -> {out:?}: byte {b:#x}");
        prop_assert!(b != b'\\' && b != b'?' && b != b'#', "{input:?} -> {out:?}");
        if b == b'%' {
            let hex = &out[i + 1..i + 3];
            prop_assert!(
                hex.bytes()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h)),
                "{input:?} -> {out:?}: lowercase or bad hex"
            );
            let octet = u8::from_str_radix(hex, 16).expect("hex");
            prop_assert!(
                !is_unreserved(octet) && octet != b'/' && octet != b'\\' && octet >= 0x20,
                "{input:?} -> {out:?}: %{hex} should not be there"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_text_normalises_or_is_refused_without_panicking(input in any::<String>()) {
        if let Ok(out) = normalize(&input) {
            assert_normal_form(&input, &out)?;
            // A fixed point, whatever the input was.
            let again = normalize(&out);
            prop_assert_eq!(again.as_deref(), Ok(out.as_ref()), "{:?}", input);
        }
    }

    #[test]
    fn the_output_is_in_normal_form_and_a_fixed_point(input in pathish()) {
        if let Ok(out) = normalize(&input) {
            assert_normal_form(&input, &out)?;
            // Idempotent, and without allocating the second time.
            match normalize(&out) {
                Ok(Cow::Borrowed(again)) => prop_assert_eq!(again, out.as_ref()),
                other => prop_assert!(false, "{:?} -> {:?} -> {:?}", input, out, other),
            }
        }
    }

    /// Any spelling of `/admin/<rest>` — encoded letters, changed case,
    /// `./`, `x/../`, doubled slashes, parameters — is refused or covered.
    #[test]
    fn spellings_of_an_admin_path_never_escape_its_rule(
        rest in prop::collection::vec("[a-z0-9]{1,6}", 0..3),
        spelling in prop::collection::vec(0u8..6, 64),
        detours in prop::collection::vec(0u8..6, 4),
    ) {
        let rule = RouteRule::new("GET", "/admin", "admin").expect("valid rule");
        let mut spelled = String::new();
        let mut choice = spelling.iter().cycle();
        for (n, segment) in std::iter::once("admin").chain(rest.iter().map(String::as_str)).enumerate() {
            match detours.get(n).copied().unwrap_or(0) {
                1 => spelled.push_str("/."),
                2 => spelled.push_str("/junk/.."),
                3 => spelled.push('/'),
                4 => spelled.push_str("/%2e"),
                5 => spelled.push_str("/x/%2E%2e"),
                _ => {}
            }
            spelled.push('/');
            for c in segment.chars() {
                match choice.next().copied().unwrap_or(0) {
                    1 => spelled.push(c.to_ascii_uppercase()),
                    2 => spelled.push_str(&format!("%{:02x}", c as u32)),
                    3 => spelled.push_str(&format!("%{:02X}", c as u32)),
                    _ => spelled.push(c),
                }
            }
            if choice.next() == Some(&5) {
                spelled.push_str(";v=1");
            }
        }
        // A refusal never reaches the upstream, so only outputs can escape.
        if let Ok(out) = normalize(&spelled) {
            prop_assert!(
                rule.matches("GET", &out) && rule.matches("HEAD", &out),
                "{:?} -> {:?} escapes the rule on /admin", spelled, out
            );
        }
    }

    /// Where merging slashes and ipgate's extra refusals play no part, the
    /// result is RFC 3986's (§6.2.2 with §5.2.4), as fluent-uri computes
    /// it; climbing above the root is refused by both.
    #[test]
    fn it_agrees_with_an_independent_rfc_3986_normaliser(input in rfc_pathish()) {
        prop_assume!(!input.contains("//"));
        let uri = Uri::parse(format!("http://h{input}")).expect("the generator makes valid URIs");
        let theirs = Normalizer::new().allow_path_underflow(false).normalize(&uri);
        match (normalize(&input), theirs) {
            (Ok(ours), Ok(theirs)) => prop_assert_eq!(ours.as_ref(), theirs.path().as_str()),
            (Err(BadPath::AboveRoot), Err(NormalizeError::PathUnderflow)) => {}
            (ours, theirs) => prop_assert!(false, "{:?}: ipgate {:?}, fluent-uri {:?}", input, ours, theirs.map(|u| u.to_string())),
        }
    }
}

#[test]
fn route_segments_drop_parameters_and_empty_segments() {
    let segments: Vec<&str> = route_segments("/a;x/b%3By;z/;w/c/").collect();
    assert_eq!(segments, ["a", "b", "c"]);
}
