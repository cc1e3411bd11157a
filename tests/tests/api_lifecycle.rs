//! An API's life, seen through a real enforcer on SQLite and PostgreSQL:
//! disabled it answers 503 `API_DISABLED` to everyone; deleted it answers
//! 404, and only with `force` while it has active keys (which are revoked
//! with it); dry runs change nothing; APIs list by slug, in pages.

use ipgate_shared::proto::admin::v1::{
    ApiKeyStatus, ApiStatus, CreateApiRequest, DeleteApiRequest, GetApiKeyRequest, GetApiRequest,
    ListApisRequest, UpdateApiRequest,
};
use ipgate_tests::{
    Backend, ControlPlane, World,
    admin::{current_revision, expect_code},
    world::API,
};
use tonic::Code;

async fn a_disabled_api_answers_503(backend: Backend) {
    let mut w = World::start(&backend).await;
    let revision = current_revision(&mut w.admin).await;
    let dry = w
        .admin
        .update_api(UpdateApiRequest {
            slug: API.into(),
            status: ApiStatus::Disabled.into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry-run disable")
        .into_inner();
    assert_eq!(
        dry.status,
        i32::from(ApiStatus::Disabled),
        "what would be stored"
    );
    assert_eq!(current_revision(&mut w.admin).await, revision);
    assert_eq!(w.call("127.0.0.1", &w.key).await.status, 200);

    let etag = w
        .admin
        .get_api(GetApiRequest { slug: API.into() })
        .await
        .expect("get API")
        .into_inner()
        .etag;
    let disabled = w
        .admin
        .update_api(UpdateApiRequest {
            slug: API.into(),
            status: ApiStatus::Disabled.into(),
            etag,
            ..Default::default()
        })
        .await
        .expect("disable")
        .into_inner();
    assert_eq!(disabled.name, "Orders", "fields left out stay");
    let res = w.wait_for("127.0.0.1", &w.key, 503).await;
    assert!(res.body.contains("API_DISABLED"), "{res:?}");
    let res = w.call("127.0.0.2", "").await;
    assert_eq!(res.status, 503, "before authentication: {res:?}");

    let listed: Vec<String> = w
        .admin
        .list_apis(ListApisRequest {
            status: ApiStatus::Disabled.into(),
            ..Default::default()
        })
        .await
        .expect("list disabled APIs")
        .into_inner()
        .apis
        .into_iter()
        .map(|a| a.slug)
        .collect();
    assert_eq!(listed, [API]);

    w.admin
        .update_api(UpdateApiRequest {
            slug: API.into(),
            status: ApiStatus::Active.into(),
            name: Some("Orders, again".into()),
            ..Default::default()
        })
        .await
        .expect("enable");
    w.wait_for("127.0.0.1", &w.key, 200).await;
}

async fn deleting_an_api_with_keys_needs_force(backend: Backend) {
    let mut w = World::start(&backend).await;
    expect_code(
        w.admin
            .delete_api(DeleteApiRequest {
                slug: API.into(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "DeleteApi with an active key, without force",
    );
    let revision = current_revision(&mut w.admin).await;
    let dry = w
        .admin
        .delete_api(DeleteApiRequest {
            slug: API.into(),
            force: true,
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry-run delete")
        .into_inner();
    assert_eq!(dry.revoked_key_ids, [w.key_id.clone()], "{dry:?}");
    assert_eq!(current_revision(&mut w.admin).await, revision);
    w.admin
        .get_api(GetApiRequest { slug: API.into() })
        .await
        .expect("still there after a dry run");
    assert_eq!(w.call("127.0.0.1", &w.key).await.status, 200);

    let deleted = w
        .admin
        .delete_api(DeleteApiRequest {
            slug: API.into(),
            force: true,
            ..Default::default()
        })
        .await
        .expect("delete with force")
        .into_inner();
    assert_eq!(deleted.api.expect("the API as it was").slug, API);
    assert_eq!(deleted.revoked_key_ids, [w.key_id.clone()]);
    assert!(deleted.revision > revision);
    let res = w.wait_for("127.0.0.1", &w.key, 404).await;
    assert!(res.body.contains("API_NOT_FOUND"), "{res:?}");
    expect_code(
        w.admin.get_api(GetApiRequest { slug: API.into() }).await,
        Code::NotFound,
        "GetApi after delete",
    );
    let key = w
        .admin
        .get_api_key(GetApiKeyRequest {
            id: w.key_id.clone(),
        })
        .await
        .expect("a revoked key stays readable")
        .into_inner();
    assert_eq!(key.status, i32::from(ApiKeyStatus::Revoked));

    // The slug can be used again; the old key does not come back with it.
    w.admin
        .create_api(CreateApiRequest {
            slug: API.into(),
            name: "Orders, new".into(),
            ..Default::default()
        })
        .await
        .expect("re-create the API");
    let res = w.wait_for("127.0.0.1", &w.key, 401).await;
    assert!(res.body.contains("INVALID_API_KEY"), "{res:?}");

    // An API without active keys goes without force.
    w.admin
        .delete_api(DeleteApiRequest {
            slug: API.into(),
            ..Default::default()
        })
        .await
        .expect("delete an API without keys");
}

async fn apis_list_by_slug_in_pages(backend: Backend) {
    let cp = ControlPlane::start(&backend);
    let mut admin = cp.admin().await;
    let slugs = ["delta", "alpha", "echo", "charlie", "bravo"];
    for slug in slugs {
        admin
            .create_api(CreateApiRequest {
                slug: slug.into(),
                name: slug.to_uppercase(),
                ..Default::default()
            })
            .await
            .expect("create API");
    }
    // A dry run stores nothing.
    admin
        .create_api(CreateApiRequest {
            slug: "foxtrot".into(),
            name: "F".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry-run create");
    expect_code(
        admin
            .get_api(GetApiRequest {
                slug: "foxtrot".into(),
            })
            .await,
        Code::NotFound,
        "an API created with validate_only",
    );
    expect_code(
        admin
            .create_api(CreateApiRequest {
                slug: "alpha".into(),
                name: "again".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "a slug taken",
    );

    let mut paged = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = admin
            .list_apis(ListApisRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list APIs")
            .into_inner();
        assert!(page.apis.len() <= 2);
        paged.extend(page.apis.into_iter().map(|a| a.slug));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, ["alpha", "bravo", "charlie", "delta", "echo"]);
}

ipgate_tests::on_both_backends!(
    a_disabled_api_answers_503,
    deleting_an_api_with_keys_needs_force,
    apis_list_by_slug_in_pages,
);
