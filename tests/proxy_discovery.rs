//! Broker listeners follow the destination: a broker that leaves loses its proxy
//! listener, and gets it back when it returns. Uses a cluster of its own, since it
//! stops one of its brokers.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::kafka::{connect, metadata};
use common::{testbed, Cluster, Proxy, ProxyOptions};

const NAME: &str = "mg-elastic";

struct Down;
impl Drop for Down {
    fn drop(&mut self) {
        let _ = std::process::Command::new(common::repo_root().join("testbed/kafka"))
            .args(["down", NAME])
            .status();
    }
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_listeners_close_when_brokers_leave_and_reopen_when_they_return() {
    let _down = Down;
    let cluster = Cluster::up(NAME, 3, common::test_port_base() + 208);
    let proxy = Proxy::start(
        &cluster,
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

    testbed(&["stop-node", NAME, "2"]);
    wait_for("the listener of the stopped broker is closed", || {
        TcpStream::connect(&leaving).is_err()
    });
    assert!(
        TcpStream::connect(proxy.broker_addr(0)).is_ok(),
        "other listeners stay"
    );

    testbed(&["start-node", NAME, "2"]);
    wait_for("the listener of the returning broker is open again", || {
        TcpStream::connect(&leaving).is_ok()
    });
    let mut conn = connect(&leaving).await;
    let response = metadata(&mut conn, &[], 12).await;
    assert!(response.brokers.iter().any(|b| b.node_id.0 == 2));
}
