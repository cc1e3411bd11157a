//! Tenants and tokens, on SQLite and PostgreSQL: a tenant comes with its
//! first owner token, shown once; owners make admin and enforcer tokens
//! whose secrets are shown once and never listed; editors and viewers
//! cannot manage tokens; a revoked token stops at once; dry runs store
//! nothing; bad input is named.

use ipgate_shared::proto::admin::v1::{
    CreateApiRequest, CreateTenantRequest, CreateTokenRequest, ListApisRequest, ListTenantsRequest,
    ListTokensRequest, RevokeTokenRequest, TokenRole,
};
use ipgate_tests::{Backend, ControlPlane, admin::expect_code, process::AdminClient};
use tonic::Code;
use tonic_types::StatusExt;

async fn tenant_ids(admin: &mut AdminClient) -> Vec<String> {
    admin
        .list_tenants(ListTenantsRequest {})
        .await
        .expect("list tenants")
        .into_inner()
        .tenants
        .into_iter()
        .map(|t| t.id)
        .collect()
}

async fn tenants_come_with_an_owner_token(backend: Backend) {
    let cp = ControlPlane::start(&backend);
    let mut operator = cp.admin().await;
    assert_eq!(tenant_ids(&mut operator).await, ["default"]);

    let dry = operator
        .create_tenant(CreateTenantRequest {
            id: "acme".into(),
            name: "Acme".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry-run tenant")
        .into_inner();
    assert!(dry.owner_secret.is_empty(), "a dry run shows no secret");
    assert_eq!(tenant_ids(&mut operator).await, ["default"]);

    let acme = operator
        .create_tenant(CreateTenantRequest {
            id: "acme".into(),
            name: "Acme Corp".into(),
            owner_token_name: "acme admin".into(),
            ..Default::default()
        })
        .await
        .expect("create tenant")
        .into_inner();
    assert_eq!(acme.tenant.expect("tenant").name, "Acme Corp");
    let owner_token = acme.owner_token.expect("owner token");
    assert_eq!(owner_token.role, i32::from(TokenRole::Owner));
    assert_eq!(owner_token.tenant, "acme");
    assert_eq!(owner_token.name, "acme admin");
    assert!(
        acme.owner_secret.starts_with("ipg_admin_"),
        "{}",
        acme.owner_secret
    );
    let mut ids = tenant_ids(&mut operator).await;
    ids.sort();
    assert_eq!(ids, ["acme", "default"]);

    // Acme's owner works in its own tenant.
    let mut acme_owner = cp.admin_with(&acme.owner_secret).await;
    acme_owner
        .create_api(CreateApiRequest {
            slug: "acme-shop".into(),
            name: "Shop".into(),
            ..Default::default()
        })
        .await
        .expect("acme's owner creates an API");
    let tokens = acme_owner
        .list_tokens(ListTokensRequest::default())
        .await
        .expect("acme's tokens")
        .into_inner()
        .tokens;
    assert_eq!(
        tokens.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [owner_token.id.as_str()]
    );

    expect_code(
        operator
            .create_tenant(CreateTenantRequest {
                id: "acme".into(),
                name: "Acme again".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "a tenant id taken",
    );
    let status = expect_code(
        operator
            .create_tenant(CreateTenantRequest {
                id: "Not An Id!".into(),
                name: "x".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "a bad tenant id",
    );
    let details = status.get_details_bad_request().expect("field violations");
    assert_eq!(details.field_violations[0].field, "id", "{details:?}");
}

async fn owners_manage_tokens(backend: Backend) {
    let cp = ControlPlane::start(&backend);
    let mut owner = cp.admin().await;
    let mut secrets = Vec::new();
    let mut made = Vec::new();
    for (name, role, prefix) in [
        ("editor", TokenRole::Editor, "ipg_admin_"),
        ("viewer", TokenRole::Viewer, "ipg_admin_"),
        ("fleet", TokenRole::Enforcer, "ipg_enf_"),
    ] {
        let created = owner
            .create_token(CreateTokenRequest {
                name: name.into(),
                role: role.into(),
                ..Default::default()
            })
            .await
            .expect("create token")
            .into_inner();
        assert!(
            created.secret.starts_with(prefix),
            "{name}: {}",
            created.secret
        );
        let token = created.token.expect("token");
        assert_eq!(
            (token.role, token.tenant.as_str()),
            (i32::from(role), "default")
        );
        assert!(token.id.starts_with("tok_"), "{token:?}");
        assert!(
            !token.created_by.is_empty(),
            "made by the owner's token: {token:?}"
        );
        secrets.push(created.secret);
        made.push(token.id);
    }
    let dry = owner
        .create_token(CreateTokenRequest {
            name: "never".into(),
            role: TokenRole::Viewer.into(),
            validate_only: true,
        })
        .await
        .expect("dry-run token")
        .into_inner();
    assert!(dry.secret.is_empty());
    expect_code(
        owner
            .create_token(CreateTokenRequest {
                name: "no role".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "a token without a role",
    );

    let listed = owner
        .list_tokens(ListTokensRequest::default())
        .await
        .expect("list tokens")
        .into_inner()
        .tokens;
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    assert!(
        !names.contains(&"never"),
        "a dry run stored a token: {names:?}"
    );
    for id in &made {
        assert!(
            listed.iter().any(|t| &t.id == id),
            "{id} listed: {listed:?}"
        );
    }
    let text = format!("{listed:?}");
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret in ListTokens");
    }

    // Editors and viewers do not manage tokens.
    for secret in &secrets[..2] {
        let mut admin = cp.admin_with(secret).await;
        expect_code(
            admin
                .create_token(CreateTokenRequest {
                    name: "escalate".into(),
                    role: TokenRole::Owner.into(),
                    ..Default::default()
                })
                .await,
            Code::PermissionDenied,
            "a non-owner creating a token",
        );
        expect_code(
            admin
                .revoke_token(RevokeTokenRequest {
                    id: made[0].clone(),
                    ..Default::default()
                })
                .await,
            Code::PermissionDenied,
            "a non-owner revoking a token",
        );
    }

    // Revoked: stops at once, listed only on request.
    let mut editor = cp.admin_with(&secrets[0]).await;
    editor
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("the editor writes");
    let dry = owner
        .revoke_token(RevokeTokenRequest {
            id: made[0].clone(),
            validate_only: true,
        })
        .await
        .expect("dry-run revoke")
        .into_inner();
    assert!(dry.revoked_at.is_some(), "what would be stored: {dry:?}");
    editor
        .list_apis(ListApisRequest::default())
        .await
        .expect("still works after a dry run");
    let revoked = owner
        .revoke_token(RevokeTokenRequest {
            id: made[0].clone(),
            ..Default::default()
        })
        .await
        .expect("revoke")
        .into_inner();
    assert!(revoked.revoked_at.is_some());
    expect_code(
        editor.list_apis(ListApisRequest::default()).await,
        Code::Unauthenticated,
        "a revoked token",
    );
    let active = owner
        .list_tokens(ListTokensRequest::default())
        .await
        .expect("list")
        .into_inner()
        .tokens;
    assert!(active.iter().all(|t| t.id != made[0]), "{active:?}");
    let all = owner
        .list_tokens(ListTokensRequest {
            include_revoked: true,
        })
        .await
        .expect("list")
        .into_inner()
        .tokens;
    assert!(
        all.iter()
            .any(|t| t.id == made[0] && t.revoked_at.is_some()),
        "{all:?}"
    );
    expect_code(
        owner
            .revoke_token(RevokeTokenRequest {
                id: "tok_doesnotexist".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "revoking a token that does not exist",
    );
}

ipgate_tests::on_both_backends!(tenants_come_with_an_owner_token, owners_manage_tokens);
