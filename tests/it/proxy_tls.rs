//! TLS at the edge: SNI routing and port-per-broker over TLS with hostname
//! verification (Java client and kcat), mutual TLS, unknown server names refused,
//! certificate and client-CA changes applied by reload while open connections stay up.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::kafka::{batch, metadata, produce, topic_id};
use common::{destination, repo_root, traced_with_hosts, unique, Proxy, ProxyOptions, Traced};
use kafka_protocol::records::Compression;
use mirrorgate::config::DestinationTlsConfig;
use mirrorgate::kafka::client::KafkaConnection;

const SNI_ROUTING: &str = "routing = \"sni\"\n\
    sni_broker_pattern = \"broker-$(node_id).kafka.example.test\"\n\
    sni_bootstrap_host = \"bootstrap.kafka.example.test\"";

/// Fresh development certificates; returns the folder and the proxy cert's serial.
fn make_certs(dir: &Path, keep_ca: bool) -> String {
    let mut command = Command::new(repo_root().join("certs/make-dev-certs"));
    command.arg(dir);
    if keep_ca {
        command.arg("--keep-ca");
    }
    let out = command.output().expect("make-dev-certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("serial proxy.pem "))
        .expect("proxy serial")
        .trim()
        .to_uppercase()
}

fn tls_table(certs: &Path, client_ca: bool) -> String {
    let d = certs.display();
    let mut table =
        format!("\n[proxy.tls]\ncert_file = \"{d}/proxy.pem\"\nkey_file = \"{d}/proxy-key.pem\"\n");
    if client_ca {
        table.push_str(&format!("client_ca_file = \"{d}/ca.pem\"\n"));
    }
    table
}

/// A proxy with TLS on its listeners (and client certificates required with
/// `client_ca`), and the folder of its fresh certificates.
fn tls_proxy(cluster: &common::Cluster, client_ca: bool) -> (tempfile::TempDir, Proxy) {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), false);
    let options = ProxyOptions {
        extra_tables: tls_table(dir.path(), client_ca),
        ..Default::default()
    };
    let proxy = Proxy::start(cluster, options);
    (dir, proxy)
}

/// /etc/hosts for the SNI names of a 3-broker cluster.
fn sni_hosts(dir: &Path) -> PathBuf {
    let path = dir.join("hosts");
    let names: Vec<String> = (0..3)
        .map(|i| format!("broker-{i}.kafka.example.test"))
        .collect();
    std::fs::write(
        &path,
        format!(
            "127.0.0.1 localhost\n127.0.0.1 bootstrap.kafka.example.test {}\n",
            names.join(" ")
        ),
    )
    .unwrap();
    path
}

fn java_ssl_properties(dir: &Path, certs: &Path) -> PathBuf {
    let path = dir.join("client-ssl.properties");
    std::fs::write(
        &path,
        format!(
            "security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={}/ca.pem\n",
            certs.display()
        ),
    )
    .unwrap();
    path
}

fn kcat_tls(certs: &Path, client_cert: bool) -> Vec<String> {
    let mut args = vec![
        "-X".to_string(),
        "security.protocol=ssl".into(),
        "-X".into(),
        format!("ssl.ca.location={}/ca.pem", certs.display()),
        "-X".into(),
        "ssl.endpoint.identification.algorithm=https".into(),
    ];
    if client_cert {
        args.extend([
            "-X".to_string(),
            format!("ssl.certificate.location={}/client.pem", certs.display()),
            "-X".into(),
            format!("ssl.key.location={}/client-key.pem", certs.display()),
        ]);
    }
    args
}

fn kcat_run(args: Vec<String>, stdin: Option<&str>, hosts: Option<&Path>) -> Traced {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    traced_with_hosts(
        Path::new("kcat"),
        &args,
        stdin,
        Duration::from_secs(60),
        hosts,
    )
}

fn java_tool(args: &[&str], stdin: Option<&str>, hosts: Option<&Path>) -> Traced {
    let mut full = vec!["tool"];
    full.extend_from_slice(args);
    traced_with_hosts(
        &repo_root().join("testbed/kafka"),
        &full,
        stdin,
        Duration::from_secs(120),
        hosts,
    )
}

