//! The store suite, run against SQLite and PostgreSQL alike: revisions and
//! the change log, etags, snapshots vs deltas, usage batches and queries,
//! compaction, and reopening.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use ipgate_control_plane::{
    allowlists::Edit,
    etag::StaleEtag,
    store::{
        ApiRecord, Backlog, KeyRecord, ListWrite, NewApi, NewKey, NewTenant, NewToken, Role, Store,
        StoreError, Stored, TenantId, UsageBatch, UsageCursor, UsageFilter, WriteCtx,
    },
};
use ipgate_shared::{
    ApiConfig, ApiSlug, Change, ClientIpSource, Door, Entry, Index, KeyConfig, KeyId, ListRules,
    Revision, RouteRule, SecretHash, allowlist::Allowlist, decision::Reason,
    key::NewKey as GeneratedKey, proto::sync::v1 as wire, time, usage::UsageEvent,
};

use crate::{common::Db, on_both_backends};

const T: TenantId = TenantId::DEFAULT;

fn slug(s: &str) -> ApiSlug {
    s.parse().expect("slug")
}

fn list(cidrs: &[&str]) -> Allowlist {
    let entries = cidrs
        .iter()
        .map(|c| Entry::new(c.parse().expect("cidr"), Default::default(), None))
        .collect();
    Allowlist::new(entries, false)
}

fn ctx() -> WriteCtx {
    WriteCtx {
        tenant: T,
        actor: "tok_storesuite00000".into(),
        now: SystemTime::now(),
        validate_only: false,
    }
}

fn set(list: Allowlist, rules: ListRules, expected: Option<Revision>) -> ListWrite {
    ListWrite {
        edit: Edit::Set(list),
        rules,
        expected,
        acknowledge_lockout_risk: true,
    }
}

async fn set_api_list(
    store: &Store,
    slug: &ApiSlug,
    list: Allowlist,
    expected: Option<Revision>,
) -> Result<ApiRecord, StoreError> {
    let write = set(list, ListRules::for_apis(), expected);
    Ok(store
        .write_allowlist::<ApiRecord>(&ctx(), slug, write)
        .await?
        .record)
}

async fn set_key_list(
    store: &Store,
    id: &KeyId,
    list: Allowlist,
    expected: Option<Revision>,
) -> Result<KeyRecord, StoreError> {
    let write = set(list, ListRules::for_keys(), expected);
    Ok(store
        .write_allowlist::<KeyRecord>(&ctx(), id, write)
        .await?
        .record)
}

async fn open(db: &Db) -> Store {
    Store::open(db.url()).await.expect("open the store")
}

async fn new_api(store: &Store, name: &str) -> Revision {
    let api = NewApi {
        slug: slug(name),
        name: format!("{name} API"),
        routes: vec![RouteRule::new("GET", "/orders", "orders:read").expect("route")],
    };
    store
        .create_api(&ctx(), api)
        .await
        .expect("create API")
        .revision
}

async fn new_key(store: &Store, api: &str) -> (KeyId, Revision) {
    let generated = GeneratedKey::generate();
    let key = NewKey {
        name: "key".into(),
        description: String::new(),
        config: KeyConfig {
            id: generated.id,
            api: slug(api),
            secret_hash: SecretHash::of(&generated.secret),
            scopes: vec!["orders:read".parse().expect("scope")],
            expires_at: None,
            allowlist: list(&["203.0.113.0/24"]),
            previous_secrets: vec![],
        },
    };
    let record = store.create_key(&ctx(), key).await.expect("create key");
    (record.config.id, record.revision)
}

async fn backlog(store: &Store, after: u64) -> Vec<wire::Delta> {
    match store
        .changes_after(Revision::new(after), 10_000)
        .await
        .expect("read changes")
    {
        Backlog::Changes(changes) => changes.into_iter().map(|c| c.delta).collect(),
        Backlog::Compacted => panic!("the change log after {after} was compacted"),
    }
}

