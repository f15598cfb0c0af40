//! Target `store`: how the replicator reads its metadata topic back
//! (`replicator::store::load`): the fetched record set decoded with kafka-protocol's
//! batch decoder, each record's key routed to a link or mirror, its JSON value parsed,
//! sealed link credentials opened. Input: first byte even, the raw record set; odd,
//! a key kind byte and the value bytes, put in one valid batch by the harness (so the
//! JSON parsing is reached without forging CRCs).
//!
//! `store::apply` is private (and that file is being reworked), so its steps are
//! mirrored here with the same public types and decoder.
//!
//! Properties: nothing panics, memory stays bounded; a parsed record serialises back
//! to JSON that parses to the same record; a link config seals and opens back to
//! itself.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use mirrorgate::replicator::secrets::{open_config, seal_config, Sealer};
use mirrorgate::replicator::store::{LinkRecord, MirrorRecord};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn sealer() -> &'static Sealer {
    static SEALER: OnceLock<Sealer> = OnceLock::new();
    SEALER.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("mirrorgate-fuzz-key-{}", std::process::id()));
        std::fs::write(
            &path,
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        )
        .unwrap();
        let sealer = Sealer::from_file(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        sealer
    })
}

/// One record with `key` and `value` in a valid batch, as `store::put` writes it.
pub fn batch(key: &[u8], value: Option<&[u8]>) -> Bytes {
    let record = crate::record(
        0,
        Some(Bytes::copy_from_slice(key)),
        value.map(Bytes::copy_from_slice),
    );
    crate::encode_batch(&[record], Compression::None).unwrap()
}

pub fn check(data: &[u8]) {
    let mut records = match data {
        [mode, kind, value @ ..] if mode % 2 == 1 => {
            let key: &[u8] = match kind % 3 {
                0 => b"link/fuzz",
                1 => b"mirror/fuzz",
                _ => b"other/fuzz",
            };
            batch(key, (kind & 0x80 == 0).then_some(value))
        }
        [_, rest @ ..] => Bytes::copy_from_slice(rest),
        [] => return,
    };
    let Ok(sets) = RecordBatchDecoder::decode_all(&mut records) else {
        return;
    };
    let mut links = BTreeMap::new();
    let mut mirrors = BTreeMap::new();
    for record in sets.into_iter().flat_map(|s| s.records) {
        if record.control {
            continue;
        }
        let key = record
            .key
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let value = record.value.as_deref();
        if let Some(name) = key.strip_prefix("link/") {
            apply::<LinkRecord>(&mut links, name, value);
        } else if let Some(topic) = key.strip_prefix("mirror/") {
            apply::<MirrorRecord>(&mut mirrors, topic, value);
        }
    }
    for link in links.values() {
        let opened = open_config(&link.config, Some(sealer()));
        let _ = open_config(&link.config, None);
        if let Ok(opened) = opened {
            let sealed = seal_config(&opened, Some(sealer())).expect("sealing with a key");
            assert_eq!(open_config(&sealed, Some(sealer())).unwrap(), opened);
        }
    }
}

/// The latest value wins, a null value deletes; a value that does not parse fails the
/// load (here: is skipped, the rest is still checked).
fn apply<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    map: &mut BTreeMap<String, T>,
    name: &str,
    value: Option<&[u8]>,
) {
    let Some(value) = value else {
        map.remove(name);
        return;
    };
    let Ok(parsed) = serde_json::from_slice::<T>(value) else {
        return;
    };
    let json = serde_json::to_vec(&parsed).unwrap();
    assert_eq!(serde_json::from_slice::<T>(&json).unwrap(), parsed);
    map.insert(name.to_string(), parsed);
}
