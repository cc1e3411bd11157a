//! `ipgate keys`: create, read, list, update, revoke and rotate API keys,
//! and edit their allowlists (checked after authentication and scopes).

use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use ipgate_shared::proto::admin::v1::{
    ApiKey, ApiKeyStatus, CreateApiKeyRequest, GetApiKeyRequest, ListApiKeysRequest,
    ListApiKeysResponse, RevokeApiKeyRequest, RotateApiKeyRequest, Scopes, UpdateApiKeyRequest,
};
use prost_types::Timestamp;

use super::{
    Admin, Output,
    allowlist::{self, EntryArg, KeyTarget},
    apis::print_next_page,
    output::{
        allowlist_summary, details, or_dash, print_allowlist, print_dry_run, print_secret,
        print_table, table, time, time_relative,
    },
    time::{expiry, parse_duration, parse_timestamp, proto_duration},
};

/// A key's status on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Status {
    /// Usable.
    Active,
    /// Revoked by an operator.
    Revoked,
    /// Past its expiry time.
    Expired,
}

impl From<Status> for ApiKeyStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Active => ApiKeyStatus::Active,
            Status::Revoked => ApiKeyStatus::Revoked,
            Status::Expired => ApiKeyStatus::Expired,
        }
    }
}

/// When the key stops working.
#[derive(Args, Debug, Clone)]
#[group(multiple = false)]
pub struct KeyExpiry {
    /// The key stops working after this long: `30d`, `12h`.
    #[arg(long, value_parser = parse_duration)]
    expires_in: Option<Duration>,
    /// The key stops working at this RFC 3339 time.
    #[arg(long, value_parser = parse_timestamp)]
    expires_at: Option<Timestamp>,
}