async fn revisions_commit_in_order_with_their_change_rows(db: Db) {
    let store = Arc::new(open(&db).await);
    assert_eq!(store.current_revision().await.unwrap(), Revision::ZERO);
    assert_eq!(new_api(&store, "orders").await, Revision::new(1));
    let (key, rev) = new_key(&store, "orders").await;
    assert_eq!(rev, Revision::new(2));

    // Concurrent writers each get their own revision, with no holes.
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let cidr = format!("198.51.100.{i}");
                set_key_list(&store, &key, list(&[&cidr]), None)
                    .await
                    .expect("write")
                    .revision
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for w in writers {
        revisions.push(w.await.unwrap().get());
    }
    revisions.sort_unstable();
    assert_eq!(revisions, (3..=10).collect::<Vec<u64>>());
    assert_eq!(store.current_revision().await.unwrap(), Revision::new(10));

    // One change row per revision, holding the object's full new state.
    let deltas = backlog(&store, 0).await;
    let numbers: Vec<u64> = deltas.iter().map(|d| d.revision).collect();
    assert_eq!(numbers, (1..=10).collect::<Vec<u64>>());
    let change = Change::try_from(deltas[0].changes[0].clone()).unwrap();
    assert!(
        matches!(change, Change::PutApi(api) if api.slug.as_str() == "orders" && api.routes.len() == 1)
    );
    let stored = store.key(T, &key).await.unwrap().expect("key");
    let last = Change::try_from(deltas[9].changes[0].clone()).unwrap();
    assert_eq!(last, Change::PutKey(stored.config.clone()));
    assert_eq!(stored.revision, Revision::new(10));
}

async fn a_stale_etag_changes_nothing(db: Db) {
    let store = open(&db).await;
    let read_at = new_api(&store, "orders").await;
    let updated = set_api_list(
        &store,
        &slug("orders"),
        list(&["203.0.113.5"]),
        Some(read_at),
    )
    .await
    .expect("a fresh etag is accepted");
    assert_eq!(updated.revision, Revision::new(2));

    let err = set_api_list(
        &store,
        &slug("orders"),
        list(&["198.51.100.1"]),
        Some(read_at),
    )
    .await
    .expect_err("a stale etag is refused");
    assert!(
        matches!(err, StoreError::StaleEtag(StaleEtag { given, current }) if given == read_at && current == Revision::new(2))
    );
    assert_eq!(store.current_revision().await.unwrap(), Revision::new(2));
    assert_eq!(backlog(&store, 0).await.len(), 2);
    let api = store
        .api(T, &slug("orders"), SystemTime::now())
        .await
        .unwrap()
        .expect("API");
    assert_eq!(api.config.allowlist, list(&["203.0.113.5"]));

    // Unknown objects are refused the same way: revision unchanged.
    let missing = set_api_list(&store, &slug("nope"), list(&[]), None).await;
    assert!(matches!(missing, Err(StoreError::ApiNotFound(_))));
    let dup = store
        .create_api(
            &ctx(),
            NewApi {
                slug: slug("orders"),
                name: "x".into(),
                routes: vec![],
            },
        )
        .await;
    assert!(matches!(dup, Err(StoreError::ApiExists(_))));
    assert_eq!(store.current_revision().await.unwrap(), Revision::new(2));
}

/// Every API and key of a snapshot, by name.
type State = (BTreeMap<String, ApiConfig>, BTreeMap<String, KeyConfig>);

fn apply(state: &mut State, delta: &wire::Delta) {
    for change in &delta.changes {
        match Change::try_from(change.clone()).expect("valid change") {
            Change::PutApi(api) => {
                state.0.insert(api.slug.to_string(), api);
            }
            Change::DeleteApi(slug) => {
                state.0.remove(slug.as_str());
            }
            Change::PutKey(key) => {
                state.1.insert(key.id.to_string(), key);
            }
            Change::DeleteKey(id) => {
                state.1.remove(id.as_str());
            }
        }
    }
}

async fn a_snapshot_plus_later_deltas_is_the_later_snapshot(db: Db) {
    let store = open(&db).await;
    new_api(&store, "orders").await;
    let (first_key, _) = new_key(&store, "orders").await;
    let early = store.snapshot(T).await.expect("snapshot");
    assert_eq!(early.revision, Revision::new(2));

    new_api(&store, "billing").await;
    new_key(&store, "billing").await;
    set_api_list(
        &store,
        &slug("orders"),
        list(&["203.0.113.0/24", "2001:db8::/48"]),
        None,
    )
    .await
    .unwrap();
    set_key_list(&store, &first_key, list(&[]), None)
        .await
        .unwrap();
    let late = store.snapshot(T).await.expect("snapshot");
    assert_eq!(late.revision, Revision::new(6));

    // The domain objects agree...
    let deltas = backlog(&store, early.revision.get()).await;
    let mut state: State = (
        early
            .apis
            .iter()
            .map(|a| (a.slug.to_string(), a.clone()))
            .collect(),
        early
            .keys
            .iter()
            .map(|k| (k.id.to_string(), k.clone()))
            .collect(),
    );
    for delta in &deltas {
        apply(&mut state, delta);
    }
    let expected: State = (
        late.apis
            .iter()
            .map(|a| (a.slug.to_string(), a.clone()))
            .collect(),
        late.keys
            .iter()
            .map(|k| (k.id.to_string(), k.clone()))
            .collect(),
    );
    assert_eq!(state, expected);

    // ...and so do indexes built both ways, object by object.
    let mut incremental = Index::from_snapshot(early.revision, early.apis, early.keys);
    for delta in deltas {
        let changes: Vec<Change> = delta
            .changes
            .into_iter()
            .map(|c| Change::try_from(c).expect("valid change"))
            .collect();
        incremental.apply(Revision::new(delta.revision), changes);
    }
    let whole = Index::from_snapshot(late.revision, late.apis, late.keys);
    assert_eq!(incremental.api_count(), 2);
    assert_eq!(incremental, whole);
}

