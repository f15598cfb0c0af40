//! Target `store`: how every instance reads the metadata topic
//! (`replicator::catalog_feed::apply_records` into a `replicator::catalog::Catalog`): the
//! fetched record set decoded with the bounded batch decoder, each record's key routed to
//! a link or mirror, its JSON value parsed and validated, sealed link credentials opened.
//! Input: first byte even, the raw record set; odd, a key kind byte and the value bytes,
//! put in one valid batch by the harness (so the JSON parsing is reached without forging
//! CRCs).
//!
//! Properties: nothing panics, memory stays bounded; every mirror named by a record that
//! did not apply stays read-only; a usable link's config seals and opens back to itself
//! under its own record key.

use std::sync::OnceLock;

use bytes::Bytes;
use kafka_protocol::records::Compression;
use mirrorgate::replicator::catalog::Catalog;
use mirrorgate::replicator::catalog_feed::apply_records;
use mirrorgate::replicator::secrets::{open_config, seal_config, Sealer};

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
    let records = match data {
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
    let mut catalog = Catalog::default();
    apply_records(&mut catalog, "fuzz", records, 0, Some(sealer()));
    for (topic, mirror) in catalog.mirrors() {
        if mirror.problem.is_some() && mirror.record.is_none() {
            assert!(catalog.read_only().contains(topic));
        }
    }
    for (name, link) in catalog.links() {
        let Some(record) = link.usable() else {
            continue;
        };
        let key = format!("link/{name}");
        let sealed = seal_config(&record.config, Some(sealer()), &key).expect("sealing with a key");
        assert_eq!(
            open_config(&sealed, Some(sealer()), &key).unwrap(),
            record.config
        );
        let _ = open_config(&record.config, None, &key);
    }
}
