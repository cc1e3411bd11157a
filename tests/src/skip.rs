//! Tests that cannot run on this machine say so where people look.
//!
//! A skipped test still counts as passed for cargo, which also hides what a
//! passing test printed. So a skip is written straight to stderr (libtest
//! captures only the print macros, not direct writes) and appended to the
//! file named by `IPGATE_TEST_SKIP_LOG`, which `tests/run.sh` sets and
//! sums up at the end of the run. Under `CI=true` a skip is a failure.

use std::io::Write;

/// Variable naming the file skipped tests append a line to.
pub const SKIP_LOG_VAR: &str = "IPGATE_TEST_SKIP_LOG";

/// Records that the running test skips, for `reason` (which should say how
/// to make it run); panics instead under `CI=true`.
#[track_caller]
pub fn skip(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true, so this test may not skip: {reason}");
    }
    let line = format!("{}: {reason}", test_name());
    let _ = writeln!(std::io::stderr(), "SKIPPED {line}");
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR) {
        // One short write in append mode: lines from tests running in
        // parallel do not interleave.
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = appended {
            let _ = writeln!(
                std::io::stderr(),
                "cannot record the skip in {}: {e}",
                path.to_string_lossy()
            );
        }
    }
}

/// `<test binary> <test path>`: libtest names each test's thread after it.
fn test_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            // cargo appends `-<hash>` to test executables.
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
            _ => stem,
        })
        .unwrap_or_default();
    let thread = std::thread::current();
    format!("{binary} {}", thread.name().unwrap_or("(unnamed test)"))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Set when this test binary runs itself as the skipping test.
    const PROBE: &str = "IPGATE_TEST_SKIP_PROBE";

    /// A skip lands in the run's summary file, named after its test, and
    /// fails under `CI=true`. The skipping test runs in a child process of
    /// this test binary, so its environment is its own.
    #[test]
    fn a_skip_is_written_for_the_summary_and_fails_under_ci() {
        if std::env::var_os(PROBE).is_some() {
            skip("no PostgreSQL here (probe)");
            return;
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = dir.path().join("skipped");
        let run = |ci: Option<&str>| {
            let mut child = Command::new(std::env::current_exe().expect("test binary"));
            child
                .args([
                    "skip::tests::a_skip_is_written_for_the_summary_and_fails_under_ci",
                    "--exact",
                    "--test-threads=1",
                ])
                .env(PROBE, "1")
                .env(SKIP_LOG_VAR, &log)
                .env_remove("CI");
            if let Some(ci) = ci {
                child.env("CI", ci);
            }
            child.output().expect("run the probe")
        };

        let skipped = run(None);
        assert!(skipped.status.success(), "{skipped:?}");
        let stderr = String::from_utf8_lossy(&skipped.stderr);
        assert!(
            stderr.contains("SKIPPED") && stderr.contains("no PostgreSQL here (probe)"),
            "the skip shows past cargo's capture: {stderr}"
        );
        let recorded = std::fs::read_to_string(&log).expect("the summary file");
        assert_eq!(recorded.lines().count(), 1, "{recorded}");
        assert!(
            recorded.contains("skip::tests::a_skip_is_written_for_the_summary_and_fails_under_ci")
                && recorded.ends_with("no PostgreSQL here (probe)\n"),
            "{recorded}"
        );

        let in_ci = run(Some("true"));
        assert!(!in_ci.status.success(), "a skip fails under CI=true");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), recorded);
    }
}
