//! `ipgate apis`: create, read, list, update and delete APIs, and edit
//! their allowlists (checked before authentication).

use std::str::FromStr;

use clap::{ArgGroup, Subcommand, ValueEnum};
use ipgate_shared::proto::admin::v1::{
    Api, ApiStatus, CreateApiRequest, DeleteApiRequest, DeleteApiResponse, GetApiRequest,
    ListApisRequest, ListApisResponse, RouteRule, RouteRules, UpdateApiRequest,
};

use super::{
    Admin, Output,
    allowlist::{self, ApiTarget},
    output::{
        allowlist_summary, details, or_dash, print_allowlist, print_dry_run, print_table, table,
        time,
    },
};

/// An API's status on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Status {
    /// Requests are decided as usual.
    Active,
    /// Every request answers 503 API_DISABLED.
    Disabled,
}

impl From<Status> for ApiStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Active => ApiStatus::Active,
            Status::Disabled => ApiStatus::Disabled,
        }
    }
}

/// A route rule on the command line: `[METHOD ]PATH_PREFIX=SCOPE`.
#[derive(Clone, Debug)]
pub struct RouteArg(RouteRule);

impl FromStr for RouteArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "{s:?}: write a rule as [METHOD ]PATH_PREFIX=SCOPE, e.g. \"POST /orders=orders:write\""
            )
        };
        let (route, scope) = s.rsplit_once('=').ok_or_else(usage)?;
        let (method, path) = match route.trim().split_once(char::is_whitespace) {
            Some((method, path)) => (method.trim(), path.trim()),
            None => ("", route.trim()),
        };
        if path.is_empty() || scope.trim().is_empty() {
            return Err(usage());
        }
        Ok(RouteArg(RouteRule {
            method: method.to_owned(),
            path_prefix: path.to_owned(),
            scope: scope.trim().to_owned(),
        }))
    }
}

/// `ipgate apis …`
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an API; its slug names it from then on (`--api SLUG` on enforcers).
    Create {
        /// 1-63 of a-z, 0-9 and '-', starting with a letter or digit.
        slug: String,
        /// Display name.
        #[arg(long, default_value = "", hide_default_value = true)]
        name: String,
        /// Route scope rule `[METHOD ]PATH_PREFIX=SCOPE` (repeatable), e.g. "POST /orders=orders:write".
        #[arg(long = "route", value_name = "RULE")]
        routes: Vec<RouteArg>,
        /// Check only: print what would be created, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show one API: status, routes, allowlist, etag.
    Get {
        /// The API's slug.
        slug: String,
    },
    /// List APIs, by slug.
    List {
        /// Only APIs with this status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// Most APIs per page (1-1000; 0 means the server's default, 100).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Continue from a previous page (the token printed under it).
        #[arg(long, default_value = "", hide_default_value = true)]
        page_token: String,
    },
    /// Change an API's name, status or route rules.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["name", "status", "routes", "clear_routes"])))]
    Update {
        /// The API's slug.
        slug: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// Replace every route rule with these (repeatable): `[METHOD ]PATH_PREFIX=SCOPE`.
        #[arg(long = "route", value_name = "RULE", conflicts_with = "clear_routes")]
        routes: Vec<RouteArg>,
        /// Remove every route rule: no route needs a scope.
        #[arg(long)]
        clear_routes: bool,
        /// Etag read with the API; a stale one fails with ABORTED.
        #[arg(long, default_value = "", hide_default_value = true)]
        etag: String,
        /// Check only: print the API as it would be, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete an API (with --force, also revoke its active keys).
    Delete {
        /// The API's slug.
        slug: String,
        /// Also revoke the API's active keys; without it an API with active keys is kept.
        #[arg(long)]
        force: bool,
        /// Etag read with the API; a stale one fails with ABORTED.
        #[arg(long, default_value = "", hide_default_value = true)]
        etag: String,
        /// Check only: print what would be deleted, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show or edit an API's allowlist (checked before authentication).
    #[command(subcommand)]
    Allowlist(allowlist::Command<ApiTarget>),
}

/// Runs one `apis` subcommand.
pub async fn run(mut client: Admin, out: Output, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create {
            slug,
            name,
            routes,
            dry_run,
        } => {
            let api = client
                .create_api(CreateApiRequest {
                    wait_for_propagation: out.wait_for_propagation(),
                    slug,
                    name,
                    routes: routes.into_iter().map(|r| r.0).collect(),
                    validate_only: dry_run,
                })
                .await?
                .into_inner();
            out.print(&api, |api| {
                if dry_run {
                    print_dry_run();
                } else {
                    println!("Created API {:?}.", api.slug);
                }
                print_api(api);
            })?;
            out.receipt(api.propagation.as_ref())
        }
        Command::Get { slug } => {
            let api = client.get_api(GetApiRequest { slug }).await?.into_inner();
            out.print(&api, print_api)
        }
        Command::List {
            status,
            limit,
            page_token,
        } => {
            let response = client
                .list_apis(ListApisRequest {
                    status: status
                        .map_or(ApiStatus::Unspecified, ApiStatus::from)
                        .into(),
                    page_size: limit,
                    page_token,
                })
                .await?
                .into_inner();
            out.print(&response, print_list)
        }
        Command::Update {
            slug,
            name,
            status,
            routes,
            clear_routes,
            etag,
            dry_run,
        } => {
            let routes = (clear_routes || !routes.is_empty()).then(|| RouteRules {
                rules: routes.into_iter().map(|r| r.0).collect(),
            });
            let api = client
                .update_api(UpdateApiRequest {
                    wait_for_propagation: out.wait_for_propagation(),
                    slug,
                    name,
                    status: status
                        .map_or(ApiStatus::Unspecified, ApiStatus::from)
                        .into(),
                    routes,
                    etag,
                    validate_only: dry_run,
                })
                .await?
                .into_inner();
            out.print(&api, |api| {
                if dry_run {
                    print_dry_run();
                } else {
                    println!("Updated API {:?} (revision {}).", api.slug, api.revision);
                }
                print_api(api);
            })?;
            out.receipt(api.propagation.as_ref())
        }
        Command::Delete {
            slug,
            force,
            etag,
            dry_run,
        } => {
            let response = client
                .delete_api(DeleteApiRequest {
                    wait_for_propagation: out.wait_for_propagation(),
                    slug,
                    etag,
                    force,
                    validate_only: dry_run,
                })
                .await?
                .into_inner();
            out.print(&response, |r| print_deleted(r, dry_run))?;
            out.receipt(response.propagation.as_ref())
        }
        Command::Allowlist(command) => allowlist::run(client, out, command).await,
    }
}

/// An API status as operators write it.
pub fn status_name(status: i32) -> &'static str {
    match ApiStatus::try_from(status) {
        Ok(ApiStatus::Active) => "active",
        Ok(ApiStatus::Disabled) => "disabled",
        Ok(ApiStatus::Unspecified) | Err(_) => "-",
    }
}