fn event(api: &str, key: Option<KeyId>, method: &str, status: u16, at_ms: i64) -> UsageEvent {
    UsageEvent {
        request_id: uuid::Uuid::new_v4().to_string(),
        time: time::from_millis(at_ms),
        api: api.into(),
        key_id: key,
        method: method.into(),
        path: "/orders/7".into(),
        status,
        client_ip: "203.0.113.5".parse().unwrap(),
        reason: if status == 200 {
            Reason::Allowed
        } else {
            Reason::IpNotAllowedKey
        },
        matched_label: String::new(),
        door: Some(Door::Proxy),
        client_ip_source: Some(ClientIpSource::Peer),
    }
}

fn batch(events: Vec<UsageEvent>) -> UsageBatch {
    UsageBatch {
        id: uuid::Uuid::new_v4(),
        enforcer: "enforcer-1".parse().unwrap(),
        events,
        dropped_allowed: 0,
        dropped_blocked: 0,
        dropped_window: None,
        received_at: SystemTime::now(),
    }
}

async fn a_usage_batch_is_stored_once(db: Db) {
    let store = open(&db).await;
    new_api(&store, "orders").await;
    let now = time::to_millis(SystemTime::now());
    let b = batch(
        (0..3)
            .map(|i| event("orders", None, "GET", 200, now + i))
            .collect(),
    );
    assert_eq!(store.store_usage(T, b.clone()).await.unwrap(), Stored::New);
    assert_eq!(store.store_usage(T, b).await.unwrap(), Stored::Duplicate);
    let rows = store
        .query_usage(T, &UsageFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    // Newest first.
    assert_eq!(rows[0].time_ms, now + 2);
    assert_eq!(rows[0].enforcer_id, "enforcer-1");
    // Usage batches never touch the configuration revision.
    assert_eq!(store.current_revision().await.unwrap(), Revision::new(1));
}

async fn usage_queries_filter_and_page(db: Db) {
    let store = open(&db).await;
    new_api(&store, "orders").await;
    let (key, _) = new_key(&store, "orders").await;
    let t0 = time::to_millis(SystemTime::now());
    let mut events = Vec::new();
    for i in 0..10 {
        // Pairs share a millisecond, so paging must order by id too.
        let at = t0 + i / 2;
        let (method, status) = if i % 3 == 0 {
            ("POST", 403)
        } else {
            ("GET", 200)
        };
        let key = (i % 2 == 0).then_some(key);
        events.push(event("orders", key, method, status, at));
    }
    events.push(event("unknown-api", None, "GET", 404, t0 + 100));
    store.store_usage(T, batch(events)).await.unwrap();

    let count = |filter: UsageFilter| {
        let store = &store;
        async move {
            store
                .query_usage(T, &filter, None, 1000)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(count(UsageFilter::default()).await, 11);
    assert_eq!(
        count(UsageFilter {
            api: Some("orders".into()),
            ..Default::default()
        })
        .await,
        10
    );
    assert_eq!(
        count(UsageFilter {
            api_key_id: Some(key.to_string()),
            ..Default::default()
        })
        .await,
        5
    );
    assert_eq!(
        count(UsageFilter {
            method: Some("POST".into()),
            ..Default::default()
        })
        .await,
        4
    );
    assert_eq!(
        count(UsageFilter {
            status: Some(403),
            ..Default::default()
        })
        .await,
        4
    );
    assert_eq!(
        count(UsageFilter {
            status: Some(404),
            ..Default::default()
        })
        .await,
        1
    );
    let both = UsageFilter {
        api_key_id: Some(key.to_string()),
        method: Some("POST".into()),
        status: Some(403),
        ..Default::default()
    };
    assert_eq!(count(both).await, 2); // i = 0, 6

    // Pages of 3 walk every row once, newest first by (time, id).
    let all = store
        .query_usage(T, &UsageFilter::default(), None, 1000)
        .await
        .unwrap();
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query_usage(T, &UsageFilter::default(), cursor, 3)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(UsageCursor {
            time_ms: last.time_ms,
            id: last.id,
        });
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let order: Vec<(i64, i64)> = all.iter().map(|r| (r.time_ms, r.id)).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(order, sorted);
}

/// A batch reporting drops leaves one gap (not two, when retried), merged
/// with the events by its first drop; pages walk both once, a gap sharing a
/// millisecond with events coming after them; the enforcer, reason and time
/// filters apply to gaps, the others keep them.
async fn drops_are_gaps_in_the_usage_log(db: Db) {
    let store = open(&db).await;
    new_api(&store, "orders").await;
    let t0 = time::to_millis(SystemTime::now());
    let events = (0..6)
        .map(|i| event("orders", None, "GET", 200, t0 + i))
        .collect();
    store.store_usage(T, batch(events)).await.unwrap();
    let gap = UsageBatch {
        dropped_allowed: 7,
        dropped_blocked: 0,
        dropped_window: Some((time::from_millis(t0 + 2), time::from_millis(t0 + 40))),
        ..batch(vec![event("orders", None, "GET", 200, t0 + 2)])
    };
    assert_eq!(
        store.store_usage(T, gap.clone()).await.unwrap(),
        Stored::New
    );
    assert_eq!(store.store_usage(T, gap).await.unwrap(), Stored::Duplicate);
    let old_enforcer = UsageBatch {
        enforcer: "enforcer-2".parse().unwrap(),
        dropped_allowed: 1,
        dropped_blocked: 2,
        dropped_window: None,
        received_at: time::from_millis(t0 + 100),
        ..batch(Vec::new())
    };
    store.store_usage(T, old_enforcer).await.unwrap();

    let rows = |filter: UsageFilter| {
        let store = &store;
        async move { store.query_usage(T, &filter, None, 1000).await.unwrap() }
    };
    let all = rows(UsageFilter::default()).await;
    assert_eq!(all.len(), 7 + 2);
    let gaps: Vec<_> = all.iter().filter(|r| r.dropped.is_some()).collect();
    assert_eq!(gaps.len(), 2);
    // The older enforcer's drops sit at arrival, newest of all.
    assert_eq!(all[0].enforcer_id, "enforcer-2");
    let d = all[0].dropped.unwrap();
    assert_eq!((d.allowed, d.blocked, d.last_ms), (1, 2, all[0].time_ms));
    let ours = gaps[1];
    assert_eq!(ours.time_ms, t0 + 2);
    let d = ours.dropped.unwrap();
    assert_eq!((d.allowed, d.blocked, d.last_ms), (7, 0, t0 + 40));
    assert!(ours.request_id.is_empty() && ours.reason.is_empty());
    // Within t0 + 2: both events, then the gap.
    let at_t2: Vec<bool> = all
        .iter()
        .filter(|r| r.time_ms == t0 + 2)
        .map(|r| r.dropped.is_some())
        .collect();
    assert_eq!(at_t2, [false, false, true]);

    for size in [1, 2, 3] {
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .query_usage(T, &UsageFilter::default(), cursor, size)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some(UsageCursor {
                time_ms: last.time_ms,
                id: last.id,
            });
            paged.extend(page);
        }
        assert_eq!(paged, all, "pages of {size}");
    }

    let gap_count = |filter: UsageFilter| async {
        rows(filter)
            .await
            .iter()
            .filter(|r| r.dropped.is_some())
            .count()
    };
    let by_enforcer = UsageFilter {
        enforcer_id: Some("enforcer-1".into()),
        ..Default::default()
    };
    assert_eq!(rows(by_enforcer.clone()).await.len(), 7 + 1);
    let blocked = UsageFilter {
        reasons: Some(vec!["IP_NOT_ALLOWED_KEY".into()]),
        ..by_enforcer.clone()
    };
    assert_eq!(gap_count(blocked).await, 0, "it dropped no blocked request");
    let allowed = UsageFilter {
        reasons: Some(vec!["ALLOWED".into()]),
        ..by_enforcer.clone()
    };
    assert_eq!(gap_count(allowed).await, 1);
    let by_api = UsageFilter {
        api: Some("orders".into()),
        status: Some(200),
        ..by_enforcer.clone()
    };
    assert_eq!(gap_count(by_api).await, 1, "drops cannot be split by API");
    // A range overlapping the window keeps the gap; one after it does not.
    let overlapping = UsageFilter {
        start_ms: Some(t0 + 30),
        end_ms: Some(t0 + 35),
        ..by_enforcer.clone()
    };
    assert_eq!(rows(overlapping).await.len(), 1);
    let after = UsageFilter {
        start_ms: Some(t0 + 41),
        ..by_enforcer
    };
    assert_eq!(rows(after).await.len(), 0);
    // The kind filter: only gaps, or only requests.
    let only_gaps = rows(UsageFilter {
        gaps: Some(true),
        ..Default::default()
    })
    .await;
    assert_eq!(only_gaps, gaps.into_iter().cloned().collect::<Vec<_>>());
    let only_requests = UsageFilter {
        gaps: Some(false),
        ..Default::default()
    };
    assert_eq!(rows(only_requests).await.len(), 7);
}

/// Each event keeps the door it came through; one whose enforcer did not
/// say is stored as `unknown`, and each of them is a filter.
async fn usage_events_keep_their_door_and_filter_by_it(db: Db) {
    let store = open(&db).await;
    new_api(&store, "orders").await;
    let t0 = time::to_millis(SystemTime::now());
    let doors = [
        Some(Door::Proxy),
        Some(Door::Check),
        Some(Door::Proxy),
        None,
        Some(Door::Check),
        Some(Door::Proxy),
    ];
    let events = doors
        .iter()
        .zip(0..)
        .map(|(door, i)| UsageEvent {
            request_id: format!("req-{i}"),
            door: *door,
            ..event("orders", None, "GET", 200, t0 + i)
        })
        .collect();
    store.store_usage(T, batch(events)).await.unwrap();

    let ids = |door: Option<&str>| {
        let store = &store;
        let filter = UsageFilter {
            door: door.map(str::to_owned),
            ..Default::default()
        };
        async move {
            store
                .query_usage(T, &filter, None, 1000)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.request_id, r.door))
                .collect::<Vec<_>>()
        }
    };
    let pair = |i: usize, door: &str| (format!("req-{i}"), door.to_owned());
    assert_eq!(
        ids(None).await,
        [
            pair(5, "proxy"),
            pair(4, "check"),
            pair(3, "unknown"),
            pair(2, "proxy"),
            pair(1, "check"),
            pair(0, "proxy"),
        ]
    );
    assert_eq!(
        ids(Some("proxy")).await,
        [pair(5, "proxy"), pair(2, "proxy"), pair(0, "proxy")]
    );
    assert_eq!(
        ids(Some("check")).await,
        [pair(4, "check"), pair(1, "check")]
    );
    assert_eq!(ids(Some("unknown")).await, [pair(3, "unknown")]);
    assert!(ids(Some("ext_authz")).await.is_empty());
    // The door narrows the other filters, not replaces them.
    let combined = UsageFilter {
        door: Some("proxy".into()),
        start_ms: Some(t0 + 1),
        end_ms: Some(t0 + 5),
        ..Default::default()
    };
    let rows = store.query_usage(T, &combined, None, 1000).await.unwrap();
    let got: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(got, ["req-2"]);
}

