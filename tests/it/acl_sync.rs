//! ACL sync (`acl.sync.enable`, `acl.filters`, `acl.sync.ms`) between two clusters that
//! enforce ACLs (StandardAuthorizer) and authenticate SASL users, through the real
//! binary: the source's ACLs the filters select appear on the destination and take
//! effect there for the user they name; those the source drops go, and an ACL an
//! operator made on the destination stays, even when the filters select it.

use crate::common;

use std::time::Duration;

use common::replication::{new_link, sealing_options};
use common::{client_config, eventually, kafka_tool, kcat, test_port_base, unique, Cluster, Proxy};

/// What mirrorgate's own connections to the destination log in as.
const DESTINATION_SASL: &str = "\n[destination.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"admin\"\npassword = \"admin-secret\"\n";

fn secured(name: &'static str, offset: u16) -> Cluster {
    Cluster::up_with(
        name,
        1,
        test_port_base() + offset,
        &["--security", "sasl_plaintext", "--authorizer"],
    )
}

/// The admin client config of a testbed cluster.
fn admin_config(cluster: &str) -> String {
    client_config(cluster, "scram-512")
}

/// `kafka-acls` against `cluster` as its admin; asserts success.
fn acls(cluster: &Cluster, name: &str, args: &[&str]) -> String {
    let config = admin_config(name);
    let mut full = vec![
        "kafka-acls",
        "--bootstrap-server",
        &cluster.bootstrap,
        "--command-config",
        &config,
    ];
    full.extend_from_slice(args);
    let out = kafka_tool(&full, None);
    assert!(out.output.status.success(), "{}", out.text());
    out.stdout()
}

/// Every ACL of `principal` on `cluster`, one line each: `TYPE NAME PATTERN OPERATION
/// PERMISSION`.
fn listed(cluster: &Cluster, name: &str, principal: &str) -> Vec<String> {
    let text = acls(cluster, name, &["--list", "--principal", principal]);
    let mut found = Vec::new();
    let mut resource = String::new();
    for line in text.lines() {
        if let Some(rest) = line.split("ResourcePattern(").nth(1) {
            let field = |key: &str| {
                rest.split(&format!("{key}="))
                    .nth(1)
                    .and_then(|v| v.split([',', ')']).next())
                    .unwrap_or_default()
                    .to_string()
            };
            resource = format!(
                "{} {} {}",
                field("resourceType"),
                field("name"),
                field("patternType")
            );
        } else if line.trim_start().starts_with("(principal=") {
            let field = |key: &str| {
                line.split(&format!("{key}="))
                    .nth(1)
                    .and_then(|v| v.split([',', ')']).next())
                    .unwrap_or_default()
                    .to_string()
            };
            found.push(format!(
                "{resource} {} {}",
                field("operation"),
                field("permissionType")
            ));
        }
    }
    found.sort();
    found
}

/// alice writing one record to `topic` through `proxy` with SASL PLAIN (librdkafka).
fn alice_writes(proxy: &Proxy, topic: &str) -> (bool, String) {
    let out = kcat(
        &[
            "-b",
            &proxy.bootstrap,
            "-P",
            "-t",
            topic,
            "-X",
            "security.protocol=sasl_plaintext",
            "-X",
            "sasl.mechanisms=PLAIN",
            "-X",
            "sasl.username=alice",
            "-X",
            "sasl.password=alice-secret",
        ],
        Some("from alice\n"),
    );
    (out.output.status.success(), out.text())
}

