//! Hostile clients against the real binary with mirror topics declared (so request
//! bodies are decoded): huge counts, truncated bodies, a header whose version
//! disagrees with its body, 10,000 idle sockets, trickled frames against the shared
//! request budget, a slow TLS handshake. After each, the process is up, a normal client
//! still produces and consumes, and memory stays bounded. Also: mirrorgate's own topics
//! are closed to clients, and inter-broker APIs are not offered. A connection that
//! stops sending requests is closed after `client_idle_timeout_ms`; a busy one is not.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::kafka::{batch, connect, metadata, produce, topic_id, topic_name};
use common::{destination, eventually, eventually_async, repo_root, unique, Proxy, ProxyOptions};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, BrokerId, FetchRequest};
use kafka_protocol::records::Compression;
use mirrorgate::kafka::client::KafkaConnection;

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

/// A request frame: length, header (v1, or v2 with an empty tag section for flexible
/// versions), then `body` as given.
fn raw_request(api: ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let mut frame = BytesMut::new();
    frame.put_i16(api as i16);
    frame.put_i16(version);
    frame.put_i32(7);
    frame.put_i16(7);
    frame.put_slice(b"hostile");
    if api.request_header_version(version) >= 2 {
        frame.put_u8(0);
    }
    frame.put_slice(body);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    out
}

/// uvarint 0xffffffff: a compact array of 2^32 - 2 elements.
const HUGE_UVARINT: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];
const HUGE_I32: [u8; 4] = [0x7f, 0xff, 0xff, 0xff];

/// Bodies whose first list announces billions of entries, padded with an internal
/// topic's name so even the APIs decoded only for internal topics are decoded.
fn huge_count_requests() -> Vec<(&'static str, Vec<u8>)> {
    let pad = b"_mirrorgate-metadata".repeat(4);
    let with_pad = |mut body: Vec<u8>| {
        body.extend_from_slice(&pad);
        body
    };
    let fetch_fixed = |v15: bool| {
        let mut b = Vec::new();
        if !v15 {
            b.extend(&(-1i32).to_be_bytes()); // replica id
        }
        b.extend(&500i32.to_be_bytes());
        b.extend(&1i32.to_be_bytes());
        b.extend(&(1i32 << 20).to_be_bytes());
        b.push(0); // isolation
        b.extend(&0i32.to_be_bytes()); // session id
        b.extend(&(-1i32).to_be_bytes()); // epoch
        b
    };
    let produce_v3 = [
        &[0xff, 0xff][..],
        &[0, 1],
        &30_000i32.to_be_bytes(),
        &HUGE_I32,
    ]
    .concat();
    let produce_v9 = [&[0u8][..], &[0, 1], &30_000i32.to_be_bytes(), &HUGE_UVARINT].concat();
    let txn = [
        &[2u8, b't'][..],
        &7i64.to_be_bytes(),
        &0i16.to_be_bytes(),
        &HUGE_UVARINT,
    ]
    .concat();
    vec![
        (
            "Produce v3",
            raw_request(ApiKey::Produce, 3, &with_pad(produce_v3)),
        ),
        (
            "Produce v9",
            raw_request(ApiKey::Produce, 9, &with_pad(produce_v9)),
        ),
        (
            "Fetch v12",
            raw_request(
                ApiKey::Fetch,
                12,
                &with_pad([fetch_fixed(false), HUGE_UVARINT.to_vec()].concat()),
            ),
        ),
        (
            "Fetch v15",
            raw_request(
                ApiKey::Fetch,
                15,
                &with_pad([fetch_fixed(true), HUGE_UVARINT.to_vec()].concat()),
            ),
        ),
        (
            "DeleteRecords v2",
            raw_request(ApiKey::DeleteRecords, 2, &with_pad(HUGE_UVARINT.to_vec())),
        ),
        (
            "DeleteRecords v1",
            raw_request(ApiKey::DeleteRecords, 1, &with_pad(HUGE_I32.to_vec())),
        ),
        (
            "CreatePartitions v3",
            raw_request(
                ApiKey::CreatePartitions,
                3,
                &with_pad(HUGE_UVARINT.to_vec()),
            ),
        ),
        (
            "AlterConfigs v2",
            raw_request(ApiKey::AlterConfigs, 2, &with_pad(HUGE_UVARINT.to_vec())),
        ),
        (
            "IncrementalAlterConfigs v1",
            raw_request(
                ApiKey::IncrementalAlterConfigs,
                1,
                &with_pad(HUGE_UVARINT.to_vec()),
            ),
        ),
        (
            "AddPartitionsToTxn v3",
            raw_request(ApiKey::AddPartitionsToTxn, 3, &with_pad(txn)),
        ),
        (
            "DeleteTopics v6",
            raw_request(ApiKey::DeleteTopics, 6, &with_pad(HUGE_UVARINT.to_vec())),
        ),
        (
            "CreateTopics v7",
            raw_request(ApiKey::CreateTopics, 7, &with_pad(HUGE_UVARINT.to_vec())),
        ),
        (
            "OffsetDelete v0",
            raw_request(
                ApiKey::OffsetDelete,
                0,
                &with_pad([&[0, 1, b'g'][..], &HUGE_I32].concat()),
            ),
        ),
    ]
}

