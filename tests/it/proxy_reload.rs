//! Hot config swap on a running proxy: what must apply live does, on connections that
//! are already open, and an invalid file is refused while the old config keeps serving.

use crate::common;

use std::net::TcpStream;
use std::time::Duration;

use common::kafka::{batch, connect, metadata, produce, topic_id};
use common::{destination, eventually, eventually_async, free_port, unique, Proxy, ProxyOptions};
use kafka_protocol::records::Compression;
use mirrorgate::kafka::client::KafkaConnection;
use uuid::Uuid;

/// Error code of producing one record to `topic` partition 0 on this connection.
async fn produce_error(conn: &mut KafkaConnection, topic: &str, id: Uuid) -> i16 {
    let request = produce(&[(topic, id)], &batch(&["r"], Compression::None), -1);
    let response = conn.call(&request, 12).await.expect("produce");
    response.responses[0].partition_responses[0].error_code
}

fn counter(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_topic_list_applies_to_open_connections_by_every_trigger() {
    let cluster = destination();
    let topic = unique("reload-mirror");
    common::create_topic(cluster, &topic, &["--replica-assignment", "0"]);
    let proxy = Proxy::start(cluster, ProxyOptions::default());
    let mut bootstrap = connect(&proxy.bootstrap).await;
    let id = topic_id(&metadata(&mut bootstrap, &[&topic], 12).await, &topic);
    let mut conn = connect(&proxy.broker_addr(0)).await;
    assert_eq!(produce_error(&mut conn, &topic, id).await, 0);

    // Trigger 1: the file changes on disk (watched).
    let as_mirror = ProxyOptions {
        mirror_topics: vec![topic.clone()],
        ..Default::default()
    };
    proxy.write_config(&as_mirror);
    eventually_async(
        "the file change applies",
        Duration::from_secs(30),
        async || {
            let code = produce_error(&mut conn, &topic, id).await;
            if code == 42 {
                return Some(());
            }
            assert_eq!(code, 0);
            None
        },
    )
    .await;

    // Trigger 2: POST /admin/reload — the very next Produce on the open connection.
    proxy.write_config(&ProxyOptions::default());
    let (status, body) = proxy.reload();
    assert_eq!(status, 200, "{body}");
    assert_eq!(produce_error(&mut conn, &topic, id).await, 0);

    // Trigger 3: SIGHUP.
    proxy.write_config(&as_mirror);
    std::process::Command::new("kill")
        .args(["-HUP", &proxy.pid().to_string()])
        .status()
        .unwrap();
    eventually_async(
        "the SIGHUP reload applies",
        Duration::from_secs(30),
        async || (produce_error(&mut conn, &topic, id).await == 42).then_some(()),
    )
    .await;
    // The watcher may have applied the file first; SIGHUP reloads (and says so) anyway.
    eventually(
        "the SIGHUP reload is logged",
        Duration::from_secs(30),
        || {
            proxy
                .log()
                .lines()
                .any(|l| l.contains("config reloaded") && l.contains("SIGHUP"))
                .then_some(())
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_file_is_refused_and_the_old_config_keeps_serving() {
    let cluster = destination();
    let topic = unique("reload-invalid");
    common::create_topic(cluster, &topic, &["--replica-assignment", "0"]);
    let options = ProxyOptions {
        mirror_topics: vec![topic.clone()],
        ..Default::default()
    };
    let mut proxy = Proxy::start(cluster, options.clone());
    let mut bootstrap = connect(&proxy.bootstrap).await;
    let id = topic_id(&metadata(&mut bootstrap, &[&topic], 12).await, &topic);
    let mut conn = connect(&proxy.broker_addr(0)).await;
    assert_eq!(produce_error(&mut conn, &topic, id).await, 42);

    let good = std::fs::read_to_string(proxy.config_path()).unwrap();
    proxy.write_raw_config(&good.replace("advertised_host", "advertized_host"));
    let (status, body) = proxy.reload();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("advertized_host") && body.contains("line"),
        "names key and line: {body}"
    );

    let bad_value = good.replace(&format!("name = \"{topic}\""), "name = \"not a topic!\"");
    proxy.write_raw_config(&bad_value);
    let (status, body) = proxy.reload();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("mirror_topics[0].name"), "{body}");

    // The old config still runs: the mirror is still read-only, new clients still work.
    assert_eq!(produce_error(&mut conn, &topic, id).await, 42);
    let mut fresh = connect(&proxy.bootstrap).await;
    assert_eq!(metadata(&mut fresh, &[&topic], 12).await.brokers.len(), 3);
    assert!(proxy.is_running());
    let metrics = proxy.metrics();
    assert!(
        counter(
            &metrics,
            "mirrorgate_config_reloads_total{outcome=\"rejected\"}"
        ) >= 2.0,
        "{metrics}"
    );

    proxy.write_config(&ProxyOptions::default());
    assert_eq!(proxy.reload().0, 200);
    assert_eq!(produce_error(&mut conn, &topic, id).await, 0);
    let metrics = proxy.metrics();
    assert!(
        counter(
            &metrics,
            "mirrorgate_config_reloads_total{outcome=\"success\"}"
        ) >= 1.0,
        "{metrics}"
    );
    let active = common::http_get(&proxy.admin, "/admin/config").unwrap().1;
    assert!(
        active.contains("loaded_at_ms") && !active.contains(&topic),
        "{active}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_log_level_and_upstream_servers_apply_live() {
    let cluster = destination();
    let topic = unique("reload-limits");
    common::create_topic(cluster, &topic, &["--replica-assignment", "0"]);
    let quiet = ProxyOptions {
        no_rust_log: true,
        extra_tables: "\n[log]\nlevel = \"info\"\n".into(),
        ..Default::default()
    };
    let proxy = Proxy::start(cluster, quiet.clone());
    let mut bootstrap = connect(&proxy.bootstrap).await;
    let id = topic_id(&metadata(&mut bootstrap, &[&topic], 12).await, &topic);
    let mut conn = connect(&proxy.broker_addr(0)).await;
    assert_eq!(produce_error(&mut conn, &topic, id).await, 0);
    assert!(
        !proxy.log().contains("latency_us"),
        "no request events at info"
    );

    // Log level: request-level debug events appear after the reload.
    let debug = ProxyOptions {
        extra_tables: "\n[log]\nlevel = \"mirrorgate=debug,info\"\n".into(),
        ..quiet.clone()
    };
    proxy.write_config(&debug);
    assert_eq!(proxy.reload().0, 200);
    assert_eq!(produce_error(&mut conn, &topic, id).await, 0);
    eventually(
        "a request debug event is logged",
        Duration::from_secs(30),
        || proxy.log().contains("latency_us").then_some(()),
    );

    // Frame limit: the next oversized request on the open connection closes it.
    let small = ProxyOptions {
        extra_proxy_toml: "max_frame_bytes = 2048".into(),
        ..debug.clone()
    };
    proxy.write_config(&small);
    assert_eq!(proxy.reload().0, 200);
    let big: Vec<String> = (0..8).map(|i| format!("{i}{}", "x".repeat(1000))).collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    let request = produce(&[(&topic, id)], &batch(&big, Compression::None), -1);
    assert!(
        conn.call(&request, 12).await.is_err(),
        "oversized frame must close the connection"
    );

    // Upstream bootstrap servers: a dead list makes new bootstrap connections fail...
    let dead = ProxyOptions {
        bootstrap_override: Some(format!("127.0.0.1:{}", free_port())),
        ..debug.clone()
    };
    proxy.write_config(&dead);
    assert_eq!(proxy.reload().0, 200);
    let mut via_dead = connect(&proxy.bootstrap).await;
    assert!(via_dead
        .call(&kafka_protocol::messages::MetadataRequest::default(), 12)
        .await
        .is_err());
    // ...and the real list makes them work again.
    proxy.write_config(&debug);
    assert_eq!(proxy.reload().0, 200);
    let mut via_live = connect(&proxy.bootstrap).await;
    assert_eq!(
        metadata(&mut via_live, &[&topic], 12).await.brokers.len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_listen_address_opens_and_the_old_one_drains() {
    let cluster = destination();
    let topic = unique("reload-listener");
    common::create_topic(cluster, &topic, &["--replica-assignment", "0"]);
    let proxy = Proxy::start(cluster, ProxyOptions::default());
    let mut old_conn = connect(&proxy.bootstrap).await;
    let id = topic_id(&metadata(&mut old_conn, &[&topic], 12).await, &topic);

    let new_port = free_port();
    let text = std::fs::read_to_string(proxy.config_path()).unwrap();
    proxy.write_raw_config(&text.replace(
        &format!("127.0.0.1:{}\"", proxy.port),
        &format!("127.0.0.1:{new_port}\""),
    ));
    assert_eq!(proxy.reload().0, 200);

    let mut new_conn = connect(&format!("127.0.0.1:{new_port}")).await;
    assert_eq!(
        metadata(&mut new_conn, &[&topic], 12).await.brokers.len(),
        3
    );
    assert!(
        TcpStream::connect(&proxy.bootstrap).is_err(),
        "the old address stops accepting"
    );
    // The connection accepted on the old address keeps working.
    let mut broker0 = connect(&proxy.broker_addr(0)).await;
    assert_eq!(produce_error(&mut broker0, &topic, id).await, 0);
    assert_eq!(
        metadata(&mut old_conn, &[&topic], 12).await.brokers.len(),
        3
    );
}