/// Each event keeps where its client address came from, every source by
/// its own name; one whose enforcer did not say is stored as `unknown`,
/// never as `unknown-hop` (a hop that hid its client). Each is a filter,
/// and it narrows the others.
async fn usage_events_keep_their_client_ip_source_and_filter_by_it(db: Db) {
    let store = open(&db).await;
    new_api(&store, "orders").await;
    let t0 = time::to_millis(SystemTime::now());
    // Every source once, then one not said, then two more proxy-door ones.
    let mut sources: Vec<Option<ClientIpSource>> =
        ClientIpSource::ALL.into_iter().map(Some).collect();
    sources.extend([
        None,
        Some(ClientIpSource::Malformed),
        Some(ClientIpSource::Peer),
    ]);
    let events = sources
        .iter()
        .zip(0..)
        .map(|(source, i)| UsageEvent {
            request_id: format!("req-{i}"),
            client_ip_source: *source,
            ..event("orders", None, "GET", 200, t0 + i)
        })
        .collect();
    store.store_usage(T, batch(events)).await.unwrap();

    let rows = |filter: UsageFilter| {
        let store = &store;
        async move {
            store
                .query_usage(T, &filter, None, 1000)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.request_id, r.client_ip_source))
                .collect::<Vec<_>>()
        }
    };
    let by_source = |name: &str| UsageFilter {
        client_ip_source: Some(name.to_owned()),
        ..Default::default()
    };
    let pair = |i: usize, source: &str| (format!("req-{i}"), source.to_owned());

    // Each source comes back by its own name, oldest last.
    let all = rows(UsageFilter::default()).await;
    let mut expected: Vec<_> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| pair(i, ClientIpSource::name(*s)))
        .collect();
    expected.reverse();
    assert_eq!(all, expected);
    assert_eq!(all[2], pair(10, "unknown"), "not said: {all:?}");

    for source in ClientIpSource::ALL {
        let found = rows(by_source(source.as_str())).await;
        assert!(
            !found.is_empty() && found.iter().all(|(_, s)| s == source.as_str()),
            "{source}: {found:?}"
        );
    }
    assert_eq!(
        rows(by_source("malformed")).await,
        [pair(11, "malformed"), pair(6, "malformed")]
    );
    assert_eq!(rows(by_source("unknown")).await, [pair(10, "unknown")]);
    assert_eq!(
        rows(by_source("unknown-hop")).await,
        [pair(5, "unknown-hop")]
    );

    // The source narrows the other filters, not replaces them.
    let combined = UsageFilter {
        client_ip_source: Some("peer".into()),
        start_ms: Some(t0 + 1),
        ..Default::default()
    };
    assert_eq!(rows(combined).await, [pair(12, "peer")]);
    let with_door = UsageFilter {
        client_ip_source: Some("named".into()),
        door: Some("check".into()),
        ..Default::default()
    };
    assert!(
        rows(with_door).await.is_empty(),
        "every event here came through the proxy door"
    );
}

