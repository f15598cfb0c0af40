//! The fleet protocol without a broker: the sticky assignor, the ConsumerProtocol
//! bytes (ours and hostile ones), the shard hash, config checks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::sync::CancellationToken;

use super::client::ClientError;
use super::membership::protocol::{
    assign_sticky, decode_assignment, decode_subscription, encode_assignment, encode_subscription,
    murmur2, shard_of, MemberClaim,
};
use super::membership::{Membership, MembershipConfig, MembershipError};

const TOPIC: &str = "_mirrorgate-shards";

fn claim(id: &str, owned: &[i32], generation: i32) -> MemberClaim {
    MemberClaim {
        member_id: id.to_string(),
        owned: owned.iter().copied().collect(),
        generation,
    }
}

fn fresh(ids: &[&str]) -> Vec<MemberClaim> {
    ids.iter().map(|id| claim(id, &[], -1)).collect()
}

/// Every shard exactly once, every member within one of the others.
fn assert_complete_and_balanced(shards: i32, plan: &BTreeMap<String, BTreeSet<i32>>) {
    let mut seen = BTreeSet::new();
    for set in plan.values() {
        for s in set {
            assert!(seen.insert(*s), "shard {s} twice in {plan:?}");
        }
    }
    assert_eq!(seen, (0..shards).collect(), "{plan:?}");
    let sizes: Vec<usize> = plan.values().map(BTreeSet::len).collect();
    let (min, max) = (sizes.iter().min(), sizes.iter().max());
    if let (Some(min), Some(max)) = (min, max) {
        assert!(max - min <= 1, "unbalanced {sizes:?}");
    }
}

/// The plan as the next generation's claims.
fn claims_of(plan: &BTreeMap<String, BTreeSet<i32>>, generation: i32) -> Vec<MemberClaim> {
    plan.iter()
        .map(|(id, owned)| MemberClaim {
            member_id: id.clone(),
            owned: owned.clone(),
            generation,
        })
        .collect()
}

