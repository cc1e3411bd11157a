//! The control plane's configuration, and the flags that make it.
//!
//! [`Config`] is what [`crate::start`] runs with. The flags come in groups
//! (clap `Args`, each flag with an `IPGATE_…` environment variable, a default
//! and a help text): [`ControlPlaneArgs`] is `ipgate control-plane`, and
//! `ipgate dev` flattens the same [`RuleArgs`] and [`TimingArgs`], so a flag
//! that matters for trying things out is defined once and reaches both.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use ipgate_shared::{ListRules, allowlist};

/// Port of the default `--listen`. Below 32768 on purpose: Linux hands out
/// outgoing connections' ports from 32768–60999, and one of those can hold a
/// default port in that range just when a server wants to bind it.
pub const DEFAULT_PORT: u16 = 7151;
/// Default `--listen`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, DEFAULT_PORT));
/// Default `--database`.
pub const DEFAULT_DATABASE: &str = "sqlite://.ipgate/ipgate.db";
/// Default `--heartbeat-interval`.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Default `--change-log-retention`.
pub const DEFAULT_CHANGE_LOG_RETENTION: u64 = 10_000;
/// Default `--usage-retention-days`.
pub const DEFAULT_USAGE_RETENTION_DAYS: u32 = 30;
/// Default `--expiry-sweep-interval`.
pub const DEFAULT_EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// How to run the control plane.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address of the gRPC server; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Database URL: `sqlite://PATH` or `postgres://…`.
    pub database: String,
    /// Accept private, link-local and unique-local ranges in allowlists.
    pub allow_private_ranges: bool,
    /// Most entries an API key's allowlist may hold.
    pub max_key_entries: usize,
    /// Most entries an API's allowlist may hold.
    pub max_api_entries: usize,
    /// How often an idle sync stream carries a heartbeat.
    pub heartbeat_interval: Duration,
    /// Revisions kept in the change log.
    pub change_log_retention: u64,
    /// Days usage-log events are kept.
    pub usage_retention_days: u32,
    /// How often expired allowlist entries are removed from the store.
    pub expiry_sweep_interval: Duration,
    /// Owner admin token to make sure exists at start.
    pub bootstrap_token: Option<String>,
    /// Enforcer token to make sure exists at start.
    pub bootstrap_enforcer_token: Option<String>,
    /// This replica's name in ListEnforcers; `None` means host name and port.
    pub replica_id: Option<String>,
}

impl Config {
    /// The defaults, with `database` as the store: what tests and `ipgate dev` start from.
    pub fn with_database(database: impl Into<String>) -> Self {
        Config {
            listen: DEFAULT_LISTEN,
            database: database.into(),
            allow_private_ranges: false,
            max_key_entries: allowlist::DEFAULT_MAX_KEY_ENTRIES,
            max_api_entries: allowlist::DEFAULT_MAX_API_ENTRIES,
            heartbeat_interval: DEFAULT_HEARTBEAT,
            change_log_retention: DEFAULT_CHANGE_LOG_RETENTION,
            usage_retention_days: DEFAULT_USAGE_RETENTION_DAYS,
            expiry_sweep_interval: DEFAULT_EXPIRY_SWEEP_INTERVAL,
            bootstrap_token: None,
            bootstrap_enforcer_token: None,
            replica_id: None,
        }
    }

    /// Rules for API keys' allowlists.
    pub fn key_rules(&self) -> ListRules {
        ListRules {
            max_entries: self.max_key_entries,
            allow_private_ranges: self.allow_private_ranges,
        }
    }

    /// Rules for APIs' allowlists.
    pub fn api_rules(&self) -> ListRules {
        ListRules {
            max_entries: self.max_api_entries,
            allow_private_ranges: self.allow_private_ranges,
        }
    }
}

