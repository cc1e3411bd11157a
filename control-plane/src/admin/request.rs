//! Admin requests -> domain values, one function per request. Every field is
//! destructured so a new proto field breaks the build until someone decides
//! what it means; every bad field is reported at once, with its path.

use std::time::SystemTime;

use ipgate_shared::{
    ApiSlug, KeyId, Revision, RouteRule, Scope,
    allowlist::{Allowlist, ListRules, RawEntry},
    proto::admin::v1 as admin,
    time,
};

use crate::{status::InvalidRequest, store::NewApi};

/// Longest API or key name, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Longest key description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1000;
/// Most scopes one key may carry.
const MAX_SCOPES: usize = 64;
/// Most route rules one API may have.
const MAX_ROUTES: usize = 1000;

/// A validated allowlist replacement for the object `T` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAllowlist<T> {
    pub target: T,
    pub allowlist: Allowlist,
    /// The etag the caller read; `None` writes unconditionally.
    pub expected: Option<Revision>,
}

/// A validated `CreateApiKey`; the key itself is made by the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateKey {
    pub api: ApiSlug,
    pub name: String,
    pub description: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<SystemTime>,
    pub allowlist: Allowlist,
}

/// `CreateApi`: slug, name (the slug when empty) and route rules.
pub fn create_api(req: admin::CreateApiRequest) -> Result<NewApi, InvalidRequest> {
    let admin::CreateApiRequest {
        slug,
        name,
        routes,
        validate_only: _,
    } = req;
    let mut bad = InvalidRequest::default();
    let slug = bad.check("slug", slug.parse::<ApiSlug>());
    let name = bad.check("name", text(&name, MAX_NAME_CHARS));
    if routes.len() > MAX_ROUTES {
        bad.add(
            "routes",
            format!("{} route rules given; at most {MAX_ROUTES}", routes.len()),
        );
    }
    let routes: Vec<Option<RouteRule>> = routes
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let admin::RouteRule {
                method,
                path_prefix,
                scope,
            } = r;
            bad.check(
                format!("routes[{i}]"),
                RouteRule::new(&method, &path_prefix, &scope),
            )
        })
        .collect();
    bad.or_value(|| {
        let slug = slug?;
        Some(NewApi {
            name: match name? {
                n if n.is_empty() => slug.to_string(),
                n => n,
            },
            slug,
            routes: routes.into_iter().collect::<Option<_>>()?,
        })
    })
}

/// `GetApi`: the slug.
pub fn get_api(req: admin::GetApiRequest) -> Result<ApiSlug, InvalidRequest> {
    let admin::GetApiRequest { slug } = req;
    slug.parse().map_err(|e| InvalidRequest::field("slug", e))
}

/// `SetApiAllowlist`: slug, the list under the API rules, and the etag.
pub fn set_api_allowlist(
    req: admin::SetApiAllowlistRequest,
    rules: ListRules,
    now: SystemTime,
) -> Result<SetAllowlist<ApiSlug>, InvalidRequest> {
    let admin::SetApiAllowlistRequest {
        slug,
        allowlist: list,
        etag: tag,
        options: _,
    } = req;
    let mut bad = InvalidRequest::default();
    let target = bad.check("slug", slug.parse::<ApiSlug>());
    let expected = etag(&mut bad, &tag);
    let allowlist = allowlist(&mut bad, "allowlist", list, rules, now);
    bad.or_value(|| {
        Some(SetAllowlist {
            target: target?,
            allowlist: allowlist?,
            expected: expected?,
        })
    })
}

