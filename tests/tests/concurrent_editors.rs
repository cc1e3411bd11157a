//! Two editors read the same object (same etag) and write different
//! changes at the same moment: exactly one write is stored, the other gets
//! `ABORTED`, and the audit log shows one change, by the winner. On SQLite
//! and PostgreSQL, for a key's allowlist, an API's allowlist and a key's
//! fields.

use ipgate_shared::proto::admin::v1::{
    AddApiAllowlistEntriesRequest, AuditEvent, CreateApiKeyRequest, CreateApiRequest,
    CreateTokenRequest, GetApiKeyRequest, GetApiRequest, ListAuditEventsRequest,
    SetApiKeyAllowlistRequest, TokenRole, UpdateApiKeyRequest,
};
use ipgate_tests::{
    Backend, ControlPlane,
    admin::{cidrs, entries, entry},
    process::AdminClient,
};
use tonic::{Code, Status};

/// Rounds of the race on a key's allowlist.
const ROUNDS: usize = 5;

/// An editor: a client with its own token, and the token's id.
struct Editor {
    admin: AdminClient,
    token_id: String,
}

async fn editor(cp: &ControlPlane, owner: &mut AdminClient, name: &str) -> Editor {
    let created = owner
        .create_token(CreateTokenRequest {
            name: name.into(),
            role: TokenRole::Editor.into(),
            ..Default::default()
        })
        .await
        .expect("editor token")
        .into_inner();
    Editor {
        admin: cp.admin_with(&created.secret).await,
        token_id: created.token.expect("token").id,
    }
}

/// Of two results, which one won (0 or 1); the other must be ABORTED.
fn winner<T, U>(what: &str, first: &Result<T, Status>, second: &Result<U, Status>) -> usize {
    match (first, second) {
        (Ok(_), Err(lost)) if lost.code() == Code::Aborted => 0,
        (Err(lost), Ok(_)) if lost.code() == Code::Aborted => 1,
        (Ok(_), Ok(_)) => panic!("{what}: both writes with the same etag were stored"),
        (a, b) => panic!(
            "{what}: expected one answer and one ABORTED, got {:?} and {:?}",
            a.as_ref().err(),
            b.as_ref().err()
        ),
    }
}

