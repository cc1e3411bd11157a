//! Usage events on their way to the control plane: a bounded queue the doors
//! push into without ever waiting, and the reporter that sends it up in batches.

mod event;
mod queue;
mod reporter;
mod wire;

pub use event::{Event, RequestId, Seen, Text};
pub use queue::{Dropped, EventSink, EventSource, queue};
pub(crate) use reporter::{FLUSH_TIMEOUT, Reporter};
