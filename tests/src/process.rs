//! The `ipgate` binary as child processes: a control plane and enforcers,
//! each found ready by the line it prints on stdout once it listens.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

use ipgate_shared::proto::{
    admin::v1::admin_service_client::AdminServiceClient,
    sync::v1::sync_service_client::SyncServiceClient,
};
use tonic::{
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use crate::{Backend, ENFORCER_TOKEN, OWNER_TOKEN};

/// How long a process may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the `ipgate` binary: `IPGATE_BIN`, or `target/<profile>/ipgate`
/// next to this test executable.
pub fn ipgate_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("IPGATE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/ipgate
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("ipgate"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build -p ipgate` (tests/run.sh does)",
        bin.display()
    );
    bin
}

/// A running `ipgate` child process; killed when dropped.
struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    /// Starts `ipgate <args>` and waits for one stdout line per entry of
    /// `ready`, each containing that text followed by an address.
    fn start(
        name: &str,
        args: &[String],
        envs: &[(&str, &str)],
        ready: &[&str],
    ) -> (Proc, Vec<SocketAddr>) {
        Self::start_in(None, name, args, envs, ready)
    }

    /// Like [`Proc::start`], in working directory `cwd`.
    fn start_in(
        cwd: Option<&Path>,
        name: &str,
        args: &[String],
        envs: &[(&str, &str)],
        ready: &[&str],
    ) -> (Proc, Vec<SocketAddr>) {
        let mut cmd = Command::new(ipgate_bin());
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        Self::spawn(name, cmd, ready)
    }

    /// Spawns `cmd` with its logs in a file and waits for its ready lines.
    fn spawn(name: &str, cmd: Command, ready: &[&str]) -> (Proc, Vec<SocketAddr>) {
        Self::spawn_until(name, cmd, ready, None)
    }

    /// Like [`Proc::spawn`], and also waits for a line that starts with
    /// `last` (printed once the process is ready for use, after its
    /// listeners' lines).
    fn spawn_until(
        name: &str,
        mut cmd: Command,
        ready: &[&str],
        last: Option<&str>,
    ) -> (Proc, Vec<SocketAddr>) {
        let log_dir = std::env::temp_dir().join("ipgate-e2e-logs");
        std::fs::create_dir_all(&log_dir).expect("log directory");
        let log = log_dir.join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let stderr = File::create(&log).expect("log file");
        cmd.env(
            "IPGATE_LOG",
            "info,ipgate_control_plane=debug,ipgate_enforcer=debug",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");

        // Read stdout on a thread for the life of the process, so the pipe
        // never fills; forward lines until every ready line was seen.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let proc = Proc {
            child,
            name: name.to_owned(),
            log,
        };
        // The ready lines may come in any order.
        let mut addrs: Vec<Option<SocketAddr>> = vec![None; ready.len()];
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        let mut last_seen = last.is_none();
        while !last_seen || addrs.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                panic!(
                    "{name} did not print {ready:?} (and {last:?}) in time; its log ({}):\n{}",
                    proc.log.display(),
                    proc.log_tail()
                );
            };
            if last.is_some_and(|l| line.starts_with(l)) {
                last_seen = true;
            }
            for (marker, slot) in ready.iter().zip(addrs.iter_mut()) {
                if let Some((_, rest)) = line.split_once(marker) {
                    let addr = rest.trim().parse::<SocketAddr>();
                    *slot = Some(
                        addr.unwrap_or_else(|e| panic!("{name}: bad address in {line:?}: {e}")),
                    );
                }
            }
        }
        let addrs = addrs.into_iter().flatten().collect();
        (proc, addrs)
    }

    /// Everything the process logged (its stderr) so far.
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM: the signal to shut down gracefully.
    fn terminate(&self) {
        // The shell's `kill` builtin: no extra crate for one signal.
        let sent = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.pid())])
            .status()
            .expect("run sh");
        assert!(sent.success(), "cannot send SIGTERM to {}", self.name);
    }

    /// SIGKILL: no graceful shutdown, like a crash.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        self.kill();
    }
}

/// Adds `authorization: Bearer <token>` to every call (nothing for [`Bearer::none`]).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// An interceptor for `token`.
    pub fn new(token: &str) -> Self {
        Bearer(Some(
            format!("Bearer {token}").parse().expect("ascii token"),
        ))
    }

    /// An interceptor that sends no `authorization` metadata at all.
    pub fn none() -> Self {
        Bearer(None)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

/// An admin API client with a token.
pub type AdminClient = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// A sync service client with a token: what an enforcer speaks.
pub type SyncClient = SyncServiceClient<InterceptedService<Channel, Bearer>>;

/// A control plane child process.
pub struct ControlPlane {
    proc: Option<Proc>,
    /// The gRPC address it listens on (kept across restarts).
    pub addr: SocketAddr,
    database: String,
    extra_args: Vec<String>,
    /// The SQLite folder, kept while this control plane may use it.
    _folder: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl ControlPlane {
    /// Starts a control plane on `backend`, on a free loopback port.
    pub fn start(backend: &Backend) -> ControlPlane {
        Self::start_with(backend, &[])
    }

    /// Like [`ControlPlane::start`], with more flags (kept across restarts).
    pub fn start_with(backend: &Backend, extra_args: &[&str]) -> ControlPlane {
        let extra_args = extra_args.iter().map(|a| (*a).to_owned()).collect();
        let mut started = Self::start_at(
            backend.url(),
            "127.0.0.1:0".parse().expect("address"),
            extra_args,
        );
        started._folder = backend.keep();
        started
    }

    /// Like [`ControlPlane::start_with`], on the database at `database` as
    /// given (e.g. a URL carrying a password).
    pub fn start_on(database: &str, extra_args: &[&str]) -> ControlPlane {
        let extra_args = extra_args.iter().map(|a| (*a).to_owned()).collect();
        Self::start_at(
            database,
            "127.0.0.1:0".parse().expect("address"),
            extra_args,
        )
    }

    fn start_at(database: &str, listen: SocketAddr, extra_args: Vec<String>) -> ControlPlane {
        let mut args = vec![
            "control-plane".to_owned(),
            "--listen".to_owned(),
            listen.to_string(),
            "--database".to_owned(),
            database.to_owned(),
        ];
        args.extend(extra_args.iter().cloned());
        let envs = [
            ("IPGATE_BOOTSTRAP_TOKEN", OWNER_TOKEN),
            ("IPGATE_BOOTSTRAP_ENFORCER_TOKEN", ENFORCER_TOKEN),
        ];
        let (proc, addrs) = Proc::start("control-plane", &args, &envs, &["serving gRPC on"]);
        ControlPlane {
            proc: Some(proc),
            addr: addrs[0],
            database: database.to_owned(),
            extra_args,
            _folder: None,
        }
    }

    /// The process id, e.g. to read its memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("the control plane runs").pid()
    }

    /// Everything it logged (stderr) so far.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// Kills the process with SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Starts it again on the same address and database.
    pub fn restart(&mut self) {
        self.kill();
        let folder = self._folder.take();
        *self = Self::start_at(&self.database.clone(), self.addr, self.extra_args.clone());
        self._folder = folder;
    }

    /// `http://<addr>`, for enforcers and clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An admin client with the owner token.
    pub async fn admin(&self) -> AdminClient {
        self.admin_with(OWNER_TOKEN).await
    }

    /// An admin client with another token.
    pub async fn admin_with(&self, token: &str) -> AdminClient {
        AdminServiceClient::with_interceptor(self.channel().await, Bearer::new(token))
    }

    /// An admin client that sends no token.
    pub async fn admin_without_token(&self) -> AdminClient {
        AdminServiceClient::with_interceptor(self.channel().await, Bearer::none())
    }

    /// A sync service client with the bootstrap enforcer token.
    pub async fn sync(&self) -> SyncClient {
        self.sync_with(ENFORCER_TOKEN).await
    }

    /// A sync service client with another token.
    pub async fn sync_with(&self, token: &str) -> SyncClient {
        SyncServiceClient::with_interceptor(self.channel().await, Bearer::new(token))
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect to the control plane")
    }
}

/// An enforcer child process with its proxy in front of one upstream.
pub struct Enforcer {
    proc: Proc,
    /// Its `--enforcer-id`.
    pub id: String,
    pub grpc_addr: SocketAddr,
    pub proxy_addr: SocketAddr,
    /// The HTTP auth endpoint, when started with `--auth-listen`.
    pub auth_addr: Option<SocketAddr>,
}

impl Enforcer {
    /// Starts an enforcer synced from `control_plane`, proxying API `api` to `upstream`.
    pub fn start(control_plane: &ControlPlane, api: &str, upstream: SocketAddr) -> Enforcer {
        Self::start_with_token(control_plane, api, upstream, ENFORCER_TOKEN)
    }

    /// Like [`Enforcer::start`], presenting enforcer token `token`.
    pub fn start_with_token(
        control_plane: &ControlPlane,
        api: &str,
        upstream: SocketAddr,
        token: &str,
    ) -> Enforcer {
        Self::start_at(&control_plane.url(), api, upstream, token)
    }

    /// Like [`Enforcer::start_with_token`], given `--control-plane` as is
    /// (e.g. a URL carrying a password).
    pub fn start_at(control_plane: &str, api: &str, upstream: SocketAddr, token: &str) -> Enforcer {
        Self::start_configured(control_plane, api, upstream, token, "127.0.0.1:0", &[], &[])
    }

    /// Like [`Enforcer::start`], with more flags (`extra_args`) and
    /// environment variables (`extra_envs`).
    pub fn start_with(
        control_plane: &ControlPlane,
        api: &str,
        upstream: SocketAddr,
        extra_args: &[&str],
        extra_envs: &[(&str, &str)],
    ) -> Enforcer {
        Self::start_via(&control_plane.url(), api, upstream, extra_args, extra_envs)
    }

    /// Like [`Enforcer::start_with`], syncing from `control_plane` as given
    /// (several comma-separated, or a link the test controls).
    pub fn start_via(
        control_plane: &str,
        api: &str,
        upstream: SocketAddr,
        extra_args: &[&str],
        extra_envs: &[(&str, &str)],
    ) -> Enforcer {
        Self::start_configured(
            control_plane,
            api,
            upstream,
            ENFORCER_TOKEN,
            "127.0.0.1:0",
            extra_args,
            extra_envs,
        )
    }

    /// Like [`Enforcer::start`], with more `IPGATE_…` variables set (the
    /// way an operator sets a flag through the environment).
    pub fn start_with_envs(
        control_plane: &ControlPlane,
        api: &str,
        upstream: SocketAddr,
        envs: &[(&str, &str)],
    ) -> Enforcer {
        Self::start_with(control_plane, api, upstream, &[], envs)
    }

    /// Like [`Enforcer::start`], with its gRPC door on `grpc_listen` and
    /// `envs` set (e.g. `IPGATE_CHECK_TOKEN`).
    pub fn start_listening(
        control_plane: &ControlPlane,
        api: &str,
        upstream: SocketAddr,
        grpc_listen: &str,
        envs: &[(&str, &str)],
    ) -> Enforcer {
        let url = control_plane.url();
        Self::start_configured(&url, api, upstream, ENFORCER_TOKEN, grpc_listen, &[], envs)
    }

    fn start_configured(
        control_plane: &str,
        api: &str,
        upstream: SocketAddr,
        token: &str,
        grpc_listen: &str,
        extra_args: &[&str],
        extra_envs: &[(&str, &str)],
    ) -> Enforcer {
        let args: Vec<String> = [
            "enforcer",
            "--control-plane",
            control_plane,
            "--grpc-listen",
            grpc_listen,
            "--proxy-listen",
            "127.0.0.1:0",
            "--upstream",
            &format!("http://{upstream}"),
            "--api",
            api,
        ]
        .iter()
        .chain(extra_args)
        .map(|s| (*s).to_owned())
        .collect();
        // Unique ids, so the control plane tells a test's enforcers apart.
        let id = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut envs = vec![
            ("IPGATE_ENFORCER_TOKEN", token),
            ("IPGATE_ENFORCER_ID", id.as_str()),
        ];
        envs.extend_from_slice(extra_envs);
        let mut ready = vec!["serving gRPC on", "serving HTTP proxy on"];
        let auth = extra_args.contains(&"--auth-listen")
            || extra_envs.iter().any(|(k, _)| *k == "IPGATE_AUTH_LISTEN");
        if auth {
            ready.push("serving HTTP auth endpoint on");
        }
        let (proc, addrs) = Proc::start("enforcer", &args, &envs, &ready);
        Enforcer {
            proc,
            id,
            grpc_addr: addrs[0],
            proxy_addr: addrs[1],
            auth_addr: addrs.get(2).copied(),
        }
    }

    /// Everything it logged (stderr) so far.
    pub fn log(&self) -> String {
        self.proc.log_text()
    }

    /// The process id, e.g. to freeze it with SIGSTOP.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Sends SIGTERM, as an orchestrator stopping it does.
    pub fn terminate(&self) {
        self.proc.terminate();
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.proc.child.try_wait().expect("wait for the enforcer")
    }

    /// Waits at most `timeout` for it to exit, failing the test after.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the enforcer still ran {timeout:?} after it was told to stop; its log:\n{}",
                self.proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `ipgate dev` in a working directory of the test's choosing (its state
/// goes to `<dir>/.ipgate/`), on free ports unless the test names others.
pub struct DevMode {
    proc: Proc,
    dir: PathBuf,
    /// The control plane's address, as `ipgate dev` printed it.
    pub control_plane: SocketAddr,
    /// The enforcer's gRPC check door.
    pub check: SocketAddr,
    /// The enforcer's HTTP proxy address.
    pub proxy: SocketAddr,
    /// The enforcer's HTTP auth endpoint.
    pub auth: SocketAddr,
}

/// The listeners of `ipgate dev`, each bound to a free port unless given.
const DEV_LISTENERS: [&str; 5] = [
    "--listen",
    "--grpc-listen",
    "--proxy-listen",
    "--auth-listen",
    "--upstream-listen",
];

impl DevMode {
    /// Starts `ipgate dev` in `dir` on free ports and waits until it listens.
    pub fn start(dir: &Path) -> DevMode {
        Self::start_with(dir, &[], &[])
    }

    /// Starts `ipgate dev <args>` in `dir` with `envs` set; every listener
    /// `args` does not name gets a free port.
    pub fn start_with(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> DevMode {
        let mut cmd = Command::new(ipgate_bin());
        cmd.args(dev_args(args)).current_dir(dir);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        // The banner comes once the demo API exists.
        let (proc, addrs) = Proc::spawn_until(
            "dev",
            cmd,
            &[
                "control-plane serving gRPC on",
                "enforcer serving gRPC on",
                "enforcer serving HTTP proxy on",
                "enforcer serving HTTP auth endpoint on",
            ],
            Some("ipgate dev is running."),
        );
        DevMode {
            proc,
            dir: dir.to_path_buf(),
            control_plane: addrs[0],
            check: addrs[1],
            proxy: addrs[2],
            auth: addrs[3],
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// An admin client with the owner token it keeps in `.ipgate/admin-token`.
    pub async fn admin(&self) -> AdminClient {
        let path = self.dir.join(".ipgate/admin-token");
        let token =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let channel = Channel::from_shared(format!("http://{}", self.control_plane))
            .expect("url")
            .connect()
            .await
            .expect("connect to the dev control plane");
        AdminServiceClient::with_interceptor(channel, Bearer::new(token.trim()))
    }

    /// Kills it with SIGKILL, like a crash.
    pub fn kill(mut self) {
        self.proc.kill();
    }

    /// Waits until the dev enforcer has its first snapshot: the proxy then
    /// answers a request without a key with 401 (503 before).
    pub async fn wait_synced(&self) {
        let proxy = self.proxy;
        crate::eventually(
            std::time::Duration::from_secs(30),
            "the dev enforcer to sync",
            || async move {
                let res = crate::http::get(crate::admin::ip("127.0.0.1"), proxy, "/", &[]).await;
                (res.status == 401).then_some(())
            },
        )
        .await;
    }
}

/// `dev <args>`, with `127.0.0.1:0` for every listener `args` leaves out.
pub fn dev_args(args: &[&str]) -> Vec<String> {
    let mut all = vec!["dev".to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    for flag in DEV_LISTENERS {
        if !args.contains(&flag) {
            all.extend([flag.to_owned(), "127.0.0.1:0".to_owned()]);
        }
    }
    all
}

/// Runs `ipgate <args>` in `dir` with `envs` until it exits, at most
/// `timeout` (then it is killed and the test fails): for commands that must
/// end by themselves, like a refused start.
pub fn run_to_end(
    dir: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    timeout: Duration,
) -> std::process::Output {
    let mut cmd = Command::new(ipgate_bin());
    cmd.args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start ipgate");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait().expect("wait for ipgate") {
            Some(_) => return child.wait_with_output().expect("ipgate output"),
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("ipgate output");
                panic!(
                    "`ipgate {}` still ran after {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A shell command line from the docs, run as written (with `cargo run -p
/// ipgate --` standing for the built binary), until dropped.
pub struct DocCommand {
    _proc: Proc,
    /// The addresses of its ready lines, in the order asked for.
    pub addrs: Vec<SocketAddr>,
}

impl DocCommand {
    /// Runs `line` with bash in `cwd` and waits for every `ready` line.
    pub fn start(cwd: &Path, line: &str, ready: &[&str]) -> DocCommand {
        let bin = ipgate_bin();
        let line = line.replace("cargo run -p ipgate --", &bin.display().to_string());
        // `exec env …` makes the ipgate process itself the child, so killing
        // it stops the server, not just a shell around it.
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &format!("exec env {line}")])
            .current_dir(cwd);
        let (proc, addrs) = Proc::spawn("doc-command", cmd, ready);
        DocCommand { _proc: proc, addrs }
    }
}
