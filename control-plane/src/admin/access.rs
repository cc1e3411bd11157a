//! `TestAccess`: what an enforcer would decide for an API, a key and an
//! address now. It builds an index holding just that API and key from the
//! store and asks the enforcers' own decision function.

use std::{net::IpAddr, time::SystemTime};

use ipgate_shared::{
    ApiSlug, Cidr, Index, KeyId, PresentedKey, Request,
    decision::{ListKind, decide},
    proto::admin::v1 as admin,
    time,
};

use super::{response, service::AdminApi};
use crate::{
    invalid::InvalidRequest,
    request::nonempty,
    status::RpcError,
    store::{EntryOrigins, Principal, StoreError},
};

pub async fn test(
    api: &AdminApi,
    caller: &Principal,
    req: admin::TestAccessRequest,
) -> Result<admin::TestAccessResponse, RpcError> {
    let admin::TestAccessRequest {
        api: slug,
        api_key_id,
        client_ip,
        method,
        path,
    } = req;
    let mut bad = InvalidRequest::default();
    let slug = bad.check("api", slug.parse::<ApiSlug>());
    let key_id = match nonempty(api_key_id) {
        None => Some(None),
        Some(id) => bad.check("api_key_id", id.parse::<KeyId>()).map(Some),
    };
    let ip = bad.check(
        "client_ip",
        client_ip.trim().parse::<IpAddr>().map_err(|_| {
            format!("{client_ip:?} is not an IP address: give one like 203.0.113.5 or 2001:db8::1")
        }),
    );
    let method = nonempty(method).map_or_else(|| "GET".to_owned(), |m| m.to_ascii_uppercase());
    let path = nonempty(path).unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') {
        bad.add("path", format!("{path:?} does not start with '/'"));
    }
    let (slug, key_id, ip) = bad.or_value(|| Some((slug?, key_id?, ip?)))?;

    let now = SystemTime::now();
    let revision = api.store.current_revision().await?;
    let record = api
        .store
        .api(caller.tenant, &slug, now)
        .await?
        .ok_or_else(|| StoreError::ApiNotFound(slug.to_string()))?;
    let key = match key_id {
        None => None,
        Some(id) => Some(
            api.store
                .key(caller.tenant, &id)
                .await?
                .ok_or_else(|| StoreError::KeyNotFound(id.to_string()))?,
        ),
    };
    // Enforcers hold no revoked keys: neither does this index.
    let live_key = key
        .as_ref()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| k.config.clone());
    let index = Index::from_snapshot(revision, [record.config.clone()], live_key);
    let presented = key_id.map_or(PresentedKey::Missing, PresentedKey::Simulated);
    let decision = decide(
        &index,
        &Request {
            api: slug.as_str(),
            key: presented,
            client_ip: ip,
            method: &method,
            path: &path,
            now: time::to_millis(now),
        },
    );

    let (matched_entry, matched_list) = match decision.matched {
        None => (None, String::new()),
        Some(m) => {
            let (list, origins, name) = match m.list {
                ListKind::Api => (&record.config.allowlist, &record.origins, "api"),
                ListKind::Key => match &key {
                    Some(k) => (&k.config.allowlist, &k.origins, "api_key"),
                    None => (&record.config.allowlist, &record.origins, "api"),
                },
            };
            let entry = m
                .entry
                .cidr
                .to_string()
                .parse::<Cidr>()
                .ok()
                .and_then(|cidr| matched(list, origins, cidr));
            (entry, name.to_owned())
        }
    };
    let reason = decision.reason;
    Ok(admin::TestAccessResponse {
        allowed: reason.allowed(),
        http_status: u32::from(reason.http_status()),
        error_code: reason.error_code().unwrap_or_default().to_owned(),
        reason: reason.as_str().to_owned(),
        body: reason.body().unwrap_or_default().to_owned(),
        matched_entry,
        matched_list,
        revision: revision.get(),
    })
}

/// The stored entry `cidr` of `list`, with its origin.
fn matched(
    list: &ipgate_shared::Allowlist,
    origins: &EntryOrigins,
    cidr: Cidr,
) -> Option<admin::AllowlistEntry> {
    response::allowlist(list, origins)
        .entries
        .into_iter()
        .find(|e| e.cidr == cidr.to_string())
}
