//! The one decision function every front door calls, and the exact bodies
//! clients parse.
//!
//! Order of checks (docs/decisions.md): API known and enabled; API allowlist (before
//! authentication, so a blocked address never reaches auth whatever token it
//! carries); path (it must have a safe normal form); API key; scope; key
//! allowlist.

use std::{fmt, net::IpAddr, str::FromStr, sync::Arc};

use crate::{
    api::required_scope,
    entry::normalize_ip,
    index::{Index, ListMatch, MatchedEntry},
    key::{self, KeyId, SecretHash},
    path,
    time::UnixMillis,
};

/// The API key a request presented, from `Authorization: Bearer` and/or
/// `X-API-Key` (never the query string: it leaks into logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresentedKey<'a> {
    /// No key at all.
    Missing,
    /// One key (possibly sent in both headers).
    One(&'a str),
    /// Two different keys: refused with `401`.
    Conflicting,
    /// A key known by its id, authenticated by someone else: the admin
    /// API's TestAccess asks "what if this key called?". Doors never build
    /// it from a request.
    Simulated(KeyId),
}

impl<'a> PresentedKey<'a> {
    /// Combines every key value found in a request's headers.
    pub fn from_candidates(candidates: impl IntoIterator<Item = &'a str>) -> Self {
        let mut found = PresentedKey::Missing;
        for candidate in candidates {
            found = match found {
                PresentedKey::Missing => PresentedKey::One(candidate),
                PresentedKey::One(k) if k == candidate => found,
                _ => return PresentedKey::Conflicting,
            };
        }
        found
    }

    /// The token of an `Authorization: Bearer <token>` value (scheme
    /// case-insensitive); `None` for other schemes.
    pub fn bearer(authorization: &str) -> Option<&str> {
        let (scheme, token) = authorization.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

/// One request to decide on.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Slug of the API called.
    pub api: &'a str,
    pub key: PresentedKey<'a>,
    /// The client address (IPv4-mapped addresses are normalised here).
    pub client_ip: IpAddr,
    pub method: &'a str,
    /// The request path as presented (a query string is ignored); it is
    /// normalised here, so every door and every rule sees one spelling.
    pub path: &'a str,
    /// Decision instant, for key and entry expiry.
    pub now: UnixMillis,
}

/// Why a request was allowed or refused; stored in the usage log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Every check passed.
    Allowed,
    /// A report-only list would have blocked the address; allowed.
    WouldBlockIp,
    ApiNotFound,
    ApiDisabled,
    /// Not on the API's allowlist (checked before authentication).
    IpNotAllowedApi,
    /// The path has no safe normal form (checked before the key).
    BadPath,
    /// Key missing, malformed, unknown, for another API, revoked or expired.
    InvalidApiKey,
    InsufficientScope,
    /// Not on the key's allowlist (checked after authentication).
    IpNotAllowedKey,
    /// The enforcer has no index yet and fails closed.
    NotSynced,
    /// The enforcer has no index yet and was told to fail open.
    UnsyncedFailOpen,
}

macro_rules! body {
    ($code:literal, $message:literal) => {
        concat!(
            r#"{"error":{"code":""#,
            $code,
            r#"","message":""#,
            $message,
            r#""}}"#
        )
    };
}

/// Body of a key-level IP denial, byte for byte what clients parse.
pub const KEY_IP_NOT_ALLOWED_BODY: &str = body!(
    "IP_NOT_ALLOWED",
    "Request IP address is not in the API key's allowlist"
);
/// Body of an API-level IP denial.
pub const API_IP_NOT_ALLOWED_BODY: &str = body!(
    "IP_NOT_ALLOWED",
    "Request IP address is not in the API's allowlist"
);
const API_NOT_FOUND_BODY: &str = body!("API_NOT_FOUND", "No API with this name is served here");
const API_DISABLED_BODY: &str = body!("API_DISABLED", "This API is disabled");
const BAD_PATH_BODY: &str = body!(
    "BAD_PATH",
    "The request path is ambiguous: it holds an encoded slash or backslash, a control character, invalid percent-encoding or dot segments above the root"
);
const INVALID_API_KEY_BODY: &str = body!(
    "INVALID_API_KEY",
    "API key is missing, invalid, revoked or expired"
);
const INSUFFICIENT_SCOPE_BODY: &str = body!(
    "INSUFFICIENT_SCOPE",
    "API key does not have the scope this route requires"
);
const NOT_SYNCED_BODY: &str = body!(
    "ENFORCER_NOT_READY",
    "The enforcer has not received its allowlists yet; retry shortly"
);

