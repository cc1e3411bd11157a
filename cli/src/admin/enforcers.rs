//! `ipgate enforcers`: every enforcer of the tenant, across replicas —
//! where it is connected, the revision it has in force and its lag, its
//! queued and dropped usage events, and the last update it refused.

use clap::Args;
use ipgate_shared::proto::admin::v1::{Enforcer, ListEnforcersRequest, ListEnforcersResponse};

use super::{
    Admin, AdminArgs, Output,
    output::{print_table, table, time_relative},
};

/// Flags of `ipgate enforcers`.
#[derive(Args, Debug)]
pub struct EnforcersArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Lists the enforcers.
pub async fn run(mut client: Admin, out: Output, _args: EnforcersArgs) -> anyhow::Result<()> {
    let response = client
        .list_enforcers(ListEnforcersRequest {})
        .await?
        .into_inner();
    out.print(&response, print_enforcers)
}

fn print_enforcers(response: &ListEnforcersResponse) {
    if response.enforcers.is_empty() {
        println!("No enforcer has connected yet.");
        return;
    }
    let mut t = table([
        "ID",
        "REPLICA",
        "ADDRESS",
        "VERSION",
        "REVISION",
        "LAG",
        "CONNECTED",
        "LAST HEARD",
        "QUEUED",
        "DROPPED",
        "LAST NACK",
    ]);
    for e in &response.enforcers {
        t.add_row(row(e));
    }
    print_table(t);
    println!("Current revision: {}", response.current_revision);
}

fn row(e: &Enforcer) -> [String; 11] {
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let connected = if e.expected {
        time_relative(e.connected_since.as_ref())
    } else {
        "no".to_owned()
    };
    let nack = e.last_nack.as_ref().map_or("-".to_owned(), |n| {
        format!("revision {}: {}", n.revision, n.reason)
    });
    [
        e.id.clone(),
        dash(&e.replica),
        dash(&e.address),
        dash(&e.version),
        e.acked_revision.to_string(),
        e.lag.to_string(),
        connected,
        time_relative(e.last_heartbeat.as_ref()),
        e.events_buffered.to_string(),
        e.events_dropped.to_string(),
        nack,
    ]
}
