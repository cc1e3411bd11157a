//! Every entry form docs/entries.md refuses, sent through the real control plane:
//! `INVALID_ARGUMENT` with a field violation naming the entry and the rule,
//! and nothing changes — not the stored list, not the revision.

use ipgate_shared::proto::admin::v1::{
    Allowlist, AllowlistEntry, CreateApiKeyRequest, CreateApiRequest, GetApiKeyRequest,
    GetRevisionStatusRequest, SetApiAllowlistRequest, SetApiKeyAllowlistRequest,
};
use ipgate_tests::{Backend, ControlPlane, process::AdminClient};
use tonic::Code;
use tonic_types::StatusExt;

/// (input, words the violation must contain)
const REJECTED: &[(&str, &str)] = &[
    ("203.0.113.5/24", "use 203.0.113.0/24"),
    ("010.0.0.1", "leading zero"),
    ("0127.0.0.1/8", "leading zero"),
    ("1.2.3", "4"),
    ("127.1", "4"),
    ("0x7f.0.0.1", "decimal"),
    ("fe80::1%eth0", "zone"),
    ("1.2.3.4/33", "/33"),
    ("1.2.3.4/", "prefix length"),
    ("/24", "address"),
    ("0.0.0.0/0", "/9 or narrower"),
    ("10.0.0.0/7", "/9 or narrower"),
    ("::/0", "/33 or narrower"),
    ("2001:db8::/32", "/33 or narrower"),
    ("10.0.0.0/16", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.1.1", "private"),
    ("fd00::/48", "unique-local"),
    ("fe80::1", "link-local"),
    // Internal and too broad, or internal with host bits set: the private
    // range decides, since no narrower or truncated form would pass.
    ("10.0.0.0/8", "lies in the private range 10.0.0.0/8"),
    ("192.168.1.1/24", "lies in the private range 192.168.0.0/16"),
    ("fd00::1/48", "lies in the unique-local range fc00::/7"),
    ("fc00::/7", "lies in the unique-local range fc00::/7"),
    ("fe80::1/64", "lies in the link-local range fe80::/10"),
    ("not an address", "not an IP address"),
];

/// With `--allow-private-ranges`, (input, words): the other rules speak,
/// and what they suggest is accepted.
const REJECTED_WITH_PRIVATE_ALLOWED: &[(&str, &str, &str)] = &[
    ("192.168.1.1/24", "use 192.168.1.0/24", "192.168.1.0/24"),
    ("10.0.0.0/8", "/9 or narrower", "10.0.0.0/9"),
    ("fd00::1/48", "use fd00::/48", "fd00::/48"),
    ("fc00::/7", "/33 or narrower", "fd00::/33"),
];

fn entries(cidrs: &[&str]) -> Option<Allowlist> {
    Some(Allowlist {
        entries: cidrs
            .iter()
            .map(|c| AllowlistEntry {
                cidr: (*c).to_owned(),
                ..Default::default()
            })
            .collect(),
        report_only: false,
    })
}

async fn revision(admin: &mut AdminClient) -> u64 {
    admin
        .get_revision_status(GetRevisionStatusRequest::default())
        .await
        .expect("revision status")
        .into_inner()
        .current_revision
}

async fn stored(admin: &mut AdminClient, id: &str) -> Vec<String> {
    let key = admin
        .get_api_key(GetApiKeyRequest { id: id.to_owned() })
        .await
        .expect("get key")
        .into_inner();
    key.allowlist
        .unwrap_or_default()
        .entries
        .into_iter()
        .map(|e| e.cidr)
        .collect()
}

/// Asserts `status` is INVALID_ARGUMENT with a violation on `field` whose
/// description contains `input` and `words`.
fn assert_violation(status: &tonic::Status, field: &str, input: &str, words: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{input}: {status:?}");
    let details = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("{input}: no BadRequest details in {status:?}"));
    let violation = details
        .field_violations
        .iter()
        .find(|v| v.field == field)
        .unwrap_or_else(|| panic!("{input}: no violation on {field}: {details:?}"));
    assert!(
        violation.description.contains(input.trim()) && violation.description.contains(words),
        "{input}: {:?} should name the entry and say {words:?}",
        violation.description
    );
}

async fn rejected_entries_change_nothing(backend: Backend) {
    let cp = ControlPlane::start(&backend);
    let mut admin = cp.admin().await;
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    let key = admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            name: "k".into(),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner()
        .key
        .expect("key");
    admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: key.id.clone(),
            allowlist: entries(&["203.0.113.7"]),
            ..Default::default()
        })
        .await
        .expect("a valid list is stored");
    let before = revision(&mut admin).await;

    for (input, words) in REJECTED {
        // The bad entry second, after a valid one: the whole write is refused.
        let status = admin
            .set_api_key_allowlist(SetApiKeyAllowlistRequest {
                id: key.id.clone(),
                allowlist: entries(&["198.51.100.1", input]),
                ..Default::default()
            })
            .await
            .expect_err(input);
        assert_violation(&status, "allowlist.entries[1].cidr", input, words);

        let status = admin
            .set_api_allowlist(SetApiAllowlistRequest {
                slug: "orders".into(),
                allowlist: entries(&[input]),
                ..Default::default()
            })
            .await
            .expect_err(input);
        assert_violation(&status, "allowlist.entries[0].cidr", input, words);
    }

    // Several bad entries: one violation each.
    let status = admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: key.id.clone(),
            allowlist: entries(&["010.0.0.1", "203.0.113.9", "203.0.113.5/24", "203.0.113.9"]),
            ..Default::default()
        })
        .await
        .expect_err("three bad entries");
    let fields: Vec<String> = status
        .get_details_bad_request()
        .expect("details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        [
            "allowlist.entries[0].cidr",
            "allowlist.entries[2].cidr",
            "allowlist.entries[3].cidr"
        ]
    );

    // More than 20 entries on a key.
    let many: Vec<String> = (1..=21).map(|i| format!("203.0.113.{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let status = admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: key.id.clone(),
            allowlist: entries(&many),
            ..Default::default()
        })
        .await
        .expect_err("21 entries");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(format!("{status:?}").contains("at most 20"), "{status:?}");

    assert_eq!(stored(&mut admin, &key.id).await, ["203.0.113.7/32"]);
    assert_eq!(
        revision(&mut admin).await,
        before,
        "refused writes must not move the revision"
    );
}

async fn with_private_ranges_allowed_the_advice_is_accepted(backend: Backend) {
    let cp = ControlPlane::start_with(&backend, &["--allow-private-ranges"]);
    let mut admin = cp.admin().await;
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    for (input, words, advised) in REJECTED_WITH_PRIVATE_ALLOWED {
        let status = admin
            .set_api_allowlist(SetApiAllowlistRequest {
                slug: "orders".into(),
                allowlist: entries(&[input]),
                ..Default::default()
            })
            .await
            .expect_err(input);
        assert_violation(&status, "allowlist.entries[0].cidr", input, words);
        admin
            .set_api_allowlist(SetApiAllowlistRequest {
                slug: "orders".into(),
                allowlist: entries(&[advised]),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("{input}: the advised {advised} is refused: {s:?}"));
    }
}

ipgate_tests::on_both_backends!(
    rejected_entries_change_nothing,
    with_private_ranges_allowed_the_advice_is_accepted
);