#[test]
fn acls_the_filters_select_follow_the_source_and_an_operators_own_stay() {
    let source = secured("mg-acl-src", 560);
    let dest = secured("mg-acl-dst", 570);
    let topic = unique("acl-orders");
    let prefix = unique("acl-pre");
    let operators = unique("acl-ops");
    // The topic exists on the destination too: its ACLs decide who may write it.
    let config = admin_config("mg-acl-dst");
    let created = kafka_tool(
        &[
            "kafka-topics",
            "--bootstrap-server",
            &dest.bootstrap,
            "--command-config",
            &config,
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
    assert!(created.output.status.success(), "{}", created.text());

    // On the source: two of alice's ACLs (the filters select alice's topic ACLs) and
    // one of bob's. On the destination: one of alice's that an operator made.
    let allow = |cluster: &Cluster, name: &str, principal: &str, op: &str, extra: &[&str]| {
        let mut args = vec!["--add", "--allow-principal", principal, "--operation", op];
        args.extend_from_slice(extra);
        acls(cluster, name, &args);
    };
    allow(
        &source,
        "mg-acl-src",
        "User:alice",
        "Read",
        &["--topic", &topic],
    );
    allow(
        &source,
        "mg-acl-src",
        "User:alice",
        "Write",
        &["--topic", &prefix, "--resource-pattern-type", "prefixed"],
    );
    allow(
        &source,
        "mg-acl-src",
        "User:bob",
        "Read",
        &["--topic", &topic],
    );
    allow(
        &dest,
        "mg-acl-dst",
        "User:alice",
        "Read",
        &["--topic", &operators],
    );

    let dir = std::env::temp_dir().join(unique("mg-acl-sync"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut options = sealing_options(&dir);
    options.extra_tables.push_str(DESTINATION_SASL);
    let proxy = Proxy::start(&dest, options);
    // Before the sync alice may write the topic (no ACL on it: open to everyone).
    let (wrote, out) = alice_writes(&proxy, &topic);
    assert!(wrote, "{out}");

    let link_config = dir.join("link.properties");
    std::fs::write(
        &link_config,
        format!(
            "bootstrap.servers={}\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"admin-secret\";\n\
             acl.sync.enable=true\nacl.sync.ms=1000\n\
             acl.filters={{\"aclFilters\":[{{\"resourceFilter\":{{\"resourceType\":\"topic\",\"patternType\":\"any\"}},\"accessFilter\":{{\"principal\":\"User:alice\"}}}}]}}\n",
            source.bootstrap
        ),
    )
    .unwrap();
    let link = new_link(
        &proxy,
        "acl-link",
        &["--config-file", &link_config.to_string_lossy()],
    );

    // The clusters outlive a run: only this run's resources count.
    let ours = [topic.clone(), prefix.clone(), operators.clone()];
    let listed = |cluster: &Cluster, name: &str, principal: &str| -> Vec<String> {
        listed(cluster, name, principal)
            .into_iter()
            .filter(|l| ours.iter().any(|n| l.split(' ').nth(1) == Some(n.as_str())))
            .collect()
    };
    let expected = |with_read: bool| {
        let mut lines = vec![
            format!("TOPIC {operators} LITERAL READ ALLOW"),
            format!("TOPIC {prefix} PREFIXED WRITE ALLOW"),
        ];
        if with_read {
            lines.push(format!("TOPIC {topic} LITERAL READ ALLOW"));
        }
        lines.sort();
        lines
    };
    // alice's ACLs on the destination are `expected`; otherwise what they are, and the
    // link's description (the proxy's log is printed when a test fails).
    let alice_has = |expected: Vec<String>| {
        let now = listed(&dest, "mg-acl-dst", "User:alice");
        if now == expected {
            return Ok(());
        }
        let described =
            common::replication::cli(&proxy, &["cluster-links", "--describe", "--link", &link]);
        Err(format!(
            "destination: {now:?}\nlink: {}",
            common::replication::text(&described)
        ))
    };
    eventually(
        "alice's ACLs reach the destination",
        Duration::from_secs(45),
        || alice_has(expected(true)),
    );
    assert!(
        listed(&dest, "mg-acl-dst", "User:bob").is_empty(),
        "bob's ACL is not selected by the filters"
    );
    // In effect: the topic now has an ACL, and none lets alice write it.
    let (wrote, out) = alice_writes(&proxy, &topic);
    assert!(
        !wrote,
        "alice's write is refused once the ACLs arrived: {out}"
    );
    assert!(
        out.to_ascii_lowercase().contains("authoriz"),
        "the broker says why: {out}"
    );

    // Dropped on the source, dropped on the destination; the operator's stays.
    acls(
        &source,
        "mg-acl-src",
        &[
            "--remove",
            "--force",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            &topic,
        ],
    );
    eventually(
        "the dropped ACL leaves the destination",
        Duration::from_secs(45),
        || alice_has(expected(false)),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        listed(&dest, "mg-acl-dst", "User:alice"),
        expected(false),
        "the operator's ACL stays, rounds later"
    );

    let described =
        common::replication::cli(&proxy, &["cluster-links", "--describe", "--link", &link]);
    let described = common::replication::text(&described);
    assert!(described.contains("AclSync"), "{described}");
    // Two created, one deleted (a round that ran before the brokers showed a new ACL
    // creates it again, harmlessly, and counts it again).
    let metrics = proxy.metrics();
    let changes = metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "mirrorgate_acl_sync_changes_total{{link=\"{link}\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(changes >= 3.0, "{metrics}");
}