/// Flags of key writes that carry an etag.
#[derive(Args, Debug, Clone)]
pub struct KeyWrite {
    /// Etag read with the key (`keys get`); a stale one fails with ABORTED.
    #[arg(long, default_value = "", hide_default_value = true)]
    etag: String,
    /// Check only: print the key as it would be, store nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `ipgate keys …`
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an API key for one API (the secret is shown only once).
    Create {
        /// Slug of the API the key opens.
        #[arg(long)]
        api: String,
        /// A name saying who uses the key.
        #[arg(long)]
        name: String,
        /// What the key is for.
        #[arg(long, default_value = "", hide_default_value = true)]
        description: String,
        /// Scope the key carries (repeatable).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        #[command(flatten)]
        expiry: KeyExpiry,
        /// Initial allowlist entry `CIDR` or `CIDR=LABEL` (repeatable).
        #[arg(long = "allow", value_name = "CIDR[=LABEL]")]
        allow: Vec<EntryArg>,
        /// Check only: print the key as it would be, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show one key: status, scopes, allowlist, etag (never the secret).
    Get {
        /// The key's id.
        id: String,
    },
    /// List keys, newest first.
    List {
        /// Only keys of this API.
        #[arg(long, default_value = "", hide_default_value = true)]
        api: String,
        /// Only keys whose name contains this text (case-insensitive).
        #[arg(long, default_value = "", hide_default_value = true)]
        name_contains: String,
        /// Only keys with this status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// Only keys with allowlist entries.
        #[arg(long, conflicts_with = "without_allowlist")]
        with_allowlist: bool,
        /// Only keys without allowlist entries (open to every address).
        #[arg(long)]
        without_allowlist: bool,
        /// Most keys per page (1-1000; 0 means the server's default, 100).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Continue from a previous page (the token printed under it).
        #[arg(long, default_value = "", hide_default_value = true)]
        page_token: String,
    },
    /// Change a key's name, description or scopes.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["name", "description", "scopes", "clear_scopes"])))]
    Update {
        /// The key's id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        /// Replace every scope with these (repeatable).
        #[arg(long = "scope", value_name = "SCOPE", conflicts_with = "clear_scopes")]
        scopes: Vec<String>,
        /// Remove every scope.
        #[arg(long)]
        clear_scopes: bool,
        #[command(flatten)]
        write: KeyWrite,
    },
    /// Revoke a key: every enforcer refuses it from the next revision on.
    Revoke {
        /// The key's id.
        id: String,
        #[command(flatten)]
        write: KeyWrite,
    },
    /// Give a key a new secret; same id, same allowlist (the new secret is shown only once).
    Rotate {
        /// The key's id.
        id: String,
        /// How long the old secret keeps working: `0s` (stops at once) up to `30d`.
        #[arg(long, value_parser = parse_duration, default_value = "0s")]
        grace: Duration,
        #[command(flatten)]
        write: KeyWrite,
    },
    /// Show or edit a key's allowlist (checked after authentication and scopes).
    #[command(subcommand)]
    Allowlist(allowlist::Command<KeyTarget>),
}

/// Runs one `keys` subcommand.
pub async fn run(mut client: Admin, out: Output, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create {
            api,
            name,
            description,
            scopes,
            expiry: exp,
            allow,
            dry_run,
        } => {
            let allowlist =
                (!allow.is_empty()).then(|| ipgate_shared::proto::admin::v1::Allowlist {
                    entries: allowlist::to_entries(allow, None, None),
                    report_only: false,
                });
            let response = client
                .create_api_key(CreateApiKeyRequest {
                    wait_for_propagation: out.wait_for_propagation(),
                    api,
                    name,
                    description,
                    scopes,
                    expires_at: expiry(exp.expires_in, exp.expires_at),
                    allowlist,
                    validate_only: dry_run,
                })
                .await?
                .into_inner();
            out.print(&response, |r| {
                let key = r.key.clone().unwrap_or_default();
                if dry_run {
                    print_dry_run();
                } else {
                    println!("Created API key {} for API {:?}.", key.id, key.api);
                }
                print_key(&key);
                if !r.secret.is_empty() {
                    print_secret("key", &r.secret);
                }
            })?;
            out.receipt(response.propagation.as_ref())
        }
        Command::Get { id } => {
            let key = client
                .get_api_key(GetApiKeyRequest { id })
                .await?
                .into_inner();
            out.print(&key, print_key)
        }
        Command::List {
            api,
            name_contains,
            status,
            with_allowlist,
            without_allowlist,
            limit,
            page_token,
        } => {
            let has_allowlist = match (with_allowlist, without_allowlist) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let response = client
                .list_api_keys(ListApiKeysRequest {
                    api,
                    name_contains,
                    status: status
                        .map_or(ApiKeyStatus::Unspecified, ApiKeyStatus::from)
                        .into(),
                    has_allowlist,
                    page_size: limit,
                    page_token,
                })
                .await?
                .into_inner();
            out.print(&response, print_list)
        }
        Command::Update {
            id,
            name,
            description,
            scopes,
            clear_scopes,
            write,
        } => {
            let scopes = (clear_scopes || !scopes.is_empty()).then_some(Scopes { scopes });
            let key = client
                .update_api_key(UpdateApiKeyRequest {
                    wait_for_propagation: out.wait_for_propagation(),
                    id,
                    name,
                    description,
                    scopes,
                    etag: write.etag,
                    validate_only: write.dry_run,
                })
                .await?
                .into_inner();
            out.print(&key, |k| {
                done(
                    write.dry_run,
                    &format!("Updated API key {} (revision {}).", k.id, k.revision),
                );
                print_key(k);
            })?;
            out.receipt(key.propagation.as_ref())
        }
        Command::Revoke { id, write } => {
            let key = client
                .revoke_api_key(RevokeApiKeyRequest {
                    wait_for_propagation: out.wait_for_propagation(),
                    id,
                    etag: write.etag,
                    validate_only: write.dry_run,
                })
                .await?
                .into_inner();
            out.print(&key, |k| {
                done(
                    write.dry_run,
                    &format!(
                        "Revoked API key {}: enforcers refuse it from revision {} on.",
                        k.id, k.revision
                    ),
                );
                print_key(k);
            })?;
            out.receipt(key.propagation.as_ref())
        }
        Command::Rotate { id, grace, write } => {
            let response = client
                .rotate_api_key(RotateApiKeyRequest {
                    wait_for_propagation: out.wait_for_propagation(),
                    id,
                    grace_period: Some(proto_duration(grace)),
                    etag: write.etag,
                    validate_only: write.dry_run,
                })
                .await?
                .into_inner();
            out.print(&response, |r| {
                let key = r.key.clone().unwrap_or_default();
                let until = time_relative(key.previous_secret_expires_at.as_ref());
                // A rotation retires every older secret; only the one it
                // replaced may live on, for the grace asked now.
                let old = if key.previous_secret_expires_at.is_some() {
                    format!("the old secret keeps working until {until}")
                } else {
                    "the old secret no longer works".to_owned()
                };
                done(
                    write.dry_run,
                    &format!("Rotated API key {}: {old}.", key.id),
                );
                print_key(&key);
                if !r.secret.is_empty() {
                    print_secret("new key", &r.secret);
                }
            })?;
            out.receipt(response.propagation.as_ref())
        }
        Command::Allowlist(command) => allowlist::run(client, out, command).await,
    }
}

