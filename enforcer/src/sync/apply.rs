//! Turning a burst of sync messages into the next index.
//!
//! Every message already waiting on the stream is applied before anything is
//! swapped, so a burst of deltas is one swap. A snapshot is decoded chunk by
//! chunk as it streams in (no chunk is kept once converted), and the index
//! is built from the converted configs off the async runtime when the last
//! chunk arrives: at a million keys that takes a while.

use std::sync::Arc;

use ipgate_shared::{
    ApiConfig, Change, Index, KeyConfig, Revision,
    proto::sync::v1::{Delta, SnapshotChunk, StreamResponse, stream_response::Kind},
};
use tracing::{debug, warn};

use super::cache::{Made, SnapshotCache};

/// Why a session must end once the burst's result is in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A delta skipped revisions: reconnect and resume from ours.
    Gap {
        have: Option<Revision>,
        got: Revision,
    },
    /// A message failed validation: Nack it, keep the old index, resync.
    Invalid { revision: Revision, reason: String },
    /// The stream broke the protocol (chunks out of order, ...): resync.
    Protocol(String),
}

/// What one burst produced.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The index to swap in; `None` when nothing changed.
    pub(crate) index: Option<Index>,
    /// Set when the session must end after the swap.
    pub(crate) stop: Option<Stop>,
    /// True when `index` was built from a snapshot (then deltas may follow).
    pub(crate) from_snapshot: bool,
}

/// Per-session state that outlives one burst: a snapshot's chunks arrive
/// over several.
#[derive(Debug, Default)]
pub(crate) struct Applier {
    /// The snapshot being received, converted so far.
    building: Option<Building>,
    /// The database the state in force came from ("" when unknown).
    database_id: String,
    /// Told what each swapped-in index was made of, when configured.
    cache: Option<SnapshotCache>,
}

/// A snapshot whose chunks are still arriving.
#[derive(Debug)]
struct Building {
    revision: Revision,
    next_chunk: u32,
    /// Replace the state even at or below its revision (see the proto).
    replace: bool,
    database_id: String,
    apis: Vec<ApiConfig>,
    keys: Vec<KeyConfig>,
}

/// What a burst will do to the index, collected before any work is done.
#[derive(Default)]
struct Plan {
    /// A freshly built snapshot that replaces the current index.
    base: Option<Index>,
    /// Deltas to apply, in order, on top of `base` (or the current index).
    deltas: Vec<(Revision, Vec<Change>)>,
    /// What `base` was built from, kept for the snapshot cache only.
    base_configs: Option<(Revision, Vec<ApiConfig>, Vec<KeyConfig>)>,
}

impl Applier {
    /// An applier for state that came from `database_id` ("" when unknown),
    /// telling `cache` (when set) what it swaps in.
    pub(crate) fn new(database_id: String, cache: Option<SnapshotCache>) -> Self {
        Applier {
            building: None,
            database_id,
            cache,
        }
    }

    /// The database the state in force came from, once this session's
    /// result is swapped in.
    pub(crate) fn database_id(&self) -> &str {
        &self.database_id
    }

    /// Applies `messages` on top of `current` and says what to swap in.
    pub(crate) async fn apply(
        &mut self,
        current: Option<Arc<Index>>,
        messages: Vec<StreamResponse>,
    ) -> Outcome {
        let mut plan = Plan::default();
        let mut reached = current.as_deref().map(Index::revision);
        let mut stop = None;
        for message in messages {
            #[cfg(feature = "fault-injection")]
            let message = super::fault::corrupt(message);
            let step = match message.kind {
                Some(Kind::Snapshot(chunk)) => self.snapshot_chunk(chunk, reached, &mut plan).await,
                Some(Kind::Delta(delta)) => self.delta(delta, reached, &mut plan),
                Some(Kind::Heartbeat(_)) => Ok(()),
                // A newer control plane may send kinds this enforcer does
                // not know; they carry nothing it could apply.
                None => {
                    debug!("ignoring a sync message of unknown kind");
                    Ok(())
                }
            };
            if let Err(s) = step {
                stop = Some(s);
                break;
            }
            reached = plan
                .deltas
                .last()
                .map(|(r, _)| *r)
                .or(plan.base.as_ref().map(Index::revision))
                .or(reached);
        }
        let from_snapshot = plan.base.is_some();
        // What the cache must hear of, before `materialize` consumes it.
        let planned = self
            .cache
            .is_some()
            .then(|| (plan.base_configs.take(), plan.deltas.clone()));
        match materialize(current, plan).await {
            Ok(index) => {
                if let (Some(cache), Some((base, deltas)), Some(index)) =
                    (&self.cache, planned, &index)
                {
                    cache.record(Made {
                        base,
                        deltas,
                        database_id: self.database_id.clone(),
                        revision: index.revision(),
                    });
                }
                Outcome {
                    index,
                    stop,
                    from_snapshot,
                }
            }
            Err(failed) => Outcome {
                index: None,
                stop: Some(failed),
                from_snapshot: false,
            },
        }
    }