fn print_api(api: &Api) {
    let mut d = details();
    d.add_row(["API:", &api.slug]);
    d.add_row(["Name:", &or_dash(&api.name)]);
    d.add_row(["Status:", status_name(api.status)]);
    d.add_row(["Active keys:", &api.key_count.to_string()]);
    d.add_row(["Created:", &time(api.created_at.as_ref())]);
    d.add_row(["Updated:", &time(api.updated_at.as_ref())]);
    d.add_row(["Revision:", &api.revision.to_string()]);
    d.add_row(["Etag:", &or_dash(&api.etag)]);
    print_table(d);
    println!();
    if api.routes.is_empty() {
        println!("Routes: none (no route needs a scope)");
    } else {
        println!("Routes (longest matching prefix wins):");
        let mut t = table(["METHOD", "PATH PREFIX", "SCOPE"]);
        for r in &api.routes {
            let method = if r.method.is_empty() { "*" } else { &r.method };
            t.add_row([method, &r.path_prefix, &r.scope]);
        }
        print_table(t);
    }
    println!();
    print_allowlist(api.allowlist.as_ref());
}

fn print_list(r: &ListApisResponse) {
    let mut t = table([
        "SLUG",
        "NAME",
        "STATUS",
        "KEYS",
        "ALLOWLIST",
        "ROUTES",
        "UPDATED",
    ]);
    for api in &r.apis {
        t.add_row([
            api.slug.clone(),
            or_dash(&api.name),
            status_name(api.status).to_owned(),
            api.key_count.to_string(),
            allowlist_summary(api.allowlist.as_ref()),
            api.routes.len().to_string(),
            time(api.updated_at.as_ref()),
        ]);
    }
    print_table(t);
    print_next_page(&r.next_page_token);
}

/// Says how to get the next page, when there is one.
pub fn print_next_page(token: &str) {
    if !token.is_empty() {
        println!("More results: repeat with --page-token {token}");
    }
}

fn print_deleted(r: &DeleteApiResponse, dry_run: bool) {
    let slug = r.api.as_ref().map(|a| a.slug.as_str()).unwrap_or_default();
    if dry_run {
        print_dry_run();
        println!("API {slug:?} would be deleted.");
    } else {
        println!("Deleted API {slug:?} at revision {}.", r.revision);
    }
    if !r.revoked_key_ids.is_empty() {
        let verb = if dry_run { "would be" } else { "were" };
        println!(
            "Keys that {verb} revoked with it: {}",
            r.revoked_key_ids.join(", ")
        );
    }
}
