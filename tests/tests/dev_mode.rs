//! `ipgate dev` as people try things out with it: the control plane's
//! flags (and their variables) reach it, and a second `ipgate dev` on the
//! same state folder is refused with a message that says where the first
//! one runs.

use std::time::Duration;

use ipgate_shared::proto::admin::v1::{
    ApiAllowlistResponse, ApiKey, CreateApiKeyRequest, SetApiAllowlistRequest,
};
use ipgate_tests::{
    admin::{ack, cidrs, entries, expect_code},
    process::{DevMode, dev_args, run_to_end},
};
use tonic::Code;

/// Puts `10.0.0.0/16` on the demo API's list.
async fn allow_private_range(
    dev: &DevMode,
) -> Result<tonic::Response<ApiAllowlistResponse>, tonic::Status> {
    dev.admin()
        .await
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: "demo".into(),
            allowlist: entries(&["10.0.0.0/16"]),
            options: ack(),
            ..Default::default()
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_flags_and_their_variables_reach_dev() {
    // By default an internal range is refused, with the flag to use.
    let dir = tempfile::tempdir().expect("temporary directory");
    let dev = DevMode::start(dir.path());
    let refused = expect_code(
        allow_private_range(&dev).await,
        Code::InvalidArgument,
        "10.0.0.0/16 without --allow-private-ranges",
    );
    assert!(
        refused.message().contains("--allow-private-ranges"),
        "{refused:?}"
    );
    drop(dev);

    // The flag, and another rule beside it.
    let dir = tempfile::tempdir().expect("temporary directory");
    let dev = DevMode::start_with(
        dir.path(),
        &["--allow-private-ranges", "--max-key-entries", "1"],
        &[],
    );
    let stored = allow_private_range(&dev)
        .await
        .expect("--allow-private-ranges lets 10.0.0.0/16 in")
        .into_inner();
    assert_eq!(
        cidrs(stored.api.as_ref().and_then(|a| a.allowlist.as_ref())),
        ["10.0.0.0/16"]
    );
    let mut admin = dev.admin().await;
    let too_long = admin
        .create_api_key(CreateApiKeyRequest {
            api: "demo".into(),
            name: "two entries".into(),
            allowlist: entries(&["203.0.113.1", "203.0.113.2"]),
            ..Default::default()
        })
        .await;
    expect_code(
        too_long,
        Code::InvalidArgument,
        "2 entries with --max-key-entries 1",
    );
    let one: ApiKey = admin
        .create_api_key(CreateApiKeyRequest {
            api: "demo".into(),
            name: "one entry".into(),
            allowlist: entries(&["203.0.113.1"]),
            ..Default::default()
        })
        .await
        .expect("1 entry with --max-key-entries 1")
        .into_inner()
        .key
        .expect("key");
    assert_eq!(cidrs(one.allowlist.as_ref()), ["203.0.113.1/32"]);
    drop(dev);

    // The variable.
    let dir = tempfile::tempdir().expect("temporary directory");
    let dev = DevMode::start_with(dir.path(), &[], &[("IPGATE_ALLOW_PRIVATE_RANGES", "true")]);
    allow_private_range(&dev)
        .await
        .expect("IPGATE_ALLOW_PRIVATE_RANGES=true lets 10.0.0.0/16 in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_dev_in_the_same_folder_says_where_the_first_runs() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let first = DevMode::start(dir.path());
    first.wait_synced().await;

    // Free ports for the second too: what stops it is the folder, not an
    // address in use.
    let args = dev_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let second = run_to_end(dir.path(), &args, &[], Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second ipgate dev started");
    for shown in [
        "already".to_owned(),
        "state folder .ipgate".to_owned(),
        format!("pid {}", first.pid()),
        first.control_plane.to_string(),
        first.check.to_string(),
        first.proxy.to_string(),
        format!("kill {}", first.pid()),
        "--dir".to_owned(),
    ] {
        assert!(stderr.contains(&shown), "{shown:?} missing from:\n{stderr}");
    }
    assert!(
        !stderr.contains("Address already in use"),
        "refused before binding anything:\n{stderr}"
    );

    // The first one was not disturbed.
    first.wait_synced().await;
    let mut admin = first.admin().await;
    admin
        .create_api_key(CreateApiKeyRequest {
            api: "demo".into(),
            name: "still here".into(),
            ..Default::default()
        })
        .await
        .expect("the first ipgate dev still answers");

    // Killed without a chance to clean up, it leaves no lock behind.
    first.kill();
    let again = DevMode::start(dir.path());
    again.wait_synced().await;
}

/// No release has shipped, so the schema changes in place; a state folder
/// an earlier build made then fails sqlx's checksum. `ipgate dev` says what
/// happened and what to do — not that an address is busy — and doing it
/// (removing the state folder) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_folder_from_another_build_is_refused_saying_to_remove_it() {
    use sqlx::Connection;

    let dir = tempfile::tempdir().expect("temporary directory");
    let dev = DevMode::start(dir.path());
    dev.wait_synced().await;
    dev.kill();
    // What another build's schema looks like to this one: migration 1 with
    // another checksum.
    let db = dir.path().join(".ipgate/ipgate.db");
    let mut conn = sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the dev database");
    sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 1")
        .bind(vec![7u8; 48])
        .execute(&mut conn)
        .await
        .expect("change the migration record");
    conn.close().await.expect("close the dev database");

    let args = dev_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = run_to_end(dir.path(), &args, &[], Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "started on another build's database"
    );
    for said in [
        "made by another build of ipgate",
        "migration 1",
        "for `ipgate dev`, remove the state folder (.ipgate",
    ] {
        assert!(stderr.contains(said), "{said:?} missing from:\n{stderr}");
    }
    assert!(
        !stderr.contains("another program holds it"),
        "not an address problem:\n{stderr}"
    );

    std::fs::remove_dir_all(dir.path().join(".ipgate")).expect("remove the state folder");
    DevMode::start(dir.path()).wait_synced().await;
}
