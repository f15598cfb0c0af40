//! The catalog applies records in log order: bad records become problems of their key
//! (a mirror stays read-only), stale versions lose, a STOPPED mirror stays STOPPED.

use std::collections::BTreeMap;

use super::*;
use crate::replicator::secrets::seal_config;

fn mirror_json(partitions: i64, state: &str, version: u64) -> String {
    format!(
        r#"{{"topic":"m","source_topic":"s","link":"l","partitions":{partitions},"state":"{state}","reason":null,"state_time_ms":1,"version":{version}}}"#
    )
}

fn apply(catalog: &mut Catalog, key: &[u8], value: Option<&str>) -> Outcome {
    catalog.apply(Some(key), value.map(str::as_bytes), None)
}

fn state_of(catalog: &Catalog, topic: &str) -> Option<MirrorState> {
    catalog.mirror(topic)?.record.as_ref().map(|r| r.state)
}

#[test]
fn a_huge_partition_count_is_refused_and_the_mirror_stays_read_only() {
    for partitions in [i64::from(i32::MAX), 1 << 31, 0, -1, 100_001] {
        let mut catalog = Catalog::default();
        apply(
            &mut catalog,
            b"mirror/m",
            Some(&mirror_json(2, "ACTIVE", 1)),
        );
        let forged = mirror_json(partitions, "ACTIVE", 2);
        let outcome = apply(&mut catalog, b"mirror/m", Some(&forged));
        assert!(
            matches!(
                outcome,
                Outcome::Invalid(Invalid::Partitions | Invalid::Json, _)
            ),
            "{outcome:?}"
        );
        let entry = catalog.mirror("m").unwrap();
        assert_eq!(entry.record.as_ref().map(|r| r.partitions), Some(2));
        assert!(entry.problem.is_some());
        assert!(catalog.read_only().contains("m"));
    }
    let mut too_many_starts: MirrorRecord =
        serde_json::from_str(&mirror_json(2, "ACTIVE", 1)).unwrap();
    too_many_starts.start_offsets = vec![0; 3];
    assert_eq!(
        validate_mirror(&too_many_starts).unwrap_err().0,
        Invalid::StartOffsets
    );
}

/// A record key, its value, and why it is refused.
type Case<'a> = (&'a [u8], Option<&'a [u8]>, Invalid);

#[test]
fn malformed_keys_and_values_are_refused_and_named_mirrors_stay_read_only() {
    let mut catalog = Catalog::default();
    let cases: [Case; 5] = [
        (b"mirror/m", Some(b"{not json"), Invalid::Json),
        (b"link/l", Some(b"[1,2,3]"), Invalid::Json),
        (b"mirror/\xff\xfe", Some(b"{}"), Invalid::Key),
        (&[b'k'; MAX_KEY_BYTES + 1], None, Invalid::Key),
        (
            b"link/l",
            Some(&[b' '; MAX_VALUE_BYTES + 1]),
            Invalid::ValueSize,
        ),
    ];
    for (key, value, reason) in cases {
        match catalog.apply(Some(key), value, None) {
            Outcome::Invalid(got, _) => assert_eq!(got, reason),
            other => panic!("{other:?}"),
        }
    }
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(
        apply(&mut catalog, b"mirror/n", Some(&nested)),
        Outcome::Invalid(Invalid::Json, _)
    ));
    // Named by a bad record: read-only, with no usable record.
    let read_only = catalog.read_only();
    assert!(read_only.contains("m") && read_only.contains("n"));
    assert!(catalog.mirror("m").unwrap().record.is_none());
    // A bad link record makes a link without a usable record, shown with its problem.
    let link = catalog.link("l").unwrap();
    assert!(link.usable().is_none() && link.problem.is_some());
    // Unknown keys and keyless records are ignored, as before.
    assert_eq!(apply(&mut catalog, b"other/x", Some("?")), Outcome::Ignored);
    assert_eq!(catalog.apply(None, Some(b"?"), None), Outcome::Ignored);
    // A good record later replaces the problem.
    apply(
        &mut catalog,
        b"mirror/m",
        Some(&mirror_json(1, "PAUSED", 1)),
    );
    assert_eq!(state_of(&catalog, "m"), Some(MirrorState::Paused));
    assert!(catalog.mirror("m").unwrap().problem.is_none());
}

