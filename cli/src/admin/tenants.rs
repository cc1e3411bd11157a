//! `ipgate tenants`: create and list tenants (owners of the `default`
//! tenant only).

use clap::Subcommand;
use ipgate_shared::proto::admin::v1::{
    CreateTenantRequest, CreateTenantResponse, ListTenantsRequest, ListTenantsResponse,
};

use super::{
    Admin, Output,
    output::{details, print_dry_run, print_secret, print_table, table, time},
};

/// `ipgate tenants …`
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a tenant and its first owner token (the token is shown only once).
    Create {
        /// Tenant id: 1-63 of a-z, 0-9 and '-'.
        id: String,
        /// Display name.
        #[arg(long, default_value = "", hide_default_value = true)]
        name: String,
        /// Name of the first owner token.
        #[arg(long, default_value = "owner")]
        owner_token_name: String,
        /// Check only: print what would be created, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List every tenant.
    List,
}

/// Runs one `tenants` subcommand.
pub async fn run(mut client: Admin, out: Output, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create {
            id,
            name,
            owner_token_name,
            dry_run,
        } => {
            let response = client
                .create_tenant(CreateTenantRequest {
                    id,
                    name,
                    owner_token_name,
                    validate_only: dry_run,
                })
                .await?
                .into_inner();
            out.print(&response, |r| print_created(r, dry_run))
        }
        Command::List => {
            let response = client
                .list_tenants(ListTenantsRequest {})
                .await?
                .into_inner();
            out.print(&response, print_list)
        }
    }
}

fn print_created(r: &CreateTenantResponse, dry_run: bool) {
    if dry_run {
        print_dry_run();
    }
    let tenant = r.tenant.clone().unwrap_or_default();
    let token = r.owner_token.clone().unwrap_or_default();
    let mut d = details();
    d.add_row(["Tenant:", &tenant.id]);
    d.add_row(["Name:", &tenant.name]);
    d.add_row(["Created:", &time(tenant.created_at.as_ref())]);
    d.add_row(["Owner token:", &format!("{} ({})", token.id, token.name)]);
    print_table(d);
    if !r.owner_secret.is_empty() {
        print_secret("owner token", &r.owner_secret);
    }
}

fn print_list(r: &ListTenantsResponse) {
    let mut t = table(["ID", "NAME", "CREATED"]);
    for tenant in &r.tenants {
        t.add_row([
            tenant.id.clone(),
            tenant.name.clone(),
            time(tenant.created_at.as_ref()),
        ]);
    }
    print_table(t);
}