/// `CreateApiKey`: API slug, texts, scopes, expiry and the first list.
pub fn create_api_key(
    req: admin::CreateApiKeyRequest,
    rules: ListRules,
    now: SystemTime,
) -> Result<CreateKey, InvalidRequest> {
    let admin::CreateApiKeyRequest {
        api,
        name,
        description,
        scopes,
        expires_at,
        allowlist: list,
        validate_only: _,
    } = req;
    let mut bad = InvalidRequest::default();
    let api = bad.check("api", api.parse::<ApiSlug>());
    let name = bad.check("name", text(&name, MAX_NAME_CHARS));
    let description = bad.check("description", text(&description, MAX_DESCRIPTION_CHARS));
    if scopes.len() > MAX_SCOPES {
        bad.add(
            "scopes",
            format!("{} scopes given; at most {MAX_SCOPES}", scopes.len()),
        );
    }
    let mut parsed: Vec<Option<Scope>> = scopes
        .iter()
        .enumerate()
        .map(|(i, s)| bad.check(format!("scopes[{i}]"), s.parse::<Scope>()))
        .collect();
    parsed.sort();
    parsed.dedup();
    let expires_at = match expires_at.map(|ts| time::from_timestamp(&ts)) {
        None => Some(None),
        Some(None) => {
            bad.add("expires_at", "timestamp out of range");
            None
        }
        Some(Some(t)) if t <= now => {
            bad.add(
                "expires_at",
                "expires_at is in the past; give a future instant or none",
            );
            None
        }
        Some(Some(t)) => Some(Some(t)),
    };
    let allowlist = allowlist(&mut bad, "allowlist", list, rules, now);
    bad.or_value(|| {
        Some(CreateKey {
            api: api?,
            name: name?,
            description: description?,
            scopes: parsed.into_iter().collect::<Option<_>>()?,
            expires_at: expires_at?,
            allowlist: allowlist?,
        })
    })
}

/// `GetApiKey`: the key id.
pub fn get_api_key(req: admin::GetApiKeyRequest) -> Result<KeyId, InvalidRequest> {
    let admin::GetApiKeyRequest { id } = req;
    id.parse().map_err(|e| InvalidRequest::field("id", e))
}

/// `SetApiKeyAllowlist`: key id, the list under the key rules, and the etag.
pub fn set_api_key_allowlist(
    req: admin::SetApiKeyAllowlistRequest,
    rules: ListRules,
    now: SystemTime,
) -> Result<SetAllowlist<KeyId>, InvalidRequest> {
    let admin::SetApiKeyAllowlistRequest {
        id,
        allowlist: list,
        etag: tag,
        options: _,
    } = req;
    let mut bad = InvalidRequest::default();
    let target = bad.check("id", id.parse::<KeyId>());
    let expected = etag(&mut bad, &tag);
    let allowlist = allowlist(&mut bad, "allowlist", list, rules, now);
    bad.or_value(|| {
        Some(SetAllowlist {
            target: target?,
            allowlist: allowlist?,
            expected: expected?,
        })
    })
}

/// `GetRevisionStatus`: the revision asked about, `None` for the current one.
pub fn get_revision_status(req: admin::GetRevisionStatusRequest) -> Option<Revision> {
    let admin::GetRevisionStatusRequest { revision } = req;
    (revision != 0).then_some(Revision::new(revision))
}

/// Validates a submitted list as a whole; each bad entry is reported under
/// `field` (`allowlist.entries[2].cidr`). A missing list is an empty one.
fn allowlist(
    bad: &mut InvalidRequest,
    field: &str,
    list: Option<admin::Allowlist>,
    rules: ListRules,
    now: SystemTime,
) -> Option<Allowlist> {
    let admin::Allowlist {
        entries,
        report_only,
    } = list.unwrap_or_default();
    let mut expiry_ok = true;
    let raw: Vec<RawEntry> = entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let admin::AllowlistEntry {
                cidr,
                label,
                expires_at,
                created_at: _,
                created_by: _,
            } = entry;
            let expires_at = expires_at.and_then(|ts| {
                let t = time::from_timestamp(&ts);
                if t.is_none() {
                    expiry_ok = false;
                    bad.add(
                        format!("{field}.entries[{i}].expires_at"),
                        "timestamp out of range",
                    );
                }
                t
            });
            RawEntry {
                cidr,
                label,
                expires_at,
            }
        })
        .collect();
    match rules.validate(&raw, report_only, now) {
        Ok(list) => expiry_ok.then_some(list),
        Err(e) => {
            for v in e.violations {
                bad.add(format!("{field}.{}", v.path()), v.description);
            }
            None
        }
    }
}