    async fn snapshot_chunk(
        &mut self,
        chunk: SnapshotChunk,
        reached: Option<Revision>,
        plan: &mut Plan,
    ) -> Result<(), Stop> {
        let revision = Revision::new(chunk.revision);
        let expected = self
            .building
            .as_ref()
            .map_or((revision, 0), |b| (b.revision, b.next_chunk));
        if (revision, chunk.index) != expected {
            let message = format!(
                "snapshot chunk {} of revision {revision} arrived where chunk {} of revision {} was due",
                chunk.index, expected.1, expected.0
            );
            self.building = None;
            return Err(Stop::Protocol(message));
        }
        let building = self.building.get_or_insert_with(|| Building {
            revision,
            next_chunk: 0,
            replace: chunk.replace,
            database_id: chunk.database_id.clone(),
            apis: Vec::new(),
            keys: Vec::new(),
        });
        let last = chunk.last;
        if let Err(reason) = convert_chunk(chunk, building) {
            self.building = None;
            return Err(Stop::Invalid { revision, reason });
        }
        building.next_chunk += 1;
        if !last {
            return Ok(());
        }
        let Some(building) = self.building.take() else {
            return Ok(());
        };
        let other_database = !building.database_id.is_empty()
            && !self.database_id.is_empty()
            && building.database_id != self.database_id;
        if reached.is_some_and(|r| revision <= r) && !building.replace && !other_database {
            // State never rolls back, also on a control plane that is behind.
            warn!(%revision, have = ?reached, "ignoring a snapshot at or below the revision in force");
            return Ok(());
        }
        if building.replace || other_database {
            warn!(%revision, have = ?reached, database = %building.database_id, "replacing the state in force: the control plane says it is not of its database");
        }
        let Building {
            database_id,
            apis,
            keys,
            ..
        } = building;
        plan.base_configs = self
            .cache
            .is_some()
            .then(|| (revision, apis.clone(), keys.clone()));
        let built = tokio::task::spawn_blocking(move || Index::from_snapshot(revision, apis, keys))
            .await
            .map_err(|e| Stop::Protocol(format!("building snapshot {revision} failed: {e}")))?;
        if !database_id.is_empty() {
            self.database_id = database_id;
        }
        plan.base = Some(built);
        plan.deltas.clear();
        Ok(())
    }

    fn delta(
        &mut self,
        delta: Delta,
        reached: Option<Revision>,
        plan: &mut Plan,
    ) -> Result<(), Stop> {
        let Delta { revision, changes } = delta;
        let revision = Revision::new(revision);
        if self.building.take().is_some() {
            return Err(Stop::Protocol(format!(
                "delta {revision} arrived in the middle of a snapshot"
            )));
        }
        match reached {
            Some(have) if revision <= have => {
                debug!(%revision, %have, "ignoring a delta already applied");
                Ok(())
            }
            Some(have) if revision == have.next() => {
                let changes = changes
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| Change::try_from(c).map_err(|e| format!("changes[{i}].{e}")))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|reason| Stop::Invalid {
                        revision,
                        reason: format!("delta {revision}: {reason}"),
                    })?;
                plan.deltas.push((revision, changes));
                Ok(())
            }
            have => Err(Stop::Gap {
                have,
                got: revision,
            }),
        }
    }
}

