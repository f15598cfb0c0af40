//! Protocol behaviour of the proxy against a 3-node destination: every broker address
//! handed out points at the proxy, and ApiVersions is negotiated.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::kafka::{connect, metadata};
use common::{destination, unique, Proxy, ProxyOptions};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DescribeClusterRequest, FindCoordinatorRequest,
};
use kafka_protocol::protocol::StrBytes;

#[tokio::test(flavor = "multi_thread")]
async fn metadata_find_coordinator_and_describe_cluster_point_at_the_proxy() {
    let cluster = destination();
    let proxy = Proxy::start(cluster, ProxyOptions::default());
    let topic = unique("addr");
    common::create_topic(
        cluster,
        &topic,
        &["--partitions", "3", "--replication-factor", "3"],
    );
    let mut conn = connect(&proxy.bootstrap).await;

    for version in [1, 9, 12, 13] {
        let response = metadata(&mut conn, &[&topic], version).await;
        assert_eq!(response.brokers.len(), 3, "v{version}");
        for broker in &response.brokers {
            assert_eq!(broker.host.as_str(), "127.0.0.1");
            assert_eq!(
                broker.port,
                i32::from(proxy.broker_port_base) + broker.node_id.0,
                "v{version}"
            );
        }
    }

    // Each advertised broker address is a working proxy listener for that node.
    for node in 0..3u16 {
        let mut via_broker = connect(&proxy.broker_addr(node)).await;
        let response = metadata(&mut via_broker, &[&topic], 12).await;
        assert_eq!(response.brokers.len(), 3);
    }

    let group = unique("coord");
    let v3 = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.clone()));
    // The first lookup on a new cluster creates __consumer_offsets: retry until it is there.
    let mut response = conn.call(&v3, 3).await.expect("FindCoordinator v3");
    for _ in 0..100 {
        if response.error_code == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        response = conn.call(&v3, 3).await.expect("FindCoordinator v3");
    }
    assert_eq!(response.error_code, 0);
    assert_eq!(response.host.as_str(), "127.0.0.1");
    assert_eq!(
        response.port,
        i32::from(proxy.broker_port_base) + response.node_id.0
    );

    let v6 = FindCoordinatorRequest::default().with_coordinator_keys(vec![
        StrBytes::from_string(group),
        StrBytes::from_string(unique("coord")),
    ]);
    let response = conn.call(&v6, 6).await.expect("FindCoordinator v6");
    assert_eq!(response.coordinators.len(), 2);
    for c in &response.coordinators {
        assert_eq!(c.error_code, 0);
        assert_eq!(c.host.as_str(), "127.0.0.1");
        assert_eq!(c.port, i32::from(proxy.broker_port_base) + c.node_id.0);
    }

    let response = conn
        .call(&DescribeClusterRequest::default(), 1)
        .await
        .expect("DescribeCluster");
    assert_eq!(response.brokers.len(), 3);
    for broker in &response.brokers {
        assert_eq!(broker.host.as_str(), "127.0.0.1");
        assert_eq!(
            broker.port,
            i32::from(proxy.broker_port_base) + broker.broker_id.0
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_versions_are_negotiated() {
    let cluster = destination();
    let proxy = Proxy::start(cluster, ProxyOptions::default());
    let mut conn = connect(&proxy.bootstrap).await;
    let response = conn
        .call(
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("mirrorgate-test"))
                .with_client_software_version(StrBytes::from_static_str("1.0")),
            3,
        )
        .await
        .expect("ApiVersions");
    assert_eq!(response.error_code, 0);
    let find = |key: ApiKey| response.api_keys.iter().find(|k| k.api_key == key as i16);
    let produce = find(ApiKey::Produce).expect("Produce offered");
    assert_eq!(produce.min_version, 0, "Produce minimum stays 0");
    assert!(produce.max_version <= ApiKey::Produce.valid_versions().max);
    let handshake = find(ApiKey::SaslHandshake).expect("SaslHandshake offered");
    assert_eq!(
        handshake.min_version, 0,
        "librdkafka detects SASL support by v0"
    );
    assert!(
        find(ApiKey::ShareFetch).is_none(),
        "share-group APIs are not offered"
    );
    for entry in &response.api_keys {
        let key = ApiKey::try_from(entry.api_key).expect("only known API keys are offered");
        let known = key.valid_versions();
        assert!(entry.max_version <= known.max, "{key:?}");
        assert!(entry.min_version <= entry.max_version, "{key:?}");
    }
}

#[test]
fn newer_api_versions_request_gets_unsupported_version_v0() {
    let cluster = destination();
    let proxy = Proxy::start(cluster, ProxyOptions::default());
    let mut stream = TcpStream::connect(&proxy.bootstrap).expect("connect");
    // ApiVersions v127, correlation id 77, client id "t".
    let body: &[u8] = &[0, 18, 0, 127, 0, 0, 0, 77, 0, 1, b't', 0];
    stream
        .write_all(&(body.len() as i32).to_be_bytes())
        .unwrap();
    stream.write_all(body).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("response length");
    let mut response = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut response).expect("response");
    assert_eq!(&response[0..4], &77i32.to_be_bytes(), "correlation id");
    assert_eq!(&response[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    // v0 body: api_keys array with ApiVersions' supported range.
    assert_eq!(&response[6..10], &1i32.to_be_bytes());
    assert_eq!(&response[10..12], &18i16.to_be_bytes());
}

/// Asserts a non-empty list of (node id, host, port) all point at the proxy.
fn assert_point_at_proxy<'a>(proxy: &Proxy, endpoints: impl Iterator<Item = (i32, &'a str, i32)>) {
    let endpoints: Vec<_> = endpoints.collect();
    assert!(!endpoints.is_empty(), "the broker sent NodeEndpoints");
    for (node_id, host, port) in endpoints {
        assert_eq!(host, "127.0.0.1");
        assert_eq!(port, i32::from(proxy.broker_port_base) + node_id);
    }
}

