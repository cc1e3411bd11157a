//! Conversions between `ipgate.sync.v1` messages and the domain, in one
//! place. Every field is destructured so a new proto field breaks the build
//! until someone decides what it means.

use std::time::SystemTime;

use crate::{
    allowlist::Allowlist,
    api::{ApiConfig, ApiSlug, RouteRule},
    entry::{Cidr, Entry, Label},
    index::Change,
    key::{KeyConfig, KeyId, PreviousSecret, SecretHash},
    proto::sync::v1 as wire,
    time,
};

/// A sync message that does not describe a valid object; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WireError {
    pub field: String,
    pub message: String,
}

impl WireError {
    fn new(field: impl Into<String>, message: impl ToString) -> Self {
        WireError {
            field: field.into(),
            message: message.to_string(),
        }
    }

    fn within(self, parent: &str) -> Self {
        WireError {
            field: format!("{parent}.{}", self.field),
            message: self.message,
        }
    }
}

fn expiry(
    field: &str,
    ts: Option<prost_types::Timestamp>,
) -> Result<Option<SystemTime>, WireError> {
    ts.map(|ts| {
        time::from_timestamp(&ts).ok_or_else(|| WireError::new(field, "timestamp out of range"))
    })
    .transpose()
}

// === wire -> domain ===

impl TryFrom<wire::Entry> for Entry {
    type Error = WireError;

    fn try_from(e: wire::Entry) -> Result<Self, Self::Error> {
        let wire::Entry {
            cidr,
            label,
            expires_at,
        } = e;
        let cidr: Cidr = cidr.parse().map_err(|e| WireError::new("cidr", e))?;
        let label: Label = label.parse().map_err(|e| WireError::new("label", e))?;
        Ok(Entry::new(cidr, label, expiry("expires_at", expires_at)?))
    }
}

impl TryFrom<wire::Allowlist> for Allowlist {
    type Error = WireError;

    fn try_from(list: wire::Allowlist) -> Result<Self, Self::Error> {
        let wire::Allowlist {
            entries,
            report_only,
        } = list;
        let entries = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| Entry::try_from(e).map_err(|err| err.within(&format!("entries[{i}]"))))
            .collect::<Result<_, _>>()?;
        Ok(Allowlist::new(entries, report_only))
    }
}

fn allowlist(list: Option<wire::Allowlist>) -> Result<Allowlist, WireError> {
    list.map(Allowlist::try_from)
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|e| e.within("allowlist"))
}

impl TryFrom<wire::RouteRule> for RouteRule {
    type Error = WireError;

    fn try_from(r: wire::RouteRule) -> Result<Self, Self::Error> {
        let wire::RouteRule {
            method,
            path_prefix,
            scope,
        } = r;
        RouteRule::new(&method, &path_prefix, &scope).map_err(|e| WireError::new("route", e))
    }
}

impl TryFrom<wire::ApiConfig> for ApiConfig {
    type Error = WireError;

    fn try_from(api: wire::ApiConfig) -> Result<Self, Self::Error> {
        let wire::ApiConfig {
            slug,
            enabled,
            allowlist: list,
            routes,
        } = api;
        let slug: ApiSlug = slug.parse().map_err(|e| WireError::new("slug", e))?;
        let routes = routes
            .into_iter()
            .map(RouteRule::try_from)
            .collect::<Result<_, _>>()
            .map_err(|e| e.within("routes"))?;
        Ok(ApiConfig {
            allowlist: allowlist(list)?,
            slug,
            enabled,
            routes,
        })
    }
}

impl TryFrom<wire::KeyConfig> for KeyConfig {
    type Error = WireError;

    fn try_from(key: wire::KeyConfig) -> Result<Self, Self::Error> {
        let wire::KeyConfig {
            id,
            api,
            secret_sha256,
            scopes,
            expires_at,
            allowlist: list,
            previous_secrets,
        } = key;
        let previous_secrets = previous_secrets
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let wire::PreviousSecret {
                    secret_sha256,
                    valid_until,
                } = p;
                let field = |f: &str| format!("previous_secrets[{i}].{f}");
                Ok(PreviousSecret {
                    hash: SecretHash::try_from(secret_sha256.as_slice())
                        .map_err(|_| WireError::new(field("secret_sha256"), "must be 32 bytes"))?,
                    valid_until: expiry(&field("valid_until"), valid_until)?
                        .ok_or_else(|| WireError::new(field("valid_until"), "missing"))?,
                })
            })
            .collect::<Result<_, WireError>>()?;
        Ok(KeyConfig {
            previous_secrets,
            id: id.parse().map_err(|e| WireError::new("id", e))?,
            api: api.parse().map_err(|e| WireError::new("api", e))?,
            secret_hash: SecretHash::try_from(secret_sha256.as_slice())
                .map_err(|_| WireError::new("secret_sha256", "must be 32 bytes"))?,
            scopes: scopes
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| WireError::new("scopes", e))?,
            expires_at: expiry("expires_at", expires_at)?,
            allowlist: allowlist(list)?,
        })
    }
}

impl TryFrom<wire::Change> for Change {
    type Error = WireError;