/// Converts one chunk into `building`; the error names the bad field.
fn convert_chunk(chunk: SnapshotChunk, building: &mut Building) -> Result<(), String> {
    let SnapshotChunk {
        revision,
        index: n,
        apis,
        keys,
        ..
    } = chunk;
    let at = |what: &str, i: usize, e: ipgate_shared::convert::WireError| {
        format!("snapshot {revision} chunk {n}: {what}[{i}].{e}")
    };
    building.apis.reserve(apis.len());
    for (i, api) in apis.into_iter().enumerate() {
        building
            .apis
            .push(ApiConfig::try_from(api).map_err(|e| at("apis", i, e))?);
    }
    building.keys.reserve(keys.len());
    for (i, key) in keys.into_iter().enumerate() {
        building
            .keys
            .push(KeyConfig::try_from(key).map_err(|e| at("keys", i, e))?);
    }
    Ok(())
}

/// Builds the burst's index off the runtime: one clone, every delta applied.
async fn materialize(current: Option<Arc<Index>>, plan: Plan) -> Result<Option<Index>, Stop> {
    let Plan { base, deltas, .. } = plan;
    if deltas.is_empty() {
        return Ok(base);
    }
    tokio::task::spawn_blocking(move || {
        // Deltas are only planned on top of an index, so one of the two exists.
        let mut index = base.or_else(|| current.map(|c| Index::clone(&c)))?;
        for (revision, changes) in deltas {
            index.apply(revision, changes);
        }
        Some(index)
    })
    .await
    .map_err(|e| Stop::Protocol(format!("applying deltas failed: {e}")))
}

#[cfg(test)]
mod tests {
    use ipgate_shared::proto::sync::v1::{self as wire, Heartbeat, change};

    use super::*;

    fn api(slug: &str, cidr: &str) -> wire::ApiConfig {
        wire::ApiConfig {
            slug: slug.into(),
            enabled: true,
            allowlist: Some(wire::Allowlist {
                entries: vec![wire::Entry {
                    cidr: cidr.into(),
                    label: "office".into(),
                    expires_at: None,
                }],
                report_only: false,
            }),
            routes: vec![],
        }
    }

    fn chunk(revision: u64, index: u32, last: bool, apis: Vec<wire::ApiConfig>) -> StreamResponse {
        StreamResponse {
            kind: Some(Kind::Snapshot(SnapshotChunk {
                revision,
                index,
                last,
                apis,
                keys: vec![],
                ..Default::default()
            })),
        }
    }

    fn delta(revision: u64, apis: Vec<wire::ApiConfig>) -> StreamResponse {
        let changes = apis
            .into_iter()
            .map(|a| wire::Change {
                kind: Some(change::Kind::PutApi(a)),
            })
            .collect();
        StreamResponse {
            kind: Some(Kind::Delta(Delta { revision, changes })),
        }
    }

    fn heartbeat(revision: u64) -> StreamResponse {
        StreamResponse {
            kind: Some(Kind::Heartbeat(Heartbeat { revision })),
        }
    }

    async fn at(revision: u64) -> Arc<Index> {
        let mut applier = Applier::new(String::new(), None);
        let out = applier
            .apply(
                None,
                vec![chunk(
                    revision,
                    0,
                    true,
                    vec![api("orders", "203.0.113.0/24")],
                )],
            )
            .await;
        Arc::new(out.index.unwrap())
    }

    #[tokio::test]
    async fn a_snapshot_is_applied_when_its_last_chunk_arrives() {
        let mut applier = Applier::new(String::new(), None);
        let first = applier
            .apply(
                None,
                vec![chunk(5, 0, false, vec![api("a", "203.0.113.0/24")])],
            )
            .await;
        assert!(first.index.is_none() && first.stop.is_none());
        let rest = vec![
            chunk(5, 1, false, vec![api("b", "198.51.100.0/24")]),
            chunk(5, 2, true, vec![]),
            heartbeat(5),
        ];
        let done = applier.apply(None, rest).await;
        let index = done.index.unwrap();
        assert_eq!(index.revision(), Revision::new(5));
        assert_eq!(index.api_count(), 2);
        assert!(done.stop.is_none());
    }