async fn a_compacted_change_log_asks_for_a_snapshot(db: Db) {
    let store = open(&db).await;
    new_api(&store, "orders").await;
    for i in 0..4 {
        let cidr = format!("203.0.113.{i}");
        set_api_list(&store, &slug("orders"), list(&[&cidr]), None)
            .await
            .unwrap();
    }
    let pruned = store.prune(SystemTime::UNIX_EPOCH, 2).await.unwrap();
    assert_eq!(pruned.changes, 3);
    assert_eq!(
        store.changes_after(Revision::ZERO, 100).await.unwrap(),
        Backlog::Compacted
    );
    assert_eq!(
        store.changes_after(Revision::new(2), 100).await.unwrap(),
        Backlog::Compacted
    );
    assert_eq!(backlog(&store, 3).await.len(), 2);
    assert!(backlog(&store, 5).await.is_empty());

    // Old usage events go too.
    let old = event(
        "orders",
        None,
        "GET",
        200,
        time::to_millis(SystemTime::now() - Duration::from_secs(40 * 86_400)),
    );
    store.store_usage(T, batch(vec![old])).await.unwrap();
    let pruned = store
        .prune(SystemTime::now() - Duration::from_secs(30 * 86_400), 10_000)
        .await
        .unwrap();
    assert_eq!(pruned.usage_events, 1);
}

