//! The metadata store treats its own topic as untrusted: every invalid record is
//! skipped, the rest still load.

use bytes::Bytes;
use kafka_protocol::records::Compression;

use super::*;
use crate::kafka::record_batch::Header;
use crate::kafka::record_codec::{BatchBuilder, RawRecord};

const TOPIC: &str = "_mirrorgate-metadata";

fn mirror_json(partitions: i64, state: &str) -> String {
    format!(
        r#"{{"topic":"m","source_topic":"s","link":"l","partitions":{partitions},"state":"{state}","reason":null,"state_time_ms":1}}"#
    )
}

fn raw(key: &[u8], value: Option<&[u8]>) -> RawRecord {
    RawRecord {
        attributes: 0,
        timestamp_delta: 0,
        offset_delta: 0,
        key: Some(Bytes::copy_from_slice(key)),
        value: value.map(Bytes::copy_from_slice),
        headers: Vec::new(),
    }
}

/// One batch at `base` holding `records` at consecutive offsets.
fn batch(codec: Compression, base: i64, records: &[RawRecord]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(codec, Header::unstamped(codec, base), 0).unwrap();
    for (delta, r) in (0..).zip(records) {
        builder.push(delta, 0, r).unwrap();
    }
    builder.finish().unwrap().to_vec()
}

fn load_from(sets: &[Vec<u8>]) -> (Loaded, i64) {
    let mut loaded = Loaded::default();
    let records = Bytes::from(sets.concat());
    let next = apply_records(&mut loaded, TOPIC, records, 0);
    (loaded, next)
}

#[test]
fn valid_records_load_and_the_last_value_wins() {
    let first = mirror_json(3, "ACTIVE");
    let second = mirror_json(4, "PAUSED");
    let (loaded, next) = load_from(&[
        batch(
            Compression::None,
            0,
            &[raw(b"mirror/m", Some(first.as_bytes()))],
        ),
        batch(
            Compression::Zstd,
            1,
            &[raw(b"mirror/m", Some(second.as_bytes()))],
        ),
    ]);
    assert_eq!(next, 2);
    let mirror = &loaded.mirrors["m"];
    assert_eq!((mirror.partitions, mirror.state), (4, MirrorState::Paused));
}

#[test]
fn a_huge_partition_count_is_skipped_without_allocating() {
    let valid = mirror_json(2, "ACTIVE");
    for partitions in [i64::from(i32::MAX), 1 << 31, 0, -1, 100_001] {
        let forged = mirror_json(partitions, "ACTIVE");
        let (loaded, next) = load_from(&[batch(
            Compression::None,
            0,
            &[
                raw(b"mirror/m", Some(valid.as_bytes())),
                raw(b"mirror/m", Some(forged.as_bytes())),
            ],
        )]);
        assert_eq!(next, 2);
        assert_eq!(loaded.mirrors["m"].partitions, 2, "{partitions} kept out");
    }
    let mut too_many_starts: MirrorRecord = serde_json::from_str(&valid).unwrap();
    too_many_starts.start_offsets = vec![0; 3];
    assert_eq!(
        validate_mirror(&too_many_starts).unwrap_err().0,
        Invalid::StartOffsets
    );
}

/// A record key, its value, and why it must be skipped.
type Case<'a> = (&'a [u8], Option<&'a [u8]>, Invalid);

#[test]
fn malformed_json_keys_and_values_are_skipped() {
    let mut loaded = Loaded::default();
    let cases: [Case; 5] = [
        (b"mirror/m", Some(b"{not json"), Invalid::Json),
        (b"link/l", Some(b"[1,2,3]"), Invalid::Json),
        (b"mirror/\xff\xfe", Some(b"{}"), Invalid::Key),
        (&[b'k'; MAX_KEY_BYTES + 1], None, Invalid::Key),
        (
            b"link/l",
            Some(&[b' '; MAX_VALUE_BYTES + 1]),
            Invalid::ValueSize,
        ),
    ];
    for (key, value, reason) in cases {
        assert_eq!(apply(&mut loaded, Some(key), value).unwrap_err().0, reason);
    }
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(
        apply(&mut loaded, Some(b"mirror/m"), Some(nested.as_bytes()))
            .unwrap_err()
            .0,
        Invalid::Json
    );
    assert!(loaded.links.is_empty() && loaded.mirrors.is_empty());
    // Unknown keys and keyless records are ignored, as before.
    assert!(apply(&mut loaded, Some(b"other/x"), Some(b"?")).is_ok());
    assert!(apply(&mut loaded, None, Some(b"?")).is_ok());
}

#[test]
fn a_stopped_mirror_parses_as_stopped() {
    let stopped = mirror_json(1, "STOPPED");
    let (loaded, _) = load_from(&[batch(
        Compression::Lz4,
        0,
        &[raw(b"mirror/m", Some(stopped.as_bytes()))],
    )]);
    assert_eq!(loaded.mirrors["m"].state, MirrorState::Stopped);
    let unknown = mirror_json(1, "HALTED");
    let mut loaded = Loaded::default();
    assert_eq!(
        apply(&mut loaded, Some(b"mirror/m"), Some(unknown.as_bytes()))
            .unwrap_err()
            .0,
        Invalid::Json
    );
}

#[test]
fn a_compressed_bomb_is_skipped_and_later_records_still_load() {
    // 16 records of 1 MiB zeros: far more decoded than the batch's bound.
    let zeros = vec![0u8; 1 << 20];
    let bomb: Vec<RawRecord> = (0..16).map(|_| raw(b"mirror/x", Some(&zeros))).collect();
    let valid = mirror_json(2, "ACTIVE");
    let (loaded, next) = load_from(&[
        batch(Compression::Zstd, 0, &bomb),
        batch(
            Compression::None,
            16,
            &[raw(b"mirror/m", Some(valid.as_bytes()))],
        ),
    ]);
    assert_eq!(next, 17);
    assert!(!loaded.mirrors.contains_key("x"));
    assert_eq!(loaded.mirrors["m"].partitions, 2);
}

#[test]
fn corrupt_batches_are_skipped_or_end_the_set() {
    let valid = mirror_json(2, "ACTIVE");
    let mut bad_crc = batch(
        Compression::None,
        0,
        &[raw(b"mirror/x", Some(valid.as_bytes()))],
    );
    if let Some(last) = bad_crc.last_mut() {
        *last ^= 0xff;
    }
    let good = batch(
        Compression::None,
        1,
        &[raw(b"mirror/m", Some(valid.as_bytes()))],
    );
    let (loaded, next) = load_from(&[bad_crc, good.clone()]);
    assert_eq!(next, 2);
    assert_eq!(loaded.mirrors.keys().collect::<Vec<_>>(), vec!["m"]);

    // Garbage framing: nothing past it can be read, and nothing panics.
    let (loaded, next) = load_from(&[good, vec![0xff; 80]]);
    assert_eq!(next, 2);
    assert_eq!(loaded.mirrors.len(), 1);
}

#[test]
fn a_link_whose_sealed_config_does_not_open_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    let sealer = Sealer::from_file(&key).unwrap();
    let mut loaded = Loaded::default();
    let forged = r#"{"name":"l","link_id":"x","config":{"sasl.jaas.config":"sealed:v1:AAAA"},"source_cluster_id":"c","created_ms":1}"#;
    apply(&mut loaded, Some(b"link/l"), Some(forged.as_bytes())).unwrap();
    open_links(&mut loaded, TOPIC, Some(&sealer)).unwrap();
    assert!(loaded.links.is_empty());
}
