//! Fuzz harnesses for mirrorgate's decoders of untrusted input. Each module is one
//! cargo-fuzz target (`fuzz_targets/<name>.rs` calls `<name>::check`); the property a
//! target checks is stated at the top of its module. Harness code unwraps its own
//! invariants; a panic anywhere is a finding.

use std::future::Future;
use std::path::Path;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use mirrorgate::config::Config;
use mirrorgate::registry::{Registry, Snapshot};

pub mod codecs;
pub mod fillers;
pub mod frames;
pub mod link_config;
pub mod requests;
pub mod responses;
pub mod scram;
pub mod seeds;
pub mod sni;
pub mod store;

/// Topics the fuzzed proxy treats as read-only mirrors; seeds name them.
pub const MIRRORS: &[&str] = &["users", "orders.mirror"];
/// A topic that is not a mirror.
pub const PLAIN_TOPIC: &str = "orders";

const CONFIG: &str = r#"
[proxy]
bind = "127.0.0.1:19092"
advertised_host = "proxy.example.test"
broker_port_base = 19100

[destination]
bootstrap_servers = "127.0.0.1:9092"

[[mirror_topics]]
name = "users"

[[mirror_topics]]
name = "orders.mirror"
"#;

/// A valid config with [`MIRRORS`] as mirror topics (port routing, no TLS).
pub fn config() -> &'static Config {
    static CONFIG_CELL: OnceLock<Config> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| Config::parse(CONFIG, Path::new("fuzz.toml")).unwrap())
}

/// The registry snapshot the proxy would use with [`config`]: [`MIRRORS`] read-only.
pub fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        // As after the catalog has loaded (no link mirrors): the config's mirrors guarded,
        // other topics not.
        let registry = Registry::new(Snapshot::build(config().clone()).unwrap());
        registry.set_link_mirrors(mirrorgate::registry::LinkMirrors {
            loaded: true,
            ..Default::default()
        });
        let snapshot = Snapshot::clone(&registry.load());
        assert!(snapshot.has_read_only_topics());
        snapshot
    })
}

/// Polls a future that never waits on anything outside the harness to completion.
/// Every future handed here is woken by the harness itself, so a noop waker is enough.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// The length-prefixed frame around `body`.
pub fn frame(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_i32(i32::try_from(body.len()).unwrap());
    out.put_slice(body);
    out.freeze()
}

/// A request frame for `api` v`version` with a fixed header (correlation id 7, client id
/// "fuzz", no tagged fields) and `body` as given: header parsing has its own target.
pub fn request_frame(api: ApiKey, version: i16, body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(api as i16);
    out.put_i16(version);
    out.put_i32(7);
    out.put_i16(4);
    out.put_slice(b"fuzz");
    if api.request_header_version(version) >= 2 {
        out.put_u8(0);
    }
    out.put_slice(body);
    frame(&out)
}

/// Picks one version of `range` with a fuzzer byte.
pub fn pick_version(byte: u8, min: i16, max: i16) -> i16 {
    let span = i32::from(max) - i32::from(min) + 1;
    min + i16::try_from(i32::from(byte) % span).unwrap()
}

/// A CreateTime record without producer id, as a plain producer sends it.
pub fn record(offset: i64, key: Option<Bytes>, value: Option<Bytes>) -> Record {
    mirrorgate::kafka::record_codec::plain_record(offset, 1_700_000_000_000 + offset, key, value)
}

/// `records` as v2 batches with `codec`.
pub fn encode_batch(records: &[Record], codec: Compression) -> Option<Bytes> {
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut out, records.iter(), &options).ok()?;
    Some(out.freeze())
}