/// KIP-951: a Produce or Fetch sent to a broker that is not the leader is answered
/// with NOT_LEADER_OR_FOLLOWER and the new leader's address in NodeEndpoints; through
/// the proxy that address must be the proxy's listener for the leader.
#[tokio::test(flavor = "multi_thread")]
async fn produce_and_fetch_node_endpoints_point_at_the_proxy() {
    use common::kafka::{batch, fetch_request, produce, topic_id};
    use kafka_protocol::records::Compression;

    let cluster = destination();
    let proxy = Proxy::start(cluster, ProxyOptions::default());
    let topic = unique("kip951");
    // Leader on broker 0, follower on broker 1, broker 2 holds no replica.
    common::create_topic(cluster, &topic, &["--replica-assignment", "0:1"]);
    let mut bootstrap = connect(&proxy.bootstrap).await;
    // Just created: the partition may not be in the metadata, or without a leader, yet.
    let meta = common::eventually_async(
        "the new topic's leader is broker 0",
        std::time::Duration::from_secs(20),
        async || {
            let meta = metadata(&mut bootstrap, &[&topic], 12).await;
            let leader = meta
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .map(|p| p.leader_id.0);
            match leader {
                Some(0) => Ok(meta),
                other => Err(format!("leader {other:?}")),
            }
        },
    )
    .await;
    let id = topic_id(&meta, &topic);
    let mut follower = connect(&proxy.broker_addr(1)).await;

    let request = produce(&[(&topic, id)], &batch(&["x"], Compression::None), -1);
    let response = follower
        .call(&request, 12)
        .await
        .expect("produce to follower");
    assert_eq!(
        response.responses[0].partition_responses[0].error_code, 6,
        "NOT_LEADER_OR_FOLLOWER"
    );
    let endpoints = response.node_endpoints.iter();
    assert_point_at_proxy(
        &proxy,
        endpoints.map(|n| (n.node_id.0, n.host.as_str(), n.port)),
    );

    let fetch = fetch_request(&topic, id, 10, 1, 1 << 20);
    // A follower may serve consumer fetches (KIP-392); a broker without a replica may not.
    let mut outsider = connect(&proxy.broker_addr(2)).await;
    let response = outsider
        .call(&fetch, 17)
        .await
        .expect("fetch from a non-replica");
    assert_eq!(
        response.responses[0].partitions[0].error_code, 6,
        "NOT_LEADER_OR_FOLLOWER"
    );
    let endpoints = response.node_endpoints.iter();
    assert_point_at_proxy(
        &proxy,
        endpoints.map(|n| (n.node_id.0, n.host.as_str(), n.port)),
    );

    // The same fetch through a proxy where the topic is a mirror: its responses take the
    // filler path, which must find the NodeEndpoints as well.
    let mirrored = Proxy::start(
        cluster,
        ProxyOptions {
            mirror_topics: vec![topic.clone()],
            ..Default::default()
        },
    );
    let mut outsider = connect(&mirrored.broker_addr(2)).await;
    let response = outsider
        .call(&fetch, 17)
        .await
        .expect("fetch of a mirror from a non-replica");
    assert_eq!(response.responses[0].partitions[0].error_code, 6);
    let endpoints = response.node_endpoints.iter();
    assert_point_at_proxy(
        &mirrored,
        endpoints.map(|n| (n.node_id.0, n.host.as_str(), n.port)),
    );
}