/// Retention takes old days whole where it can: on PostgreSQL a day with
/// a partition of its own is dropped (no row deleted one by one), a day
/// without one is deleted from the default partition in chunks; SQLite
/// deletes in chunks. Recent rows stay on both, and the queries see them.
async fn retention_drops_old_days_and_keeps_recent_rows(db: Db) {
    let store = open(&db).await;
    new_api(&store, "orders").await;
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let ten_days_ago = now - 10 * day;
    // A partition for that day and its neighbours, as if the control plane
    // had been running then; forty days ago has none.
    store.prepare_usage_days_around(ten_days_ago).await.unwrap();
    let at = |t: SystemTime| time::to_millis(t);
    let events = vec![
        event("orders", None, "GET", 200, at(ten_days_ago)),
        event("orders", None, "GET", 200, at(ten_days_ago) + 1),
        event("orders", None, "GET", 200, at(now - 40 * day)),
        event("orders", None, "GET", 200, at(now)),
    ];
    store.store_usage(T, batch(events)).await.unwrap();

    let pruned = store.prune(now - 5 * day, 10_000).await.unwrap();
    if db.url().starts_with("postgres") {
        assert!(pruned.usage_days >= 1, "{pruned:?}");
        assert_eq!(pruned.usage_events, 1, "only the day without a partition");
    } else {
        assert_eq!(pruned.usage_days, 0);
        assert_eq!(pruned.usage_events, 3);
    }
    let left = store
        .query_usage(T, &UsageFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].time_ms, at(now));
}

