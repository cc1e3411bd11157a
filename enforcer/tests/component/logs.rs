//! The enforcer's log lines, captured from the real `tracing` output of a
//! sync client that the fake control plane drives.

use crate::{log_capture, support::*};

const REVISIONS: u64 = 1_000;

/// A session that lives through many revisions logs each swap in a line of
/// the same length, naming only the revision it swapped in.
#[tokio::test]
async fn swap_lines_name_one_revision_however_long_the_session_lives() {
    // This test's runtime runs every enforcer task on this thread.
    let captured = log_capture::capture();

    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, mut session) = synced(&mut fake, &world, &[]).await;
    for revision in 2..=REVISIONS {
        session.send(put_keys(revision, vec![]));
        assert_eq!(session.expect_ack().await, revision);
    }
    running.shutdown().await.unwrap();

    let swaps = captured.lines_with("index swapped in");
    assert_eq!(swaps.len(), REVISIONS as usize, "one line per swap");
    for (line, revision) in swaps.iter().zip(1..) {
        assert_eq!(
            line.matches("revision=").count(),
            1,
            "revision {revision}: {line}"
        );
        assert!(
            line.ends_with(&format!("revision={revision}")),
            "revision {revision}: {line}"
        );
    }
    // Only the revision's own digits may make a line longer.
    let first = swaps.first().map_or(0, String::len);
    let last = swaps.last().map_or(0, String::len);
    assert!(
        last <= first + 3 && last < 300,
        "the line grew from {first} to {last} characters:\n{}",
        swaps.last().map_or("", String::as_str)
    );
}