    fn try_from(change: wire::Change) -> Result<Self, Self::Error> {
        use wire::change::Kind;
        let wire::Change { kind } = change;
        match kind {
            Some(Kind::PutApi(api)) => ApiConfig::try_from(api)
                .map(Change::PutApi)
                .map_err(|e| e.within("put_api")),
            Some(Kind::DeleteApi(slug)) => slug
                .parse()
                .map(Change::DeleteApi)
                .map_err(|e| WireError::new("delete_api", e)),
            Some(Kind::PutKey(key)) => KeyConfig::try_from(key)
                .map(Change::PutKey)
                .map_err(|e| e.within("put_key")),
            Some(Kind::DeleteKey(id)) => id
                .parse::<KeyId>()
                .map(Change::DeleteKey)
                .map_err(|e| WireError::new("delete_key", e)),
            None => Err(WireError::new("kind", "change has no kind")),
        }
    }
}

// === domain -> wire ===

impl From<&Entry> for wire::Entry {
    fn from(e: &Entry) -> Self {
        wire::Entry {
            cidr: e.cidr().to_string(),
            label: e.label().to_owned(),
            expires_at: e.expires_at().map(time::to_timestamp),
        }
    }
}

impl From<&Allowlist> for wire::Allowlist {
    fn from(list: &Allowlist) -> Self {
        wire::Allowlist {
            entries: list.entries().iter().map(wire::Entry::from).collect(),
            report_only: list.report_only(),
        }
    }
}

impl From<&RouteRule> for wire::RouteRule {
    fn from(r: &RouteRule) -> Self {
        wire::RouteRule {
            method: r.method().unwrap_or_default().to_owned(),
            path_prefix: r.path_prefix().to_owned(),
            scope: r.scope().to_string(),
        }
    }
}

impl From<&ApiConfig> for wire::ApiConfig {
    fn from(api: &ApiConfig) -> Self {
        let ApiConfig {
            slug,
            enabled,
            allowlist,
            routes,
        } = api;
        wire::ApiConfig {
            slug: slug.to_string(),
            enabled: *enabled,
            allowlist: Some(allowlist.into()),
            routes: routes.iter().map(wire::RouteRule::from).collect(),
        }
    }
}

impl From<&KeyConfig> for wire::KeyConfig {
    fn from(key: &KeyConfig) -> Self {
        let KeyConfig {
            id,
            api,
            secret_hash,
            scopes,
            expires_at,
            allowlist,
            previous_secrets,
        } = key;
        wire::KeyConfig {
            previous_secrets: previous_secrets
                .iter()
                .map(|p| wire::PreviousSecret {
                    secret_sha256: p.hash.as_bytes().to_vec(),
                    valid_until: Some(time::to_timestamp(p.valid_until)),
                })
                .collect(),
            id: id.to_string(),
            api: api.to_string(),
            secret_sha256: secret_hash.as_bytes().to_vec(),
            scopes: scopes.iter().map(ToString::to_string).collect(),
            expires_at: expires_at.map(time::to_timestamp),
            allowlist: Some(allowlist.into()),
        }
    }
}

impl From<&Change> for wire::Change {
    fn from(change: &Change) -> Self {
        use wire::change::Kind;
        let kind = match change {
            Change::PutApi(api) => Kind::PutApi(api.into()),
            Change::DeleteApi(slug) => Kind::DeleteApi(slug.to_string()),
            Change::PutKey(key) => Kind::PutKey(key.into()),
            Change::DeleteKey(id) => Kind::DeleteKey(id.to_string()),
        };
        wire::Change { kind: Some(kind) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::NewKey;

    fn sample_key() -> KeyConfig {
        let k = NewKey::generate();
        KeyConfig {
            id: k.id,
            api: "orders".parse().unwrap(),
            secret_hash: SecretHash::of(&k.secret),
            scopes: vec!["orders:read".parse().unwrap()],
            expires_at: Some(time::from_millis(1_900_000_000_000)),
            allowlist: Allowlist::new(
                vec![Entry::new(
                    "203.0.113.0/24".parse().unwrap(),
                    "office".parse().unwrap(),
                    Some(time::from_millis(1_900_000_000_500)),
                )],
                true,
            ),
            previous_secrets: vec![PreviousSecret {
                hash: SecretHash::of("old"),
                valid_until: time::from_millis(1_900_000_001_000),
            }],
        }
    }

    #[test]
    fn changes_round_trip() {
        let api = ApiConfig {
            slug: "orders".parse().unwrap(),
            enabled: true,
            allowlist: Allowlist::default(),
            routes: vec![RouteRule::new("GET", "/orders", "orders:read").unwrap()],
        };
        let key = sample_key();
        for change in [
            Change::PutApi(api),
            Change::DeleteApi("orders".parse().unwrap()),
            Change::PutKey(key.clone()),
            Change::DeleteKey(key.id),
        ] {
            let wire = wire::Change::from(&change);
            assert_eq!(Change::try_from(wire), Ok(change));
        }
    }

    #[test]
    fn bad_messages_name_the_field() {
        let mut key = wire::KeyConfig::from(&sample_key());
        key.allowlist.as_mut().unwrap().entries[0].cidr = "203.0.113.5/24".into();
        let err = KeyConfig::try_from(key).unwrap_err();
        assert_eq!(err.field, "allowlist.entries[0].cidr");
        assert!(err.message.contains("host bits"));

        let mut key = wire::KeyConfig::from(&sample_key());
        key.secret_sha256.pop();
        assert_eq!(KeyConfig::try_from(key).unwrap_err().field, "secret_sha256");

        let err = Change::try_from(wire::Change { kind: None }).unwrap_err();
        assert_eq!(err.field, "kind");
    }
}
