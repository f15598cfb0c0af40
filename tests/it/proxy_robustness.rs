//! Bad input and shutdown: a malformed frame closes only its own connection, the
//! connection limit holds, and SIGTERM drains in-flight requests before exiting 0.

use crate::common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::kafka::{connect, metadata, topic_name};
use common::{destination, unique, Proxy, ProxyOptions};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};

/// Sends `bytes` (optionally half-closing) and reports whether the proxy closed the
/// connection without answering.
fn closed_by_proxy(addr: &str, bytes: &[u8], half_close: bool) -> bool {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).expect("write");
    if half_close {
        stream.shutdown(Shutdown::Write).expect("half close");
    }
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
        && stream.read(&mut buf).map(|n| n == 0).unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_frames_close_only_their_connection() {
    let cluster = destination();
    let mut proxy = Proxy::start(cluster, ProxyOptions::default());
    let topic = unique("malformed");
    common::create_topic(
        cluster,
        &topic,
        &["--partitions", "1", "--replication-factor", "1"],
    );
    let mut bystander = connect(&proxy.bootstrap).await;
    assert_eq!(
        metadata(&mut bystander, &[&topic], 12).await.topics.len(),
        1
    );

    let mut unknown_key = 10i32.to_be_bytes().to_vec();
    unknown_key.extend_from_slice(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        ("negative length", (-7i32).to_be_bytes().to_vec(), false),
        (
            "oversized length",
            (200 * 1024 * 1024i32).to_be_bytes().to_vec(),
            false,
        ),
        (
            "truncated frame",
            [&100i32.to_be_bytes()[..], &[0, 3, 0, 12, 0, 0]].concat(),
            true,
        ),
        ("unknown api key", unknown_key, false),
    ];
    for (name, bytes, half_close) in cases {
        assert!(
            closed_by_proxy(&proxy.bootstrap, &bytes, half_close),
            "{name}: connection must be closed"
        );
        let response = metadata(&mut bystander, &[&topic], 12).await;
        assert_eq!(
            response.topics.len(),
            1,
            "{name}: the other client keeps working"
        );
        assert!(proxy.is_running(), "{name}: the process stays up");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_limit_are_refused() {
    let cluster = destination();
    let proxy = Proxy::start(
        cluster,
        ProxyOptions {
            extra_proxy_toml: "max_connections = 2".into(),
            ..Default::default()
        },
    );
    let mut first = connect(&proxy.bootstrap).await;
    let mut second = connect(&proxy.bootstrap).await;
    assert_eq!(metadata(&mut first, &[], 12).await.brokers.len(), 3);
    assert_eq!(metadata(&mut second, &[], 12).await.brokers.len(), 3);
    let mut third = connect(&proxy.bootstrap).await;
    let refused = third
        .call(&kafka_protocol::messages::MetadataRequest::default(), 12)
        .await;
    assert!(refused.is_err(), "a third connection must be refused");
    drop(first);
    // A slot frees up once a connection closes.
    let mut again = None;
    for _ in 0..50 {
        let mut conn = connect(&proxy.bootstrap).await;
        if conn
            .call(&kafka_protocol::messages::MetadataRequest::default(), 12)
            .await
            .is_ok()
        {
            again = Some(conn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a freed slot is usable again");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let cluster = destination();
    let mut proxy = Proxy::start(
        cluster,
        ProxyOptions {
            extra_args: vec!["--log-format".into(), "json".into()],
            ..Default::default()
        },
    );
    let topic = unique("drain");
    common::create_topic(cluster, &topic, &["--replica-assignment", "0"]);
    let mut conn = connect(&proxy.broker_addr(0)).await;
    // A long-poll Fetch on an empty topic: the broker holds it for max_wait_ms.
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(3000)
        .with_min_bytes(1 << 20)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(&topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let in_flight = tokio::spawn(async move { conn.call(&fetch, 12).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = tokio::task::block_in_place(|| proxy.terminate(Duration::from_secs(20)));
    let response = in_flight
        .await
        .expect("join")
        .expect("the in-flight Fetch is answered");
    assert_eq!(response.error_code, 0);
    let status = status.expect("mirrorgate exits after draining");
    assert!(status.success(), "exit status {status}");
    assert!(
        std::net::TcpStream::connect(&proxy.bootstrap).is_err(),
        "no longer accepting"
    );
}
