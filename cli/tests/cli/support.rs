//! A real control plane (SQLite in a temporary directory) and a real
//! enforcer, started in this process, and the `ipgate` binary run against
//! them as an operator would run it.

#![allow(dead_code)]

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use ipgate_shared::proto::check::v1::{CheckRequest, check_service_client::CheckServiceClient};
use serde_json::Value;

/// The owner token the control plane is bootstrapped with.
pub const OWNER_TOKEN: &str = "ipg_admin_cli-tests-owner-token-0123456789abcdef";
/// The enforcer token it accepts.
pub const ENFORCER_TOKEN: &str = "ipg_enf_cli-tests-enforcer-token-0123456789abcdef";

/// A control plane and an enforcer on loopback ports picked by the system;
/// the enforcer's proxy serves API `orders`, in front of a port nothing
/// listens on (what it refuses never gets that far), and trusts 127.0.0.1
/// as a proxy, so a test's request can carry a trusted proxy's forwarding
/// header (one without such a header is decided on the peer as ever).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub check_addr: String,
    pub proxy_addr: std::net::SocketAddr,
    runtime: tokio::runtime::Runtime,
    control_plane: Option<ipgate_control_plane::Running>,
    enforcer: Option<ipgate_enforcer::Running>,
}

/// What one run of `ipgate` did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics unless the run succeeded; returns its stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "ipgate failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Panics unless the run failed; returns its stderr.
    #[track_caller]
    pub fn failed(&self) -> &str {
        assert_ne!(
            self.code,
            Some(0),
            "ipgate should have failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        assert!(self.code.is_some(), "ipgate was killed: {self:?}");
        &self.stderr
    }
}

impl Env {
    /// Starts the control plane and an enforcer, and waits for the enforcer's
    /// first snapshot.
    pub fn start() -> Env {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = ipgate_control_plane::Config::with_database(format!(
            "sqlite://{}",
            dir.path().join("db").display()
        ));
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.bootstrap_token = Some(OWNER_TOKEN.to_owned());
        config.bootstrap_enforcer_token = Some(ENFORCER_TOKEN.to_owned());
        let control_plane = runtime
            .block_on(ipgate_control_plane::start(config))
            .expect("control plane starts");
        let addr = format!("http://{}", control_plane.addr);
        // A port nothing listens on: bound, then let go.
        let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");

        let enforcer = runtime
            .block_on(ipgate_enforcer::start(ipgate_enforcer::Config {
                control_plane: vec![addr.parse().expect("uri")],
                token: ENFORCER_TOKEN.parse().expect("token"),
                id: "cli-test-enforcer".parse().expect("enforcer id"),
                grpc_listen: "127.0.0.1:0".parse().expect("address"),
                check_token: None,
                proxy_listen: "127.0.0.1:0".parse().expect("address"),
                upstream: Some(format!("http://{nowhere}").parse().expect("uri")),
                api: Some("orders".parse().expect("slug")),
                api_for_host: vec![],
                auth_listen: None,
                auth_proxy_protocol: false,
                fail_open_until_synced: false,
                reconnect_min_ms: 50,
                reconnect_max_ms: 500,
                event_queue_capacity: 10_000,
                snapshot_cache: None,
                client_ip: ipgate_enforcer::config::ClientIpConfig {
                    trusted_proxies: vec!["127.0.0.1/32".parse().expect("a network")],
                    ..Default::default()
                },
                hide_credentials: true,
                drain_timeout: ipgate_enforcer::config::DEFAULT_DRAIN_TIMEOUT,
                proxy_limits: Default::default(),
                upstream_options: Default::default(),
            }))
            .expect("enforcer starts");
        let check_addr = format!("http://{}", enforcer.grpc_addr);
        let proxy_addr = enforcer.proxy_addr.expect("the proxy runs");
        let env = Env {
            dir,
            addr,
            check_addr,
            proxy_addr,
            runtime,
            control_plane: Some(control_plane),
            enforcer: Some(enforcer),
        };
        eventually("the enforcer's first snapshot", || {
            env.enforcer.as_ref().and_then(|e| e.revision()).map(|_| ())
        });
        env
    }

    /// `ipgate ARGS` with the owner token.
    pub fn ipgate(&self, args: &[&str]) -> Run {
        self.ipgate_as(OWNER_TOKEN, args)
    }

