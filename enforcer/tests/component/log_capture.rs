//! The one log subscriber of the component tests, and capturing a test's
//! log lines.
//!
//! The subscriber is global rather than set per test: `tracing` caches
//! whether a call site is enabled across all threads, and a call site first
//! reached on a thread without a subscriber would stay disabled for a test
//! that set one on its own thread. The writer instead sends each line to
//! the thread that logged it: every `#[tokio::test]` runs its enforcer's
//! tasks on its own thread.

use std::{
    cell::RefCell,
    io,
    sync::{Arc, Mutex, Once},
};

use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

thread_local! {
    /// Where this thread's log lines go, while a test captures them.
    static CAPTURE: RefCell<Option<Buffer>> = const { RefCell::new(None) };
}

/// Installs the subscriber, once: human-format lines (as `ipgate enforcer`
/// writes them) at `RUST_LOG`'s levels, or `info`. They go to a capturing
/// test's buffer, else to the test output when `RUST_LOG` is set
/// (`RUST_LOG=debug cargo test`), else nowhere.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(ThreadWriter {
                show: std::env::var_os("RUST_LOG").is_some(),
            })
            .try_init();
    });
}

/// Captures the log lines of the calling thread until dropped.
pub fn capture() -> Capture {
    init();
    let buffer = Buffer::default();
    CAPTURE.with(|c| *c.borrow_mut() = Some(buffer.clone()));
    Capture { buffer }
}

/// A thread's log lines, collected while this lives.
pub struct Capture {
    buffer: Buffer,
}

impl Capture {
    /// The captured lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        let bytes = self.buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = CAPTURE.try_with(|c| c.borrow_mut().take());
    }
}

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

/// Makes a writer for the thread that logs.
struct ThreadWriter {
    show: bool,
}

impl<'a> MakeWriter<'a> for ThreadWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            capture: CAPTURE.with(|c| c.borrow().clone()),
            show: self.show,
        }
    }
}

/// Writes one log line where its thread's lines go.
struct LineWriter {
    capture: Option<Buffer>,
    show: bool,
}

impl io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match &self.capture {
            Some(buffer) => buffer
                .0
                .lock()
                .map_err(|_| io::Error::other("log buffer poisoned"))?
                .extend_from_slice(bytes),
            // `print!`, not stdout: the test harness captures it per test.
            None if self.show => print!("{}", String::from_utf8_lossy(bytes)),
            None => {}
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
