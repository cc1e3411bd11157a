//! The enforcer's log lines, captured from the real `tracing` output of a
//! sync client that the fake control plane drives.

use std::{
    io,
    sync::{Arc, Mutex},
};

use crate::support::*;

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("log buffer poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines_with(&self, needle: &str) -> Vec<String> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

const REVISIONS: u64 = 1_000;

/// A session that lives through many revisions logs each swap in a line of
/// the same length, naming only the revision it swapped in.
#[tokio::test]
async fn swap_lines_name_one_revision_however_long_the_session_lives() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The human format `ipgate enforcer` writes; this test's runtime runs
    // every enforcer task on this thread, so a thread default sees them all.
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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