#[test]
fn an_unknown_state_is_refused() {
    let mut catalog = Catalog::default();
    assert!(matches!(
        apply(
            &mut catalog,
            b"mirror/m",
            Some(&mirror_json(1, "HALTED", 1))
        ),
        Outcome::Invalid(Invalid::Json, _)
    ));
    assert!(catalog.read_only().contains("m"));
}

#[test]
fn of_two_records_with_the_same_version_the_first_wins() {
    let mut catalog = Catalog::default();
    assert_eq!(catalog.next_version("mirror/m"), 1);
    apply(
        &mut catalog,
        b"mirror/m",
        Some(&mirror_json(1, "ACTIVE", 1)),
    );
    assert_eq!(catalog.next_version("mirror/m"), 2);
    let first = apply(
        &mut catalog,
        b"mirror/m",
        Some(&mirror_json(1, "PAUSED", 2)),
    );
    let second = apply(
        &mut catalog,
        b"mirror/m",
        Some(&mirror_json(1, "FAILED", 2)),
    );
    assert_eq!((first, second), (Outcome::Applied, Outcome::Stale));
    assert_eq!(state_of(&catalog, "m"), Some(MirrorState::Paused));
    // Older still: stale. Unversioned (written before versions): applies.
    assert_eq!(
        apply(
            &mut catalog,
            b"mirror/m",
            Some(&mirror_json(1, "ACTIVE", 1))
        ),
        Outcome::Stale
    );
    assert_eq!(
        apply(
            &mut catalog,
            b"mirror/m",
            Some(&mirror_json(1, "ACTIVE", 0))
        ),
        Outcome::Applied
    );
    // A delete always applies; the next writer starts again at version 1.
    assert_eq!(apply(&mut catalog, b"mirror/m", None), Outcome::Applied);
    assert!(catalog.mirror("m").is_none());
    assert_eq!(catalog.next_version("mirror/m"), 1);
}

#[test]
fn a_stopped_mirror_is_never_made_read_only_again() {
    let mut catalog = Catalog::default();
    apply(
        &mut catalog,
        b"mirror/m",
        Some(&mirror_json(1, "STOPPED", 3)),
    );
    assert!(!catalog.read_only().contains("m"));
    for state in ["ACTIVE", "FAILED", "PAUSED"] {
        assert_eq!(
            apply(&mut catalog, b"mirror/m", Some(&mirror_json(1, state, 9))),
            Outcome::Stale,
            "{state}"
        );
    }
    // Even a record that does not parse leaves it writable.
    apply(&mut catalog, b"mirror/m", Some("{garbage"));
    assert!(!catalog.read_only().contains("m"));
    assert_eq!(state_of(&catalog, "m"), Some(MirrorState::Stopped));
}

#[test]
fn a_link_whose_sealed_config_does_not_open_is_kept_with_its_problem() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    let sealer = Sealer::from_file(&key).unwrap();
    let forged = r#"{"name":"l","link_id":"x","config":{"sasl.jaas.config":"sealed:v2:AAAA"},"source_cluster_id":"c","created_ms":1}"#;
    let mut catalog = Catalog::default();
    let outcome = catalog.apply(Some(b"link/l"), Some(forged.as_bytes()), Some(&sealer));
    assert!(matches!(
        outcome,
        Outcome::Invalid(Invalid::SealedConfig, _)
    ));
    let link = catalog.link("l").unwrap();
    assert!(link.usable().is_none());
    assert!(link
        .problem
        .as_deref()
        .unwrap_or("")
        .contains("sasl.jaas.config"));

    // A value sealed for link "a" does not open as link "b"'s.
    let config = BTreeMap::from([("sasl.jaas.config".to_string(), "secret".to_string())]);
    let sealed = seal_config(&config, Some(&sealer), "link/a").unwrap();
    let record = |name: &str| {
        serde_json::to_vec(&LinkRecord {
            name: name.into(),
            link_id: "x".into(),
            config: sealed.clone(),
            source_cluster_id: "c".into(),
            created_ms: 1,
            version: 1,
        })
        .unwrap()
    };
    assert_eq!(
        catalog.apply(Some(b"link/a"), Some(&record("a")), Some(&sealer)),
        Outcome::Applied
    );
    assert_eq!(
        catalog
            .link("a")
            .and_then(|l| l.usable())
            .map(|r| r.config.clone()),
        Some(config)
    );
    assert!(matches!(
        catalog.apply(Some(b"link/b"), Some(&record("b")), Some(&sealer)),
        Outcome::Invalid(Invalid::SealedConfig, _)
    ));
}

