//! Real proxies in front of an enforcer, as users run them: nginx, HAProxy,
//! Envoy and Traefik, each started from a configuration the test writes
//! into a temporary folder (also their working directory), listening on a
//! free loopback port, stopped when dropped. `tests/run.sh` installs them
//! when they are missing.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// How long a proxy may take to start listening.
const START: Duration = Duration::from_secs(30);

/// A running proxy.
pub struct Peer {
    name: &'static str,
    child: Child,
    dir: TempDir,
    /// Where callers connect.
    pub addr: SocketAddr,
}

/// A free port on 127.0.0.1 (the tiny race until the proxy binds it is
/// the same every harness of this kind has).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Peer {
    /// Starts `program` with `args` (where `{dir}` stands for the folder
    /// holding `config`, written as `file`), and waits until `addr` accepts.
    fn start(
        name: &'static str,
        program: &str,
        args: &[&str],
        file: &str,
        config: &str,
        addr: SocketAddr,
    ) -> Peer {
        Self::start_with_files(name, program, args, &[(file, config)], addr)
    }

    /// Like [`Peer::start`], with several configuration files (paths
    /// relative to the folder, which is also the working directory).
    fn start_with_files(
        name: &'static str,
        program: &str,
        args: &[&str],
        files: &[(&str, &str)],
        addr: SocketAddr,
    ) -> Peer {
        let dir = tempfile::tempdir().expect("temporary directory");
        for (file, config) in files {
            let config = config.replace("{dir}", &dir.path().display().to_string());
            let path = dir.path().join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("the configuration's folder");
            }
            std::fs::write(path, config).expect("write the configuration");
        }
        let log = std::fs::File::create(dir.path().join("output.log")).expect("log file");
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{dir}", &dir.path().display().to_string()))
            .collect();
        let child = Command::new(program)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let mut peer = Peer {
            name,
            child,
            dir,
            addr,
        };
        peer.wait_listening();
        peer
    }

    fn wait_listening(&mut self) {
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening on {}:\n{}",
                    self.name,
                    self.addr,
                    self.output()
                );
            }
            assert!(
                started.elapsed() < START,
                "{} did not listen on {} within {START:?}:\n{}",
                self.name,
                self.addr,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the proxy printed and logged, for failure messages.
    pub fn output(&self) -> String {
        let mut text = String::new();
        for file in ["output.log", "error.log"] {
            if let Ok(content) = std::fs::read_to_string(self.dir.path().join(file)) {
                text.push_str(&content);
            }
        }
        text
    }

    /// The folder holding the configuration.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// nginx with `http_block` (the inside of `http { }`), which may use
    /// `{port}` for its listening port and `{dir}` for its folder.
    pub fn nginx(http_block: &str) -> Peer {
        let port = free_port();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n\
             error_log {{dir}}/error.log warn;\npid {{dir}}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n\
             client_body_temp_path {{dir}}/client_body;\n  proxy_temp_path {{dir}}/proxy;\n\
             fastcgi_temp_path {{dir}}/fastcgi;\n  uwsgi_temp_path {{dir}}/uwsgi;\n\
             scgi_temp_path {{dir}}/scgi;\n{}\n}}\n",
            http_block.replace("{port}", &port.to_string())
        );
        Self::start(
            "nginx",
            "nginx",
            &[
                "-p",
                "{dir}",
                "-e",
                "{dir}/error.log",
                "-c",
                "{dir}/nginx.conf",
            ],
            "nginx.conf",
            &config,
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }

    /// nginx with the whole `nginx.conf` given (e.g. a shipped one), which
    /// may use `{port}` for its listening port and `{dir}` for its folder,
    /// the prefix (`-p`) that relative paths in it are read against. It runs
    /// as one process (`-g "master_process off;"`), so that stopping it
    /// leaves no worker behind.
    pub fn nginx_conf(config: &str) -> Peer {
        let port = free_port();
        Self::start(
            "nginx",
            "nginx",
            &[
                "-p",
                "{dir}",
                "-e",
                "{dir}/error.log",
                "-c",
                "{dir}/nginx.conf",
                "-g",
                "master_process off;",
            ],
            "nginx.conf",
            &config.replace("{port}", &port.to_string()),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }

    /// HAProxy in TCP mode in front of `backend`, sending it a PROXY
    /// protocol v2 header on every connection (`send-proxy-v2`).
    pub fn haproxy_send_proxy_v2(backend: SocketAddr) -> Peer {
        let port = free_port();
        let config = format!(
            "global\n  maxconn 256\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend callers\n  bind 127.0.0.1:{port}\n  default_backend enforcer\n\
             backend enforcer\n  server enforcer {backend} send-proxy-v2\n"
        );
        Self::start(
            "haproxy",
            "haproxy",
            &["-db", "-f", "{dir}/haproxy.cfg"],
            "haproxy.cfg",
            &config,
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }

    /// Envoy with the bootstrap `config` (YAML), which may use `{port}` for
    /// its listener and `{dir}` for its folder.
    pub fn envoy(config: &str) -> Peer {
        let port = free_port();
        Self::start(
            "envoy",
            "envoy",
            &[
                "-c",
                "{dir}/envoy.yaml",
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--concurrency",
                "1",
            ],
            "envoy.yaml",
            &config.replace("{port}", &port.to_string()),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }

    /// Traefik listening on `{port}` for HTTP, with its routers, services
    /// and middlewares from `dynamic` (YAML, the file provider's format).
    pub fn traefik(dynamic: &str) -> Peer {
        let port = free_port();
        let config = format!(
            "entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\n\
             providers:\n  file:\n    filename: \"{{dir}}/dynamic.yml\"\n\
             log:\n  level: WARN\n\
             global:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n"
        );
        Self::start_with_files(
            "traefik",
            "traefik",
            &["--configFile={dir}/traefik.yml"],
            &[("traefik.yml", &config), ("dynamic.yml", dynamic)],
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }

    /// Traefik from a whole static configuration (`static_config`, which
    /// may use `{port}` for its entry point) written as `traefik.yml`, and
    /// the further `files` it names, at their paths relative to its
    /// working directory (e.g. a shipped pair, as run from the repository's
    /// root).
    pub fn traefik_files(static_config: &str, files: &[(&str, &str)]) -> Peer {
        let port = free_port();
        let static_config = static_config.replace("{port}", &port.to_string());
        let mut all = vec![("traefik.yml", static_config.as_str())];
        all.extend_from_slice(files);
        Self::start_with_files(
            "traefik",
            "traefik",
            &["--configFile={dir}/traefik.yml"],
            &all,
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
