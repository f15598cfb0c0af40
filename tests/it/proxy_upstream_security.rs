//! The proxy's side towards secured brokers: TLS to the destination, and SASL
//! (PLAIN, SCRAM-SHA-256/512) of clients passed through untouched to the broker.

use crate::common;

use common::replication::test_certs;
use common::{
    client_config, kafka_tool, kcat, test_port_base, unique, Cluster, Proxy, ProxyOptions,
};

#[test]
fn the_proxy_speaks_tls_to_the_destination_with_a_client_certificate() {
    let certs = test_certs();
    let certs_arg = certs.to_str().unwrap();
    let cluster = Cluster::up_with(
        "mg-tls",
        1,
        test_port_base() + 510,
        &[
            "--security",
            "ssl",
            "--certs",
            certs_arg,
            "--client-auth",
            "required",
        ],
    );
    let d = certs.display();
    let upstream_tls = format!(
        "\n[destination.tls]\nca_file = \"{d}/ca.pem\"\n\
         cert_file = \"{d}/client.pem\"\nkey_file = \"{d}/client-key.pem\"\n"
    );
    let proxy = Proxy::start(
        &cluster,
        ProxyOptions {
            extra_tables: upstream_tls,
            ..Default::default()
        },
    );
    let topic = unique("upstream-tls");
    let create = kafka_tool(
        &[
            "kafka-topics",
            "--bootstrap-server",
            &proxy.bootstrap,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "2",
            "--replication-factor",
            "1",
        ],
        None,
    );
    assert!(create.output.status.success(), "{}", create.text());
    let produce = kcat(
        &["-b", &proxy.bootstrap, "-P", "-t", &topic, "-z", "zstd"],
        Some("s1\ns2\ns3\n"),
    );
    assert!(produce.output.status.success(), "{}", produce.text());
    produce.assert_only_proxy(&proxy, &cluster);
    let consume = kcat(
        &[
            "-b",
            &proxy.bootstrap,
            "-C",
            "-t",
            &topic,
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        None,
    );
    let mut got: Vec<String> = consume.stdout().lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, ["s1", "s2", "s3"], "{}", consume.text());
    consume.assert_only_proxy(&proxy, &cluster);
}

#[test]
fn sasl_plain_and_scram_clients_authenticate_through_the_proxy() {
    let cluster = Cluster::up_with(
        "mg-sasl",
        1,
        test_port_base() + 520,
        &["--security", "sasl_plaintext"],
    );
    // mirrorgate's own metadata connections authenticate with SCRAM-SHA-512.
    let own = "\n[destination.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"admin\"\npassword = \"admin-secret\"\n";
    let proxy = Proxy::start(
        &cluster,
        ProxyOptions {
            extra_tables: own.into(),
            ..Default::default()
        },
    );
    let active = common::http_get(&proxy.admin, "/admin/config").unwrap().1;
    assert!(
        active.contains("\"password\":\"***\"") && !active.contains("admin-secret"),
        "{active}"
    );
    let bs = proxy.bootstrap.as_str();
    let topic = unique("sasl");
    let admin = client_config("mg-sasl", "plain");
    let create = kafka_tool(
        &[
            "kafka-topics",
            "--bootstrap-server",
            bs,
            "--command-config",
            &admin,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
        None,
    );
    assert!(create.output.status.success(), "{}", create.text());
    create.assert_only_proxy(&proxy, &cluster);

    // PLAIN with librdkafka (Debian's kcat cannot do SCRAM against Kafka 4: old librdkafka).
    let plain = [
        "-X",
        "security.protocol=sasl_plaintext",
        "-X",
        "sasl.mechanisms=PLAIN",
        "-X",
        "sasl.username=alice",
    ];
    let mut args = vec!["-b", bs, "-P", "-t", &topic];
    args.extend(plain);
    args.extend(["-X", "sasl.password=alice-secret"]);
    let produce = kcat(&args, Some("plain\n"));
    assert!(produce.output.status.success(), "{}", produce.text());
    produce.assert_only_proxy(&proxy, &cluster);
    let mut wrong = vec!["-b", bs, "-L"];
    wrong.extend(plain);
    wrong.extend(["-X", "sasl.password=wrong"]);
    let refused = kcat(&wrong, None);
    assert!(
        !refused.output.status.success(),
        "a wrong password is refused by the broker"
    );
    assert!(
        refused.text().contains("Authentication failed") || refused.text().contains("SASL"),
        "{}",
        refused.text()
    );

    // SCRAM-SHA-256 and -512 with the Java client.
    for mechanism in ["scram-256", "scram-512"] {
        let config = client_config("mg-sasl", mechanism);
        let produce = kafka_tool(
            &[
                "kafka-console-producer",
                "--bootstrap-server",
                bs,
                "--producer.config",
                &config,
                "--topic",
                &topic,
            ],
            Some(&format!("{mechanism}\n")),
        );
        assert!(produce.output.status.success(), "{}", produce.text());
        produce.assert_only_proxy(&proxy, &cluster);
    }
    let config = client_config("mg-sasl", "scram-512");
    let consume = kafka_tool(
        &[
            "kafka-console-consumer",
            "--bootstrap-server",
            bs,
            "--consumer.config",
            &config,
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "3",
            "--timeout-ms",
            "60000",
        ],
        None,
    );
    let got: Vec<&str> = consume
        .output
        .stdout
        .split(|b| *b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        got,
        ["plain", "scram-256", "scram-512"],
        "{}",
        consume.text()
    );
    consume.assert_only_proxy(&proxy, &cluster);
}
