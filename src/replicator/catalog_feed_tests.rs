//! The feed treats its own topic as untrusted: a batch that does not decode is skipped,
//! broken framing ends the set, and the rest still loads.

use bytes::Bytes;
use kafka_protocol::records::Compression;

use super::*;
use crate::kafka::record_batch::Header;
use crate::kafka::record_codec::{BatchBuilder, RawRecord};
use crate::replicator::store::MirrorState;

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

fn load_from(sets: &[Vec<u8>]) -> (Catalog, i64) {
    let mut catalog = Catalog::default();
    let records = Bytes::from(sets.concat());
    let next = apply_records(&mut catalog, TOPIC, records, 0, None);
    (catalog, next)
}

fn partitions(catalog: &Catalog, topic: &str) -> Option<i32> {
    catalog.mirror(topic)?.record.as_ref().map(|r| r.partitions)
}

#[test]
fn valid_records_load_and_the_last_value_wins() {
    let first = mirror_json(3, "ACTIVE");
    let second = mirror_json(4, "PAUSED");
    let (catalog, next) = load_from(&[
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
    let mirror = catalog.mirror("m").and_then(|m| m.record.clone()).unwrap();
    assert_eq!((mirror.partitions, mirror.state), (4, MirrorState::Paused));
}

#[test]
fn records_before_the_fetch_offset_are_not_applied_again() {
    let first = mirror_json(3, "ACTIVE");
    let second = mirror_json(5, "ACTIVE");
    let set = batch(
        Compression::None,
        10,
        &[
            raw(b"mirror/m", Some(first.as_bytes())),
            raw(b"mirror/n", Some(second.as_bytes())),
        ],
    );
    let mut catalog = Catalog::default();
    let next = apply_records(&mut catalog, TOPIC, Bytes::from(set), 11, None);
    assert_eq!(next, 12);
    assert_eq!(partitions(&catalog, "m"), None);
    assert_eq!(partitions(&catalog, "n"), Some(5));
}

#[test]
fn a_compressed_bomb_is_skipped_and_later_records_still_load() {
    // 16 records of 1 MiB zeros: far more decoded than the batch's bound.
    let zeros = vec![0u8; 1 << 20];
    let bomb: Vec<RawRecord> = (0..16).map(|_| raw(b"mirror/x", Some(&zeros))).collect();
    let valid = mirror_json(2, "ACTIVE");
    let (catalog, next) = load_from(&[
        batch(Compression::Zstd, 0, &bomb),
        batch(
            Compression::None,
            16,
            &[raw(b"mirror/m", Some(valid.as_bytes()))],
        ),
    ]);
    assert_eq!(next, 17);
    assert!(catalog.mirror("x").is_none());
    assert_eq!(partitions(&catalog, "m"), Some(2));
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
    let (catalog, next) = load_from(&[bad_crc, good.clone()]);
    assert_eq!(next, 2);
    assert_eq!(catalog.mirrors().keys().collect::<Vec<_>>(), vec!["m"]);

    // Garbage framing: nothing past it can be read, and nothing panics.
    let (catalog, next) = load_from(&[good, vec![0xff; 80]]);
    assert_eq!(next, 2);
    assert_eq!(catalog.mirrors().len(), 1);
}
