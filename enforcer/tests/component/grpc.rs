//! The gRPC door's port: Check input errors, the door token, health,
//! reflection.

use ipgate_shared::proto::check::v1::{
    CheckRequest, CheckResponse, check_service_client::CheckServiceClient,
};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1alpha::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use tonic_types::StatusExt;

use crate::support::*;

#[tokio::test]
async fn an_unparsable_client_ip_is_invalid_argument_naming_the_field() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, _session) = synced(&mut fake, &world, &[]).await;
    for bad in ["", "010.0.0.1", "203.0.113.7:443", "fe80::1%eth0"] {
        let request = CheckRequest {
            api: "orders".into(),
            api_key: world.office.secret.clone(),
            client_ip: bad.into(),
            ..Default::default()
        };
        let status = check_client(&running)
            .await
            .check(request)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        let details = status.get_error_details();
        let violations = details
            .bad_request()
            .expect("field violations")
            .field_violations
            .clone();
        assert_eq!(violations[0].field, "client_ip");
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_answer_on_the_grpc_port() {
    let mut fake = FakeControlPlane::start().await;
    let running = ipgate_enforcer::start(config(fake.addr, &[]))
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Liveness from the start; readiness of the check service only with
    // the first snapshot.
    let health = HealthClient::new(channel.clone());
    let status = |service: &'static str| {
        let mut health = health.clone();
        async move {
            let request = HealthCheckRequest {
                service: service.into(),
            };
            health.check(request).await.unwrap().into_inner().status()
        }
    };
    assert_eq!(status("").await, ServingStatus::Serving);
    assert_eq!(
        status("ipgate.check.v1.CheckService").await,
        ServingStatus::NotServing
    );
    let mut session = fake.next_session().await;
    session.send_all(World::new().snapshot(1));
    assert_eq!(session.expect_ack().await, 1);
    eventually("the check service to be ready", || async {
        status("ipgate.check.v1.CheckService").await == ServingStatus::Serving
    })
    .await;
    assert_eq!(status("").await, ServingStatus::Serving);

    // grpcurl 1.8 speaks only v1alpha.
    let mut reflection = ServerReflectionClient::new(channel);
    let list = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([list]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().expect("one answer");
    let Some(MessageResponse::ListServicesResponse(services)) = answer.message_response else {
        panic!("expected a service list, got {answer:?}");
    };
    let names: Vec<_> = services.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"ipgate.check.v1.CheckService"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("admin")),
        "only what this port serves: {names:?}"
    );
    running.shutdown().await.unwrap();
}

const DOOR_TOKEN: &str = "door-token-for-the-component-tests";

/// One Check call to `orders` with `authorization` set to `authorization`
/// (left out when `None`), tagged with `request_id`.
async fn check_as(
    addr: std::net::SocketAddr,
    authorization: Option<&str>,
    request_id: &str,
) -> Result<CheckResponse, tonic::Status> {
    let mut request = tonic::Request::new(CheckRequest {
        api: "orders".into(),
        client_ip: "203.0.113.7".into(),
        method: "GET".into(),
        path: "/orders/7".into(),
        request_id: request_id.into(),
        ..Default::default()
    });
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("ascii metadata"));
    }
    let mut client = CheckServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the gRPC door");
    client.check(request).await.map(tonic::Response::into_inner)
}

/// With a door token, every Check call must carry it: a missing, malformed
/// or wrong one is UNAUTHENTICATED and decided on not at all (no usage
/// event). Health and reflection stay open.
#[tokio::test]
async fn with_a_door_token_every_check_call_must_present_it() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, _session) = synced(&mut fake, &world, &["--check-token", DOOR_TOKEN]).await;
    let addr = running.grpc_addr;
    assert!(
        addr.ip().is_loopback(),
        "a token is honoured on loopback too"
    );

    let refusals = [
        (None, "missing", "needs a door token"),
        (Some("Basic dXNlcjpwdw=="), "basic", "malformed"),
        (Some(DOOR_TOKEN), "bare", "malformed"),
        (
            Some("Bearer not-the-door-token-at-all"),
            "wrong",
            "not valid",
        ),
        (
            Some(&format!("Bearer {DOOR_TOKEN}x") as &str),
            "longer",
            "not valid",
        ),
    ];
    for (authorization, id, said) in refusals {
        let status = check_as(addr, authorization, id).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{id}: {status:?}");
        assert!(status.message().contains(said), "{id}: {status:?}");
    }
    let bearer = format!("Bearer {DOOR_TOKEN}");
    let answer = check_as(addr, Some(&bearer), "presented")
        .await
        .expect("the right token opens the door");
    assert_eq!(answer.reason, "INVALID_API_KEY", "decided as usual");

    // Health answers without a token.
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let serving = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "ipgate.check.v1.CheckService".into(),
        })
        .await
        .expect("health needs no token")
        .into_inner()
        .status();
    assert_eq!(serving, ServingStatus::Serving);
    let list = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([list]))
        .await
        .expect("reflection needs no token");

    eventually("the admitted call's event", || async {
        fake.events().iter().any(|e| e.request_id == "presented")
    })
    .await;
    running.shutdown().await.unwrap();
    let logged: Vec<String> = fake.events().into_iter().map(|e| e.request_id).collect();
    assert_eq!(logged, ["presented"], "refused callers leave no event");
}

/// Beyond loopback the check door needs a token: without one the enforcer
/// does not start, and says which flag to give; with one it serves (here
/// on every address, reached over 127.0.0.1) and asks callers for it.
#[tokio::test]
async fn beyond_loopback_the_check_door_needs_a_token() {
    let mut fake = FakeControlPlane::start().await;
    let mut open = config(fake.addr, &[]);
    open.grpc_listen = "0.0.0.0:0".parse().unwrap();
    let refused = match ipgate_enforcer::start(open).await {
        Ok(_) => panic!("an open check door started beyond loopback"),
        Err(e) => e,
    };
    assert!(
        matches!(refused, ipgate_enforcer::Error::Config(_)),
        "{refused:?}"
    );
    let message = refused.to_string();
    for said in [
        "0.0.0.0:0",
        "beyond loopback",
        "--check-token",
        "IPGATE_CHECK_TOKEN",
    ] {
        assert!(message.contains(said), "{said:?} missing from: {message}");
    }

    let mut guarded = config(fake.addr, &["--check-token", DOOR_TOKEN]);
    guarded.grpc_listen = "0.0.0.0:0".parse().unwrap();
    let running = ipgate_enforcer::start(guarded)
        .await
        .expect("starts with a token");
    assert!(running.grpc_addr.ip().is_unspecified());
    let mut session = fake.next_session().await;
    session.send_all(World::new().snapshot(1));
    assert_eq!(session.expect_ack().await, 1);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], running.grpc_addr.port()));
    let status = check_as(addr, None, "anonymous").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let bearer = format!("Bearer {DOOR_TOKEN}");
    check_as(addr, Some(&bearer), "with-token")
        .await
        .expect("the token opens the door");
    running.shutdown().await.unwrap();
}
