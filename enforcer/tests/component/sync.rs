//! The sync client against a scripted control plane: snapshots, deltas,
//! gaps, bad updates, a vanished control plane.

use ipgate_shared::Revision;

use crate::support::*;

const KEY_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#;

#[tokio::test]
async fn before_any_snapshot_the_enforcer_fails_closed() {
    let mut fake = FakeControlPlane::start().await;
    let running = ipgate_enforcer::start(config(fake.addr, &[]))
        .await
        .unwrap();
    let _session = fake.next_session().await;
    let world = World::new();
    let answer = check(&running, &world.office.secret, "203.0.113.7").await;
    assert!(!answer.allowed);
    assert_eq!(answer.http_status, 503);
    assert_eq!(answer.error_code, "ENFORCER_NOT_READY");
    assert_eq!(answer.reason, "NOT_SYNCED");
    assert_eq!(running.revision(), None);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn with_fail_open_it_allows_until_synced() {
    let mut fake = FakeControlPlane::start().await;
    let running = ipgate_enforcer::start(config(fake.addr, &["--fail-open-until-synced"]))
        .await
        .unwrap();
    let _session = fake.next_session().await;
    let answer = check(&running, "", "198.51.100.1").await;
    assert!(answer.allowed);
    assert_eq!(answer.http_status, 200);
    assert_eq!(answer.reason, "UNSYNCED_FAIL_OPEN");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_snapshot_in_chunks_is_acked_and_decides() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let running = ipgate_enforcer::start(config(fake.addr, &[]))
        .await
        .unwrap();
    let mut session = fake.next_session().await;
    assert_eq!(session.hello.known_revision, 0);
    assert_eq!(session.hello.enforcer_id, ENFORCER_ID);
    assert_eq!(
        session.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    session.send_all(world.snapshot(1));
    assert_eq!(session.expect_ack().await, 1);
    assert_eq!(running.revision(), Some(Revision::new(1)));

    let allowed = check(&running, &world.office.secret, "::ffff:203.0.113.7").await;
    assert!(allowed.allowed, "{allowed:?}");
    assert_eq!(allowed.reason, "ALLOWED");
    assert_eq!(allowed.matched_label, "office");
    assert_eq!(allowed.client_ip, "203.0.113.7");

    let denied = check(&running, &world.office.secret, "198.51.100.1").await;
    assert_eq!(denied.http_status, 403);
    assert_eq!(denied.reason, "IP_NOT_ALLOWED_KEY");
    assert_eq!(denied.body, KEY_BODY);

    let keyless = check(&running, "", "203.0.113.7").await;
    assert_eq!(keyless.http_status, 401);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_delta_is_applied_and_acked() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, mut session) = synced(&mut fake, &world, &[]).await;

    // Move the office key to another network.
    let moved = World::key(&world.office, "198.51.100.0/24", "new office");
    session.send(put_keys(2, vec![moved]));
    assert_eq!(session.expect_ack().await, 2);
    assert_eq!(running.revision(), Some(Revision::new(2)));
    let answer = check(&running, &world.office.secret, "198.51.100.9").await;
    assert!(answer.allowed);
    assert_eq!(answer.matched_label, "new office");
    let answer = check(&running, &world.office.secret, "203.0.113.7").await;
    assert_eq!(answer.reason, "IP_NOT_ALLOWED_KEY");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_gap_makes_the_enforcer_resume_from_its_revision() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, session) = synced(&mut fake, &world, &[]).await;

    let moved = World::key(&world.office, "198.51.100.0/24", "new office");
    session.send(put_keys(3, vec![moved]));
    let resumed = fake.next_session().await;
    assert_eq!(
        resumed.hello.known_revision, 1,
        "resumes from the revision in force"
    );
    assert_eq!(
        running.revision(),
        Some(Revision::new(1)),
        "revision 3 was not applied"
    );
    assert!(
        check(&running, &world.office.secret, "203.0.113.7")
            .await
            .allowed
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_delta_is_nacked_and_the_old_index_stays() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, mut session) = synced(&mut fake, &world, &[]).await;

    let mut bad = World::key(&world.office, "198.51.100.0/24", "typo");
    bad.allowlist.as_mut().unwrap().entries[0].cidr = "203.0.113.5/24".into();
    session.send(put_keys(2, vec![bad]));
    let nack = session.expect_nack().await;
    assert_eq!(nack.revision, 2);
    assert!(
        nack.reason.contains("put_key.allowlist.entries[0].cidr"),
        "{}",
        nack.reason
    );
    assert!(
        nack.reason.contains("203.0.113.0/24"),
        "suggests the fix: {}",
        nack.reason
    );

    assert_eq!(running.revision(), Some(Revision::new(1)));
    assert!(
        check(&running, &world.office.secret, "203.0.113.7")
            .await
            .allowed
    );
    let resynced = fake.next_session().await;
    assert_eq!(resynced.hello.known_revision, 1);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_control_plane_that_is_behind_never_rolls_the_index_back() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, mut session) = synced(&mut fake, &world, &[]).await;
    session.send(put_keys(2, vec![]));
    assert_eq!(session.expect_ack().await, 2);
    drop(session);

    // The stream ends; the next replica is behind and offers an old snapshot.
    let mut behind = fake.next_session().await;
    assert_eq!(behind.hello.known_revision, 2);
    behind.send(chunk(1, 0, true, vec![World::api()], vec![]));
    behind.send(put_keys(3, vec![]));
    assert_eq!(
        behind.expect_ack().await,
        3,
        "the old snapshot was skipped, not acked"
    );
    assert_eq!(running.revision(), Some(Revision::new(3)));
    assert!(
        check(&running, &world.office.secret, "203.0.113.7")
            .await
            .allowed
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn when_the_control_plane_is_gone_the_last_index_still_answers() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, session) = synced(&mut fake, &world, &[]).await;
    drop(session);
    fake.kill();

    for _ in 0..3 {
        let answer = check(&running, &world.office.secret, "203.0.113.7").await;
        assert!(answer.allowed);
        let answer = check(&running, &world.office.secret, "198.51.100.1").await;
        assert_eq!(answer.reason, "IP_NOT_ALLOWED_KEY");
    }
    assert_eq!(running.revision(), Some(Revision::new(1)));
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dead_address_is_skipped_for_the_next_one() {
    let mut fake = FakeControlPlane::start().await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = config(fake.addr, &[]);
    config
        .control_plane
        .insert(0, format!("http://{dead}").parse().unwrap());
    let running = ipgate_enforcer::start(config).await.unwrap();
    let mut session = fake.next_session().await;
    session.send_all(World::new().snapshot(1));
    assert_eq!(session.expect_ack().await, 1);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refusal_is_retried_not_given_up() {
    let mut fake = FakeControlPlane::start().await;
    fake.refuse_streams(2);
    let running = ipgate_enforcer::start(config(fake.addr, &[]))
        .await
        .unwrap();
    // Refused twice (logged as errors), then served.
    let session = fake.next_session().await;
    assert_eq!(session.hello.known_revision, 0);
    running.shutdown().await.unwrap();
}

/// What the gRPC health service says of `service`.
async fn health(
    running: &ipgate_enforcer::Running,
    service: &str,
) -> tonic_health::pb::health_check_response::ServingStatus {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.grpc_addr))
        .expect("a URL")
        .connect()
        .await
        .expect("connect to the gRPC door");
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = tonic_health::pb::HealthCheckRequest {
        service: service.into(),
    };
    client
        .check(request)
        .await
        .expect("a health answer")
        .into_inner()
        .status()
}

