//! `ipgate apis allowlist …` and `ipgate keys allowlist …`: show, replace,
//! add, remove and update entries. APIs and keys have the same RPC shapes,
//! so one generic command serves both; [`Target`] says which.

use std::{path::PathBuf, str::FromStr, time::Duration};

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use ipgate_shared::proto::admin::v1::{
    Allowlist, AllowlistEntry, AllowlistWriteOptions, LockoutPreview, Propagation,
    WaitForPropagation,
};
use prost_types::Timestamp;
use tonic::Status;

mod targets;

pub use targets::{ApiTarget, KeyTarget};

use super::{
    Admin, Output,
    output::{Proto, details, from_json, print_allowlist, print_lockout, print_table},
    time::{expiry, parse_duration, parse_timestamp},
};

/// What an allowlist belongs to: an API (by slug) or an API key (by id).
pub trait Target: Clone + Send + Sync + 'static {
    /// How the positional argument is shown in help: `API` or `KEY_ID`.
    const VALUE_NAME: &'static str;
    /// Help for the positional argument.
    const HELP: &'static str;
    /// The object the list belongs to, as read by `show`.
    type Object: Proto;
    /// What every write answers.
    type Response: Proto;

    /// Parses the positional argument.
    fn parse(arg: &str) -> Result<Self, String>;
    /// Reads the object.
    async fn get(&self, client: &mut Admin) -> Result<Self::Object, Status>;
    /// Sends one write.
    async fn write(
        &self,
        client: &mut Admin,
        write: Write,
        etag: String,
        options: Option<AllowlistWriteOptions>,
        wait: Option<WaitForPropagation>,
    ) -> Result<Self::Response, Status>;
    /// Where the write's propagation stood, when it waited (`--wait`).
    fn propagation(response: &Self::Response) -> Option<&Propagation>;
    /// The object's parts shown to people.
    fn view(object: &Self::Object) -> View<'_>;
    /// The written object, the lockout preview, and whether it was a dry run.
    fn written(response: &Self::Response) -> (Option<View<'_>>, Option<&LockoutPreview>, bool);
}

/// The parts of an API or key an allowlist command shows.
pub struct View<'a> {
    /// `API "demo"` or `API key k_…`.
    pub title: String,
    pub allowlist: Option<&'a Allowlist>,
    pub etag: &'a str,
    pub revision: u64,
}

/// One write, whatever the target.
pub enum Write {
    Set(Allowlist),
    Add(Vec<AllowlistEntry>),
    Remove(Vec<String>),
    Update {
        cidr: String,
        label: Option<String>,
        expires_at: Option<Timestamp>,
        clear_expires_at: bool,
    },
}

/// An entry on the command line: `CIDR` or `CIDR=LABEL`.
#[derive(Clone, Debug)]
pub struct EntryArg {
    cidr: String,
    label: Option<String>,
}

impl FromStr for EntryArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (cidr, label) = match s.split_once('=') {
            Some((cidr, label)) => (cidr.trim(), Some(label.to_owned())),
            None => (s.trim(), None),
        };
        if cidr.is_empty() {
            return Err(format!("{s:?} has no address: write CIDR or CIDR=LABEL"));
        }
        Ok(EntryArg {
            cidr: cidr.to_owned(),
            label,
        })
    }
}

/// Flags every allowlist write takes.
#[derive(Args, Debug, Clone)]
pub struct WriteArgs {
    /// Etag read with the object (`show`); a stale one fails with ABORTED. Empty writes unconditionally.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub etag: String,
    /// Check and preview only: print the list as it would be and who it would block; store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Store even though callers active in the last 24 hours would be blocked (LOCKOUT_RISK).
    #[arg(long, visible_alias = "yes-lock-out")]
    pub acknowledge_lockout_risk: bool,
}

impl WriteArgs {
    fn options(&self) -> Option<AllowlistWriteOptions> {
        Some(AllowlistWriteOptions {
            validate_only: self.dry_run,
            acknowledge_lockout_risk: self.acknowledge_lockout_risk,
        })
    }
}

/// Flags giving new entries an expiry.
#[derive(Args, Debug, Clone)]
#[group(multiple = false)]
pub struct ExpiryArgs {
    /// The entries stop matching after this long: `30m`, `2h`, `7d`.
    #[arg(long, value_parser = parse_duration)]
    pub expires_in: Option<Duration>,
    /// The entries stop matching at this RFC 3339 time: `2026-05-01T18:00:00Z`.
    #[arg(long, value_parser = parse_timestamp)]
    pub expires_at: Option<Timestamp>,
}