async fn reopening_keeps_data_and_revision(db: Db) {
    let store = open(&db).await;
    new_api(&store, "orders").await;
    let (key, rev) = new_key(&store, "orders").await;
    store.close().await;
    drop(store);

    let store = open(&db).await;
    assert_eq!(store.current_revision().await.unwrap(), rev);
    assert!(store.key(T, &key).await.unwrap().is_some());
    assert_eq!(new_api(&store, "billing").await, rev.next());
}

/// An allowlist write reads 24 hours of usage for its lockout preview
/// before it takes the write lock: while one preview is held, another
/// tenant's write and a usage ingest both finish, and the held write then
/// commits after them. The expiry sweep reads no usage at all, so it
/// finishes too, even on the held tenant's lists.
async fn a_slow_lockout_preview_holds_up_no_other_write(db: Db) {
    /// Far longer than either write needs; they would wait for the held
    /// one if it had the lock (SQLite gives up only after 10 s).
    const BOUND: Duration = Duration::from_secs(5);
    let store = Arc::new(open(&db).await);
    new_api(&store, "orders").await;
    new_api(&store, "payments").await;
    let soon = SystemTime::now() + Duration::from_secs(60);
    let temporary = Entry::new(
        "192.0.2.0/24".parse().unwrap(),
        Default::default(),
        Some(soon),
    );
    let lasting = Entry::new("198.51.100.0/24".parse().unwrap(), Default::default(), None);
    let payments = Allowlist::new(vec![temporary, lasting.clone()], false);
    set_api_list(&store, &slug("payments"), payments, None)
        .await
        .expect("a list with a temporary entry");
    let (other, _) = store
        .create_tenant(
            &ctx(),
            NewTenant {
                id: "acme".into(),
                name: "Acme".into(),
            },
            NewToken {
                name: "acme owner".into(),
                role: Role::Owner,
                sha256: [7; 32],
            },
        )
        .await
        .expect("create a second tenant");
    let other_ctx = WriteCtx {
        tenant: other.key,
        ..ctx()
    };
    let billing = NewApi {
        slug: slug("billing"),
        name: "Billing API".into(),
        routes: vec![],
    };
    store
        .create_api(&other_ctx, billing)
        .await
        .expect("create the other tenant's API");
    // An active caller, so the held write has a preview to compute.
    let now = time::to_millis(SystemTime::now());
    let seen = batch(vec![event("orders", None, "GET", 200, now)]);
    store.store_usage(T, seen).await.expect("store usage");

    let hold = store.hold_lockout_previews(T);
    let held = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            let write = set(list(&["198.51.100.0/24"]), ListRules::for_apis(), None);
            store
                .write_allowlist::<ApiRecord>(&ctx(), &slug("orders"), write)
                .await
        }
    });
    tokio::time::timeout(Duration::from_secs(30), hold.waiting())
        .await
        .expect("the write's preview to start");

    let write = set(list(&["203.0.113.0/24"]), ListRules::for_apis(), None);
    let billing = slug("billing");
    let other_write = store.write_allowlist::<ApiRecord>(&other_ctx, &billing, write);
    let other_written = tokio::time::timeout(BOUND, other_write)
        .await
        .expect("another tenant's write finishes while a preview is held")
        .expect("another tenant's write");
    let ingest = store.store_usage(
        other.key,
        batch(vec![event("billing", None, "GET", 200, now)]),
    );
    let stored = tokio::time::timeout(BOUND, ingest)
        .await
        .expect("an ingest finishes while a preview is held")
        .expect("ingest");
    assert_eq!(stored, Stored::New);
    let after_expiry = soon + Duration::from_secs(1);
    let swept = tokio::time::timeout(BOUND, store.remove_expired_entries(after_expiry))
        .await
        .expect("the sweep finishes while a preview of its tenant is held")
        .expect("sweep");
    assert_eq!(swept, 1);
    let payments = store.api(T, &slug("payments"), after_expiry).await.unwrap();
    assert_eq!(payments.unwrap().config.allowlist.entries(), [lasting]);
    assert!(!held.is_finished(), "the held write waits for its preview");

    drop(hold);
    let written = held.await.unwrap().expect("the held write");
    assert!(written.record.revision > other_written.record.revision);
    assert_eq!(written.lockout.total, 1, "203.0.113.5 would be blocked");
    assert_eq!(written.record.config.allowlist, list(&["198.51.100.0/24"]));
}