/// The flags of `ipgate control-plane`.
#[derive(clap::Args, Clone, Debug)]
pub struct ControlPlaneArgs {
    /// Address of the gRPC server (admin API, sync, reflection, health); port 0 picks a free port.
    #[arg(long, env = "IPGATE_LISTEN", default_value_t = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://PATH` (file and directory created if missing) or `postgres://…`.
    #[arg(long, env = "IPGATE_DATABASE", default_value = DEFAULT_DATABASE)]
    pub database: String,

    #[command(flatten)]
    pub rules: RuleArgs,

    #[command(flatten)]
    pub timing: TimingArgs,

    /// Owner admin token to make sure exists at start (prefer the environment variable to the flag).
    #[arg(long, env = "IPGATE_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub bootstrap_token: Option<String>,

    /// Enforcer token to make sure exists at start (prefer the environment variable to the flag).
    #[arg(long, env = "IPGATE_BOOTSTRAP_ENFORCER_TOKEN", hide_env_values = true)]
    pub bootstrap_enforcer_token: Option<String>,

    /// This replica's name, shown beside each enforcer connected to it (ListEnforcers); by default the host name and the listening port.
    #[arg(long, env = "IPGATE_REPLICA_ID")]
    pub replica_id: Option<String>,
}

impl ControlPlaneArgs {
    /// The configuration these flags describe.
    pub fn into_config(self) -> Config {
        let ControlPlaneArgs {
            listen,
            database,
            rules,
            timing,
            bootstrap_token,
            bootstrap_enforcer_token,
            replica_id,
        } = self;
        let mut config = Config::with_database(database);
        config.replica_id = replica_id;
        config.listen = listen;
        config.bootstrap_token = bootstrap_token;
        config.bootstrap_enforcer_token = bootstrap_enforcer_token;
        rules.apply(&mut config);
        timing.apply(&mut config);
        config
    }
}

/// What an allowlist may hold (shared by `ipgate control-plane` and `ipgate dev`).
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Allowlist rules")]
pub struct RuleArgs {
    /// Accept private, link-local and unique-local ranges in allowlists (for enforcers that see internal addresses).
    #[arg(long, env = "IPGATE_ALLOW_PRIVATE_RANGES", default_value_t = false)]
    pub allow_private_ranges: bool,

    /// Most entries an API key's allowlist may hold.
    #[arg(long, env = "IPGATE_MAX_KEY_ENTRIES", default_value_t = allowlist::DEFAULT_MAX_KEY_ENTRIES)]
    pub max_key_entries: usize,

    /// Most entries an API's allowlist may hold.
    #[arg(long, env = "IPGATE_MAX_API_ENTRIES", default_value_t = allowlist::DEFAULT_MAX_API_ENTRIES)]
    pub max_api_entries: usize,
}

impl RuleArgs {
    /// Puts these rules into `config`.
    pub fn apply(self, config: &mut Config) {
        // Destructured, so a new flag cannot be forgotten here.
        let RuleArgs {
            allow_private_ranges,
            max_key_entries,
            max_api_entries,
        } = self;
        config.allow_private_ranges = allow_private_ranges;
        config.max_key_entries = max_key_entries;
        config.max_api_entries = max_api_entries;
    }
}

/// Intervals and retention (shared by `ipgate control-plane` and `ipgate dev`).
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Intervals and retention")]
pub struct TimingArgs {
    /// How often an idle sync stream carries a heartbeat: `500ms`, `5s`, `2m`, or plain seconds (`5`).
    #[arg(long, env = "IPGATE_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Revisions kept in the change log; an enforcer further behind gets a full snapshot.
    #[arg(long, env = "IPGATE_CHANGE_LOG_RETENTION", default_value_t = DEFAULT_CHANGE_LOG_RETENTION)]
    pub change_log_retention: u64,

    /// Days usage-log events are kept before they are pruned.
    #[arg(long, env = "IPGATE_USAGE_RETENTION_DAYS", default_value_t = DEFAULT_USAGE_RETENTION_DAYS)]
    pub usage_retention_days: u32,