/// Writes `bytes` and reports whether the proxy then closed the connection without
/// answering.
fn closed_without_answer(addr: &str, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
}

/// One read of a few bytes, given up after `wait`.
fn read_within(socket: &mut TcpStream, wait: Duration) -> std::io::Result<usize> {
    socket.set_read_timeout(Some(wait))?;
    socket.read(&mut [0u8; 8])
}

/// Our own read timeout ran out: the peer neither sent nor closed.
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A read that ended with end of stream or a reset, not with our own timeout.
fn closed_by_proxy(read: &std::io::Result<usize>) -> bool {
    match read {
        Ok(n) => *n == 0,
        Err(e) => !timed_out(e),
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn metric(proxy: &Proxy, name: &str) -> f64 {
    proxy
        .metrics()
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0)
}

/// A normal client through the proxy: produce one record to `topic`, read it back.
async fn still_serves(proxy: &Proxy, topic: &str, value: &str) {
    let mut conn = connect(&proxy.bootstrap).await;
    let meta = metadata(&mut conn, &[topic], 12).await;
    let id = topic_id(&meta, topic);
    let mut leader = connect(&proxy.broker_addr(0)).await;
    // A topic just created may not have its leader yet (UNKNOWN_TOPIC_OR_PARTITION).
    let what = format!("the produce of {value} is accepted");
    let partition = eventually_async(&what, Duration::from_secs(20), async || {
        let response = leader
            .call(
                &produce(&[(topic, id)], &batch(&[value], Compression::None), -1),
                9,
            )
            .await
            .expect("produce through the proxy");
        let partition = response.responses[0].partition_responses[0].clone();
        match partition.error_code {
            0 => Ok(partition),
            code => Err(format!("error {code}")),
        }
    })
    .await;
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(partition.base_offset)
                .with_partition_max_bytes(1 << 20)])]);
    let fetched = leader
        .call(&fetch, 12)
        .await
        .expect("fetch through the proxy");
    let records = fetched.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&records).contains(value),
        "the record {value} is read back"
    );
}