/// Restarted with `--snapshot-cache`, the enforcer decides at once from the
/// cached index, resumes from its revision, and reports the index stale
/// (health name `ipgate.enforcer.v1.Sync`) until the control plane vouches
/// for it.
#[tokio::test]
async fn a_snapshot_cache_serves_at_once_and_is_stale_until_vouched_for() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let sync = ipgate_enforcer::SYNC_HEALTH;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshot.cache");
    let path_arg = path.display().to_string();
    let flags = ["--snapshot-cache", path_arg.as_str()];
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, _session) = synced(&mut fake, &world, &flags).await;
    assert_eq!(health(&running, sync).await, ServingStatus::Serving);
    eventually("the cache file to be written", || async { path.exists() }).await;
    running.shutdown().await.unwrap();

    let running = ipgate_enforcer::start(config(fake.addr, &flags))
        .await
        .unwrap();
    let session = fake.next_session().await;
    assert_eq!(session.hello.known_revision, 1, "it resumes from the cache");
    let answer = check(&running, &world.office.secret, "203.0.113.7").await;
    assert!(answer.allowed, "{answer:?}");
    let blocked = check(&running, &world.office.secret, "198.51.100.1").await;
    assert_eq!(blocked.http_status, 403, "{blocked:?}");
    assert_eq!(
        health(&running, "ipgate.check.v1.CheckService").await,
        ServingStatus::Serving
    );
    assert_eq!(health(&running, sync).await, ServingStatus::NotServing);

    // A heartbeat: the control plane has nothing newer.
    session.send(ipgate_shared::proto::sync::v1::StreamResponse {
        kind: Some(
            ipgate_shared::proto::sync::v1::stream_response::Kind::Heartbeat(Default::default()),
        ),
    });
    eventually("the index to be vouched for", || async {
        health(&running, sync).await == ServingStatus::Serving
    })
    .await;
    running.shutdown().await.unwrap();
}
