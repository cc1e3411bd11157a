//! The gRPC door's port: Check input errors, health, reflection.

use ipgate_shared::proto::check::v1::CheckRequest;
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