fn one_partition_topic(prefix: &str) -> String {
    let topic = unique(prefix);
    common::create_topic(destination(), &topic, &["--replica-assignment", "0"]);
    topic
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_close_only_their_connection() {
    let mirror = unique("hostile-mirror");
    let mut proxy = Proxy::start(
        destination(),
        ProxyOptions {
            mirror_topics: vec![mirror],
            ..Default::default()
        },
    );
    let normal = one_partition_topic("hostile-normal");
    still_serves(&proxy, &normal, "before").await;
    let baseline = rss_kib(proxy.pid());

    let mut cases = huge_count_requests();
    let truncated = [
        &[0u8][..],
        &[0, 1],
        &30_000i32.to_be_bytes(),
        &[2],
        &[5, b'a'],
    ]
    .concat();
    cases.push((
        "truncated Produce v9 body",
        raw_request(ApiKey::Produce, 9, &truncated),
    ));
    // Header says v9 (compact strings), body written as v3 (i16 lengths).
    let v3_body = [
        &[0xff, 0xff][..],
        &[0, 1],
        &30_000i32.to_be_bytes(),
        &1i32.to_be_bytes(),
    ]
    .concat();
    cases.push((
        "Produce v9 header on a v3 body",
        raw_request(ApiKey::Produce, 9, &v3_body),
    ));
    for (name, bytes) in &cases {
        assert!(
            closed_without_answer(&proxy.bootstrap, bytes),
            "{name}: the connection must be closed"
        );
        assert!(proxy.is_running(), "{name}: the process stays up");
        still_serves(&proxy, &normal, name).await;
    }
    // A 100 MiB frame announced (the default limit) and trickled: it holds only what
    // arrived, and the others keep being served meanwhile.
    let mut trickle = TcpStream::connect(&proxy.bootstrap).expect("connect");
    let mut head = (100i32 * 1024 * 1024 - 16).to_be_bytes().to_vec();
    head.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1]);
    trickle.write_all(&head).expect("announce");
    for _ in 0..20 {
        trickle.write_all(&[0u8; 1024]).expect("trickle");
        std::thread::sleep(Duration::from_millis(50));
    }
    still_serves(&proxy, &normal, "while-trickled").await;
    drop(trickle);
    let grown = rss_kib(proxy.pid()).saturating_sub(baseline);
    assert!(
        grown < 64 * 1024,
        "RSS grew by {grown} KiB over {} hostile requests and a trickled 100 MiB frame",
        cases.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_idle_sockets_cost_no_broker_connection_and_are_closed() {
    let mut proxy = Proxy::start(
        destination(),
        ProxyOptions {
            mirror_topics: vec![unique("idle-mirror")],
            extra_proxy_toml: "max_connections = 10100\nfirst_request_timeout_ms = 60000".into(),
            ..Default::default()
        },
    );
    let normal = one_partition_topic("idle-normal");
    let baseline = rss_kib(proxy.pid());
    let upstream_before = metric(&proxy, "mirrorgate_upstream_connections_active");
    // Opening them takes a while on a loaded machine: the timeout leaves room for it.
    let opened = Instant::now();
    let idle: Vec<TcpStream> = (0..10_000)
        .map(|i| TcpStream::connect(&proxy.bootstrap).unwrap_or_else(|e| panic!("socket {i}: {e}")))
        .collect();
    // Accepted, yet no destination connection was opened for any of them. (Not
    // `eventually`: the 55 s include opening the sockets.)
    loop {
        let active = metric(&proxy, "mirrorgate_client_connections_active");
        if active >= 10_000.0 {
            break;
        }
        assert!(
            opened.elapsed() < Duration::from_secs(55),
            "the proxy accepted {active} of the idle sockets"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let upstream = metric(&proxy, "mirrorgate_upstream_connections_active");
    assert!(
        upstream <= upstream_before,
        "idle sockets opened broker connections: {upstream_before} -> {upstream}"
    );
    let peak = rss_kib(proxy.pid()).saturating_sub(baseline);
    assert!(peak < 200 * 1024, "10,000 idle sockets cost {peak} KiB");
    still_serves(&proxy, &normal, "while-idle").await;

    // After the first-request timeout every idle socket is closed by the proxy: each
    // read ends with end-of-stream (or a reset), never with our own read timeout.
    for (i, mut socket) in idle.into_iter().enumerate() {
        let read = read_within(&mut socket, Duration::from_secs(90));
        assert!(
            closed_by_proxy(&read),
            "idle socket {i} is still open: {read:?}"
        );
    }
    // The counter moves just after a socket is closed, on the proxy's own threads.
    eventually(
        "10,000 idle closes are counted",
        Duration::from_secs(10),
        || {
            let closed = metric(&proxy, "mirrorgate_client_idle_closed_total");
            if closed >= 10_000.0 {
                return Ok(());
            }
            Err(format!("{closed} idle closes counted for 10,000 sockets"))
        },
    );
    assert!(proxy.is_running());
    still_serves(&proxy, &normal, "after-idle").await;
}

/// Sends an ApiVersions v0 request and reads its whole answer.
fn api_versions_round_trip(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(&raw_request(ApiKey::ApiVersions, 0, &[]))?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len).clamp(0, 1 << 20) as usize];
    stream.read_exact(&mut body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_stops_sending_is_closed_and_a_busy_one_is_not() {
    const IDLE_MS: u64 = 1500;
    let proxy = Proxy::start(
        destination(),
        ProxyOptions {
            mirror_topics: vec![unique("idle-after-mirror")],
            extra_proxy_toml: format!("client_idle_timeout_ms = {IDLE_MS}"),
            ..Default::default()
        },
    );
    let closed_before = metric(&proxy, "mirrorgate_client_idle_closed_total");
    let mut busy = TcpStream::connect(&proxy.bootstrap).expect("connect");
    let mut quiet = TcpStream::connect(&proxy.bootstrap).expect("connect");
    for stream in [&mut busy, &mut quiet] {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        api_versions_round_trip(stream).expect("a first request is answered");
    }
    let quiet_since = Instant::now();
    // The busy connection asks every 400 ms for three idle periods: never idle.
    while quiet_since.elapsed() < Duration::from_millis(3 * IDLE_MS) {
        std::thread::sleep(Duration::from_millis(400));
        api_versions_round_trip(&mut busy).unwrap_or_else(|e| {
            panic!(
                "the busy connection was cut {:?} in: {e}",
                quiet_since.elapsed()
            )
        });
        // Not closed early: well inside its idle period, the quiet one is still open.
        if quiet_since.elapsed() < Duration::from_millis(IDLE_MS - 500) {
            let early = read_within(&mut quiet, Duration::from_millis(1));
            assert!(
                matches!(&early, Err(e) if timed_out(e)),
                "the quiet connection ended {:?} in, before its idle period: {early:?}",
                quiet_since.elapsed()
            );
        }
    }
    // The quiet one was closed by the proxy (end of stream or reset), about one idle
    // period after its only request; by now its close is long done.
    let read = read_within(&mut quiet, Duration::from_secs(10));
    assert!(
        closed_by_proxy(&read),
        "the quiet connection is still open after {:?}: {read:?}",
        quiet_since.elapsed()
    );
    let closed = metric(&proxy, "mirrorgate_client_idle_closed_total");
    assert_eq!(
        closed - closed_before,
        1.0,
        "only the quiet connection was idle"
    );
    api_versions_round_trip(&mut busy).expect("the busy connection still serves");
}

#[tokio::test(flavor = "multi_thread")]
async fn trickled_large_frames_stay_within_the_request_budget() {
    const MIB: usize = 1024 * 1024;
    let mut proxy = Proxy::start(
        destination(),
        ProxyOptions {
            mirror_topics: vec![unique("budget-mirror")],
            extra_proxy_toml: format!(
                "max_frame_bytes = {}\nmax_buffered_request_bytes = {}",
                8 * MIB,
                8 * MIB
            ),
            ..Default::default()
        },
    );
    let normal = one_partition_topic("budget-normal");
    still_serves(&proxy, &normal, "before").await;
    let baseline = rss_kib(proxy.pid());
    // Eight clients each announce an 8 MiB frame and push 6 MiB of it: 48 MiB offered
    // against an 8 MiB budget. Their writes stall once the proxy stops reading.
    let attackers: Vec<_> = (0..8)
        .map(|_| {
            let addr = proxy.bootstrap.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut bytes = ((8 * MIB - 16) as i32).to_be_bytes().to_vec();
                bytes.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1]); // Produce v9
                let _ = s.write_all(&bytes);
                let chunk = vec![0u8; 64 * 1024];
                for _ in 0..(6 * MIB / chunk.len()) {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                }
                s
            })
        })
        .collect();
    let sockets: Vec<TcpStream> = attackers
        .into_iter()
        .map(|t| t.join().expect("attacker"))
        .collect();
    let grown = rss_kib(proxy.pid()).saturating_sub(baseline);
    assert!(
        grown < 32 * 1024,
        "48 MiB offered, 8 MiB budget: RSS grew by {grown} KiB"
    );
    // Small requests are not stuck behind the spent budget.
    still_serves(&proxy, &normal, "budget-spent").await;
    drop(sockets);
    assert!(proxy.is_running());
    still_serves(&proxy, &normal, "after").await;
}

