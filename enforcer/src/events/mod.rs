//! Usage events on their way to the control plane: a bounded queue the doors
//! push into without ever waiting, and the reporter that sends it up in batches.

mod queue;
mod reporter;

pub use queue::{Dropped, EventSink, EventSource, queue};
pub(crate) use reporter::{FLUSH_TIMEOUT, Reporter};
