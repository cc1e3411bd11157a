//! Splitting a snapshot into `SnapshotChunk`s of less than 1 MiB each, far
//! below gRPC's 4 MiB default message limit.

use ipgate_shared::proto::sync::v1 as wire;
use prost::Message;

use crate::store::Snapshot;

/// Most bytes one encoded chunk may take.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024 - 1;
/// Room for a chunk's own fields (revision, index, last) and framing.
const CHUNK_OVERHEAD: usize = 64;

/// The snapshot as chunks in order, numbered from 0; the last has `last`.
/// An empty snapshot is one empty chunk, so the enforcer still applies it.
pub fn chunks(snapshot: &Snapshot) -> Vec<wire::SnapshotChunk> {
    let revision = snapshot.revision.get();
    let mut chunks = Vec::new();
    let mut current = wire::SnapshotChunk {
        revision,
        ..Default::default()
    };
    let mut size = CHUNK_OVERHEAD;
    let budget = MAX_CHUNK_BYTES;

    let mut push = |item: Item, chunks: &mut Vec<wire::SnapshotChunk>| {
        let len = item.encoded_len();
        // Field tag (1 byte) + length prefix + the message.
        let cost = 1 + prost::length_delimiter_len(len) + len;
        if size + cost > budget && size > CHUNK_OVERHEAD {
            let full = std::mem::replace(
                &mut current,
                wire::SnapshotChunk {
                    revision,
                    ..Default::default()
                },
            );
            chunks.push(full);
            size = CHUNK_OVERHEAD;
        }
        size += cost;
        match item {
            Item::Api(api) => current.apis.push(api),
            Item::Key(key) => current.keys.push(key),
        }
    };
    for api in &snapshot.apis {
        push(Item::Api(api.into()), &mut chunks);
    }
    for key in &snapshot.keys {
        push(Item::Key(key.into()), &mut chunks);
    }
    chunks.push(current);

    let count = chunks.len();
    for (i, chunk) in chunks.iter_mut().enumerate() {
        chunk.index = u32::try_from(i).unwrap_or(u32::MAX);
        chunk.last = i + 1 == count;
    }
    chunks
}

enum Item {
    Api(wire::ApiConfig),
    Key(wire::KeyConfig),
}

impl Item {
    fn encoded_len(&self) -> usize {
        match self {
            Item::Api(api) => api.encoded_len(),
            Item::Key(key) => key.encoded_len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use ipgate_shared::{
        ApiConfig, Entry, KeyConfig, Revision, SecretHash, allowlist::Allowlist, key::NewKey,
    };

    use super::*;

    fn big_snapshot(keys: usize) -> Snapshot {
        let entries: Vec<Entry> = (0..20)
            .map(|i| {
                Entry::new(
                    format!("203.0.113.{i}").parse().unwrap(),
                    "an office network label that takes some room"
                        .parse()
                        .unwrap(),
                    None,
                )
            })
            .collect();
        let allowlist = Allowlist::new(entries, false);
        Snapshot {
            revision: Revision::new(42),
            apis: vec![ApiConfig {
                slug: "orders".parse().unwrap(),
                enabled: true,
                allowlist: allowlist.clone(),
                routes: vec![],
            }],
            keys: (0..keys)
                .map(|_| {
                    let k = NewKey::generate();
                    KeyConfig {
                        id: k.id,
                        api: "orders".parse().unwrap(),
                        secret_hash: SecretHash::of(&k.secret),
                        scopes: vec![],
                        expires_at: None,
                        allowlist: allowlist.clone(),
                        previous_secrets: vec![],
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn chunks_stay_under_one_mebibyte_and_keep_everything() {
        let snapshot = big_snapshot(3000);
        let chunks = chunks(&snapshot);
        assert!(chunks.len() > 1, "the test needs several chunks");
        for (i, chunk) in chunks.iter().enumerate() {
            assert!(chunk.encoded_len() <= MAX_CHUNK_BYTES, "chunk {i}");
            assert_eq!(chunk.index as usize, i);
            assert_eq!(chunk.last, i + 1 == chunks.len());
            assert_eq!(chunk.revision, 42);
        }
        let keys: usize = chunks.iter().map(|c| c.keys.len()).sum();
        let apis: usize = chunks.iter().map(|c| c.apis.len()).sum();
        assert_eq!((apis, keys), (1, 3000));
    }

    #[test]
    fn an_empty_snapshot_is_one_last_chunk() {
        let chunks = chunks(&Snapshot::default());
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].last);
    }
}
