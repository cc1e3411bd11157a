//! The server as a whole: restart on the same database, bootstrap tokens,
//! health and reflection on the gRPC port.

use std::net::SocketAddr;

use ipgate_control_plane::start;
use ipgate_shared::proto::admin::v1::{CreateApiRequest, GetApiRequest, GetRevisionStatusRequest};
use sqlx::{AnyConnection, Connection};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::{v1, v1alpha};

use crate::{
    common::{Db, admin, admin_with, sync_with},
    on_both_backends,
};

async fn a_restart_keeps_data_and_revision(db: Db) {
    let server = db.start().await;
    let mut client = admin(server.addr).await;
    let created = client
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    server.shutdown().await.unwrap();

    let server = db.start().await;
    let mut client = admin(server.addr).await;
    let read = client
        .get_api(GetApiRequest {
            slug: "orders".into(),
        })
        .await
        .expect("the API survived the restart")
        .into_inner();
    assert_eq!(read.etag, created.etag);
    let status = client
        .get_revision_status(GetRevisionStatusRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.current_revision, created.revision);
    let next = client
        .create_api(CreateApiRequest {
            slug: "billing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.revision, created.revision + 1);
    server.shutdown().await.unwrap();
}

async fn a_fresh_installation_generates_tokens_once(db: Db) {
    let mut config = db.config();
    config.bootstrap_token = None;
    config.bootstrap_enforcer_token = None;
    let server = start(config.clone()).await.unwrap();
    let tokens = server
        .bootstrap
        .clone()
        .expect("tokens are generated on an empty database");
    assert!(tokens.owner.starts_with("ipg_admin_") && tokens.owner.len() == 10 + 43);
    assert!(tokens.enforcer.starts_with("ipg_enf_") && tokens.enforcer.len() == 8 + 43);
    let mut owner = admin_with(server.addr, Some(&tokens.owner)).await;
    owner
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .expect("the generated owner token writes");
    let mut enforcer = sync_with(server.addr, Some(&tokens.enforcer)).await;
    let denied = enforcer
        .report_events(ipgate_shared::proto::sync::v1::ReportEventsRequest::default())
        .await
        .unwrap_err();
    // Authenticated as an enforcer; the empty batch itself is what is wrong.
    assert_eq!(denied.code(), Code::InvalidArgument);
    server.shutdown().await.unwrap();

    // Once tokens exist nothing is generated; given tokens are added (idempotently).
    let again = start(config).await.unwrap();
    assert!(again.bootstrap.is_none());
    again.shutdown().await.unwrap();
    for _ in 0..2 {
        let given = db.start().await;
        assert!(given.bootstrap.is_none());
        let mut client = admin(given.addr).await;
        client
            .get_api(GetApiRequest {
                slug: "orders".into(),
            })
            .await
            .expect("the given owner token works");
        given.shutdown().await.unwrap();
    }
}

/// The schema is one migration changed in place until the first release,
/// so a database made by another build fails sqlx's checksum; the start
/// error says so in words, and what to do, instead of sqlx's "migration 1
/// was previously applied but has been modified".
async fn a_database_from_another_build_is_refused_saying_what_to_do(db: Db) {
    db.start().await.shutdown().await.unwrap();
    sqlx::any::install_default_drivers();
    let db = &db;
    let tamper = |sql: &'static str| async move {
        let mut conn = AnyConnection::connect(db.url())
            .await
            .expect("connect to the test database");
        sqlx::query(sql)
            .bind(vec![7u8; 48])
            .execute(&mut conn)
            .await
            .expect("change the migration record");
        conn.close().await.expect("close");
    };
    let refused = |what: &'static str| async move {
        let error = match start(db.config()).await {
            Ok(_) => panic!("{what}: a database from another build was used"),
            Err(e) => e.to_string(),
        };
        for said in [
            "was made by another build of ipgate",
            "Start on a new database",
            "for `ipgate dev`, remove the state folder (.ipgate",
        ] {
            assert!(
                error.contains(said),
                "{what}: {said:?} missing from: {error}"
            );
        }
        error
    };
    // A later build's schema: another checksum for migration 1.
    tamper("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 1").await;
    let error = refused("a changed migration").await;
    assert!(error.contains("migration 1"), "{error}");
    // A later build that added a migration this one lacks.
    tamper(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a later build', TRUE, $1, 0)",
    )
    .await;
    refused("a migration this build lacks").await;
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn health_and_reflection_are_served(db: Db) {
    let server = db.start().await;
    let mut health = HealthClient::new(channel(server.addr).await);
    for service in [
        "",
        "ipgate.admin.v1.AdminService",
        "ipgate.sync.v1.SyncService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    // List services over both reflection versions.
    let list = || async {
        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut client =
            v1::server_reflection_client::ServerReflectionClient::new(channel(server.addr).await);
        let mut stream = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        match stream
            .message()
            .await
            .unwrap()
            .and_then(|r| r.message_response)
        {
            Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    };
    let services = list().await;
    for expected in [
        "ipgate.admin.v1.AdminService",
        "ipgate.sync.v1.SyncService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|s| s == expected),
            "{expected} missing from {services:?}"
        );
    }

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "ipgate.admin.v1.AdminService".into(),
            ),
        ),
    };
    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(channel(server.addr).await);
    let mut stream = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = stream
        .message()
        .await
        .unwrap()
        .and_then(|r| r.message_response);
    assert!(
        matches!(
            answer,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f))
                if !f.file_descriptor_proto.is_empty()
        ),
        "{answer:?}"
    );
    server.shutdown().await.unwrap();
}

on_both_backends!(
    a_restart_keeps_data_and_revision,
    a_fresh_installation_generates_tokens_once,
    health_and_reflection_are_served,
    a_database_from_another_build_is_refused_saying_what_to_do,
);