/// An etag: empty for "unconditional", otherwise the revision it was read at.
/// `Some(None)` is unconditional; `None` means it was bad (and noted).
fn etag(bad: &mut InvalidRequest, tag: &str) -> Option<Option<Revision>> {
    if tag.is_empty() {
        return Some(None);
    }
    bad.check(
        "etag",
        tag.parse::<u64>().map(|n| Some(Revision::new(n))).map_err(|_| {
            format!("{tag:?} is not an etag this control plane gave out; pass back the etag read with the object, or none")
        }),
    )
}

/// A printable, bounded text.
fn text(s: &str, max_chars: usize) -> Result<String, String> {
    let chars = s.chars().count();
    if chars > max_chars {
        Err(format!(
            "{chars} characters long; at most {max_chars} are allowed"
        ))
    } else if s.chars().any(char::is_control) {
        Err("contains a control character; use printable characters only".to_owned())
    } else {
        Ok(s.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn entry(cidr: &str) -> admin::AllowlistEntry {
        admin::AllowlistEntry {
            cidr: cidr.into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let req = admin::SetApiKeyAllowlistRequest {
            id: "nope".into(),
            allowlist: Some(admin::Allowlist {
                entries: vec![
                    entry("203.0.113.5"),
                    entry("203.0.113.5/24"),
                    entry("127.1"),
                ],
                report_only: false,
            }),
            etag: "x".into(),
            options: None,
        };
        let err = set_api_key_allowlist(req, ListRules::for_keys(), now()).unwrap_err();
        let fields: Vec<&str> = err.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "id",
                "etag",
                "allowlist.entries[1].cidr",
                "allowlist.entries[2].cidr"
            ]
        );
        assert!(err.fields[2].description.contains("203.0.113.0/24"));
    }

    #[test]
    fn a_good_request_converts() {
        let req = admin::SetApiAllowlistRequest {
            slug: "orders".into(),
            allowlist: Some(admin::Allowlist {
                entries: vec![entry("::ffff:203.0.113.5")],
                report_only: true,
            }),
            etag: "7".into(),
            options: None,
        };
        let set = set_api_allowlist(req, ListRules::for_apis(), now()).unwrap();
        assert_eq!(set.expected, Some(Revision::new(7)));
        assert!(set.allowlist.report_only());
        assert_eq!(
            set.allowlist.entries()[0].cidr().to_string(),
            "203.0.113.5/32"
        );
    }

    #[test]
    fn api_names_default_to_the_slug_and_routes_are_checked() {
        let api = create_api(admin::CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(api.name, "orders");
        let err = create_api(admin::CreateApiRequest {
            slug: "Orders".into(),
            name: "x".into(),
            routes: vec![admin::RouteRule {
                method: "GET".into(),
                path_prefix: "orders".into(),
                scope: "orders:read".into(),
            }],
            validate_only: false,
        })
        .unwrap_err();
        let fields: Vec<&str> = err.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["slug", "routes[0]"]);
    }

    #[test]
    fn keys_need_future_expiry_and_valid_scopes() {
        let err = create_api_key(
            admin::CreateApiKeyRequest {
                api: "orders".into(),
                scopes: vec!["ok:read".into(), "bad scope".into()],
                expires_at: Some(time::to_timestamp(now() - Duration::from_secs(1))),
                ..Default::default()
            },
            ListRules::for_keys(),
            now(),
        )
        .unwrap_err();
        let fields: Vec<&str> = err.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["scopes[1]", "expires_at"]);
    }
}
