//! Watching something switch at an instant without wall-clock margins.
//!
//! Enforcers decide expiries (entries, keys, grace periods) by the clock at
//! lookup, on this same machine. So an answer received before the instant
//! was decided before it, and a request sent at or after the instant is
//! decided after it: those two are certain however busy the machine is.
//! Only a request that straddles the instant may go either way.

use std::{
    future::Future,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::http::Response;

/// Most probes one watch sends before it gives up (a bound for the loop;
/// a watch ends at its first probe sent after the instant).
const MAX_PROBES: usize = 100_000;

/// `t` cut to whole milliseconds: what the store keeps, so the instant a
/// test asks for is the one enforcers use.
pub fn whole_ms(t: SystemTime) -> SystemTime {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).expect("milliseconds fit"))
}

/// One probe: when it was sent, its answer, and when that came.
pub struct Timed {
    pub sent: SystemTime,
    pub response: Response,
    pub received: SystemTime,
}

/// Sends `probe` and notes the time on both sides.
pub async fn timed(probe: impl Future<Output = Response>) -> Timed {
    let sent = SystemTime::now();
    let response = probe.await;
    Timed {
        sent,
        response,
        received: SystemTime::now(),
    }
}

/// How a switch looked from outside.
#[derive(Debug)]
pub struct Switch {
    /// Answers received before the instant (all with the status before).
    pub before: usize,
    /// The answer to the first probe sent at or after the instant.
    pub first_after: Response,
    /// How long after the instant that answer came.
    pub lag: Duration,
}

/// Probes every 20 ms across `instant` (whole milliseconds): every answer
/// received before it must have status `before`; the first probe sent at or
/// after it must get `after`, and ends the watch. Probes that straddle the
/// instant may get either.
pub async fn across<F, Fut>(
    instant: SystemTime,
    before: u16,
    after: u16,
    what: &str,
    mut probe: F,
) -> Switch
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Response>,
{
    let mut seen_before = 0;
    for _ in 0..MAX_PROBES {
        let t = timed(probe()).await;
        let status = t.response.status;
        if t.received < instant {
            assert_eq!(
                status, before,
                "{what}, answered before the instant: {:?}",
                t.response
            );
            seen_before += 1;
        } else if t.sent >= instant {
            assert_eq!(
                status, after,
                "{what}, sent after the instant: {:?}",
                t.response
            );
            return Switch {
                before: seen_before,
                lag: t.received.duration_since(instant).unwrap_or_default(),
                first_after: t.response,
            };
        } else {
            assert!(
                status == before || status == after,
                "{what}, across the instant: {:?}",
                t.response
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: {MAX_PROBES} probes and none sent after the instant");
}