fn done(dry_run: bool, message: &str) {
    if dry_run {
        print_dry_run();
    } else {
        println!("{message}");
    }
}

/// A key status as operators write it.
pub fn status_name(status: i32) -> &'static str {
    match ApiKeyStatus::try_from(status) {
        Ok(ApiKeyStatus::Active) => "active",
        Ok(ApiKeyStatus::Revoked) => "revoked",
        Ok(ApiKeyStatus::Expired) => "expired",
        Ok(ApiKeyStatus::Unspecified) | Err(_) => "-",
    }
}

fn print_key(key: &ApiKey) {
    let mut d = details();
    d.add_row(["Key:", &key.id]);
    d.add_row(["API:", &key.api]);
    d.add_row(["Name:", &or_dash(&key.name)]);
    if !key.description.is_empty() {
        d.add_row(["Description:", &key.description]);
    }
    d.add_row(["Status:", status_name(key.status)]);
    d.add_row(["Scopes:", &or_dash(&key.scopes.join(", "))]);
    d.add_row(["Prefix:", &or_dash(&key.prefix)]);
    let expires = if key.expires_at.is_some() {
        time_relative(key.expires_at.as_ref())
    } else {
        "never".to_owned()
    };
    d.add_row(["Expires:", &expires]);
    if key.previous_secret_expires_at.is_some() {
        d.add_row([
            "Old secret until:",
            &time_relative(key.previous_secret_expires_at.as_ref()),
        ]);
    }
    d.add_row(["Created:", &time(key.created_at.as_ref())]);
    d.add_row(["Updated:", &time(key.updated_at.as_ref())]);
    if key.revoked_at.is_some() {
        d.add_row(["Revoked:", &time(key.revoked_at.as_ref())]);
    }
    d.add_row(["Revision:", &key.revision.to_string()]);
    d.add_row(["Etag:", &or_dash(&key.etag)]);
    print_table(d);
    println!();
    print_allowlist(key.allowlist.as_ref());
}

fn print_list(r: &ListApiKeysResponse) {
    let mut t = table([
        "ID",
        "API",
        "NAME",
        "STATUS",
        "SCOPES",
        "ALLOWLIST",
        "EXPIRES",
        "CREATED",
    ]);
    for key in &r.keys {
        t.add_row([
            key.id.clone(),
            key.api.clone(),
            or_dash(&key.name),
            status_name(key.status).to_owned(),
            or_dash(&key.scopes.join(",")),
            allowlist_summary(key.allowlist.as_ref()),
            if key.expires_at.is_some() {
                time(key.expires_at.as_ref())
            } else {
                "never".to_owned()
            },
            time(key.created_at.as_ref()),
        ]);
    }
    print_table(t);
    print_next_page(&r.next_page_token);
}