    #[tokio::test]
    async fn a_burst_of_deltas_is_applied_in_order_and_repeats_are_ignored() {
        let current = at(3).await;
        let burst = vec![
            delta(2, vec![api("old", "203.0.113.0/24")]),
            delta(4, vec![api("b", "203.0.113.0/24")]),
            delta(4, vec![api("dup", "203.0.113.0/24")]),
            delta(5, vec![api("c", "203.0.113.0/24")]),
        ];
        let out = Applier::new(String::new(), None)
            .apply(Some(current.clone()), burst)
            .await;
        let index = out.index.unwrap();
        assert_eq!(index.revision(), Revision::new(5));
        assert!(index.api("b").is_some() && index.api("c").is_some());
        assert!(index.api("old").is_none() && index.api("dup").is_none());
        assert_eq!(
            current.revision(),
            Revision::new(3),
            "the old index is untouched"
        );
    }

    #[tokio::test]
    async fn a_gap_stops_after_what_came_before_it() {
        let out = Applier::new(String::new(), None)
            .apply(
                Some(at(3).await),
                vec![delta(4, vec![]), delta(6, vec![]), delta(7, vec![])],
            )
            .await;
        assert_eq!(out.index.unwrap().revision(), Revision::new(4));
        let gap = Stop::Gap {
            have: Some(Revision::new(4)),
            got: Revision::new(6),
        };
        assert_eq!(out.stop, Some(gap));

        let none = Applier::new(String::new(), None)
            .apply(None, vec![delta(1, vec![])])
            .await;
        assert!(none.index.is_none());
        assert!(matches!(none.stop, Some(Stop::Gap { have: None, .. })));
    }

    #[tokio::test]
    async fn an_invalid_delta_names_the_field_and_changes_nothing() {
        let out = Applier::new(String::new(), None)
            .apply(
                Some(at(3).await),
                vec![delta(4, vec![api("bad", "203.0.113.5/24")])],
            )
            .await;
        assert!(out.index.is_none());
        let Some(Stop::Invalid { revision, reason }) = out.stop else {
            panic!("expected a Nack, got {:?}", out.stop);
        };
        assert_eq!(revision, Revision::new(4));
        assert!(
            reason.contains("changes[0].put_api.allowlist.entries[0].cidr"),
            "{reason}"
        );
        assert!(reason.contains("203.0.113.0/24"), "{reason}");
    }

    #[tokio::test]
    async fn snapshots_never_roll_back_and_chunks_must_be_in_order() {
        let current = at(9).await;
        let behind = Applier::new(String::new(), None)
            .apply(Some(current.clone()), vec![chunk(7, 0, true, vec![])])
            .await;
        assert!(behind.index.is_none() && behind.stop.is_none());

        let mut applier = Applier::new(String::new(), None);
        let out = applier
            .apply(
                None,
                vec![chunk(10, 0, false, vec![]), chunk(10, 2, true, vec![])],
            )
            .await;
        assert!(matches!(out.stop, Some(Stop::Protocol(_))));
        let out = applier
            .apply(
                Some(current),
                vec![chunk(10, 0, false, vec![]), delta(10, vec![])],
            )
            .await;
        assert!(matches!(out.stop, Some(Stop::Protocol(_))));
    }

    #[tokio::test]
    async fn a_snapshot_then_deltas_in_one_burst() {
        let burst = vec![
            chunk(2, 0, true, vec![api("a", "203.0.113.0/24")]),
            delta(3, vec![api("b", "203.0.113.0/24")]),
        ];
        let out = Applier::new(String::new(), None)
            .apply(Some(at(1).await), burst)
            .await;
        let index = out.index.unwrap();
        assert_eq!(index.revision(), Revision::new(3));
        assert!(
            index.api("orders").is_none(),
            "the snapshot replaced everything"
        );
        assert!(index.api("a").is_some() && index.api("b").is_some());
    }
}
