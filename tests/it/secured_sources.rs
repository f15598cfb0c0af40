//! Links to secured source clusters: SASL/SCRAM and TLS with a client certificate,
//! from link configs as operators write them; credentials are stored sealed in the
//! metadata topic, shown as *** and never readable there.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::replication::{cli, scram_link, sealing_proxy, test_certs, text};
use common::{destination, eventually, kcat, repo_root, test_port_base, unique, Cluster, Proxy};

fn mirror_and_compare(proxy: &Proxy, link: &str, topic: &str, expected: usize) {
    let out = cli(
        proxy,
        &[
            "mirrors",
            "--create",
            "--mirror-topic",
            topic,
            "--link",
            link,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let what = format!("the mirror has {expected} records");
    let lines = eventually(&what, Duration::from_secs(60), || {
        let read = kcat(
            &[
                "-b",
                &proxy.bootstrap,
                "-C",
                "-t",
                topic,
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%o %s\\n",
            ],
            None,
        );
        let lines: Vec<String> = read.stdout().lines().map(String::from).collect();
        if lines.len() == expected {
            return Ok(lines);
        }
        Err(format!("mirror never caught up: {lines:?}"))
    });
    assert_eq!(lines[0], "0 r0");
}

#[test]
fn a_scram_source_is_mirrored_and_its_password_is_stored_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let source = Cluster::up_with(
        "mg-sasl",
        1,
        test_port_base() + 520,
        &["--security", "sasl_plaintext"],
    );
    let proxy = sealing_proxy(dir.path());
    let topic = unique("scram-src");
    let plain = [
        "-X",
        "security.protocol=sasl_plaintext",
        "-X",
        "sasl.mechanisms=PLAIN",
        "-X",
        "sasl.username=admin",
        "-X",
        "sasl.password=admin-secret",
    ];
    let mut create = vec!["-b", source.bootstrap.as_str(), "-P", "-t", &topic];
    create.extend(plain);
    let records: String = (0..12).map(|i| format!("r{i}\n")).collect();
    // kcat creates nothing; make the topic with the Java tool's admin config.
    let admin = String::from_utf8(
        Command::new(repo_root().join("testbed/kafka"))
            .args(["client-config", "mg-sasl", "plain"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let made = common::kafka_tool_direct(&[
        "kafka-topics",
        "--bootstrap-server",
        &source.bootstrap,
        "--command-config",
        admin.trim(),
        "--create",
        "--topic",
        &topic,
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(kcat(&create, Some(&records)).output.status.success());

    let link = scram_link(&proxy, &source, dir.path());
    let described = text(&cli(
        &proxy,
        &["cluster-links", "--describe", "--link", &link],
    ));
    assert!(
        described.contains("sasl.jaas.config=***") && !described.contains("alice-secret"),
        "{described}"
    );
    mirror_and_compare(&proxy, &link, &topic, 12);

    // The metadata topic holds the link, but not the password.
    let active = common::http_get(&proxy.admin, "/admin/config").unwrap().1;
    let metadata_topic = active
        .split("\"metadata_topic\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let stored = kcat(
        &[
            "-b",
            &destination().bootstrap,
            "-C",
            "-t",
            &metadata_topic,
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        None,
    );
    assert!(stored.stdout().contains(&link), "{}", stored.text());
    assert!(
        !stored.stdout().contains("alice-secret"),
        "{}",
        stored.stdout()
    );
}

#[test]
fn a_tls_source_with_a_client_certificate_is_mirrored() {
    let dir = tempfile::tempdir().unwrap();
    let certs = test_certs();
    let certs_arg = certs.to_str().unwrap();
    let source = Cluster::up_with(
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
    let proxy = sealing_proxy(dir.path());
    let topic = unique("tls-src");
    let ca = format!("ssl.ca.location={certs_arg}/ca.pem");
    let cert = format!("ssl.certificate.location={certs_arg}/client.pem");
    let key = format!("ssl.key.location={certs_arg}/client-key.pem");
    let tls = [
        "-X",
        "security.protocol=ssl",
        "-X",
        &ca,
        "-X",
        &cert,
        "-X",
        &key,
    ];
    let client_props = String::from_utf8(
        Command::new(repo_root().join("testbed/kafka"))
            .args(["client-config", "mg-tls"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let made = common::kafka_tool_direct(&[
        "kafka-topics",
        "--bootstrap-server",
        &source.bootstrap,
        "--command-config",
        client_props.trim(),
        "--create",
        "--topic",
        &topic,
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut produce = vec!["-b", source.bootstrap.as_str(), "-P", "-t", &topic];
    produce.extend(tls);
    let records: String = (0..9).map(|i| format!("r{i}\n")).collect();
    let out = kcat(&produce, Some(&records));
    assert!(out.output.status.success(), "{}", out.text());

    // Kafka's PEM key store: the key and the certificate chain in one file.
    let keystore = dir.path().join("keystore.pem");
    let pem = std::fs::read_to_string(certs.join("client-key.pem")).unwrap()
        + &std::fs::read_to_string(certs.join("client.pem")).unwrap();
    std::fs::write(&keystore, pem).unwrap();
    let link = unique("tls-link");
    let config = format!(
        "bootstrap.servers={},security.protocol=SSL,ssl.truststore.type=PEM,ssl.truststore.location={certs_arg}/ca.pem,ssl.keystore.type=PEM,ssl.keystore.location={}",
        source.bootstrap,
        keystore.display()
    );
    let out = cli(
        &proxy,
        &[
            "cluster-links",
            "--create",
            "--link",
            &link,
            "--config",
            &config,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    mirror_and_compare(&proxy, &link, &topic, 9);
}