/// The error code of the first partition of a Fetch answer.
fn partition_error(answer: &kafka_protocol::messages::FetchResponse) -> Option<i16> {
    let topic = answer.responses.first()?;
    Some(topic.partitions.first()?.error_code)
}

/// Answers are written in request order, but one that has come is not held back for
/// the next: a Metadata answer goes out at once, not after the long-polling Fetch
/// pipelined behind it on the same connection (as librdkafka does, with heartbeats and
/// commits on its one connection per broker).
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_is_not_held_behind_a_long_polling_fetch() {
    use common::kafka::{fetch_request, topic_id};
    use kafka_protocol::messages::MetadataRequest;
    use std::time::{Duration, Instant};

    const MAX_WAIT: Duration = Duration::from_secs(3);
    let cluster = destination();
    let proxy = Proxy::start(cluster, ProxyOptions::default());
    let topic = unique("long-poll");
    common::create_topic(cluster, &topic, &["--replica-assignment", "0"]);
    let mut conn = connect(&proxy.broker_addr(0)).await;
    let id = topic_id(&metadata(&mut conn, &[&topic], 12).await, &topic);
    // On a cluster just started, a new topic's partition may not be served yet, and a
    // fetch of it is answered at once with an error: wait until it is served.
    let probe = fetch_request(&topic, id, 0, 0, 1 << 20);
    common::eventually_async(
        "the new topic's partition is served",
        Duration::from_secs(30),
        async || {
            let answer = conn.call(&probe, 12).await.expect("a fetch answer");
            match partition_error(&answer) {
                Some(0) => Ok(()),
                other => Err(format!("partition error {other:?}")),
            }
        },
    )
    .await;

    // min_bytes more than the empty topic has: the broker waits.
    let fetch = fetch_request(&topic, id, MAX_WAIT.as_millis() as i32, 1 << 20, 1 << 20);
    let sent = Instant::now();
    let first = conn
        .send_deferred(&MetadataRequest::default().with_topics(None), 12)
        .await
        .unwrap();
    let second = conn.send_deferred(&fetch, 12).await.unwrap();
    conn.flush_writes().await.unwrap();
    let answer = conn.receive(first).await.expect("the metadata answer");
    let metadata_after = sent.elapsed();
    assert!(!answer.brokers.is_empty());
    let fetched = conn.receive(second).await.expect("the fetch answer");
    let fetch_after = sent.elapsed();
    assert_eq!(fetched.error_code, 0);
    assert_eq!(partition_error(&fetched), Some(0), "the partition's error");
    assert!(
        fetch_after >= MAX_WAIT - Duration::from_millis(500),
        "the broker answered the fetch after {fetch_after:?}: it did not long-poll"
    );
    assert!(
        metadata_after < MAX_WAIT / 2,
        "the metadata answer waited {metadata_after:?}, behind the fetch ({fetch_after:?})"
    );
}