/// The usage log is written apart from the configuration (its own file on
/// SQLite, its own tables and connections on PostgreSQL): an ingest goes
/// through while another connection holds the configuration's write lock,
/// and an allowlist write, lockout preview included, goes through while
/// another holds the usage log's. Each hold is shown to be real by a write
/// of its own kind that waits for it.
async fn ingest_and_allowlist_writes_never_wait_for_each_other(db: Db) {
    use sqlx::{Connection, Executor};
    const BOUND: Duration = Duration::from_secs(5);

    let store = Arc::new(open(&db).await);
    new_api(&store, "orders").await;
    let now = time::to_millis(SystemTime::now());
    let postgres = db.url().starts_with("postgres");
    sqlx::any::install_default_drivers();
    let connect = |url: String| async move {
        sqlx::AnyConnection::connect(&url)
            .await
            .expect("a connection of the test's own")
    };

    // Every configuration write updates the one `meta` row first.
    let mut config = connect(db.url().to_owned()).await;
    let begin = if postgres { "BEGIN" } else { "BEGIN IMMEDIATE" };
    config.execute(begin).await.expect("begin");
    config
        .execute("UPDATE meta SET revision = revision WHERE id = 1")
        .await
        .expect("hold the configuration's write lock");
    let waiting_write = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            let write = set(list(&["203.0.113.0/24"]), ListRules::for_apis(), None);
            store
                .write_allowlist::<ApiRecord>(&ctx(), &slug("orders"), write)
                .await
        }
    });
    let ingest = store.store_usage(T, batch(vec![event("orders", None, "GET", 200, now)]));
    let stored = tokio::time::timeout(BOUND, ingest)
        .await
        .expect("an ingest finishes while an allowlist write holds the lock")
        .expect("ingest");
    assert_eq!(stored, Stored::New);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting_write.is_finished(),
        "the hold is real: an allowlist write waits for it"
    );
    config.execute("ROLLBACK").await.expect("release");
    tokio::time::timeout(Duration::from_secs(30), waiting_write)
        .await
        .expect("the write goes on once released")
        .unwrap()
        .expect("the allowlist write");

    // Every ingest inserts its batch id into `usage_batches` first.
    let usage_url = if postgres {
        db.url().to_owned()
    } else {
        db.url().replace("/ipgate.db", "/ipgate.usage.db")
    };
    let mut usage = connect(usage_url).await;
    usage.execute(begin).await.expect("begin");
    let hold = if postgres {
        "LOCK TABLE usage_batches IN EXCLUSIVE MODE"
    } else {
        "DELETE FROM usage_batches WHERE id = 'none'"
    };
    usage
        .execute(hold)
        .await
        .expect("hold the usage log's write lock");
    let waiting_ingest = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            store
                .store_usage(T, batch(vec![event("orders", None, "GET", 200, now + 1)]))
                .await
        }
    });
    // Its lockout preview reads the log: the first ingest's address made an
    // allowed request, the list lets it in, and the new list leaves it out.
    let write = set(list(&["192.0.2.0/24"]), ListRules::for_apis(), None);
    let written = tokio::time::timeout(
        BOUND,
        store.write_allowlist::<ApiRecord>(&ctx(), &slug("orders"), write),
    )
    .await
    .expect("an allowlist write finishes while an ingest holds the log")
    .expect("the allowlist write");
    assert_eq!(written.record.config.allowlist, list(&["192.0.2.0/24"]));
    assert_eq!(written.lockout.total, 1, "203.0.113.5 would be blocked");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting_ingest.is_finished(),
        "the hold is real: an ingest waits for it"
    );
    usage.execute("ROLLBACK").await.expect("release");
    let stored = tokio::time::timeout(Duration::from_secs(30), waiting_ingest)
        .await
        .expect("the ingest goes on once released")
        .unwrap()
        .expect("ingest");
    assert_eq!(stored, Stored::New);
}

on_both_backends!(
    revisions_commit_in_order_with_their_change_rows,
    ingest_and_allowlist_writes_never_wait_for_each_other,
    retention_drops_old_days_and_keeps_recent_rows,
    a_slow_lockout_preview_holds_up_no_other_write,
    a_stale_etag_changes_nothing,
    a_snapshot_plus_later_deltas_is_the_later_snapshot,
    a_usage_batch_is_stored_once,
    usage_queries_filter_and_page,
    drops_are_gaps_in_the_usage_log,
    usage_events_keep_their_door_and_filter_by_it,
    usage_events_keep_their_client_ip_source_and_filter_by_it,
    a_compacted_change_log_asks_for_a_snapshot,
    reopening_keeps_data_and_revision,
);
