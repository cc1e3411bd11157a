//! Tokens at start: make sure the ones given in the environment exist, and
//! on a fresh installation make an owner and an enforcer token.

use std::{fmt, time::SystemTime};

use crate::{
    config::Config,
    error::Error,
    store::{Role, Store, TenantId},
    tokens::{ADMIN_TOKEN_PREFIX, ENFORCER_TOKEN_PREFIX, generate_token, token_hash},
};

/// Tokens generated at this start, to show the operator once.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapTokens {
    /// Owner admin token (`ipg_admin_…`).
    pub owner: String,
    /// Enforcer token (`ipg_enf_…`).
    pub enforcer: String,
}

impl fmt::Debug for BootstrapTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets stay out of logs.
        f.debug_struct("BootstrapTokens").finish_non_exhaustive()
    }
}

/// Ensures the configured tokens exist (idempotent); when none is
/// configured and no token exists yet, makes both and returns them.
pub async fn ensure_tokens(
    store: &Store,
    config: &Config,
) -> Result<Option<BootstrapTokens>, Error> {
    let now = SystemTime::now();
    let given = [
        (
            config.bootstrap_token.as_deref(),
            Role::Owner,
            "IPGATE_BOOTSTRAP_TOKEN",
        ),
        (
            config.bootstrap_enforcer_token.as_deref(),
            Role::Enforcer,
            "IPGATE_BOOTSTRAP_ENFORCER_TOKEN",
        ),
    ];
    let mut any_given = false;
    for (token, role, var) in given {
        let Some(token) = token else { continue };
        if !acceptable(token) {
            return Err(Error::BadBootstrapToken { var });
        }
        any_given = true;
        let name = format!("bootstrap {} token ({var})", role.as_str());
        store
            .ensure_token(TenantId::DEFAULT, role, token_hash(token), &name, now)
            .await?;
    }
    if any_given || store.token_count().await? > 0 {
        return Ok(None);
    }
    let tokens = BootstrapTokens {
        owner: generate_token(ADMIN_TOKEN_PREFIX),
        enforcer: generate_token(ENFORCER_TOKEN_PREFIX),
    };
    for (token, role) in [
        (&tokens.owner, Role::Owner),
        (&tokens.enforcer, Role::Enforcer),
    ] {
        let name = format!("generated {} token", role.as_str());
        store
            .ensure_token(TenantId::DEFAULT, role, token_hash(token), &name, now)
            .await?;
    }
    tracing::info!("generated an owner and an enforcer token; they are shown once");
    Ok(Some(tokens))
}

/// A token worth storing: long enough to be a secret, safe in a header.
fn acceptable(token: &str) -> bool {
    (16..=256).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}
