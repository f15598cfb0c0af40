//! Broker listeners follow the destination: a broker that leaves loses its proxy
//! listener, and gets it back when it returns. Uses the broker-restart cluster, since
//! it stops one of its brokers.

use crate::common;

use std::net::TcpStream;
use std::time::Duration;

use common::kafka::{connect, metadata};
use common::{eventually, Proxy, ProxyOptions};

#[tokio::test(flavor = "multi_thread")]
async fn broker_listeners_close_when_brokers_leave_and_reopen_when_they_return() {
    let restarts = common::broker_restarts();
    let proxy = Proxy::start(
        restarts.cluster,
        ProxyOptions {
            extra_destination_toml: "metadata_refresh_ms = 300".into(),
            ..Default::default()
        },
    );
    let leaving = proxy.broker_addr(2);
    for node in 0..3 {
        assert!(
            TcpStream::connect(proxy.broker_addr(node)).is_ok(),
            "listener for node {node}"
        );
    }

    restarts.stop_node(2);
    eventually(
        "the listener of the stopped broker is closed",
        Duration::from_secs(90),
        || TcpStream::connect(&leaving).is_err().then_some(()),
    );
    assert!(
        TcpStream::connect(proxy.broker_addr(0)).is_ok(),
        "other listeners stay"
    );

    restarts.start_node(2);
    eventually(
        "the listener of the returning broker is open again",
        Duration::from_secs(90),
        || TcpStream::connect(&leaving).is_ok().then_some(()),
    );
    let mut conn = connect(&leaving).await;
    let response = metadata(&mut conn, &[], 12).await;
    assert!(response.brokers.iter().any(|b| b.node_id.0 == 2));
}

/// The proxy's metadata refresh asks the destination on the connection it kept from
/// the refresh before: a fleet of proxies refreshing costs the brokers no connection
/// (nor TLS and SASL handshake) per refresh.
#[test]
fn metadata_refreshes_reuse_one_connection() {
    const OPENED: &str = "mirrorgate_own_connections_opened_total";
    const REFRESHES: &str = "mirrorgate_destination_metadata_refreshes_total";
    let proxy = Proxy::start(
        common::destination(),
        ProxyOptions {
            extra_destination_toml: "metadata_refresh_ms = 300".into(),
            ..Default::default()
        },
    );
    eventually(
        "the first refreshes are done",
        Duration::from_secs(30),
        || (proxy.metric_sum(REFRESHES) >= 2.0).then_some(()),
    );
    let (opened, refreshed) = (proxy.metric_sum(OPENED), proxy.metric_sum(REFRESHES));
    std::thread::sleep(Duration::from_secs(5));
    let opened = proxy.metric_sum(OPENED) - opened;
    let refreshed = proxy.metric_sum(REFRESHES) - refreshed;
    assert!(refreshed >= 5.0, "only {refreshed} refreshes in 5 s");
    assert_eq!(
        opened, 0.0,
        "{refreshed} refreshes opened {opened} connections"
    );
}
