//! /metrics during a real produce/consume run: the counters move, and every label
//! comes from a bounded set (API keys, outcomes, reasons, mirror topic names).

use crate::common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;

use common::{destination, kcat, unique, Proxy, ProxyOptions};
use kafka_protocol::messages::ApiKey;
use mirrorgate::proxy::interceptors::INTERCEPTORS;

/// Sum of the samples of `name` whose labels contain every `labels` pair.
fn value(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn metrics_move_with_traffic_and_labels_stay_bounded() {
    let cluster = destination();
    let normal = unique("metrics-normal");
    let mirror = unique("metrics-mirror");
    for topic in [&normal, &mirror] {
        common::create_topic(
            cluster,
            topic,
            &["--partitions", "1", "--replication-factor", "3"],
        );
    }
    let proxy = Proxy::start(
        cluster,
        ProxyOptions {
            mirror_topics: vec![mirror.clone()],
            ..Default::default()
        },
    );
    let before = proxy.metrics();
    assert_eq!(
        value(&before, "mirrorgate_build_info", &["version=\""]),
        1.0,
        "{before}"
    );

    let input: String = (0..20).map(|i| format!("m{i}\n")).collect();
    let produce = kcat(
        &["-b", &proxy.bootstrap, "-P", "-t", &normal, "-z", "lz4"],
        Some(&input),
    );
    assert!(produce.output.status.success(), "{}", produce.text());
    let consume = kcat(
        &[
            "-b",
            &proxy.bootstrap,
            "-C",
            "-t",
            &normal,
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        None,
    );
    assert_eq!(consume.stdout().lines().count(), 20, "{}", consume.text());
    let refused = kcat(&["-b", &proxy.bootstrap, "-P", "-t", &mirror], Some("no\n"));
    assert!(!refused.output.status.success());
    let mut garbage = TcpStream::connect(&proxy.bootstrap).unwrap();
    garbage.write_all(&(-1i32).to_be_bytes()).unwrap();
    let _ = std::io::Read::read(&mut garbage, &mut [0u8; 8]);

    let after = proxy.metrics();
    for api in ["Produce", "Fetch", "Metadata", "ApiVersions"] {
        let label = format!("api=\"{api}\"");
        assert!(
            value(&after, "mirrorgate_requests_total", &[&label])
                > value(&before, "mirrorgate_requests_total", &[&label]),
            "{api} count must move:\n{after}"
        );
        assert!(
            value(
                &after,
                "mirrorgate_request_duration_seconds_count",
                &[&label]
            ) >= 1.0,
            "{api} latency"
        );
    }
    assert!(
        value(
            &after,
            "mirrorgate_request_duration_seconds_bucket",
            &["api=\"Produce\"", "le=\"0.1\""]
        ) >= 1.0
    );
    assert!(
        value(&after, "mirrorgate_client_connections_total", &[]) >= 3.0,
        "{after}"
    );
    assert!(
        value(&after, "mirrorgate_upstream_connections_total", &[]) >= 3.0,
        "{after}"
    );
    assert!(value(&after, "mirrorgate_client_bytes_in_total", &[]) > 20.0 * 2.0);
    assert!(value(&after, "mirrorgate_client_bytes_out_total", &[]) > 20.0 * 2.0);
    let topic_label = format!("topic=\"{mirror}\"");
    assert!(
        value(
            &after,
            "mirrorgate_produce_partitions_refused_total",
            &[&topic_label]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        value(&after, "mirrorgate_malformed_frames_total", &[]) >= 1.0,
        "{after}"
    );
    assert!(
        after.contains("mirrorgate_client_connections_active"),
        "{after}"
    );
    // Time in each interceptor: requests where they decide, answers where they change.
    for (interceptor, phase) in [
        ("produce_guard", "request"),
        ("fetch_fillers", "request"),
        ("addresses", "request"),
        ("addresses", "response"),
        ("internal_guard", "response"),
        ("api_versions", "response"),
    ] {
        let labels = [
            format!("interceptor=\"{interceptor}\""),
            format!("phase=\"{phase}\""),
        ];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert!(
            value(&after, "mirrorgate_interceptor_calls_total", &labels) >= 1.0,
            "{interceptor} {phase} calls:\n{after}"
        );
        assert!(
            value(&after, "mirrorgate_interceptor_nanoseconds_total", &labels) > 0.0,
            "{interceptor} {phase} time:\n{after}"
        );
    }

    // Bounded labels: known keys only, API names from the protocol, topics only mirrors,
    // states from the fixed set every instance reports (its catalog's mirrors and links).
    let api_names: BTreeSet<String> = ApiKey::iter().map(|k| format!("{k:?}")).collect();
    let allowed_keys = [
        "api",
        "topic",
        "reason",
        "outcome",
        "version",
        "le",
        "quantile",
        "state",
        "interceptor",
        "phase",
    ];
    let interceptors: BTreeSet<&str> = INTERCEPTORS.iter().map(|i| i.name).collect();
    for line in after
        .lines()
        .filter(|l| l.starts_with("mirrorgate_") && l.contains('{'))
    {
        let labels = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap();
            let val = raw.trim_matches('"');
            assert!(
                allowed_keys.contains(&key),
                "unexpected label {key} in {line}"
            );
            if key == "api" {
                assert!(api_names.contains(val), "unknown api label {val}");
            }
            if key == "interceptor" {
                assert!(interceptors.contains(val), "unknown interceptor {val}");
            }
            if key == "phase" {
                assert!(["request", "response"].contains(&val), "{line}");
            }
            if key == "topic" {
                assert_eq!(val, mirror, "only mirror topics are labels");
            }
        }
    }
}
