//! Rows -> records, and the columns stored beside an object's `config`:
//! entry metadata as JSON and the values derived for filters and sweeps.

use std::collections::BTreeMap;

use ipgate_shared::{
    ApiConfig, Cidr, KeyConfig, allowlist::Allowlist, proto::sync::v1 as wire, time,
};
use prost::Message;
use serde::{Deserialize, Serialize};
use sqlx::{Row, any::AnyRow};

use super::{
    db::revision,
    error::{StoreError, StoreResult},
    records::{ApiRecord, EntryOrigin, EntryOrigins, KeyRecord, TenantId},
};

/// Columns of an API row, with its active-key count; `$1` is "now" (ms).
pub(super) const API_SELECT: &str = "SELECT a.slug, a.tenant_id, a.name, a.config, a.entry_meta, \
     a.revision, a.created_at, a.updated_at, \
     (SELECT COUNT(*) FROM api_keys k WHERE k.api_slug = a.slug AND k.revoked_at IS NULL \
       AND (k.expires_at IS NULL OR k.expires_at > $1)) AS key_count \
     FROM apis a";

/// Columns of a key row.
pub(super) const KEY_SELECT: &str = "SELECT k.id, k.tenant_id, k.name, k.description, k.revoked_at, \
     k.config, k.entry_meta, k.revision, k.created_at, k.updated_at \
     FROM api_keys k";

/// Decodes a stored `ipgate.sync.v1.ApiConfig`.
pub(super) fn api_config(bytes: &[u8]) -> StoreResult<ApiConfig> {
    let wire = wire::ApiConfig::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    ApiConfig::try_from(wire).map_err(|e| StoreError::Corrupt(format!("API config {e}")))
}

/// Decodes a stored `ipgate.sync.v1.KeyConfig`.
pub(super) fn key_config(bytes: &[u8]) -> StoreResult<KeyConfig> {
    let wire = wire::KeyConfig::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    KeyConfig::try_from(wire).map_err(|e| StoreError::Corrupt(format!("key config {e}")))
}

pub(super) fn api_record(row: &AnyRow) -> StoreResult<ApiRecord> {
    let config: Vec<u8> = row.try_get("config")?;
    let meta: String = row.try_get("entry_meta")?;
    let key_count: i64 = row.try_get("key_count")?;
    Ok(ApiRecord {
        tenant: TenantId(row.try_get("tenant_id")?),
        name: row.try_get("name")?,
        config: api_config(&config)?,
        origins: origins_from_json(&meta),
        key_count: u32::try_from(key_count).unwrap_or(u32::MAX),
        revision: revision(row.try_get("revision")?)?,
        created_at: time::from_millis(row.try_get("created_at")?),
        updated_at: time::from_millis(row.try_get("updated_at")?),
    })
}

pub(super) fn key_record(row: &AnyRow) -> StoreResult<KeyRecord> {
    let config: Vec<u8> = row.try_get("config")?;
    let meta: String = row.try_get("entry_meta")?;
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    Ok(KeyRecord {
        tenant: TenantId(row.try_get("tenant_id")?),
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        revoked_at: revoked_at.map(time::from_millis),
        config: key_config(&config)?,
        origins: origins_from_json(&meta),
        revision: revision(row.try_get("revision")?)?,
        created_at: time::from_millis(row.try_get("created_at")?),
        updated_at: time::from_millis(row.try_get("updated_at")?),
    })
}

// === entry metadata ===

#[derive(Serialize, Deserialize)]
struct StoredOrigin {
    /// Unix milliseconds.
    at: i64,
    /// Token id, or `system`.
    by: String,
}

/// Entry origins as stored: `{"203.0.113.0/24": {"at": ms, "by": "tok_…"}}`.
pub(super) fn origins_to_json(origins: &EntryOrigins) -> String {
    let map: BTreeMap<String, StoredOrigin> = origins
        .iter()
        .map(|(cidr, o)| {
            let stored = StoredOrigin {
                at: time::to_millis(o.created_at),
                by: o.created_by.clone(),
            };
            (cidr.to_string(), stored)
        })
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned())
}

/// Entry origins from their JSON; unreadable parts are dropped: they are
/// informative only, and never worth refusing to read the list.
fn origins_from_json(json: &str) -> EntryOrigins {
    let map: BTreeMap<String, StoredOrigin> = serde_json::from_str(json).unwrap_or_default();
    map.into_iter()
        .filter_map(|(cidr, o)| {
            let cidr = cidr.parse::<Cidr>().ok()?;
            let origin = EntryOrigin {
                created_at: time::from_millis(o.at),
                created_by: o.by,
            };
            Some((cidr, origin))
        })
        .collect()
}

// === derived columns ===

/// When the sweep has work on a list: the earliest expiry, provided some
/// entry outlives it. The last entries of a list are never swept (an
/// expiry must not leave the list empty, which would let everyone in), so a
/// list whose entries all expire together needs no sweep at all.
pub(super) fn next_entry_expiry(list: &Allowlist) -> Option<i64> {
    let expiry = |e: &ipgate_shared::Entry| e.expires_at().map_or(i64::MAX, time::to_millis);
    let earliest = list.entries().iter().map(expiry).min()?;
    let outlived = list.entries().iter().any(|e| expiry(e) > earliest);
    (earliest < i64::MAX && outlived).then_some(earliest)
}

/// Columns derived from an API's config: (enabled, next entry expiry).
pub(super) fn api_derived(config: &ApiConfig) -> (i64, Option<i64>) {
    (
        i64::from(config.enabled),
        next_entry_expiry(&config.allowlist),
    )
}

/// Columns derived from a key's config: (expires_at, entries, next entry expiry).
pub(super) fn key_derived(config: &KeyConfig) -> (Option<i64>, i64, Option<i64>) {
    (
        config.expires_at.map(time::to_millis),
        i64::try_from(config.allowlist.entries().len()).unwrap_or(i64::MAX),
        next_entry_expiry(&config.allowlist),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ipgate_shared::{Entry, Label};

    use super::*;

    fn list(expiries: &[Option<u64>]) -> Allowlist {
        let entries = expiries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let at = e.map(|s| std::time::UNIX_EPOCH + Duration::from_secs(s));
                Entry::new(
                    format!("203.0.113.{i}").parse().unwrap(),
                    Label::default(),
                    at,
                )
            })
            .collect();
        Allowlist::new(entries, false)
    }

    #[test]
    fn the_sweep_is_due_only_while_an_entry_outlives_the_earliest_expiry() {
        assert_eq!(next_entry_expiry(&list(&[])), None);
        assert_eq!(next_entry_expiry(&list(&[None])), None);
        assert_eq!(next_entry_expiry(&list(&[Some(10), None])), Some(10_000));
        assert_eq!(
            next_entry_expiry(&list(&[Some(10), Some(20)])),
            Some(10_000)
        );
        // The last entries expire together: they stay, so nothing to sweep.
        assert_eq!(next_entry_expiry(&list(&[Some(20)])), None);
        assert_eq!(next_entry_expiry(&list(&[Some(20), Some(20)])), None);
    }
}