/// `ipgate apis allowlist …` / `ipgate keys allowlist …`
#[derive(Subcommand, Debug)]
pub enum Command<T: Target + std::fmt::Debug> {
    /// Show the list, its mode and the etag to pass to writes.
    Show {
        #[arg(value_name = T::VALUE_NAME, help = T::HELP, value_parser = T::parse)]
        target: T,
    },
    /// Replace the whole list (and its report-only mode).
    Set {
        #[arg(value_name = T::VALUE_NAME, help = T::HELP, value_parser = T::parse)]
        target: T,
        /// The entries: `203.0.113.0/24`, `2001:db8::1`, or with a label `203.0.113.0/24=Office`.
        #[arg(value_name = "CIDR[=LABEL]", required_unless_present_any = ["file", "empty"])]
        entries: Vec<EntryArg>,
        /// Label for entries given without one.
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        expiry: ExpiryArgs,
        /// Evaluate the list without blocking: would-be denials are allowed and logged as WOULD_BLOCK_IP (without it, `set` makes the list enforce).
        #[arg(long)]
        report_only: bool,
        /// Read the whole list from a JSON file (an `Allowlist`: `{"entries": [{"cidr": …, "label": …}], "reportOnly": false}`); `-` reads stdin.
        #[arg(long, conflicts_with_all = ["entries", "label", "report_only", "empty"])]
        file: Option<PathBuf>,
        /// Clear the list: every address may pass again.
        #[arg(long, conflicts_with_all = ["entries", "label", "report_only"])]
        empty: bool,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Add entries to the list.
    Add {
        #[arg(value_name = T::VALUE_NAME, help = T::HELP, value_parser = T::parse)]
        target: T,
        /// The entries: `203.0.113.0/24`, `2001:db8::1`, or with a label `203.0.113.0/24=Office`.
        #[arg(value_name = "CIDR[=LABEL]", required = true)]
        entries: Vec<EntryArg>,
        /// Label for entries given without one, e.g. "Office network".
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        expiry: ExpiryArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Remove entries from the list (`203.0.113.5` removes `203.0.113.5/32`).
    Remove {
        #[arg(value_name = T::VALUE_NAME, help = T::HELP, value_parser = T::parse)]
        target: T,
        /// The entries to remove.
        #[arg(value_name = "CIDR", required = true)]
        cidrs: Vec<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Change one entry's label or expiry in place.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["label", "expires_in", "expires_at", "no_expiry"])))]
    Update {
        #[arg(value_name = T::VALUE_NAME, help = T::HELP, value_parser = T::parse)]
        target: T,
        /// The entry to change.
        cidr: String,
        /// New label (`""` removes it).
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        expiry: ExpiryArgs,
        /// Remove the expiry: the entry becomes permanent.
        #[arg(long, conflicts_with_all = ["expires_in", "expires_at"])]
        no_expiry: bool,
        #[command(flatten)]
        write: WriteArgs,
    },
}

/// Runs one allowlist subcommand.
pub async fn run<T: Target + std::fmt::Debug>(
    mut client: Admin,
    out: Output,
    command: Command<T>,
) -> anyhow::Result<()> {
    let (target, write, args) = match command {
        Command::Show { target } => {
            let object = target.get(&mut client).await?;
            return out.print(&object, |o| print_view(&T::view(o)));
        }
        Command::Set {
            target,
            entries,
            label,
            expiry: exp,
            report_only,
            file,
            // `--empty` only lets `entries` be empty: the list is cleared.
            empty: _,
            write,
        } => {
            let list = match file {
                Some(path) => read_list(&path)?,
                None => Allowlist {
                    entries: to_entries(
                        entries,
                        label.as_deref(),
                        expiry(exp.expires_in, exp.expires_at),
                    ),
                    report_only,
                },
            };
            (target, Write::Set(list), write)
        }
        Command::Add {
            target,
            entries,
            label,
            expiry: exp,
            write,
        } => {
            let entries = to_entries(
                entries,
                label.as_deref(),
                expiry(exp.expires_in, exp.expires_at),
            );
            (target, Write::Add(entries), write)
        }
        Command::Remove {
            target,
            cidrs,
            write,
        } => (target, Write::Remove(cidrs), write),
        Command::Update {
            target,
            cidr,
            label,
            expiry: exp,
            no_expiry,
            write,
        } => {
            let update = Write::Update {
                cidr,
                label,
                expires_at: expiry(exp.expires_in, exp.expires_at),
                clear_expires_at: no_expiry,
            };
            (target, update, write)
        }
    };
    let response = target
        .write(
            &mut client,
            write,
            args.etag.clone(),
            args.options(),
            out.wait_for_propagation(),
        )
        .await?;
    out.print(&response, |r| print_written::<T>(r))?;
    out.receipt(T::propagation(&response))
}

/// Entries to send: each keeps its own label, or takes `label`.
pub fn to_entries(
    entries: Vec<EntryArg>,
    label: Option<&str>,
    expires_at: Option<Timestamp>,
) -> Vec<AllowlistEntry> {
    entries
        .into_iter()
        .map(|e| AllowlistEntry {
            cidr: e.cidr,
            label: e
                .label
                .or_else(|| label.map(str::to_owned))
                .unwrap_or_default(),
            expires_at,
            created_at: None,
            created_by: String::new(),
        })
        .collect()
}

fn read_list(path: &PathBuf) -> anyhow::Result<Allowlist> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the list from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    from_json::<Allowlist>(&text).with_context(|| {
        format!(
            "{} is not an allowlist in JSON ({{\"entries\": [{{\"cidr\": \"203.0.113.0/24\", \"label\": \"Office\"}}], \"reportOnly\": false}})",
            path.display()
        )
    })
}

fn print_view(view: &View<'_>) {
    print_view_as(view, false);
}

/// Prints the owner and its list; a dry run's would-be revision is left out.
fn print_view_as(view: &View<'_>, dry_run: bool) {
    println!("{}", view.title);
    if !dry_run {
        let mut d = details();
        d.add_row(["Revision:", &view.revision.to_string()]);
        d.add_row(["Etag:", view.etag]);
        print_table(d);
    }
    println!();
    print_allowlist(view.allowlist);
}

fn print_written<T: Target>(response: &T::Response) {
    let (view, lockout, dry_run) = T::written(response);
    if dry_run {
        println!("Dry run: nothing was stored and the revision did not move. The list would be:");
    } else if let Some(v) = &view {
        println!("Stored at revision {}.", v.revision);
    }
    if let Some(v) = &view {
        print_view_as(v, dry_run);
    }
    if dry_run || lockout.is_some_and(|l| l.total_callers > 0 || !l.callers.is_empty()) {
        println!();
        print_lockout(lockout);
    }
}