    /// How often expired allowlist entries are removed from the store (they stop matching on enforcers at their instant regardless).
    #[arg(long, env = "IPGATE_EXPIRY_SWEEP_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub expiry_sweep_interval: Duration,
}

impl TimingArgs {
    /// Puts these intervals into `config`.
    pub fn apply(self, config: &mut Config) {
        let TimingArgs {
            heartbeat_interval,
            change_log_retention,
            usage_retention_days,
            expiry_sweep_interval,
        } = self;
        config.heartbeat_interval = heartbeat_interval;
        config.change_log_retention = change_log_retention;
        config.usage_retention_days = usage_retention_days;
        config.expiry_sweep_interval = expiry_sweep_interval;
    }
}

/// Parses a positive duration: `250ms`, `5s`, `2m`, `1h` (humantime's
/// syntax) or plain seconds (`5`).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let duration = match s.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(s).map_err(|e| {
            format!(
                "{input:?} is not a duration ({e}): use e.g. 500ms, 5s, 2m, 1h or plain seconds"
            )
        })?,
    };
    if duration.is_zero() {
        return Err(format!("{input:?} is zero; give a positive duration"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControlPlaneArgs,
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Cli::try_parse_from(std::iter::once("control-plane").chain(args.iter().copied()))
            .map(|cli| cli.args.into_config())
    }

    #[test]
    fn durations_parse_humanely() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "5x", "-1s", "0s", "0"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flag_defaults_match_with_database() {
        let parsed = parse(&[]).expect("defaults parse");
        let expected = Config::with_database(DEFAULT_DATABASE);
        let Config {
            listen,
            database,
            allow_private_ranges,
            max_key_entries,
            max_api_entries,
            heartbeat_interval,
            change_log_retention,
            usage_retention_days,
            expiry_sweep_interval,
            bootstrap_token,
            bootstrap_enforcer_token,
            replica_id,
        } = parsed;
        assert_eq!(replica_id, expected.replica_id);
        assert_eq!(listen, expected.listen);
        assert_eq!(listen.to_string(), "127.0.0.1:7151");
        assert_eq!(database, expected.database);
        assert_eq!(allow_private_ranges, expected.allow_private_ranges);
        assert_eq!(max_key_entries, expected.max_key_entries);
        assert_eq!(max_api_entries, expected.max_api_entries);
        assert_eq!(heartbeat_interval, expected.heartbeat_interval);
        assert_eq!(change_log_retention, expected.change_log_retention);
        assert_eq!(usage_retention_days, expected.usage_retention_days);
        assert_eq!(expiry_sweep_interval, expected.expiry_sweep_interval);
        assert_eq!(bootstrap_token, None);
        assert_eq!(bootstrap_enforcer_token, None);
    }

    #[test]
    fn every_flag_reaches_the_config() {
        let config = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--database",
            "sqlite://x.db",
            "--allow-private-ranges",
            "--max-key-entries",
            "3",
            "--max-api-entries",
            "4",
            "--heartbeat-interval",
            "250ms",
            "--change-log-retention",
            "5",
            "--usage-retention-days",
            "6",
            "--expiry-sweep-interval",
            "7s",
            "--bootstrap-token",
            "owner",
            "--bootstrap-enforcer-token",
            "enforcer",
        ])
        .expect("flags parse");
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.database, "sqlite://x.db");
        assert!(config.allow_private_ranges);
        assert_eq!(config.key_rules().max_entries, 3);
        assert_eq!(config.api_rules().max_entries, 4);
        assert!(config.key_rules().allow_private_ranges);
        assert_eq!(config.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(config.change_log_retention, 5);
        assert_eq!(config.usage_retention_days, 6);
        assert_eq!(config.expiry_sweep_interval, Duration::from_secs(7));
        assert_eq!(config.bootstrap_token.as_deref(), Some("owner"));
        assert_eq!(config.bootstrap_enforcer_token.as_deref(), Some("enforcer"));
    }
}