fn make_certs(dir: &Path) {
    let out = std::process::Command::new(repo_root().join("certs/make-dev-certs"))
        .arg(dir)
        .output()
        .expect("make-dev-certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_tls_handshake_is_cut_off_and_others_connect() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let d = certs.path().display();
    let mut proxy = Proxy::start(
        destination(),
        ProxyOptions {
            mirror_topics: vec![unique("tls-mirror")],
            extra_proxy_toml: "tls_handshake_timeout_ms = 1500".into(),
            extra_tables: format!(
                "\n[proxy.tls]\ncert_file = \"{d}/proxy.pem\"\nkey_file = \"{d}/proxy-key.pem\"\n"
            ),
            ..Default::default()
        },
    );
    // A ClientHello record header, then one byte every 200 ms.
    let mut slow = TcpStream::connect(&proxy.bootstrap).expect("connect");
    slow.set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let started = Instant::now();
    let mut cut_off = false;
    for byte in [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01]
        .iter()
        .cycle()
        .take(100)
    {
        if slow.write_all(&[*byte]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(cut_off, "the trickling handshake was cut off");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cut off after {:?}",
        started.elapsed()
    );
    let tls = mirrorgate::tls::client_config(&mirrorgate::config::DestinationTlsConfig {
        ca_file: certs.path().join("ca.pem"),
        cert_file: None,
        key_file: None,
    })
    .expect("client tls");
    let server = proxy.bootstrap.replace("127.0.0.1", "localhost");
    let mut conn = KafkaConnection::connect_with(
        &server,
        "tls-bystander",
        Duration::from_secs(10),
        Some(&tls),
        None,
    )
    .await
    .expect("a normal TLS client connects");
    let versions = conn
        .call(&ApiVersionsRequest::default(), 2)
        .await
        .expect("api versions");
    assert_eq!(versions.error_code, 0);
    assert!(proxy.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_topics_are_closed_to_clients_and_inter_broker_apis_not_offered() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        DeleteRecordsRequest, DeleteTopicsRequest, IncrementalAlterConfigsRequest,
    };
    use kafka_protocol::protocol::StrBytes;

    let cluster = destination();
    // The configured metadata topic (any name), and any `_mirrorgate-*` topic.
    let internal = unique("catalog");
    let prefixed = unique("_mirrorgate-hostile");
    common::create_topic(cluster, &internal, &["--replica-assignment", "0"]);
    common::create_topic(cluster, &prefixed, &["--replica-assignment", "0"]);
    let proxy = Proxy::start(
        cluster,
        ProxyOptions {
            extra_tables: format!("\n[replicator]\nmetadata_topic = \"{internal}\"\n"),
            ..Default::default()
        },
    );
    let mut direct = connect(&format!("127.0.0.1:{}", cluster.ports[0])).await;
    let id = topic_id(&metadata(&mut direct, &[&internal], 12).await, &internal);

    // Metadata: the topic answers TOPIC_AUTHORIZATION_FAILED, with no id or partitions.
    let mut conn = connect(&proxy.bootstrap).await;
    let meta = metadata(&mut conn, &[&internal], 12).await;
    assert_eq!(meta.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    assert!(meta.topics[0].topic_id.is_nil() && meta.topics[0].partitions.is_empty());
    // A listing of every topic (v12: no list; v0: an empty one) leaves them out, as a
    // broker leaves out topics a client may not describe.
    for (version, topics) in [(12, None), (0, Some(Vec::new()))] {
        let listing = conn
            .call(
                &kafka_protocol::messages::MetadataRequest::default().with_topics(topics),
                version,
            )
            .await
            .unwrap();
        let names: Vec<String> = listing
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .collect();
        assert!(!names.is_empty(), "v{version}: a listing");
        assert!(
            !names.contains(&internal) && !names.contains(&prefixed),
            "v{version}: {names:?}"
        );
    }

    let mut leader = connect(&proxy.broker_addr(0)).await;
    // Produce by name (v9) and by id (v13).
    for version in [9, 13] {
        let response = leader
            .call(
                &produce(
                    &[(&internal, id)],
                    &batch(&["forged"], Compression::None),
                    -1,
                ),
                version,
            )
            .await
            .expect("produce answered");
        let p = &response.responses[0].partition_responses[0];
        assert_eq!(
            p.error_code, TOPIC_AUTHORIZATION_FAILED,
            "Produce v{version}"
        );
    }
    // Fetch by name (v12) and by id (v13): no records.
    for version in [12, 13] {
        let fetch = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&internal))
                .with_topic_id(id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let fetched = leader.call(&fetch, version).await.expect("fetch answered");
        let p = &fetched.responses[0].partitions[0];
        assert_eq!(p.error_code, TOPIC_AUTHORIZATION_FAILED, "Fetch v{version}");
        assert!(
            p.records.as_ref().is_none_or(|r| r.is_empty()),
            "Fetch v{version} leaks records"
        );
    }
    let delete_records = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(&internal))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(1)])]);
    let response = leader
        .call(&delete_records, 2)
        .await
        .expect("delete records answered");
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        TOPIC_AUTHORIZATION_FAILED
    );
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(internal.clone()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("1")))]),
    ]);
    let response = conn.call(&alter, 1).await.expect("alter answered");
    assert_eq!(response.responses[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    for version in [5, 6] {
        let delete = DeleteTopicsRequest::default().with_timeout_ms(5000);
        let delete = if version < 6 {
            delete.with_topic_names(vec![topic_name(&internal)])
        } else {
            delete.with_topics(vec![DeleteTopicState::default().with_topic_id(id)])
        };
        let response = conn
            .call(&delete, version)
            .await
            .expect("delete topics answered");
        assert_eq!(
            response.responses[0].error_code, TOPIC_AUTHORIZATION_FAILED,
            "DeleteTopics v{version}"
        );
    }
    // Still there, read directly.
    assert_eq!(
        topic_id(&metadata(&mut direct, &[&internal], 12).await, &internal),
        id
    );

    // A Java consumer and producer are told they are not authorized.
    let consumer = common::kafka_tool(
        &[
            "kafka-console-consumer.sh",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--topic",
            &internal,
            "--from-beginning",
            "--timeout-ms",
            "10000",
        ],
        None,
    );
    assert!(
        consumer.text().contains("TopicAuthorizationException")
            || consumer.text().contains("Not authorized"),
        "consumer output: {}",
        consumer.text()
    );

    // A `_mirrorgate-*` topic is just as closed.
    let prefixed_id = topic_id(&metadata(&mut direct, &[&prefixed], 12).await, &prefixed);
    let meta = metadata(&mut conn, &[&prefixed], 12).await;
    assert_eq!(meta.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    let response = leader
        .call(
            &produce(
                &[(&prefixed, prefixed_id)],
                &batch(&["forged"], Compression::None),
                -1,
            ),
            9,
        )
        .await
        .expect("produce answered");
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        TOPIC_AUTHORIZATION_FAILED
    );

    // WriteTxnMarkers is neither listed nor carried.
    let versions = conn
        .call(&ApiVersionsRequest::default(), 2)
        .await
        .expect("api versions");
    assert!(!versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::WriteTxnMarkers as i16));
    assert!(closed_without_answer(
        &proxy.bootstrap,
        &raw_request(ApiKey::WriteTxnMarkers, 1, &[0, 0, 0, 0])
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_v13_with_an_unknown_topic_id_is_refused_while_mirrors_exist() {
    let proxy = Proxy::start(
        destination(),
        ProxyOptions {
            mirror_topics: vec![unique("unknown-id-mirror")],
            ..Default::default()
        },
    );
    let mut leader = connect(&proxy.broker_addr(0)).await;
    let unknown = uuid::Uuid::new_v4();
    let response = leader
        .call(
            &produce(&[("", unknown)], &batch(&["x"], Compression::None), -1),
            13,
        )
        .await
        .expect("produce answered");
    assert_eq!(response.responses[0].partition_responses[0].error_code, 100);
}