#[test]
fn the_config_sync_memory_is_last_write_wins_and_a_bad_one_is_none() {
    let mut catalog = Catalog::default();
    let key = b"configs/m";
    assert_eq!(
        apply(&mut catalog, key, Some(r#"{"retention.ms":"1000"}"#)),
        Outcome::Applied
    );
    assert_eq!(
        apply(&mut catalog, key, Some(r#"{"retention.ms":"2000"}"#)),
        Outcome::Applied
    );
    let expected = BTreeMap::from([("retention.ms".to_string(), "2000".to_string())]);
    assert_eq!(catalog.synced_configs("m"), Some(&expected));
    // Not a map of strings: no memory (every difference is then kept).
    let outcome = apply(&mut catalog, key, Some(r#"{"retention.ms":2000}"#));
    assert!(
        matches!(outcome, Outcome::Invalid(Invalid::Json, _)),
        "{outcome:?}"
    );
    assert_eq!(catalog.synced_configs("m"), None);
    apply(&mut catalog, key, Some("{}"));
    assert_eq!(apply(&mut catalog, key, None), Outcome::Applied);
    assert_eq!(catalog.synced_configs("m"), None);
    // It never makes a topic read-only.
    assert!(catalog.read_only().is_empty());
}

fn link_json(mode: Option<&str>, version: u64) -> String {
    let mode = mode.map_or(String::new(), |m| {
        format!(r#","mirror.produce.mode":"{m}""#)
    });
    format!(
        r#"{{"name":"l","link_id":"id","config":{{"bootstrap.servers":"h:1"{mode}}},"source_cluster_id":"c","created_ms":1,"version":{version}}}"#
    )
}

#[test]
fn only_active_mirrors_of_forward_links_are_forwarded() {
    let mut catalog = Catalog::default();
    apply(&mut catalog, b"link/l", Some(&link_json(None, 1)));
    apply(
        &mut catalog,
        b"mirror/m",
        Some(&mirror_json(2, "ACTIVE", 1)),
    );
    assert!(catalog.forwarded().is_empty(), "reject is the default");

    apply(
        &mut catalog,
        b"link/l",
        Some(&link_json(Some("forward"), 2)),
    );
    let forwarded = catalog.forwarded();
    let target = forwarded.get("m").expect("forwarded");
    assert_eq!((&*target.link, &*target.source_topic), ("l", "s"));
    assert!(
        catalog.read_only().contains("m"),
        "still read-only on the destination"
    );

    for state in ["PAUSED", "PENDING_STOPPED", "FAILED", "STOPPED"] {
        let mut catalog = catalog.clone();
        apply(&mut catalog, b"mirror/m", Some(&mirror_json(2, state, 2)));
        assert!(catalog.forwarded().is_empty(), "{state} is not forwarded");
    }
    apply(
        &mut catalog,
        b"link/l",
        Some(&link_json(Some("sideways"), 3)),
    );
    assert!(catalog.forwarded().is_empty(), "an unknown mode refuses");
}

#[test]
fn the_first_producer_record_of_a_key_wins() {
    let mut catalog = Catalog::default();
    let key = format!("{PRODUCER_PREFIX}{}", producer_key("l", 7, 0));
    let first = apply(
        &mut catalog,
        key.as_bytes(),
        Some(r#"{"id":1000,"epoch":0}"#),
    );
    assert_eq!(first, Outcome::Applied);
    let second = apply(
        &mut catalog,
        key.as_bytes(),
        Some(r#"{"id":2000,"epoch":0}"#),
    );
    assert_eq!(second, Outcome::Stale, "a racing writer loses");
    assert_eq!(
        catalog.source_producer("l", 7, 0),
        Some(SourceProducer {
            id: 1000,
            epoch: 0,
            transactional_id: None
        })
    );
    assert_eq!(catalog.source_producer("l", 7, 1), None, "per epoch");
    assert!(matches!(
        apply(&mut catalog, key.as_bytes(), Some("[]")),
        Outcome::Invalid(Invalid::Json, _)
    ));
    assert_eq!(apply(&mut catalog, key.as_bytes(), None), Outcome::Applied);
    assert_eq!(catalog.source_producer("l", 7, 0), None);
}

#[test]
fn transactional_sessions_are_the_latest_per_transactional_id_of_a_link() {
    let mut catalog = Catalog::default();
    let mut put = |link: &str, client: i64, value: &str| {
        let key = format!("{PRODUCER_PREFIX}{}", producer_key(link, client, 0));
        apply(&mut catalog, key.as_bytes(), Some(value))
    };
    assert_eq!(put("l", 1, r#"{"id":5,"epoch":0}"#), Outcome::Applied);
    assert_eq!(
        put("l", 2, r#"{"id":9,"epoch":3,"transactional_id":"t"}"#),
        Outcome::Applied
    );
    // The same transactional id again, re-initialised: its source epoch is higher.
    assert_eq!(
        put("l", 3, r#"{"id":9,"epoch":4,"transactional_id":"t"}"#),
        Outcome::Applied
    );
    assert_eq!(
        put("other", 4, r#"{"id":7,"epoch":0,"transactional_id":"u"}"#),
        Outcome::Applied
    );
    assert!(matches!(
        put("l", 5, r#"{"id":7,"epoch":0,"transactional_id":""}"#),
        Outcome::Invalid(Invalid::Json, _)
    ));
    assert!(catalog.has_transactional_producers());
    let sessions = catalog.transactional_sessions("l");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!((sessions[0].0.as_str(), sessions[0].1.epoch), ("t", 4));
    for client in [2, 3, 4] {
        let link = if client == 4 { "other" } else { "l" };
        let key = format!("{PRODUCER_PREFIX}{}", producer_key(link, client, 0));
        assert_eq!(apply(&mut catalog, key.as_bytes(), None), Outcome::Applied);
    }
    assert!(!catalog.has_transactional_producers());
}

#[test]
fn a_deleted_link_takes_its_producer_mappings_with_it() {
    let mut catalog = Catalog::default();
    apply(
        &mut catalog,
        b"link/l",
        Some(&link_json(Some("forward"), 1)),
    );
    apply(
        &mut catalog,
        b"link/l2",
        Some(&link_json(Some("forward"), 1)),
    );
    let mut put = |link: &str, client: i64, value: &str| {
        let key = format!("{PRODUCER_PREFIX}{}", producer_key(link, client, 0));
        assert_eq!(
            apply(&mut catalog, key.as_bytes(), Some(value)),
            Outcome::Applied
        );
    };
    put("l", 1, r#"{"id":5,"epoch":0}"#);
    put("l", 2, r#"{"id":9,"epoch":3,"transactional_id":"t"}"#);
    // A link whose name starts with the other's: not one of its producers.
    put("l2", 3, r#"{"id":7,"epoch":0}"#);
    assert_eq!(catalog.producer_keys("l"), ["l/1/0", "l/2/0"]);
    assert!(catalog.has_transactional_producers());

    assert_eq!(apply(&mut catalog, b"link/l", None), Outcome::Applied);
    assert_eq!(catalog.source_producer("l", 1, 0), None);
    assert_eq!(catalog.source_producer("l", 2, 0), None);
    assert!(catalog.producer_keys("l").is_empty());
    assert!(!catalog.has_transactional_producers(), "its count went too");
    assert!(
        catalog.source_producer("l2", 3, 0).is_some(),
        "other links keep theirs"
    );
}

#[test]
fn more_last_mirrored_offsets_than_partitions_are_refused() {
    let mut catalog = Catalog::default();
    let offsets: Vec<String> = (0..3)
        .map(|p| format!(r#"{{"partition":{p},"offset":9}}"#))
        .collect();
    let record = |count: usize| {
        mirror_json(2, "STOPPED", 1).replace(
            r#""version":1"#,
            &format!(
                r#""version":1,"last_mirrored":[{}]"#,
                offsets[..count].join(",")
            ),
        )
    };
    let outcome = apply(&mut catalog, b"mirror/m", Some(&record(3)));
    assert!(
        matches!(outcome, Outcome::Invalid(Invalid::LastMirrored, _)),
        "{outcome:?}"
    );
    assert_eq!(
        apply(&mut catalog, b"mirror/m", Some(&record(2))),
        Outcome::Applied
    );
    let kept = &catalog.mirror("m").and_then(|m| m.record.clone()).unwrap();
    assert_eq!(kept.last_mirrored.len(), 2);
    assert_eq!(kept.last_mirrored[1].offset, 9);
}

/// A reverse on the other side deletes a STOPPED record before marking the topic:
/// the topic turns read-only (`reversing`, PAUSED), never forwarded, until the mirror
/// record that follows replaces it.
#[test]
fn a_stopped_topic_being_reversed_is_read_only_until_it_becomes_a_mirror() {
    let mut catalog = Catalog::default();
    apply(
        &mut catalog,
        b"mirror/m",
        Some(&mirror_json(1, "STOPPED", 4)),
    );
    assert_eq!(apply(&mut catalog, b"mirror/m", None), Outcome::Applied);
    let reversing = mirror_json(1, "PAUSED", 1).replace(
        r#""version":1"#,
        r#""version":1,"reversing":{"cutover_id":"c1"}"#,
    );
    assert_eq!(
        apply(&mut catalog, b"mirror/m", Some(&reversing)),
        Outcome::Applied
    );
    assert!(catalog.read_only().contains("m"));
    assert!(!catalog.forwarded().contains_key("m"));
    let record = catalog.mirror("m").and_then(|m| m.record.clone()).unwrap();
    assert_eq!(
        record.reversing.map(|r| r.cutover_id).as_deref(),
        Some("c1")
    );
    assert_eq!(
        apply(
            &mut catalog,
            b"mirror/m",
            Some(&mirror_json(1, "ACTIVE", 2))
        ),
        Outcome::Applied
    );
    assert_eq!(state_of(&catalog, "m"), Some(MirrorState::Active));
}

#[test]
fn heartbeats_leave_the_revision_and_every_other_record_moves_it() {
    let heartbeat =
        |at: i64| format!(r#"{{"heartbeat_ms":{at},"started_ms":1,"replicating":false}}"#);
    let mut catalog = Catalog::default();
    assert_eq!(catalog.revision(), 0);
    apply(&mut catalog, b"instance/a", Some(&heartbeat(1)));
    assert_eq!(
        catalog.revision(),
        0,
        "a heartbeat is not a change of substance"
    );
    assert_eq!(catalog.instances().len(), 1);

    apply(
        &mut catalog,
        b"mirror/m",
        Some(&mirror_json(2, "ACTIVE", 1)),
    );
    let after_mirror = catalog.revision();
    assert_ne!(after_mirror, 0);
    apply(&mut catalog, b"instance/a", Some(&heartbeat(2)));
    apply(&mut catalog, b"instance/b", Some(&heartbeat(2)));
    assert_eq!(catalog.revision(), after_mirror);
    // A refused record changes what the catalog says (a problem) too.
    apply(&mut catalog, b"mirror/m", Some("not json"));
    assert_ne!(catalog.revision(), after_mirror);
    let refused = catalog.revision();
    apply(&mut catalog, b"unknown/key", Some("{}"));
    assert_eq!(
        catalog.revision(),
        refused,
        "an ignored key changes nothing"
    );

    // A catalog rebuilt from the same records has the same content but a revision
    // never seen before, so nobody mistakes it for an older state.
    let mut rebuilt = Catalog::default();
    apply(&mut rebuilt, b"instance/a", Some(&heartbeat(1)));
    apply(
        &mut rebuilt,
        b"mirror/m",
        Some(&mirror_json(2, "ACTIVE", 1)),
    );
    apply(&mut rebuilt, b"instance/a", Some(&heartbeat(2)));
    apply(&mut rebuilt, b"instance/b", Some(&heartbeat(2)));
    apply(&mut rebuilt, b"mirror/m", Some("not json"));
    assert!(rebuilt == catalog, "equality is the content's");
    assert!(rebuilt.revision() > catalog.revision());
}
