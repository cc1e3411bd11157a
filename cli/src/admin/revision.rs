//! `ipgate revision status`: is a revision live, i.e. acknowledged by
//! every connected enforcer? `--wait` polls until it is.

use std::time::{Duration, Instant};

use clap::Subcommand;
use ipgate_shared::proto::admin::v1::{GetRevisionStatusRequest, RevisionStatus};

use super::{
    Admin, Output,
    output::{details, print_table, table, time_relative},
};

/// How often `--wait` asks again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// `ipgate revision …`
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Tell whether a revision is live on every connected enforcer.
    Status {
        /// The revision (the `Revision:` of a write); leave out for the current one. With `--wait`, waits up to that long for it to be live, and fails if it is not by then.
        #[arg(default_value_t = 0)]
        revision: u64,
    },
}

/// Runs one `revision` subcommand.
pub async fn run(mut client: Admin, out: Output, command: Command) -> anyhow::Result<()> {
    let Command::Status { revision } = command;
    let wait = out.wait;
    let deadline = wait.map(|w| Instant::now() + w);
    let status = loop {
        let status = client
            .get_revision_status(GetRevisionStatusRequest { revision })
            .await?
            .into_inner();
        match deadline {
            Some(deadline) if !status.live && Instant::now() < deadline => {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            _ => break status,
        }
    };
    out.print(&status, print_status)?;
    if let (Some(wait), false) = (wait, status.live) {
        anyhow::bail!(
            "revision {} is not live after {}: {} of {} connected enforcers acknowledged it",
            status.revision,
            humantime::format_duration(wait),
            status.enforcers_acked,
            status.enforcers_connected
        );
    }
    Ok(())
}

fn print_status(s: &RevisionStatus) {
    let live = if s.live {
        "yes: every connected enforcer has it"
    } else {
        "not yet"
    };
    let mut d = details();
    d.add_row(["Revision:", &s.revision.to_string()]);
    d.add_row(["Current revision:", &s.current_revision.to_string()]);
    d.add_row(["Live:", live]);
    d.add_row([
        "Acknowledged by:",
        &format!(
            "{} of {} connected enforcers",
            s.enforcers_acked, s.enforcers_connected
        ),
    ]);
    print_table(d);
    if !s.enforcers.is_empty() {
        let mut t = table(["ENFORCER", "ACKED REVISION", "CONNECTED", "LAST SEEN"]);
        for e in &s.enforcers {
            t.add_row([
                e.enforcer_id.clone(),
                e.acked_revision.to_string(),
                if e.connected { "yes" } else { "no" }.to_owned(),
                time_relative(e.last_seen.as_ref()),
            ]);
        }
        print_table(t);
    }
}
