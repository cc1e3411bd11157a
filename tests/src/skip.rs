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
