//! A temporary allowlist entry stops matching at its instant on a running
//! enforcer, with the control plane stopped (killed) before the instant:
//! the enforcer needs no message to expire it. On SQLite and PostgreSQL.
//!
//! The contract of docs/entries.md is "at its instant"; the test allows 1 s and prints
//! the lag it measured. It polls; it is not a speed benchmark.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipgate_shared::proto::admin::v1::{
    AddApiKeyAllowlistEntriesRequest, Allowlist, GetApiKeyRequest,
    RemoveApiKeyAllowlistEntriesRequest, SetApiKeyAllowlistRequest,
};
use ipgate_tests::{
    Backend, World,
    admin::{ack, cidrs, entry, expiring},
};

/// How far ahead the entry expires: time to sync and stop the control plane.
const AHEAD: Duration = Duration::from_secs(3);
/// The most the refusal may trail the instant.
const CONTRACT: Duration = Duration::from_secs(1);

/// How long to watch a list across the control plane's expiry sweep (it
/// runs at start and every 10 s).
const SWEEP_WATCH: Duration = Duration::from_secs(12);

const KEY_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#;

async fn a_temporary_entry_expires_on_the_enforcer_alone(backend: Backend) {
    let mut w = World::start(&backend).await;
    // Whole milliseconds: what the store keeps.
    let ms = (SystemTime::now() + AHEAD)
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let instant = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).expect("ms fit"));
    let written = w
        .admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: w.key_id.clone(),
            allowlist: Some(Allowlist {
                entries: vec![
                    entry("127.0.0.1", "this machine"),
                    expiring("127.0.0.2", "visitor until the instant", instant),
                ],
                report_only: false,
            }),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("store the list")
        .into_inner();
    let stored = written.key.expect("key");
    let stored_expiry = stored.allowlist.as_ref().expect("list").entries[1]
        .expires_at
        .expect("the entry keeps its expiry");
    assert_eq!(
        stored_expiry,
        ipgate_tests::admin::timestamp(instant),
        "stored to the millisecond"
    );

    // In force on the enforcer: 127.0.0.3 is refused, the visitor passes.
    w.wait_for("127.0.0.3", &w.key, 403).await;
    assert_eq!(w.call("127.0.0.2", &w.key).await.status, 200);
    w.cp.kill();
    let left = instant
        .duration_since(SystemTime::now())
        .expect("the control plane was stopped before the instant");
    println!("control plane killed {left:?} before the entry's instant");
    assert!(
        left > Duration::from_millis(300),
        "too close to the instant to observe it: {left:?}"
    );

    // Before the instant: let through, every time.
    let mut before = 0;
    while SystemTime::now() + Duration::from_millis(100) < instant {
        let res = w.call("127.0.0.2", &w.key).await;
        assert_eq!(res.status, 200, "before the instant: {res:?}");
        before += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // After it: refused within the contract, and from then on.
    let deadline = instant + CONTRACT + Duration::from_secs(2);
    let (lag, refused) = loop {
        let res = w.call("127.0.0.2", &w.key).await;
        let now = SystemTime::now();
        if res.status == 403 {
            break (now.duration_since(instant).unwrap_or_default(), res);
        }
        assert_eq!(res.status, 200, "{res:?}");
        assert!(
            now < deadline,
            "127.0.0.2 still passes 3 s after the instant"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "temporary entry: {before} calls passed before the instant; first refusal {lag:?} after it (contract: {CONTRACT:?})"
    );
    assert!(lag < CONTRACT, "refused {lag:?} after the instant");
    assert_eq!(refused.body, KEY_BODY);
    for _ in 0..5 {
        assert_eq!(w.call("127.0.0.2", &w.key).await.status, 403);
    }
    assert_eq!(
        w.call("127.0.0.1", &w.key).await.status,
        200,
        "permanent entries stay"
    );

    // Back up, the control plane no longer lists the expired entry.
    w.cp.restart();
    w.admin = w.cp.admin().await;
    let (list, _) = ipgate_tests::eventually(
        Duration::from_secs(15),
        "the expired entry to leave the store",
        || {
            let mut admin = w.admin.clone();
            let id = w.key_id.clone();
            async move {
                let key = admin
                    .get_api_key(GetApiKeyRequest { id })
                    .await
                    .ok()?
                    .into_inner();
                let list = cidrs(key.allowlist.as_ref());
                (list.len() == 1).then_some(list)
            }
        },
    )
    .await;
    assert_eq!(list, ["127.0.0.1/32"]);
}

/// A list whose only entry is temporary: once the entry expires the list
/// blocks everyone (nothing on it matches), and it stays that way — the
/// control plane's sweep (which runs at start, then periodically) keeps an
/// expired entry that is all a list has left, since an empty list lets
/// everyone through: an expiry takes access away, it never opens a list.
/// An operator's next edit drops it, and emptying the list on purpose opens
/// it.
async fn the_last_temporary_entry_leaves_the_list_closed(backend: Backend) {
    let mut w = World::start(&backend).await;
    let instant = SystemTime::now() + Duration::from_secs(2);
    w.admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: w.key_id.clone(),
            allowlist: Some(Allowlist {
                entries: vec![expiring("127.0.0.2", "visitor", instant)],
                report_only: false,
            }),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("store the list");
    w.wait_for("127.0.0.3", &w.key, 403).await;
    w.wait_for("127.0.0.2", &w.key, 403).await;
    assert!(SystemTime::now() >= instant, "refused before the instant");

    // A restart runs the sweep at once, and it runs again every 10 s: for
    // longer than that, the list stays closed and keeps its entry.
    w.cp.restart();
    w.admin = w.cp.admin().await;
    w.wait_live().await;
    let watched = std::time::Instant::now();
    while watched.elapsed() < SWEEP_WATCH {
        let key = w
            .admin
            .get_api_key(GetApiKeyRequest {
                id: w.key_id.clone(),
            })
            .await
            .expect("read the key")
            .into_inner();
        assert_eq!(
            cidrs(key.allowlist.as_ref()),
            ["127.0.0.2/32"],
            "the expired entry is all the list has, so it stays"
        );
        for from in ["127.0.0.2", "127.0.0.3"] {
            let res = w.call(from, &w.key).await;
            assert_eq!(res.status, 403, "{from} after the sweep: {res:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The next edit drops it; emptying the list on purpose opens it.
    let added = w
        .admin
        .add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest {
            id: w.key_id.clone(),
            entries: vec![entry("127.0.0.5", "new office")],
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("add an entry")
        .into_inner();
    assert_eq!(
        cidrs(added.key.as_ref().and_then(|k| k.allowlist.as_ref())),
        ["127.0.0.5/32"]
    );
    w.wait_for("127.0.0.5", &w.key, 200).await;
    assert_eq!(w.call("127.0.0.3", &w.key).await.status, 403);
    w.admin
        .remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest {
            id: w.key_id.clone(),
            cidrs: vec!["127.0.0.5".into()],
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("empty the list on purpose");
    w.wait_for("127.0.0.3", &w.key, 200).await;
}

ipgate_tests::on_both_backends!(
    a_temporary_entry_expires_on_the_enforcer_alone,
    the_last_temporary_entry_leaves_the_list_closed,
);
