//! A database made by the first release (schema 0001 only) is brought up to
//! date on open: tokens get public ids, derived columns are filled from the
//! stored configs, old usage events get their address keys.

use std::time::{Duration, SystemTime};

use ipgate_control_plane::store::{KeyFilter, SqlStore, Store, TenantId, UsageFilter};
use ipgate_shared::{
    ApiConfig, Entry, KeyConfig, SecretHash, allowlist::Allowlist, key::NewKey,
    proto::sync::v1 as wire, time,
};
use prost::Message;
use sqlx::{AnyPool, Executor, migrate::Migrator};

use crate::{common::Db, on_both_backends};

/// Applies only the first release's migration.
async fn first_release(db: &Db) -> AnyPool {
    sqlx::any::install_default_drivers();
    let backend = if db.url().starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "{}/migrations/{backend}/0001_init.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::copy(source, dir.path().join("0001_init.sql")).unwrap();
    // SqlStore::open creates the SQLite file; do the same for the old schema.
    let url = if backend == "sqlite" {
        let path = db.url().trim_start_matches("sqlite://");
        std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
        format!("{}?mode=rwc", db.url())
    } else {
        db.url().to_owned()
    };
    let pool = AnyPool::connect(&url).await.unwrap();
    Migrator::new(dir.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

async fn an_earlier_database_is_upgraded(db: Db) {
    let pool = first_release(&db).await;
    let now = SystemTime::now();
    let soon = now + Duration::from_secs(3600);
    let entry = Entry::new(
        "203.0.113.5".parse().unwrap(),
        Default::default(),
        Some(soon),
    );
    // A permanent entry beside it, so the sweep may remove the expired one
    // (it never removes a list's last entries).
    let permanent = Entry::new("198.51.100.0/24".parse().unwrap(), Default::default(), None);
    let api = ApiConfig {
        slug: "orders".parse().unwrap(),
        enabled: false,
        allowlist: Allowlist::new(vec![entry.clone(), permanent.clone()], false),
        routes: vec![],
    };
    let generated = NewKey::generate();
    let key = KeyConfig {
        id: generated.id,
        api: "orders".parse().unwrap(),
        secret_hash: SecretHash::of(&generated.secret),
        scopes: vec![],
        expires_at: Some(soon),
        allowlist: Allowlist::new(vec![entry, permanent], false),
        previous_secrets: vec![],
    };
    let ms = time::to_millis(now);
    pool.execute(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tokens (tenant_id, role, secret_sha256, name, created_at) \
         VALUES (1, 'owner', {}, 'old owner', {ms})",
        if db.url().starts_with("postgres") {
            "'\\x00'::bytea"
        } else {
            "x'00'"
        }
    )))
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO apis (slug, tenant_id, name, config, revision, created_at, updated_at) \
         VALUES ('orders', 1, 'Orders', $1, 1, $2, $2)",
    )
    .bind(wire::ApiConfig::from(&api).encode_to_vec())
    .bind(ms)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, api_slug, name, description, revoked, config, \
         revision, created_at, updated_at) VALUES ($1, 1, 'orders', 'k', '', 0, $2, 2, $3, $3)",
    )
    .bind(key.id.as_str())
    .bind(wire::KeyConfig::from(&key).encode_to_vec())
    .bind(ms)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO usage_events (tenant_id, batch_id, enforcer_id, request_id, time_ms, api, \
         api_key_id, method, path, status_code, client_ip, reason, matched_label) \
         VALUES (1, 'b', 'e', 'r', $1, 'orders', '', 'GET', '/', 200, '203.0.113.5', 'ALLOWED', '')",
    )
    .bind(ms)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE meta SET revision = 2")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let store = SqlStore::open(db.url()).await.expect("the upgrade applies");
    let tokens = store.tokens(TenantId::DEFAULT, true).await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].id.starts_with("tok_") && tokens[0].id.len() == 20);
    // Derived columns: status and expiry filters see the old rows.
    let disabled = ipgate_control_plane::store::ApiFilter {
        enabled: Some(false),
    };
    let apis = store
        .apis(TenantId::DEFAULT, &disabled, None, 10, now)
        .await
        .unwrap();
    assert_eq!(apis.len(), 1);
    let with_list = KeyFilter {
        has_allowlist: Some(true),
        ..Default::default()
    };
    assert_eq!(
        store
            .keys(TenantId::DEFAULT, &with_list, None, 10, now)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .remove_expired_entries(soon + Duration::from_secs(1))
            .await
            .unwrap(),
        2
    );
    // Old events get their address keys, then match address filters.
    let one = "203.0.113.5".parse().unwrap();
    let filter = UsageFilter {
        client_ips: Some((
            ipgate_control_plane::store::ip_key(one),
            ipgate_control_plane::store::ip_key(one),
        )),
        ..Default::default()
    };
    assert!(
        store
            .query_usage(TenantId::DEFAULT, &filter, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.backfill_usage_ip_keys(100).await.unwrap(), 1);
    assert_eq!(store.backfill_usage_ip_keys(100).await.unwrap(), 0);
    assert_eq!(
        store
            .query_usage(TenantId::DEFAULT, &filter, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store.close().await;
}

on_both_backends!(an_earlier_database_is_upgraded);
