//! The snapshot cache file (`--snapshot-cache PATH`): the state in force,
//! written shortly after it changes, so a restarted enforcer serves its
//! last state at once, marked stale until it reaches the control plane
//! (docs/sync-protocol.md, "Snapshot cache").
//!
//! The file is the magic line, the payload's length (u64, little-endian),
//! its CRC-32 (u32, little-endian), then the payload: one sync
//! `SnapshotChunk` holding every API and key, with `last` set. It is
//! written to a temporary file, synced and renamed over the old one, so a
//! crash leaves the old file or the new one. A file that fails any check,
//! or holds a config that fails validation, is ignored with a warning:
//! it is never half-loaded.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use ipgate_shared::{
    ApiConfig, ApiSlug, Change, KeyConfig, KeyId, Revision,
    proto::sync::v1::{self as wire, SnapshotChunk},
};
use prost::Message;
use tokio::sync::watch;
use tracing::{debug, warn};

/// What the file starts with; the number is the layout's version.
const MAGIC: &[u8] = b"ipgate snapshot cache 1\n";
/// Changes are written at most this often: a burst of writes is one file.
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// The length and checksum after the magic line.
const HEADER: usize = 8 + 4;

/// Why a cache file was not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("it is not an ipgate snapshot cache of this version")]
    Magic,
    #[error("it is cut short: {have} bytes of payload where the header says {want}")]
    Truncated { have: usize, want: u64 },
    #[error("its checksum does not match: the file is damaged")]
    Checksum,
    #[error("its payload does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// The state in force, in the form the cache file is written from. Kept
/// only when a cache file is configured: it costs a second copy of every
/// config.
#[derive(Debug, Default)]
struct Mirror {
    revision: Option<Revision>,
    database_id: String,
    apis: HashMap<ApiSlug, ApiConfig>,
    keys: HashMap<KeyId, KeyConfig>,
}

impl Mirror {
    fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::PutApi(api) => {
                    self.apis.insert(api.slug.clone(), api.clone());
                }
                Change::DeleteApi(slug) => {
                    self.apis.remove(slug);
                }
                Change::PutKey(key) => {
                    self.keys.insert(key.id, key.clone());
                }
                Change::DeleteKey(id) => {
                    self.keys.remove(id);
                }
            }
        }
    }

    /// The whole state as one last chunk; `None` before any state.
    fn chunk(&self) -> Option<SnapshotChunk> {
        let revision = self.revision?;
        Some(SnapshotChunk {
            revision: revision.get(),
            index: 0,
            last: true,
            apis: self.apis.values().map(wire::ApiConfig::from).collect(),
            keys: self.keys.values().map(wire::KeyConfig::from).collect(),
            database_id: self.database_id.clone(),
            replace: false,
        })
    }
}

/// What a swapped-in index was made of, as the applier planned it.
pub(crate) struct Made {
    /// A snapshot the index was built from: (revision, apis, keys).
    pub(crate) base: Option<(Revision, Vec<ApiConfig>, Vec<KeyConfig>)>,
    /// Deltas applied on top, in order.
    pub(crate) deltas: Vec<(Revision, Vec<Change>)>,
    /// The database the state came from.
    pub(crate) database_id: String,
    /// The index's revision.
    pub(crate) revision: Revision,
}

/// The cache file and the state it is written from; cloned into each
/// sync session.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotCache {
    path: Arc<PathBuf>,
    mirror: Arc<Mutex<Mirror>>,
    changed: watch::Sender<u64>,
}

