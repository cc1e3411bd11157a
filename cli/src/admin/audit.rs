//! `ipgate audit`: who changed what, when, newest first.

use clap::{Subcommand, ValueEnum};
use ipgate_shared::proto::admin::v1::{ListAuditEventsRequest, ListAuditEventsResponse};
use prost_types::Timestamp;

use super::{
    Admin, Output,
    apis::print_next_page,
    output::{or_dash, print_table, table, time},
    time::parse_time_or_ago,
};

/// Kinds of audited objects.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ObjectType {
    /// A tenant, by id.
    Tenant,
    /// An admin or enforcer token, by id.
    Token,
    /// An API, by slug.
    Api,
    /// An API key, by id.
    ApiKey,
}

impl ObjectType {
    fn as_str(self) -> &'static str {
        match self {
            ObjectType::Tenant => "tenant",
            ObjectType::Token => "token",
            ObjectType::Api => "api",
            ObjectType::ApiKey => "api_key",
        }
    }
}

/// `ipgate audit …`
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List audit events, newest first.
    List {
        /// Only changes to this kind of object.
        #[arg(long, value_enum)]
        object_type: Option<ObjectType>,
        /// Only changes to this object (slug, key id, token id or tenant id).
        #[arg(long, default_value = "", hide_default_value = true)]
        object_id: String,
        /// Only changes made with this token (its id, `tok_…`).
        #[arg(long, default_value = "", hide_default_value = true)]
        actor: String,
        /// From this time on: a duration ago (`24h`, `7d`) or an RFC 3339 time.
        #[arg(long, value_parser = parse_time_or_ago)]
        since: Option<Timestamp>,
        /// Before this time: a duration ago or an RFC 3339 time.
        #[arg(long, value_parser = parse_time_or_ago)]
        until: Option<Timestamp>,
        /// Print each change's before and after (JSON) under its row.
        #[arg(long)]
        changes: bool,
        /// Most events per page (1-1000; 0 means the server's default, 100).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Continue from a previous page (the token printed under it).
        #[arg(long, default_value = "", hide_default_value = true)]
        page_token: String,
    },
}

/// Runs one `audit` subcommand.
pub async fn run(mut client: Admin, out: Output, command: Command) -> anyhow::Result<()> {
    let Command::List {
        object_type,
        object_id,
        actor,
        since,
        until,
        changes,
        limit,
        page_token,
    } = command;
    let response = client
        .list_audit_events(ListAuditEventsRequest {
            object_type: object_type
                .map(ObjectType::as_str)
                .unwrap_or_default()
                .to_owned(),
            object_id,
            actor_token_id: actor,
            start_time: since,
            end_time: until,
            page_size: limit,
            page_token,
        })
        .await?
        .into_inner();
    out.print(&response, |r| print_events(r, changes))
}

/// The revision of an event that moved none: token and tenant writes are
/// not sent to enforcers, so they are audited without a revision.
const NO_REVISION: u64 = 0;

/// The REVISION cell: `-` for an event without one, not a misleading 0.
fn revision_cell(revision: u64) -> String {
    match revision {
        NO_REVISION => "-".to_owned(),
        n => n.to_string(),
    }
}

fn print_events(r: &ListAuditEventsResponse, changes: bool) {
    if r.events.is_empty() {
        println!("No audit events match.");
        return;
    }
    if changes {
        for e in &r.events {
            let revision = match e.revision {
                NO_REVISION => String::new(),
                n => format!("  (revision {n})"),
            };
            println!(
                "{}  {}  {} {}  by {}{revision}",
                time(e.time.as_ref()),
                e.action,
                e.object_type,
                e.object_id,
                or_dash(&e.actor_token_id),
            );
            println!("  before: {}", or_dash(&e.before_json));
            println!("  after:  {}", or_dash(&e.after_json));
        }
    } else {
        let mut t = table(["TIME", "ACTOR", "ACTION", "OBJECT", "REVISION", "ID"]);
        for e in &r.events {
            t.add_row([
                time(e.time.as_ref()),
                or_dash(&e.actor_token_id),
                e.action.clone(),
                format!("{} {}", e.object_type, e.object_id),
                revision_cell(e.revision),
                e.id.clone(),
            ]);
        }
        print_table(t);
    }
    print_next_page(&r.next_page_token);
}