impl Reason {
    /// Every reason, for parsing and tests.
    pub const ALL: [Reason; 11] = [
        Reason::Allowed,
        Reason::WouldBlockIp,
        Reason::ApiNotFound,
        Reason::ApiDisabled,
        Reason::IpNotAllowedApi,
        Reason::BadPath,
        Reason::InvalidApiKey,
        Reason::InsufficientScope,
        Reason::IpNotAllowedKey,
        Reason::NotSynced,
        Reason::UnsyncedFailOpen,
    ];

    /// Stable name, as stored in the usage log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Allowed => "ALLOWED",
            Reason::WouldBlockIp => "WOULD_BLOCK_IP",
            Reason::ApiNotFound => "API_NOT_FOUND",
            Reason::ApiDisabled => "API_DISABLED",
            Reason::IpNotAllowedApi => "IP_NOT_ALLOWED_API",
            Reason::BadPath => "BAD_PATH",
            Reason::InvalidApiKey => "INVALID_API_KEY",
            Reason::InsufficientScope => "INSUFFICIENT_SCOPE",
            Reason::IpNotAllowedKey => "IP_NOT_ALLOWED_KEY",
            Reason::NotSynced => "NOT_SYNCED",
            Reason::UnsyncedFailOpen => "UNSYNCED_FAIL_OPEN",
        }
    }

    /// True when the request may proceed.
    pub const fn allowed(self) -> bool {
        matches!(
            self,
            Reason::Allowed | Reason::WouldBlockIp | Reason::UnsyncedFailOpen
        )
    }

    /// HTTP status to answer with (200 when allowed).
    pub const fn http_status(self) -> u16 {
        match self {
            Reason::Allowed | Reason::WouldBlockIp | Reason::UnsyncedFailOpen => 200,
            Reason::ApiNotFound => 404,
            Reason::BadPath => 400,
            Reason::ApiDisabled | Reason::NotSynced => 503,
            Reason::InvalidApiKey => 401,
            Reason::IpNotAllowedApi | Reason::InsufficientScope | Reason::IpNotAllowedKey => 403,
        }
    }

    /// The `error.code` of the denial body; `None` when allowed.
    pub const fn error_code(self) -> Option<&'static str> {
        match self {
            Reason::Allowed | Reason::WouldBlockIp | Reason::UnsyncedFailOpen => None,
            Reason::ApiNotFound => Some("API_NOT_FOUND"),
            Reason::ApiDisabled => Some("API_DISABLED"),
            Reason::IpNotAllowedApi | Reason::IpNotAllowedKey => Some("IP_NOT_ALLOWED"),
            Reason::BadPath => Some("BAD_PATH"),
            Reason::InvalidApiKey => Some("INVALID_API_KEY"),
            Reason::InsufficientScope => Some("INSUFFICIENT_SCOPE"),
            Reason::NotSynced => Some("ENFORCER_NOT_READY"),
        }
    }

    /// The exact JSON body of the denial; `None` when allowed.
    pub const fn body(self) -> Option<&'static str> {
        match self {
            Reason::Allowed | Reason::WouldBlockIp | Reason::UnsyncedFailOpen => None,
            Reason::ApiNotFound => Some(API_NOT_FOUND_BODY),
            Reason::ApiDisabled => Some(API_DISABLED_BODY),
            Reason::IpNotAllowedApi => Some(API_IP_NOT_ALLOWED_BODY),
            Reason::BadPath => Some(BAD_PATH_BODY),
            Reason::InvalidApiKey => Some(INVALID_API_KEY_BODY),
            Reason::InsufficientScope => Some(INSUFFICIENT_SCOPE_BODY),
            Reason::IpNotAllowedKey => Some(KEY_IP_NOT_ALLOWED_BODY),
            Reason::NotSynced => Some(NOT_SYNCED_BODY),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a [`Reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a decision reason")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

/// The outcome for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'i> {
    pub reason: Reason,
    /// Id of the presented key when it was well-formed (even if refused).
    pub key_id: Option<KeyId>,
    /// The API's slug as the index holds it, when the index knows the API:
    /// a usage event keeps it without copying.
    pub api: Option<&'i Arc<str>>,
    /// For allowed requests, the entry that let the address through: the
    /// key's when the key has a list, else the API's.
    pub matched: Option<Matched<'i>>,
}

/// Which list an entry that matched is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Api,
    Key,
}

/// An entry that matched, and its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched<'i> {
    pub list: ListKind,
    pub entry: MatchedEntry<'i>,
}

impl<'i> Decision<'i> {
    /// The decision of an enforcer that has no index yet.
    pub fn unsynced(key: PresentedKey<'_>, fail_open: bool) -> Decision<'static> {
        Decision {
            reason: if fail_open {
                Reason::UnsyncedFailOpen
            } else {
                Reason::NotSynced
            },
            key_id: well_formed_id(key),
            api: None,
            matched: None,
        }
    }

    /// [`Decision::unsynced`] for `req`: failing open opens the allowlists,
    /// not the path check, so a path without a safe normal form is refused
    /// all the same (a door must never forward one).
    pub fn unsynced_request(req: &Request<'_>, fail_open: bool) -> Decision<'static> {
        let mut decision = Decision::unsynced(req.key, fail_open);
        if fail_open && path::normalize(req.path).is_err() {
            decision.reason = Reason::BadPath;
        }
        decision
    }

    /// True when the request may proceed.
    pub fn allowed(&self) -> bool {
        self.reason.allowed()
    }

    /// The label of the entry that matched ("" when none did or it has none).
    pub fn matched_label(&self) -> &str {
        self.shared_label().map_or("", |l| l)
    }

    /// The matched entry's label as the index holds it, to keep without
    /// copying; `None` when none matched or it has no label.
    pub fn shared_label(&self) -> Option<&'i Arc<str>> {
        self.matched.and_then(|m| m.entry.label)
    }
}

fn well_formed_id(key: PresentedKey<'_>) -> Option<KeyId> {
    match key {
        PresentedKey::One(k) => key::parse_presented(k).ok(),
        PresentedKey::Simulated(id) => Some(id),
        PresentedKey::Missing | PresentedKey::Conflicting => None,
    }
}

/// Decides one request against `index`.
pub fn decide<'i>(index: &'i Index, req: &Request<'_>) -> Decision<'i> {
    let key_id = well_formed_id(req.key);

    // 1. The API.
    let Some(api) = index.api(req.api) else {
        return Decision {
            reason: Reason::ApiNotFound,
            key_id,
            api: None,
            matched: None,
        };
    };
    let deny = |reason| Decision {
        reason,
        key_id,
        api: Some(&api.slug),
        matched: None,
    };
    if !api.enabled {
        return deny(Reason::ApiDisabled);
    }

    // 2. The API's allowlist, before any authentication.
    let ip = normalize_ip(req.client_ip);
    let mut would_block = false;
    let mut matched = None;
    match api.allowlist.lookup(ip, req.now) {
        ListMatch::Empty => {}
        ListMatch::Matched(entry) => {
            matched = Some(Matched {
                list: ListKind::Api,
                entry,
            })
        }
        ListMatch::NotMatched if api.allowlist.report_only() => would_block = true,
        ListMatch::NotMatched => return deny(Reason::IpNotAllowedApi),
    }

    // 3. The path: one normal form for the rules, or refused before any
    // secret is looked at.
    let Ok(path) = path::normalize(req.path) else {
        return deny(Reason::BadPath);
    };

    // 4. The key: well-formed, known, for this API, the right secret (or
    // one still in its rotation grace period), unexpired.
    let Some(id) = key_id.filter(|_| !matches!(req.key, PresentedKey::Conflicting)) else {
        return deny(Reason::InvalidApiKey);
    };
    let authentic = index.key(&id).filter(|key| {
        key.api() == req.api
            && key.expires_at() > req.now
            && match req.key {
                PresentedKey::One(presented) => key.accepts(&SecretHash::of(presented), req.now),
                PresentedKey::Simulated(_) => true,
                PresentedKey::Missing | PresentedKey::Conflicting => false,
            }
    });
    let Some(key) = authentic else {
        return deny(Reason::InvalidApiKey);
    };

    // 5. The scope the route needs.
    if required_scope(&api.routes, req.method, &path).is_some_and(|s| !key.has_scope(s)) {
        return deny(Reason::InsufficientScope);
    }

    // 6. The key's allowlist.
    match key.lookup(ip, req.now) {
        ListMatch::Empty => {}
        ListMatch::Matched(entry) => {
            matched = Some(Matched {
                list: ListKind::Key,
                entry,
            })
        }
        ListMatch::NotMatched if key.report_only() => would_block = true,
        ListMatch::NotMatched => return deny(Reason::IpNotAllowedKey),
    }

    Decision {
        api: Some(&api.slug),
        reason: if would_block {
            Reason::WouldBlockIp
        } else {
            Reason::Allowed
        },
        key_id,
        matched,
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::{
        allowlist::Allowlist,
        api::{ApiConfig, RouteRule},
        entry::{Entry, Label},
        key::{KeyConfig, NewKey, PreviousSecret},
        revision::Revision,
        time,
    };

    const NOW: UnixMillis = 1_800_000_000_000;

    fn list(cidrs: &[&str], report_only: bool) -> Allowlist {
        let entries = cidrs
            .iter()
            .map(|c| {
                Entry::new(
                    c.parse().unwrap(),
                    format!("label {c}").parse::<Label>().unwrap(),
                    None,
                )
            })
            .collect();
        Allowlist::new(entries, report_only)
    }

    struct World {
        index: Index,
        key: String,
        /// The key's secret before a rotation; valid until NOW + 1000.
        rotated_out: String,
        other_api_key: String,
        expired_key: String,
    }

    fn world(api_list: Allowlist, key_list: Allowlist, enabled: bool) -> World {
        let api = |slug: &str, allowlist| ApiConfig {
            slug: slug.parse().unwrap(),
            enabled,
            allowlist,
            routes: vec![RouteRule::new("POST", "/orders", "orders:write").unwrap()],
        };
        let key = NewKey::generate();
        let rotated_out = NewKey::with_id(key.id);
        let other = NewKey::generate();
        let expired = NewKey::generate();
        let cfg = |k: &NewKey, api: &str, expires_at: Option<SystemTime>, allowlist| KeyConfig {
            id: k.id,
            api: api.parse().unwrap(),
            secret_hash: SecretHash::of(&k.secret),
            scopes: vec!["orders:read".parse().unwrap()],
            expires_at,
            allowlist,
            previous_secrets: vec![],
        };
        let past = time::from_millis(NOW - 1);
        let mut rotated = cfg(&key, "orders", None, key_list);
        rotated.previous_secrets = vec![PreviousSecret {
            hash: SecretHash::of(&rotated_out.secret),
            valid_until: time::from_millis(NOW + 1000),
        }];
        let index = Index::from_snapshot(
            Revision::new(1),
            [
                api("orders", api_list),
                api("billing", Allowlist::default()),
            ],
            [
                rotated,
                cfg(&other, "billing", None, Allowlist::default()),
                cfg(&expired, "orders", Some(past), Allowlist::default()),
            ],
        );
        World {
            index,
            key: key.secret,
            rotated_out: rotated_out.secret,
            other_api_key: other.secret,
            expired_key: expired.secret,
        }
    }

    fn req<'a>(key: PresentedKey<'a>, ip: &str) -> Request<'a> {
        Request {
            api: "orders",
            key,
            client_ip: ip.parse().unwrap(),
            method: "GET",
            path: "/orders/1",
            now: NOW,
        }
    }

    #[test]
    fn empty_lists_let_every_address_through() {
        let w = world(Allowlist::default(), Allowlist::default(), true);
        for ip in ["203.0.113.5", "198.51.100.1", "2001:db8::1"] {
            let d = decide(&w.index, &req(PresentedKey::One(&w.key), ip));
            assert_eq!(d.reason, Reason::Allowed, "{ip}");
            assert!(d.key_id.is_some());
        }
    }

    #[test]
    fn unknown_and_disabled_apis() {
        let w = world(Allowlist::default(), Allowlist::default(), false);
        let mut r = req(PresentedKey::One(&w.key), "203.0.113.5");
        assert_eq!(decide(&w.index, &r).reason, Reason::ApiDisabled);
        r.api = "nope";
        assert_eq!(decide(&w.index, &r).reason, Reason::ApiNotFound);
        assert_eq!(Reason::ApiNotFound.http_status(), 404);
        assert_eq!(Reason::ApiDisabled.http_status(), 503);
    }

    #[test]
    fn the_api_list_blocks_before_authentication() {
        let w = world(list(&["203.0.113.0/24"], false), Allowlist::default(), true);
        for key in [
            PresentedKey::Missing,
            PresentedKey::One("garbage"),
            PresentedKey::One(&w.key),
        ] {
            let d = decide(&w.index, &req(key, "198.51.100.1"));
            assert_eq!(d.reason, Reason::IpNotAllowedApi);
            assert_eq!(d.reason.http_status(), 403);
            assert_eq!(d.reason.body(), Some(API_IP_NOT_ALLOWED_BODY));
        }
        let d = decide(&w.index, &req(PresentedKey::One(&w.key), "203.0.113.9"));
        assert_eq!(d.reason, Reason::Allowed);
        assert_eq!(d.matched_label(), "label 203.0.113.0/24");
        assert_eq!(d.matched.map(|m| m.list), Some(ListKind::Api));
    }

    #[test]
    fn bad_keys_are_401_whatever_the_address() {
        let w = world(Allowlist::default(), list(&["203.0.113.5"], false), true);
        let forged = NewKey::with_id(key::parse_presented(&w.key).unwrap()).secret;
        for key in [
            PresentedKey::Missing,
            PresentedKey::Conflicting,
            PresentedKey::One("ipg_live_nope"),
            PresentedKey::One(&forged),
            PresentedKey::One(&w.other_api_key),
            PresentedKey::One(&w.expired_key),
            PresentedKey::One(&NewKey::generate().secret),
        ] {
            for ip in ["203.0.113.5", "198.51.100.1"] {
                let d = decide(&w.index, &req(key, ip));
                assert_eq!(d.reason, Reason::InvalidApiKey, "{key:?} from {ip}");
                assert_eq!(d.reason.http_status(), 401);
            }
        }
    }

    #[test]
    fn scopes_are_checked_before_the_key_list() {
        let w = world(Allowlist::default(), list(&["203.0.113.5"], false), true);
        let mut r = req(PresentedKey::One(&w.key), "198.51.100.1");
        r.method = "POST";
        assert_eq!(decide(&w.index, &r).reason, Reason::InsufficientScope);
        r.method = "GET";
        assert_eq!(decide(&w.index, &r).reason, Reason::IpNotAllowedKey);
    }

    #[test]
    fn the_key_list_blocks_with_the_exact_body() {
        let w = world(Allowlist::default(), list(&["203.0.113.5"], false), true);
        let d = decide(&w.index, &req(PresentedKey::One(&w.key), "198.51.100.1"));
        assert_eq!(d.reason, Reason::IpNotAllowedKey);
        assert_eq!(d.reason.http_status(), 403);
        assert_eq!(
            d.reason.body(),
            Some(
                r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#
            )
        );
        let ok = decide(
            &w.index,
            &req(PresentedKey::One(&w.key), "::ffff:203.0.113.5"),
        );
        assert_eq!(ok.reason, Reason::Allowed);
        assert_eq!(ok.matched_label(), "label 203.0.113.5");
        let matched = ok.matched.expect("an entry matched");
        assert_eq!(
            (matched.list, matched.entry.cidr.to_string()),
            (ListKind::Key, "203.0.113.5/32".to_owned())
        );
    }

    #[test]
    fn report_only_lists_allow_and_say_so() {
        let w = world(
            list(&["203.0.113.0/24"], true),
            list(&["203.0.113.5"], true),
            true,
        );
        let d = decide(&w.index, &req(PresentedKey::One(&w.key), "198.51.100.1"));
        assert_eq!(d.reason, Reason::WouldBlockIp);
        assert!(d.allowed());
        // Report-only never skips authentication.
        let d = decide(&w.index, &req(PresentedKey::Missing, "198.51.100.1"));
        assert_eq!(d.reason, Reason::InvalidApiKey);
    }

    #[test]
    fn expired_entries_stop_matching() {
        let entry = Entry::new(
            "203.0.113.5".parse().unwrap(),
            Label::default(),
            Some(time::from_millis(NOW + 1000)),
        );
        let w = world(
            Allowlist::default(),
            Allowlist::new(vec![entry], false),
            true,
        );
        let mut r = req(PresentedKey::One(&w.key), "203.0.113.5");
        assert_eq!(decide(&w.index, &r).reason, Reason::Allowed);
        r.now = NOW + 1000;
        assert_eq!(decide(&w.index, &r).reason, Reason::IpNotAllowedKey);
    }

    #[test]
    fn a_rotated_out_secret_works_until_its_grace_period_ends() {
        let w = world(Allowlist::default(), Allowlist::default(), true);
        let mut r = req(PresentedKey::One(&w.rotated_out), "203.0.113.5");
        assert_eq!(decide(&w.index, &r).reason, Reason::Allowed);
        r.now = NOW + 1000;
        assert_eq!(decide(&w.index, &r).reason, Reason::InvalidApiKey);
        r.key = PresentedKey::One(&w.key);
        assert_eq!(decide(&w.index, &r).reason, Reason::Allowed);
    }

    #[test]
    fn a_simulated_key_skips_only_the_secret() {
        let w = world(Allowlist::default(), list(&["203.0.113.5"], false), true);
        let id = key::parse_presented(&w.key).unwrap();
        let allowed = decide(&w.index, &req(PresentedKey::Simulated(id), "203.0.113.5"));
        assert_eq!(allowed.reason, Reason::Allowed);
        assert_eq!(allowed.key_id, Some(id));
        let blocked = decide(&w.index, &req(PresentedKey::Simulated(id), "198.51.100.1"));
        assert_eq!(blocked.reason, Reason::IpNotAllowedKey);
        // Still refused for another API, and when expired.
        let other = key::parse_presented(&w.other_api_key).unwrap();
        assert_eq!(
            decide(
                &w.index,
                &req(PresentedKey::Simulated(other), "203.0.113.5")
            )
            .reason,
            Reason::InvalidApiKey
        );
        let expired = key::parse_presented(&w.expired_key).unwrap();
        assert_eq!(
            decide(
                &w.index,
                &req(PresentedKey::Simulated(expired), "203.0.113.5")
            )
            .reason,
            Reason::InvalidApiKey
        );
    }

    /// API `orders` whose `GET /admin` needs scope `admin`, and a key
    /// without that scope; the API's list allows 203.0.113.0/24.
    fn admin_world() -> (Index, String) {
        let key = NewKey::generate();
        let api = ApiConfig {
            slug: "orders".parse().unwrap(),
            enabled: true,
            allowlist: list(&["203.0.113.0/24"], false),
            routes: vec![RouteRule::new("GET", "/admin", "admin").unwrap()],
        };
        let cfg = KeyConfig {
            id: key.id,
            api: "orders".parse().unwrap(),
            secret_hash: SecretHash::of(&key.secret),
            scopes: vec!["orders:read".parse().unwrap()],
            expires_at: None,
            allowlist: Allowlist::default(),
            previous_secrets: vec![],
        };
        let index = Index::from_snapshot(Revision::new(1), [api], [cfg]);
        (index, key.secret)
    }

    #[test]
    fn route_rules_see_every_spelling_of_the_path() {
        let (index, key) = admin_world();
        let cases = [
            ("GET", "/admin", Reason::InsufficientScope),
            ("GET", "/ADMIN", Reason::InsufficientScope),
            ("GET", "/Admin/users", Reason::InsufficientScope),
            ("GET", "/hello/../admin", Reason::InsufficientScope),
            ("GET", "/%61dmin", Reason::InsufficientScope),
            ("GET", "//admin", Reason::InsufficientScope),
            ("GET", "/./admin", Reason::InsufficientScope),
            ("GET", "/admin;jsessionid=1", Reason::InsufficientScope),
            ("GET", "/admin?debug=1", Reason::InsufficientScope),
            ("get", "/admin", Reason::InsufficientScope),
            ("HEAD", "/admin", Reason::InsufficientScope),
            ("head", "/ADMIN/x", Reason::InsufficientScope),
            ("GET", "/admin%2f", Reason::BadPath),
            ("GET", "/hello/..%2fadmin", Reason::BadPath),
            ("GET", "/hello/..;/admin", Reason::BadPath),
            ("GET", "/..", Reason::BadPath),
            ("GET", "/administrator", Reason::Allowed),
            ("POST", "/admin", Reason::Allowed),
            ("OPTIONS", "/admin", Reason::Allowed),
            ("GET", "/hello", Reason::Allowed),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|&(method, path, expected)| {
                let mut r = req(PresentedKey::One(&key), "203.0.113.5");
                (r.method, r.path) = (method, path);
                let got = decide(&index, &r).reason;
                (got != expected).then(|| format!("{method} {path}: {got}, expected {expected}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn a_bad_path_is_refused_after_the_api_list_and_before_the_key() {
        let (index, key) = admin_world();
        let bad = |key, ip| {
            let mut r = req(key, ip);
            r.path = "/admin%2f";
            decide(&index, &r)
        };
        // A blocked address learns nothing more than before.
        assert_eq!(
            bad(PresentedKey::One(&key), "198.51.100.1").reason,
            Reason::IpNotAllowedApi
        );
        // Refused before the key is looked at: no key, a bad key, a good key.
        for presented in [
            PresentedKey::Missing,
            PresentedKey::One("garbage"),
            PresentedKey::One(&key),
        ] {
            let d = bad(presented, "203.0.113.5");
            assert_eq!(d.reason, Reason::BadPath, "{presented:?}");
            assert_eq!(d.reason.http_status(), 400);
        }
        // The well-formed key's id is still recorded for the usage log.
        assert!(bad(PresentedKey::One(&key), "203.0.113.5").key_id.is_some());
        assert_eq!(
            Reason::BadPath.body(),
            Some(
                r#"{"error":{"code":"BAD_PATH","message":"The request path is ambiguous: it holds an encoded slash or backslash, a control character, invalid percent-encoding or dot segments above the root"}}"#
            )
        );
    }

    #[test]
    fn failing_open_before_the_first_snapshot_never_opens_a_bad_path() {
        let mut r = req(PresentedKey::Missing, "203.0.113.5");
        assert_eq!(
            Decision::unsynced_request(&r, true).reason,
            Reason::UnsyncedFailOpen
        );
        r.path = "/a/../../etc/passwd";
        assert_eq!(Decision::unsynced_request(&r, true).reason, Reason::BadPath);
        // Failing closed, every request waits for the snapshot.
        assert_eq!(
            Decision::unsynced_request(&r, false).reason,
            Reason::NotSynced
        );
    }

    #[test]
    fn the_existing_bodies_are_unchanged() {
        let bodies: Vec<_> = Reason::ALL.iter().filter_map(|r| r.body()).collect();
        for body in [
            r#"{"error":{"code":"API_NOT_FOUND","message":"No API with this name is served here"}}"#,
            r#"{"error":{"code":"API_DISABLED","message":"This API is disabled"}}"#,
            r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API's allowlist"}}"#,
            r#"{"error":{"code":"INVALID_API_KEY","message":"API key is missing, invalid, revoked or expired"}}"#,
            r#"{"error":{"code":"INSUFFICIENT_SCOPE","message":"API key does not have the scope this route requires"}}"#,
            r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#,
            r#"{"error":{"code":"ENFORCER_NOT_READY","message":"The enforcer has not received its allowlists yet; retry shortly"}}"#,
        ] {
            assert!(bodies.contains(&body), "{body}");
        }
    }

    #[test]
    fn presented_keys_from_headers() {
        assert_eq!(PresentedKey::bearer("Bearer abc"), Some("abc"));
        assert_eq!(PresentedKey::bearer("bearer  abc "), Some("abc"));
        assert_eq!(PresentedKey::bearer("Basic abc"), None);
        assert_eq!(PresentedKey::from_candidates([]), PresentedKey::Missing);
        assert_eq!(
            PresentedKey::from_candidates(["a", "a"]),
            PresentedKey::One("a")
        );
        assert_eq!(
            PresentedKey::from_candidates(["a", "b"]),
            PresentedKey::Conflicting
        );
    }

    #[test]
    fn reasons_round_trip_and_bodies_are_json() {
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>(), Ok(r));
            assert_eq!(r.allowed(), r.body().is_none());
            assert_eq!(r.allowed(), r.http_status() == 200);
            if let Some(body) = r.body() {
                assert!(body.starts_with(r#"{"error":{"code":""#), "{body}");
                assert!(body.contains(r.error_code().unwrap()));
            }
        }
        let d = Decision::unsynced(PresentedKey::Missing, false);
        assert_eq!((d.reason.http_status(), d.allowed()), (503, false));
        assert!(Decision::unsynced(PresentedKey::Missing, true).allowed());
    }
}
