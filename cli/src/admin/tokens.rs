//! `ipgate tokens`: the tenant's admin and enforcer tokens (owners only).

use clap::{Subcommand, ValueEnum};
use ipgate_shared::proto::admin::v1::{
    CreateTokenRequest, CreateTokenResponse, ListTokensRequest, ListTokensResponse,
    RevokeTokenRequest, Token, TokenRole,
};

use super::{
    Admin, Output,
    output::{details, or_dash, print_dry_run, print_secret, print_table, table, time},
};

/// What a token may do.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Role {
    /// Reads everything in the tenant.
    Viewer,
    /// Also writes APIs, keys and allowlists.
    Editor,
    /// Also manages tokens.
    Owner,
    /// For an enforcer: syncs and reports usage, nothing else.
    Enforcer,
}

impl From<Role> for TokenRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Viewer => TokenRole::Viewer,
            Role::Editor => TokenRole::Editor,
            Role::Owner => TokenRole::Owner,
            Role::Enforcer => TokenRole::Enforcer,
        }
    }
}

/// `ipgate tokens …`
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a token in your tenant (the secret is shown only once).
    Create {
        /// A name saying who or what uses it.
        name: String,
        /// What the token may do.
        #[arg(long, value_enum)]
        role: Role,
        /// Check only: print what would be created, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List your tenant's tokens (never their secrets).
    List {
        /// Also list revoked tokens.
        #[arg(long)]
        include_revoked: bool,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        /// Token id (`tok_…`).
        id: String,
        /// Check only: print what would change, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs one `tokens` subcommand.
pub async fn run(mut client: Admin, out: Output, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create {
            name,
            role,
            dry_run,
        } => {
            let response = client
                .create_token(CreateTokenRequest {
                    name,
                    role: TokenRole::from(role).into(),
                    validate_only: dry_run,
                })
                .await?
                .into_inner();
            out.print(&response, |r| print_created(r, dry_run))
        }
        Command::List { include_revoked } => {
            let response = client
                .list_tokens(ListTokensRequest { include_revoked })
                .await?
                .into_inner();
            out.print(&response, print_list)
        }
        Command::Revoke { id, dry_run } => {
            let token = client
                .revoke_token(RevokeTokenRequest {
                    id,
                    validate_only: dry_run,
                })
                .await?
                .into_inner();
            out.print(&token, |t| {
                if dry_run {
                    print_dry_run();
                } else {
                    println!("Revoked token {}: it no longer works.", t.id);
                }
                print_token(t);
            })
        }
    }
}

/// A role as operators write it: `editor`.
pub fn role_name(role: i32) -> &'static str {
    match TokenRole::try_from(role) {
        Ok(TokenRole::Viewer) => "viewer",
        Ok(TokenRole::Editor) => "editor",
        Ok(TokenRole::Owner) => "owner",
        Ok(TokenRole::Enforcer) => "enforcer",
        Ok(TokenRole::Unspecified) | Err(_) => "-",
    }
}

fn print_created(r: &CreateTokenResponse, dry_run: bool) {
    if dry_run {
        print_dry_run();
    }
    print_token(&r.token.clone().unwrap_or_default());
    if !r.secret.is_empty() {
        print_secret("token", &r.secret);
    }
}

fn print_token(t: &Token) {
    let mut d = details();
    d.add_row(["Token:", &t.id]);
    d.add_row(["Name:", &t.name]);
    d.add_row(["Role:", role_name(t.role)]);
    d.add_row(["Tenant:", &t.tenant]);
    d.add_row(["Created:", &time(t.created_at.as_ref())]);
    d.add_row(["Created by:", &or_dash(&t.created_by)]);
    if t.revoked_at.is_some() {
        d.add_row(["Revoked:", &time(t.revoked_at.as_ref())]);
    }
    print_table(d);
}

fn print_list(r: &ListTokensResponse) {
    let mut t = table(["ID", "NAME", "ROLE", "CREATED", "CREATED BY", "REVOKED"]);
    for token in &r.tokens {
        t.add_row([
            token.id.clone(),
            token.name.clone(),
            role_name(token.role).to_owned(),
            time(token.created_at.as_ref()),
            or_dash(&token.created_by),
            time(token.revoked_at.as_ref()),
        ]);
    }
    print_table(t);
}