/// The serial of the certificate a new TLS handshake presents.
fn served_serial(addr: &str, server_name: &str) -> String {
    let script = format!(
        "openssl s_client -connect {addr} -servername {server_name} </dev/null 2>/dev/null | openssl x509 -noout -serial"
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_uppercase()
}

async fn write_one(conn: &mut KafkaConnection, topic: &str, id: uuid::Uuid) -> i16 {
    let request = produce(&[(topic, id)], &batch(&["r"], Compression::None), -1);
    let response = conn.call(&request, 12).await.expect("produce");
    response.responses[0].partition_responses[0].error_code
}

async fn tls_connection(addr: &str, certs: &Path) -> KafkaConnection {
    let tls = mirrorgate::tls::client_config(&DestinationTlsConfig {
        ca_file: certs.join("ca.pem"),
        cert_file: None,
        key_file: None,
    })
    .expect("client config");
    KafkaConnection::connect_with(addr, "tls-test", Duration::from_secs(10), Some(&tls), None)
        .await
        .expect("TLS connection")
}

#[test]
fn java_and_kcat_over_tls_with_sni_routing_on_three_brokers() {
    let cluster = destination();
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), false);
    let proxy = Proxy::start(
        cluster,
        ProxyOptions {
            extra_proxy_toml: SNI_ROUTING.into(),
            extra_tables: tls_table(dir.path(), false),
            ..Default::default()
        },
    );
    let hosts = sni_hosts(dir.path());
    let bootstrap = format!("bootstrap.kafka.example.test:{}", proxy.port);
    let props = java_ssl_properties(dir.path(), dir.path());
    let props = props.to_str().unwrap();
    let topic = unique("sni");

    let create = java_tool(
        &[
            "kafka-topics",
            "--bootstrap-server",
            &bootstrap,
            "--command-config",
            props,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
        None,
        Some(&hosts),
    );
    assert!(create.output.status.success(), "{}", create.text());
    create.assert_only_proxy(&proxy, cluster);
    let produce = java_tool(
        &[
            "kafka-console-producer",
            "--bootstrap-server",
            &bootstrap,
            "--producer.config",
            props,
            "--topic",
            &topic,
        ],
        Some("one\ntwo\nthree\n"),
        Some(&hosts),
    );
    assert!(produce.output.status.success(), "{}", produce.text());
    produce.assert_only_proxy(&proxy, cluster);

    let mut consume_args = common::kcat_read_all(&bootstrap, &topic);
    consume_args.extend(kcat_tls(dir.path(), false));
    let consume = kcat_run(consume_args, None, Some(&hosts));
    let mut got: Vec<String> = consume.stdout().lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, ["one", "three", "two"], "{}", consume.text());
    consume.assert_only_proxy(&proxy, cluster);
    // Everything went through the one TLS port; the broker names were the SNI routes.
    let only: Vec<_> = consume
        .connected_ports
        .iter()
        .filter(|p| **p != proxy.port)
        .collect();
    assert!(
        only.is_empty(),
        "SNI routing uses the bootstrap port only: {only:?}"
    );
    assert!(proxy.log().contains("broker-"), "server names are logged");

    // An unknown server name is refused at the handshake, logged and counted.
    assert_eq!(
        served_serial(&format!("127.0.0.1:{}", proxy.port), "evil.example.test"),
        ""
    );
    let log = proxy.log();
    assert!(log.contains("unknown server name"), "{log}");
    assert!(proxy
        .metrics()
        .contains("mirrorgate_tls_handshake_failures_total{reason=\"unknown_server_name\"}"));
}

#[test]
fn port_per_broker_over_tls_with_ip_verification() {
    let cluster = destination();
    let (dir, proxy) = tls_proxy(cluster, false);
    let topic = unique("tls-port");
    common::create_topic(
        cluster,
        &topic,
        &["--partitions", "3", "--replication-factor", "3"],
    );
    let props = java_ssl_properties(dir.path(), dir.path());

    let produce = java_tool(
        &[
            "kafka-console-producer",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--producer.config",
            props.to_str().unwrap(),
            "--topic",
            &topic,
        ],
        Some("a\nb\n"),
        None,
    );
    assert!(produce.output.status.success(), "{}", produce.text());
    produce.assert_only_proxy(&proxy, cluster);
    let mut args = common::kcat_read_all(&proxy.bootstrap, &topic);
    args.extend(kcat_tls(dir.path(), false));
    let consume = kcat_run(args, None, None);
    let mut got: Vec<String> = consume.stdout().lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, ["a", "b"], "{}", consume.text());
    consume.assert_only_proxy(&proxy, cluster);
}