async fn audit(admin: &mut AdminClient, object_type: &str, object_id: &str) -> Vec<AuditEvent> {
    admin
        .list_audit_events(ListAuditEventsRequest {
            object_type: object_type.into(),
            object_id: object_id.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("audit events")
        .into_inner()
        .events
}

async fn one_of_two_concurrent_editors_wins(backend: Backend) {
    let cp = ControlPlane::start(&backend);
    let mut owner = cp.admin().await;
    owner
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    let key_id = owner
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            name: "shared key".into(),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner()
        .key
        .expect("key")
        .id;
    let mut editors = [
        editor(&cp, &mut owner, "alice").await,
        editor(&cp, &mut owner, "bob").await,
    ];

    // A key's allowlist, replaced whole.
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let etag = owner
            .get_api_key(GetApiKeyRequest { id: key_id.clone() })
            .await
            .expect("read the key")
            .into_inner()
            .etag;
        let lists = [
            format!("203.0.113.{}", round + 1),
            format!("198.51.100.{}", round + 1),
        ];
        let write = |admin: &AdminClient, cidr: &str| {
            let mut admin = admin.clone();
            let request = SetApiKeyAllowlistRequest {
                id: key_id.clone(),
                allowlist: entries(&[cidr]),
                etag: etag.clone(),
                ..Default::default()
            };
            async move { admin.set_api_key_allowlist(request).await }
        };
        let (first, second) = tokio::join!(
            write(&editors[0].admin, &lists[0]),
            write(&editors[1].admin, &lists[1])
        );
        let won = winner("SetApiKeyAllowlist", &first, &second);
        let stored = owner
            .get_api_key(GetApiKeyRequest { id: key_id.clone() })
            .await
            .expect("read the key")
            .into_inner();
        assert_eq!(
            cidrs(stored.allowlist.as_ref()),
            [format!("{}/32", lists[won])],
            "round {round}: the winner's list is stored"
        );
        winners.push(won);
    }
    println!("SetApiKeyAllowlist winners by round (0 alice, 1 bob): {winners:?}");
    let changes: Vec<AuditEvent> = audit(&mut owner, "api_key", &key_id)
        .await
        .into_iter()
        .filter(|e| e.action.contains("allowlist"))
        .collect();
    assert_eq!(
        changes.len(),
        ROUNDS,
        "one audited change per round: {changes:#?}"
    );
    // Newest first: the last round's winner is the first event.
    for (event, won) in changes.iter().zip(winners.iter().rev()) {
        assert_eq!(event.actor_token_id, editors[*won].token_id, "{event:?}");
    }

    // An API's allowlist, added to.
    let etag = owner
        .get_api(GetApiRequest {
            slug: "orders".into(),
        })
        .await
        .expect("read the API")
        .into_inner()
        .etag;
    let add = |admin: &AdminClient, cidr: &str| {
        let mut admin = admin.clone();
        let request = AddApiAllowlistEntriesRequest {
            slug: "orders".into(),
            entries: vec![entry(cidr, "")],
            etag: etag.clone(),
            ..Default::default()
        };
        async move { admin.add_api_allowlist_entries(request).await }
    };
    let (first, second) = tokio::join!(
        add(&editors[0].admin, "203.0.113.0/24"),
        add(&editors[1].admin, "198.51.100.0/24")
    );
    let won = winner("AddApiAllowlistEntries", &first, &second);
    let api = owner
        .get_api(GetApiRequest {
            slug: "orders".into(),
        })
        .await
        .expect("read the API")
        .into_inner();
    assert_eq!(
        cidrs(api.allowlist.as_ref()),
        [["203.0.113.0/24", "198.51.100.0/24"][won]]
    );
    let changes: Vec<AuditEvent> = audit(&mut owner, "api", "orders")
        .await
        .into_iter()
        .filter(|e| e.action.contains("allowlist"))
        .collect();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].actor_token_id, editors[won].token_id);

    // A key's name.
    let etag = owner
        .get_api_key(GetApiKeyRequest { id: key_id.clone() })
        .await
        .expect("read the key")
        .into_inner()
        .etag;
    let rename = |admin: &AdminClient, name: &str| {
        let mut admin = admin.clone();
        let request = UpdateApiKeyRequest {
            id: key_id.clone(),
            name: Some(name.to_owned()),
            etag: etag.clone(),
            ..Default::default()
        };
        async move { admin.update_api_key(request).await }
    };
    let (first, second) = tokio::join!(
        rename(&editors[0].admin, "alice's name"),
        rename(&editors[1].admin, "bob's name")
    );
    let won = winner("UpdateApiKey", &first, &second);
    let key = owner
        .get_api_key(GetApiKeyRequest { id: key_id.clone() })
        .await
        .expect("read the key")
        .into_inner();
    assert_eq!(key.name, ["alice's name", "bob's name"][won]);
    let renames: Vec<AuditEvent> = audit(&mut owner, "api_key", &key_id)
        .await
        .into_iter()
        .filter(|e| {
            e.actor_token_id == editors[1 - won].token_id && !e.action.contains("allowlist")
        })
        .collect();
    assert!(
        renames.is_empty(),
        "the loser changed nothing: {renames:#?}"
    );

    // The loser reads again and then writes: no lasting conflict.
    let editor = &mut editors[1 - won];
    let fresh = editor
        .admin
        .get_api_key(GetApiKeyRequest { id: key_id.clone() })
        .await
        .expect("read the key")
        .into_inner();
    editor
        .admin
        .update_api_key(UpdateApiKeyRequest {
            id: key_id.clone(),
            name: Some("agreed name".into()),
            etag: fresh.etag,
            ..Default::default()
        })
        .await
        .expect("a write with a fresh etag");
}

ipgate_tests::on_both_backends!(one_of_two_concurrent_editors_wins);
