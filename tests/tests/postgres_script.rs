//! `tests/postgres.sh` works wherever the project is cloned: from a copy in
//! a folder only its owner may enter (mode 700, like a fresh `mktemp -d`),
//! it starts a PostgreSQL that answers, whose data lives outside the copy
//! (run as root, the server runs as the `postgres` user, who could not
//! enter it), then stops it and removes its folder.
//!
//! It runs its own cluster on a port of its own, beside the one the suite
//! uses, and only when PostgreSQL is installed (tests/run.sh installs it):
//! a test should not install system packages.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use ipgate_tests::{docs, skip::skip};
use sqlx::{Connection, Executor, Row, postgres::PgConnection};

/// How long one call of the script may take (initdb included).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The copy's script, run with `command` and the port chosen for it.
fn script(copy: &Path, command: &str, port: u16) -> Output {
    let mut child = Command::new(copy.join("tests/postgres.sh"))
        .arg(command)
        .env("IPGATE_TEST_PG_PORT", port.to_string())
        .env_remove("IPGATE_TEST_PG_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tests/postgres.sh");
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tests/postgres.sh {command} still ran after {SCRIPT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("script output")
}

/// Removes the copy's cluster however the test ends.
struct Cleanup {
    copy: PathBuf,
    port: u16,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = script(&self.copy, "remove", self.port);
    }
}

fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
        versions
            .flatten()
            .any(|v| v.path().join("bin/initdb").exists())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_starts_postgres_from_a_private_clone() {
    if !postgres_installed() {
        skip("PostgreSQL is not installed (tests/run.sh installs it)");
        return;
    }
    let private = tempfile::tempdir().expect("temporary directory");
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod 700");
    let copy = private.path().join("ipgate");
    std::fs::create_dir_all(copy.join("tests")).expect("copy folder");
    std::fs::copy(
        docs::repo_root().join("tests/postgres.sh"),
        copy.join("tests/postgres.sh"),
    )
    .expect("copy tests/postgres.sh");

    // A port the system just had free.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let _cleanup = Cleanup {
        copy: copy.clone(),
        port,
    };

    let started = script(&copy, "start", port);
    let stdout = String::from_utf8_lossy(&started.stdout);
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(
        started.status.success(),
        "tests/postgres.sh start failed from a mode-700 folder\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    let url = stdout
        .trim()
        .strip_prefix("export IPGATE_TEST_POSTGRES_URL=")
        .unwrap_or_else(|| panic!("no URL line: {stdout:?}"))
        .to_owned();
    assert_eq!(url, format!("postgres://ipgate@127.0.0.1:{port}/postgres"));

    // It answers, as the suite uses it: a database of one's own.
    let mut conn = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach {url}: {e}"));
    conn.execute("CREATE DATABASE ipgate_script_check")
        .await
        .expect("create a database");
    let data: String = sqlx::query("SHOW data_directory")
        .fetch_one(&mut conn)
        .await
        .expect("data_directory")
        .get(0);
    conn.close().await.expect("close");
    let dir = String::from_utf8(script(&copy, "dir", port).stdout).expect("UTF-8 path");
    let dir = dir.trim();
    assert_eq!(
        data,
        format!("{dir}/data"),
        "the cluster is where `dir` says"
    );
    assert!(
        !data.starts_with(&private.path().display().to_string()),
        "the data is outside the private clone: {data}"
    );

    // Stopped, it no longer answers; removed, its folder is gone.
    let stopped = script(&copy, "stop", port);
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(
        PgConnection::connect(&url).await.is_err(),
        "PostgreSQL still answers after stop"
    );
    let removed = script(&copy, "remove", port);
    assert!(removed.status.success(), "{removed:?}");
    assert!(!Path::new(dir).exists(), "{dir} is still there");
}