#[test]
fn assignor_balances_within_one() {
    for (shards, members) in [
        (64, 3),
        (64, 1),
        (64, 64),
        (7, 3),
        (1, 2),
        (10, 4),
        (100, 7),
    ] {
        let ids: Vec<String> = (0..members).map(|i| format!("m-{i:03}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let plan = assign_sticky(shards, &fresh(&refs));
        assert_eq!(plan.len(), members);
        assert_complete_and_balanced(shards, &plan);
    }
}

#[test]
fn assignor_with_no_members_or_no_shards() {
    assert!(assign_sticky(64, &[]).is_empty());
    let plan = assign_sticky(0, &fresh(&["a", "b"]));
    assert_eq!(plan.len(), 2);
    assert!(plan.values().all(BTreeSet::is_empty));
}

#[test]
fn assignor_with_more_members_than_shards() {
    let ids: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let plan = assign_sticky(4, &fresh(&refs));
    assert_complete_and_balanced(4, &plan);
    assert_eq!(plan.values().filter(|s| s.len() == 1).count(), 4);
    // A member that held a shard keeps it rather than a newcomer taking it.
    let mut claims = fresh(&refs);
    claims[9] = claim("m9", &[2], 5);
    let plan = assign_sticky(4, &claims);
    assert_eq!(plan["m9"], BTreeSet::from([2]));
    assert_complete_and_balanced(4, &plan);
}

#[test]
fn assignor_is_deterministic_whatever_the_order() {
    let claims = vec![
        claim("c", &[0, 1, 2, 3, 4, 5], 3),
        claim("a", &[6, 7], 3),
        claim("b", &[], -1),
        claim("d", &[8, 9, 10, 11, 12, 13, 14, 15, 16], 2),
    ];
    let plan = assign_sticky(20, &claims);
    assert_complete_and_balanced(20, &plan);
    let mut reversed = claims.clone();
    reversed.reverse();
    assert_eq!(assign_sticky(20, &reversed), plan);
    let mut rotated = claims.clone();
    rotated.rotate_left(1);
    assert_eq!(assign_sticky(20, &rotated), plan);
    // And the same on a second run: no hidden randomness.
    assert_eq!(assign_sticky(20, &claims), plan);
}

#[test]
fn assignor_moves_only_what_a_joining_member_needs() {
    let first = assign_sticky(64, &fresh(&["a", "b", "c"]));
    let mut claims = claims_of(&first, 1);
    claims.push(claim("d", &[], -1));
    let second = assign_sticky(64, &claims);
    assert_complete_and_balanced(64, &second);
    // Old members only give shards up, never trade them.
    for id in ["a", "b", "c"] {
        assert!(
            second[id].is_subset(&first[id]),
            "{id} got shards it did not hold"
        );
    }
    assert_eq!(second["d"].len(), 16);
    let moved: usize = ["a", "b", "c"]
        .iter()
        .map(|id| first[*id].len() - second[*id].len())
        .sum();
    assert_eq!(moved, 16, "only the newcomer's share moves");
}

#[test]
fn assignor_keeps_survivors_shards_when_a_member_leaves() {
    let first = assign_sticky(64, &fresh(&["a", "b", "c"]));
    let claims: Vec<MemberClaim> = claims_of(&first, 1)
        .into_iter()
        .filter(|c| c.member_id != "b")
        .collect();
    let second = assign_sticky(64, &claims);
    assert_complete_and_balanced(64, &second);
    for id in ["a", "c"] {
        assert!(first[id].is_subset(&second[id]), "{id} lost a shard");
    }
    let taken: BTreeSet<i32> = second.values().flatten().copied().collect();
    assert!(first["b"].is_subset(&taken));
}

#[test]
fn assignor_settles_conflicting_claims() {
    // Both claim shard 0: the newer generation wins; equal generations, the smaller id.
    let plan = assign_sticky(4, &[claim("a", &[0, 1], 1), claim("b", &[0, 2], 2)]);
    assert!(plan["b"].contains(&0));
    assert!(plan["a"].contains(&1));
    assert_complete_and_balanced(4, &plan);
    let plan = assign_sticky(4, &[claim("b", &[0], 2), claim("a", &[0], 2)]);
    assert!(plan["a"].contains(&0));
    assert_complete_and_balanced(4, &plan);
}

#[test]
fn assignor_ignores_bogus_claims() {
    let plan = assign_sticky(
        8,
        &[
            // A rogue member claiming everything, and more, keeps only its share.
            claim("a", &[-5, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1000, i32::MAX], 9),
            claim("b", &[], -1),
            claim("a", &[], -1),
        ],
    );
    assert_eq!(plan.len(), 2, "a repeated member id counts once");
    assert_complete_and_balanced(8, &plan);
    // Its real shards only, and of those a spread half.
    assert_eq!(plan["a"], BTreeSet::from([0, 2, 4, 6]));
}

#[test]
fn subscription_round_trip() {
    let owned = BTreeSet::from([1, 5, 63]);
    let bytes = encode_subscription(TOPIC, 64, &owned, 7).expect("encode");
    assert_eq!(&bytes[..2], &[0, 2], "ConsumerProtocol version prefix");
    let decoded = decode_subscription(&bytes, TOPIC, 64).expect("decode");
    assert_eq!(decoded.topics, vec![TOPIC.to_string()]);
    assert_eq!(decoded.owned, owned);
    assert_eq!(decoded.generation, 7);
    assert_eq!(decoded.shards, Some(64));
    // Owned shards beyond this instance's count are dropped, not trusted.
    let decoded = decode_subscription(&bytes, TOPIC, 8).expect("decode");
    assert_eq!(decoded.owned, BTreeSet::from([1, 5]));
    // Another topic's partitions are not ours.
    let decoded = decode_subscription(&bytes, "other", 64).expect("decode");
    assert!(decoded.owned.is_empty());
}

/// A v0 subscription as a Java consumer writes it: version, topics, user data.
#[test]
fn subscription_v0_from_a_java_consumer() {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    buf.put_i32(1);
    buf.put_i16(TOPIC.len() as i16);
    buf.put_slice(TOPIC.as_bytes());
    buf.put_i32(-1); // null user data
    let decoded = decode_subscription(&buf.freeze(), TOPIC, 64).expect("decode");
    assert_eq!(decoded.topics, vec![TOPIC.to_string()]);
    assert!(decoded.owned.is_empty());
    assert_eq!(decoded.generation, -1);
    assert_eq!(decoded.shards, None);
}

#[test]
fn assignment_round_trip() {
    let shards = BTreeSet::from([0, 3, 6, 9]);
    let bytes = encode_assignment(TOPIC, &shards, 12, 3).expect("encode");
    let decoded = decode_assignment(&bytes, TOPIC, 12).expect("decode");
    assert_eq!(decoded.shards, shards);
    assert_eq!(decoded.members, Some(3));
    assert_eq!(decoded.leader_shards, Some(12));
    let empty = encode_assignment(TOPIC, &BTreeSet::new(), 12, 3).expect("encode");
    assert!(decode_assignment(&empty, TOPIC, 12)
        .expect("decode")
        .shards
        .is_empty());
    // What the coordinator sends a member the leader left out.
    let none = decode_assignment(&Bytes::new(), TOPIC, 12).expect("decode");
    assert!(none.shards.is_empty());
    assert_eq!(none.members, None);
}

/// The exact bytes Kafka's `ConsumerProtocol.serializeAssignment` (v1) writes, so
/// `kafka-consumer-groups --describe --members --verbose` can read them.
#[test]
fn assignment_bytes_are_kafkas_layout() {
    let bytes = encode_assignment("t", &BTreeSet::from([2, 7]), 8, 2).expect("encode");
    let mut expected = BytesMut::new();
    expected.put_i16(1); // version
    expected.put_i32(1); // one topic
    expected.put_i16(1);
    expected.put_slice(b"t");
    expected.put_i32(2); // two partitions
    expected.put_i32(2);
    expected.put_i32(7);
    expected.put_i32(10); // user data: version 0, shards 8, members 2
    expected.put_i16(0);
    expected.put_i32(8);
    expected.put_i32(2);
    assert_eq!(bytes, expected.freeze());
}

#[test]
fn assignment_from_a_newer_protocol_version_decodes() {
    let bytes = encode_assignment(TOPIC, &BTreeSet::from([1]), 4, 1).expect("encode");
    let mut newer = BytesMut::from(&bytes[..]);
    newer[0..2].copy_from_slice(&9i16.to_be_bytes());
    // Fields a later version appends follow what we read; they are ignored.
    newer.put_slice(&[0, 0, 0, 0]);
    let decoded = decode_assignment(&newer.freeze(), TOPIC, 4).expect("decode");
    assert_eq!(decoded.shards, BTreeSet::from([1]));
}

fn assignment_bytes(topic: &str, partitions: &[i32]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    buf.put_i32(1);
    buf.put_i16(topic.len() as i16);
    buf.put_slice(topic.as_bytes());
    buf.put_i32(partitions.len() as i32);
    for p in partitions {
        buf.put_i32(*p);
    }
    buf.put_i32(-1);
    buf.freeze()
}

#[test]
fn hostile_assignments_are_errors() {
    let cases: Vec<(&str, Bytes)> = vec![
        ("one byte", Bytes::from_static(&[0])),
        (
            "negative version",
            Bytes::from_static(&[0xff, 0xff, 0, 0, 0, 0]),
        ),
        ("truncated", assignment_bytes(TOPIC, &[1, 2]).slice(..12)),
        ("another topic", assignment_bytes("orders", &[1])),
        ("shard past the count", assignment_bytes(TOPIC, &[64])),
        ("negative shard", assignment_bytes(TOPIC, &[-1])),
        ("shard twice", assignment_bytes(TOPIC, &[3, 3])),
        (
            "two billion topics",
            Bytes::from_static(&[0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'x']),
        ),
        (
            "two billion partitions",
            Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 1, b'x', 0x7f, 0xff, 0xff, 0xff]),
        ),
        ("over a MiB", Bytes::from(vec![0u8; (1 << 20) + 1])),
    ];
    for (name, bytes) in cases {
        match decode_assignment(&bytes, TOPIC, 64) {
            Err(MembershipError::Malformed { .. }) => {}
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn hostile_subscriptions_are_errors() {
    for bytes in [
        Bytes::new(),
        Bytes::from_static(&[0, 2, 0x7f, 0xff, 0xff, 0xff]),
        Bytes::from_static(&[0x80, 0x00]),
        encode_subscription(TOPIC, 64, &BTreeSet::from([1]), 1)
            .expect("encode")
            .slice(..20),
    ] {
        assert!(
            decode_subscription(&bytes, TOPIC, 64).is_err(),
            "{bytes:?} decoded"
        );
    }
}

/// Values of Kafka's own `Utils.murmur2` and `toPositive(h) % n` (its default
/// partitioner), run on Kafka 4.1's client jar.
#[test]
fn shard_of_matches_kafkas_partitioner() {
    let cases: [(&str, i32, i32, i32); 7] = [
        ("", 275_646_681, 25, 1),
        ("a", -1_563_381_124, 60, 4),
        ("21", -973_932_308, 44, 0),
        ("foobar", -790_332_482, 62, 6),
        ("mirror/orders", 138_154_300, 60, 0),
        ("link-1/topic-x:7", 1_795_944_469, 21, 9),
        ("a-little-bit-long-string", -985_981_536, 32, 2),
    ];
    for (key, hash, of64, of10) in cases {
        assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
        assert_eq!(shard_of(key, 64), of64, "shard_of({key:?}, 64)");
        assert_eq!(shard_of(key, 10), of10, "shard_of({key:?}, 10)");
    }
    assert_eq!(shard_of("anything", 1), 0);
    assert_eq!(shard_of("anything", 0), 0);
    assert_eq!(shard_of("anything", -3), 0);
}

fn config() -> MembershipConfig {
    MembershipConfig::new("fleet", "mirrorgate", vec!["127.0.0.1:1".into()])
}

#[test]
fn config_is_checked() {
    assert!(config().validate().is_ok());
    type Change = Box<dyn Fn(&mut MembershipConfig)>;
    let bad: Vec<(&str, Change)> = vec![
        ("no group", Box::new(|c| c.group_id.clear())),
        ("no servers", Box::new(|c| c.bootstrap_servers.clear())),
        ("zero shards", Box::new(|c| c.shards = 0)),
        ("too many shards", Box::new(|c| c.shards = 10_001)),
        ("bad topic", Box::new(|c| c.shards_topic = "a b".into())),
        (
            "bad instance",
            Box::new(|c| c.instance_id = Some("x/y".into())),
        ),
        (
            "heartbeat not below session",
            Box::new(|c| c.heartbeat_interval = c.session_timeout),
        ),
        (
            "session past i32 ms",
            Box::new(|c| c.session_timeout = Duration::from_secs(3_000_000)),
        ),
    ];
    for (name, change) in bad {
        let mut c = config();
        change(&mut c);
        assert!(
            matches!(c.validate(), Err(MembershipError::Config(_))),
            "{name} accepted"
        );
    }
}

/// With no broker to reach the member holds nothing, keeps retrying, and stops
/// promptly when dropped.
#[tokio::test]
async fn member_without_a_broker_holds_nothing_and_stops() {
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = attempts.clone();
    let connector = move |_addr: String| {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async { Err(ClientError::Closed) }
    };
    let mut c = config();
    c.retry_backoff = Duration::from_millis(10);
    c.retry_backoff_max = Duration::from_millis(20);
    let membership = Membership::start(c, connector, CancellationToken::new()).expect("start");
    let rx = membership.subscribe();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(attempts.load(std::sync::atomic::Ordering::Relaxed) >= 3);
    assert!(rx.borrow().shards.is_empty());
    assert_eq!(rx.borrow().generation, -1);
    let view = membership.describe();
    assert_eq!(view.state, "discovering");
    assert_eq!(view.last_heartbeat_age_ms, None);
    tokio::time::timeout(Duration::from_secs(2), membership.shutdown())
        .await
        .expect("shutdown is prompt");
}

#[test]
fn start_refuses_a_bad_config() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut c = config();
        c.shards = -1;
        let connector = |_addr: String| async { Err(ClientError::Closed) };
        assert!(Membership::start(c, connector, CancellationToken::new()).is_err());
    });
}

#[test]
fn members_joining_one_by_one_keep_consecutive_shards_spread() {
    // One member, then a second, then a third, as a fleet starts.
    let mut plan = assign_sticky(64, &fresh(&["a"]));
    for next in ["b", "c"] {
        let mut claims = claims_of(&plan, 1);
        claims.push(claim(next, &[], -1));
        plan = assign_sticky(64, &claims);
    }
    let holder = |shard: i32| {
        plan.iter()
            .find(|(_, owned)| owned.contains(&shard))
            .map(|(id, _)| id.clone())
    };
    // Any six consecutive shards (one 6-partition topic) span at least two members.
    for first in 0..64 {
        let members: BTreeSet<String> = (first..first + 6).filter_map(|s| holder(s % 64)).collect();
        assert!(members.len() >= 2, "shards {first}..+6 on {members:?}");
    }
}