    /// `ipgate ARGS` with `token` in `IPGATE_TOKEN`.
    pub fn ipgate_as(&self, token: &str, args: &[&str]) -> Run {
        let output = ipgate_command(self.dir.path())
            .args(args)
            .env("IPGATE_ADDR", &self.addr)
            .env("IPGATE_TOKEN", token)
            .output()
            .expect("run ipgate");
        Run::from(output)
    }

    /// `ipgate --json ARGS`, which must succeed; its stdout parsed.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let run = self.ipgate(&all);
        let out = run.ok();
        serde_json::from_str(out)
            .unwrap_or_else(|e| panic!("{args:?} --json printed no JSON ({e}):\n{out}"))
    }

    /// One request decided by the enforcer's check door, as a front door
    /// would ask; it lands in the usage log. Returns the HTTP status.
    pub fn request(&self, api: &str, key: &str, client_ip: &str, path: &str) -> u32 {
        let addr = self.check_addr.clone();
        let request = CheckRequest {
            api: api.to_owned(),
            api_key: key.to_owned(),
            client_ip: client_ip.to_owned(),
            method: "GET".to_owned(),
            path: path.to_owned(),
            request_id: String::new(),
        };
        self.runtime.block_on(async move {
            let mut client = CheckServiceClient::connect(addr).await.expect("check door");
            client
                .check(request)
                .await
                .expect("check answers")
                .into_inner()
                .http_status
        })
    }

    /// One request through the enforcer's proxy, with no key: refused
    /// there (401, 404 or 503) and logged. Returns the HTTP status.
    pub fn proxy_request(&self, path: &str) -> u32 {
        self.proxy_request_with(path, &[])
    }

    /// [`Env::proxy_request`] with `headers` too: from 127.0.0.1, so a
    /// forwarding header among them is a trusted proxy's.
    pub fn proxy_request_with(&self, path: &str, headers: &[(&str, &str)]) -> u32 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.proxy_addr).expect("the proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        let headers: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: orders\r\n{headers}Connection: close\r\n\r\n"
        )
        .expect("send a request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("an answer");
        // "HTTP/1.1 401 Unauthorized"
        answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {answer:?}"))
    }

    /// Waits until the enforcer has applied every committed revision.
    pub fn wait_live(&self) {
        self.ipgate(&["revision", "status", "--wait", "20s"]).ok();
    }

    /// Waits until the usage log holds `n` rows matching `filters`.
    pub fn wait_logged(&self, filters: &[&str], n: usize) {
        eventually("usage events to reach the control plane", || {
            let mut args = vec!["logs", "query"];
            args.extend_from_slice(filters);
            let v = self.json(&args);
            let rows = v["entries"].as_array().map_or(0, Vec::len);
            (rows >= n).then_some(())
        });
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(enforcer) = self.enforcer.take() {
            let _ = self.runtime.block_on(enforcer.shutdown());
        }
        if let Some(cp) = self.control_plane.take() {
            let _ = self.runtime.block_on(cp.shutdown());
        }
    }
}

/// The `ipgate` binary under test, in `dir`, with a clean environment of
/// `IPGATE_…` variables and quiet logs.
pub fn ipgate_command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipgate"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("IPGATE_") {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(dir).env("IPGATE_LOG", "warn");
    cmd
}

/// Polls `probe` until it answers, for at most 30 seconds.
#[track_caller]
pub fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The string at a JSON pointer, or panics.
#[track_caller]
pub fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v:#}"))
}

/// Records that the running test skips, for `reason`; panics instead under
/// `CI=true`. A skip passes for cargo, which hides what passing tests print,
/// so it is written straight to stderr (libtest captures only the print
/// macros) and appended to the file `tests/run.sh` names in
/// `IPGATE_TEST_SKIP_LOG`, which it sums up at the end of the run.
#[track_caller]
pub fn skip(reason: &str) {
    use std::io::Write;
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true, so this test may not skip: {reason}"
    );
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_owned();
    let line = format!("cli {test}: {reason}");
    let _ = writeln!(std::io::stderr(), "SKIPPED {line}");
    if let Some(path) = std::env::var_os("IPGATE_TEST_SKIP_LOG") {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    }
}