impl SnapshotCache {
    /// A cache at `path`, and the task that writes it; the task ends when
    /// every handle is gone.
    pub(crate) fn new(path: PathBuf) -> (SnapshotCache, impl Future<Output = ()>) {
        let cache = SnapshotCache {
            path: Arc::new(path),
            mirror: Arc::default(),
            changed: watch::Sender::new(0),
        };
        let writer = write_on_change(
            cache.path.clone(),
            Arc::downgrade(&cache.mirror),
            cache.changed.subscribe(),
        );
        (cache, writer)
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks the file: the snapshot it holds.
    pub(crate) async fn read(&self) -> Result<SnapshotChunk, CacheError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || decode(&std::fs::read(path.as_path())?))
            .await
            .map_err(|e| CacheError::Io(std::io::Error::other(e)))?
    }

    /// Records what the index now in force was made of; the file follows
    /// within [`WRITE_EVERY`].
    pub(crate) fn record(&self, made: Made) {
        let mut mirror = self.mirror.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((revision, apis, keys)) = made.base {
            *mirror = Mirror {
                revision: Some(revision),
                database_id: String::new(),
                apis: apis.into_iter().map(|a| (a.slug.clone(), a)).collect(),
                keys: keys.into_iter().map(|k| (k.id, k)).collect(),
            };
        }
        for (revision, changes) in &made.deltas {
            mirror.apply(changes);
            mirror.revision = Some(*revision);
        }
        mirror.database_id = made.database_id;
        if mirror.revision != Some(made.revision) {
            // Cannot happen with what the applier plans; never write a file
            // that would not be the index in force.
            warn!(mirror = ?mirror.revision, index = %made.revision, "snapshot cache out of step with the index; it is written again after the next snapshot");
            *mirror = Mirror::default();
            return;
        }
        drop(mirror);
        self.changed.send_replace(made.revision.get());
    }
}

/// Writes the file after each change, at most every [`WRITE_EVERY`].
async fn write_on_change(
    path: Arc<PathBuf>,
    mirror: std::sync::Weak<Mutex<Mirror>>,
    mut changed: watch::Receiver<u64>,
) {
    while changed.changed().await.is_ok() {
        tokio::time::sleep(WRITE_EVERY).await;
        changed.mark_unchanged();
        let Some(mirror) = mirror.upgrade() else {
            return;
        };
        let chunk = mirror
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .chunk();
        drop(mirror);
        let Some(chunk) = chunk else { continue };
        let path = path.clone();
        let revision = chunk.revision;
        let written = tokio::task::spawn_blocking(move || write(&path, &chunk)).await;
        match written {
            Ok(Ok(bytes)) => debug!(revision, bytes, "snapshot cache written"),
            Ok(Err(error)) => warn!(%error, "cannot write the snapshot cache; the old file stays"),
            Err(error) => warn!(%error, "writing the snapshot cache failed"),
        }
    }
}

/// Checks `bytes` as a cache file and decodes its snapshot.
fn decode(bytes: &[u8]) -> Result<SnapshotChunk, CacheError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(CacheError::Magic)?;
    let (header, payload) = rest.split_at_checked(HEADER).ok_or(CacheError::Truncated {
        have: 0,
        want: HEADER as u64,
    })?;
    let (length, checksum) = header.split_at(8);
    let length = u64::from_le_bytes(length.try_into().unwrap_or_default());
    let checksum = u32::from_le_bytes(checksum.try_into().unwrap_or_default());
    if payload.len() as u64 != length {
        return Err(CacheError::Truncated {
            have: payload.len(),
            want: length,
        });
    }
    if crc32fast::hash(payload) != checksum {
        return Err(CacheError::Checksum);
    }
    Ok(SnapshotChunk::decode(payload)?)
}

/// Writes `chunk` to `path` through a synced temporary file; the bytes
/// written.
fn write(path: &Path, chunk: &SnapshotChunk) -> std::io::Result<usize> {
    let payload = chunk.encode_to_vec();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(MAGIC)?;
    file.write_all(&(payload.len() as u64).to_le_bytes())?;
    file.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
    file.write_all(&payload)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(MAGIC.len() + HEADER + payload.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk() -> SnapshotChunk {
        SnapshotChunk {
            revision: 7,
            last: true,
            database_id: "db".into(),
            apis: vec![wire::ApiConfig {
                slug: "orders".into(),
                enabled: true,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_written_file_reads_back_and_any_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let n = write(&path, &chunk()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), n);
        assert_eq!(decode(&bytes).unwrap(), chunk());

        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(decode(&flipped), Err(CacheError::Checksum)));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(CacheError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&bytes[..MAGIC.len() + 3]),
            Err(CacheError::Truncated { .. })
        ));
        assert!(matches!(decode(b"garbage"), Err(CacheError::Magic)));
        assert!(matches!(decode(b""), Err(CacheError::Magic)));
    }
}
