//! The APIs and keys the ext_authz and auth endpoint tests decide against,
//! and the exact bodies they expect (written out, so a changed body fails).

use ipgate_enforcer::Running;
use ipgate_shared::{
    Allowlist, ApiConfig, Entry, KeyConfig, RouteRule, SecretHash, key::NewKey,
    proto::sync::v1 as wire,
};

use crate::support::*;

pub const KEY_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#;
pub const API_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API's allowlist"}}"#;
pub const INVALID_KEY_BODY: &str = r#"{"error":{"code":"INVALID_API_KEY","message":"API key is missing, invalid, revoked or expired"}}"#;
pub const SCOPE_BODY: &str = r#"{"error":{"code":"INSUFFICIENT_SCOPE","message":"API key does not have the scope this route requires"}}"#;
pub const NOT_FOUND_BODY: &str =
    r#"{"error":{"code":"API_NOT_FOUND","message":"No API with this name is served here"}}"#;
pub const BAD_PATH_BODY: &str = r#"{"error":{"code":"BAD_PATH","message":"The request path is ambiguous: it holds an encoded slash or backslash, a control character, invalid percent-encoding or dot segments above the root"}}"#;

/// An office address, on the `office` key's and `payments`' lists.
pub const OFFICE_IP: &str = "203.0.113.7";
/// An address on no list.
pub const STRANGER_IP: &str = "198.51.100.1";

/// - API `orders`: no API allowlist; `GET /admin` needs scope `admin`.
/// - API `payments`: callable from 203.0.113.0/24 only (API allowlist).
/// - key `office` (orders): from 203.0.113.0/24 only, label `office`.
/// - key `admin` (orders): scope `admin`, from anywhere.
/// - key `payer` (payments): from anywhere.
pub struct Doors {
    pub office: NewKey,
    pub admin: NewKey,
    pub payer: NewKey,
}

fn list(cidr: Option<&str>, label: &str) -> Allowlist {
    let entries = cidr
        .map(|c| vec![Entry::new(c.parse().unwrap(), label.parse().unwrap(), None)])
        .unwrap_or_default();
    Allowlist::new(entries, false)
}

fn key(key: &NewKey, api: &str, scopes: &[&str], cidr: Option<&str>) -> wire::KeyConfig {
    wire::KeyConfig::from(&KeyConfig {
        id: key.id,
        api: api.parse().unwrap(),
        secret_hash: SecretHash::of(&key.secret),
        scopes: scopes.iter().map(|s| s.parse().unwrap()).collect(),
        expires_at: None,
        allowlist: list(cidr, "office"),
        previous_secrets: vec![],
    })
}

impl Doors {
    pub fn new() -> Self {
        Doors {
            office: NewKey::generate(),
            admin: NewKey::generate(),
            payer: NewKey::generate(),
        }
    }

    /// The world at revision 1, in one chunk.
    pub fn snapshot(&self) -> wire::StreamResponse {
        let orders = wire::ApiConfig::from(&ApiConfig {
            slug: "orders".parse().unwrap(),
            enabled: true,
            allowlist: Allowlist::default(),
            routes: vec![RouteRule::new("GET", "/admin", "admin").unwrap()],
        });
        let payments = wire::ApiConfig::from(&ApiConfig {
            slug: "payments".parse().unwrap(),
            enabled: true,
            allowlist: list(Some("203.0.113.0/24"), "office network"),
            routes: vec![],
        });
        chunk(
            1,
            0,
            true,
            vec![orders, payments],
            vec![
                key(&self.office, "orders", &[], Some("203.0.113.0/24")),
                key(&self.admin, "orders", &["admin"], None),
                key(&self.payer, "payments", &[], None),
            ],
        )
    }
}

/// An enforcer started with `flags` and synced to [`Doors`] through `fake`.
pub async fn synced_doors(
    fake: &mut FakeControlPlane,
    flags: &[&str],
) -> (Running, Session, Doors) {
    let doors = Doors::new();
    let running = ipgate_enforcer::start(config(fake.addr, flags))
        .await
        .unwrap();
    let mut session = fake.next_session().await;
    session.send(doors.snapshot());
    assert_eq!(session.expect_ack().await, 1);
    (running, session, doors)
}

/// Waits for the event with `request_id` and returns it.
pub async fn event(fake: &FakeControlPlane, request_id: &str) -> wire::UsageEvent {
    eventually(&format!("the event of request {request_id}"), || async {
        fake.events().iter().any(|e| e.request_id == request_id)
    })
    .await;
    fake.events()
        .into_iter()
        .find(|e| e.request_id == request_id)
        .unwrap()
}