#[test]
fn mutual_tls_refuses_clients_without_a_certificate() {
    let cluster = destination();
    let (dir, proxy) = tls_proxy(cluster, true);
    let topic = unique("mtls");
    common::create_topic(
        cluster,
        &topic,
        &["--partitions", "1", "--replication-factor", "3"],
    );

    let mut without = vec![
        "-b".to_string(),
        proxy.bootstrap.clone(),
        "-P".into(),
        "-t".into(),
        topic.clone(),
    ];
    without.extend(kcat_tls(dir.path(), false));
    let refused = kcat_run(without, Some("x\n"), None);
    assert!(!refused.output.status.success(), "{}", refused.text());
    let metrics = proxy.metrics();
    assert!(
        metrics.contains("reason=\"client_certificate_missing\""),
        "{metrics}"
    );

    let mut with = vec![
        "-b".to_string(),
        proxy.bootstrap.clone(),
        "-P".into(),
        "-t".into(),
        topic.clone(),
    ];
    with.extend(kcat_tls(dir.path(), true));
    let accepted = kcat_run(with, Some("x\n"), None);
    assert!(accepted.output.status.success(), "{}", accepted.text());
    assert!(common::end_offsets(cluster, &topic).ends_with(":1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_and_client_ca_changes_apply_on_reload_and_open_connections_stay() {
    let cluster = destination();
    let dir = tempfile::tempdir().unwrap();
    let first_serial = make_certs(dir.path(), false);
    let topic = unique("rotate");
    common::create_topic(cluster, &topic, &["--replica-assignment", "0"]);
    let tls_only = ProxyOptions {
        extra_tables: tls_table(dir.path(), false),
        ..Default::default()
    };
    let proxy = Proxy::start(cluster, tls_only.clone());
    assert_eq!(served_serial(&proxy.bootstrap, "localhost"), first_serial);

    let mut open = tls_connection(&proxy.broker_addr(0), dir.path()).await;
    let id = topic_id(&metadata(&mut open, &[&topic], 12).await, &topic);
    assert_eq!(write_one(&mut open, &topic, id).await, 0);

    // Rotate: same CA, new leaf. New handshakes present it; the open connection stays.
    let second_serial = make_certs(dir.path(), true);
    assert_ne!(first_serial, second_serial);
    let (status, body) = proxy.reload();
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_serial(&proxy.bootstrap, "localhost"), second_serial);
    assert_eq!(
        write_one(&mut open, &topic, id).await,
        0,
        "the connection opened before the rotation keeps producing"
    );

    // Client CA added live: new handshakes without a client certificate are refused.
    proxy.write_config(&ProxyOptions {
        extra_tables: tls_table(dir.path(), true),
        ..Default::default()
    });
    assert_eq!(proxy.reload().0, 200);
    let mut args = vec!["-b".to_string(), proxy.bootstrap.clone(), "-L".into()];
    args.extend(kcat_tls(dir.path(), false));
    let refused = kcat_run(args.clone(), None, None);
    assert!(!refused.output.status.success(), "{}", refused.text());
    args.extend(kcat_tls(dir.path(), true).into_iter().skip(6));
    let accepted = kcat_run(args, None, None);
    assert!(accepted.output.status.success(), "{}", accepted.text());
    assert_eq!(write_one(&mut open, &topic, id).await, 0);
}

#[test]
fn a_stalled_or_vanishing_handshake_only_costs_that_connection() {
    let cluster = destination();
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), false);
    let mut proxy = Proxy::start(
        cluster,
        ProxyOptions {
            extra_proxy_toml: "tls_handshake_timeout_ms = 1500".into(),
            extra_tables: tls_table(dir.path(), false),
            ..Default::default()
        },
    );
    // Says nothing: closed by the proxy after the handshake timeout.
    let mut silent = std::net::TcpStream::connect(&proxy.bootstrap).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(
        std::io::Read::read(&mut silent, &mut buf),
        Ok(0) | Err(_)
    ));
    // Hangs up mid-handshake: logged at debug, not as an error.
    let quitter = std::net::TcpStream::connect(&proxy.bootstrap).unwrap();
    std::io::Write::write_all(&mut &quitter, &[0x16, 0x03, 0x01]).unwrap();
    drop(quitter);
    std::thread::sleep(Duration::from_millis(500));

    let metrics = proxy.metrics();
    assert!(
        metrics.contains("mirrorgate_tls_handshake_failures_total{reason=\"timeout\"}"),
        "{metrics}"
    );
    assert!(proxy.is_running());
    let log = proxy.log();
    assert!(!log.lines().any(|l| l.contains("ERROR")), "{log}");
    assert!(
        !served_serial(&proxy.bootstrap, "localhost").is_empty(),
        "still serving TLS"
    );
}
