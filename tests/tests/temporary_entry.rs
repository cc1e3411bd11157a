//! A temporary allowlist entry stops matching at its instant on a running
//! enforcer, with the control plane stopped (killed) before the instant:
//! the enforcer needs no message to expire it. On SQLite and PostgreSQL.
//!
//! The contract of docs/entries.md is "at its instant". No wall-clock
//! margins: the enforcer decides by the clock at lookup, so every answer
//! received before the instant must let the visitor through and every
//! request sent after it must be refused (`ipgate_tests::timing`). The
//! control plane sweeps expired entries every 200 ms here, and the tests
//! wait for evidence that it did rather than for a span of time.

use std::time::{Duration, SystemTime};

use ipgate_shared::proto::admin::v1::{
    AddApiKeyAllowlistEntriesRequest, Allowlist, CreateApiKeyRequest, GetApiKeyRequest,
    RemoveApiKeyAllowlistEntriesRequest, SetApiKeyAllowlistRequest,
};
use ipgate_tests::{
    Backend, World,
    admin::{ack, cidrs, entry, expiring},
    eventually,
    timing::{self, timed, whole_ms},
    world::{API, PROPAGATION},
};

/// The control plane's `--expiry-sweep-interval` in these tests.
const SWEEP: &str = "200ms";

/// How far ahead the entry expires at first: time to sync and stop the
/// control plane. Doubled, up to [`ATTEMPTS`] times, on a machine too busy
/// to do both in time.
const AHEAD: Duration = Duration::from_secs(3);
const ATTEMPTS: u32 = 3;

const KEY_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#;

async fn a_temporary_entry_expires_on_the_enforcer_alone(backend: Backend) {
    let mut w = World::start_with(&backend, &["--expiry-sweep-interval", SWEEP]).await;
    let mut ahead = AHEAD;
    let mut instant = None;
    for attempt in 1..=ATTEMPTS {
        let at = whole_ms(SystemTime::now() + ahead);
        let written = w
            .admin
            .set_api_key_allowlist(SetApiKeyAllowlistRequest {
                id: w.key_id.clone(),
                allowlist: Some(Allowlist {
                    entries: vec![
                        entry("127.0.0.1", "this machine"),
                        expiring("127.0.0.2", "visitor until the instant", at),
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
            ipgate_tests::admin::timestamp(at),
            "stored to the millisecond"
        );

        // In force on the enforcer: 127.0.0.3 is refused, the visitor passes.
        w.wait_for("127.0.0.3", &w.key, 403).await;
        let visitor = timed(w.call("127.0.0.2", &w.key)).await;
        w.cp.kill();
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        if visitor.received < at && left > Duration::from_millis(300) {
            assert_eq!(visitor.response.status, 200, "{:?}", visitor.response);
            println!("control plane killed {left:?} before the entry's instant");
            instant = Some(at);
            break;
        }
        println!(
            "attempt {attempt}: only {left:?} left before the instant after syncing; again with more time"
        );
        w.cp.restart();
        w.admin = w.cp.admin().await;
        ahead *= 2;
    }
    let instant = instant.expect("the list reached the enforcer before its instant");

    // Before the instant the visitor is let through; from it on, refused.
    let switch = timing::across(
        instant,
        200,
        403,
        "127.0.0.2 around its entry's instant",
        || w.call("127.0.0.2", &w.key),
    )
    .await;
    println!(
        "temporary entry: {} calls passed before the instant; the first call sent after it was refused, answered {:?} after it",
        switch.before, switch.lag
    );
    assert_eq!(switch.first_after.body, KEY_BODY);
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
    let (list, _) = eventually(PROPAGATION, "the expired entry to leave the store", || {
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
    })
    .await;
    assert_eq!(list, ["127.0.0.1/32"]);
}

/// Makes a key whose list holds a permanent entry and one that expires in a
/// moment, and waits until the control plane's sweep has dropped the
/// expired one: proof that a sweep pass started after the canary was made.
/// Meanwhile `check` must hold at every poll.
async fn sweep_a_canary(w: &World, name: &str, check: impl AsyncFn()) {
    let mut admin = w.admin.clone();
    let mut ahead = Duration::from_millis(500);
    let mut id = None;
    for _ in 0..ATTEMPTS {
        let created = admin
            .create_api_key(CreateApiKeyRequest {
                api: API.into(),
                name: name.into(),
                allowlist: Some(Allowlist {
                    entries: vec![
                        entry("127.0.0.9", "canary"),
                        expiring("127.0.0.10", "canary, expiring", SystemTime::now() + ahead),
                    ],
                    report_only: false,
                }),
                ..Default::default()
            })
            .await;
        match created {
            Ok(created) => {
                id = Some(created.into_inner().key.expect("key").id);
                break;
            }
            // Expired before it was stored (a busy machine): more time.
            Err(status) if status.code() == tonic::Code::InvalidArgument => ahead *= 2,
            Err(status) => panic!("create a canary key: {status:?}"),
        }
    }
    let id = id.expect("a canary key");
    eventually(
        PROPAGATION,
        "the sweep to drop the canary's expired entry",
        || {
            let mut admin = admin.clone();
            let id = id.clone();
            let check = &check;
            async move {
                check().await;
                let key = admin
                    .get_api_key(GetApiKeyRequest { id })
                    .await
                    .expect("read the canary")
                    .into_inner();
                (cidrs(key.allowlist.as_ref()) == ["127.0.0.9/32"]).then_some(())
            }
        },
    )
    .await;
}

/// A list whose only entry is temporary: once the entry expires the list
/// blocks everyone (nothing on it matches), and it stays that way — the
/// control plane's sweep (which runs at start, then periodically) keeps an
/// expired entry that is all a list has left, since an empty list lets
/// everyone through: an expiry takes access away, it never opens a list.
/// An operator's next edit drops it, and emptying the list on purpose opens
/// it.
async fn the_last_temporary_entry_leaves_the_list_closed(backend: Backend) {
    let mut w = World::start_with(&backend, &["--expiry-sweep-interval", SWEEP]).await;
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
    // Expiry instants are kept in whole milliseconds: the entry stops
    // matching at the start of the instant's millisecond, which may be a
    // fraction of one before `instant` itself.
    let ms = ipgate_shared::time::to_millis;
    assert!(
        ms(SystemTime::now()) >= ms(instant),
        "refused before the instant"
    );

    // A restart runs the sweep at once, and it runs again every 200 ms.
    // Two canaries, the second made once the first was swept: the pass that
    // swept the first started after our entry expired and finished before
    // the pass that swept the second began, so a whole pass has seen our
    // list. Throughout, the list stays closed and keeps its entry.
    w.cp.restart();
    w.admin = w.cp.admin().await;
    w.wait_live().await;
    let still_closed = async || {
        let key = w
            .admin
            .clone()
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
    };
    sweep_a_canary(&w, "first canary", still_closed).await;
    sweep_a_canary(&w, "second canary", still_closed).await;
    still_closed().await;

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
