//! The pure part of the fleet protocol, no I/O: the key → shard hash, the sticky
//! assignor the leader runs, and the ConsumerProtocol bytes carried in JoinGroup
//! (subscription) and SyncGroup (assignment). Everything decoded here came from
//! another member or the coordinator and is treated as untrusted.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::MembershipError;
use crate::kafka::admin::topic_name;

/// Subscription v2 carries owned partitions (v1) and the generation they were owned
/// in (v2), which settles two members claiming one shard, as Kafka's own cooperative
/// sticky assignor does.
pub const SUBSCRIPTION_VERSION: i16 = 2;
/// v0..v3 share one layout; v1 is what Kafka's tools have decoded since 2.4.
pub const ASSIGNMENT_VERSION: i16 = 1;
/// The newest ConsumerProtocol version the codec knows; newer ones decode as this one,
/// as Kafka does (later versions only append fields).
const NEWEST_VERSION: i16 = 3;
/// Far above a subscription or assignment of [`super::MAX_SHARDS`] shards.
pub const MAX_PROTOCOL_BYTES: usize = 1 << 20;
/// Our user data: a version, then the sender's shard count (and, in an assignment,
/// the generation's member count).
const USER_DATA_VERSION: i16 = 0;

/// Kafka's murmur2 (`Utils.murmur2`, seed 0x9747b28c), the hash of its default
/// partitioner: stable across processes and releases, unlike std's `RandomState`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    // Kafka mixes the length in as a Java int; keys are far below 2 GiB.
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The shard of `key` among `shards`: the partition Kafka's default partitioner picks
/// for that key in a topic of `shards` partitions. `shards` below 1 gives 0.
pub fn shard_of(key: &str, shards: i32) -> i32 {
    if shards < 1 {
        return 0;
    }
    (murmur2(key.as_bytes()) & 0x7fff_ffff) % shards
}

/// One member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberClaim {
    pub member_id: String,
    /// Shards the member held, from its subscription.
    pub owned: BTreeSet<i32>,
    /// Generation in which it held them (-1: unknown).
    pub generation: i32,
}

/// The sticky assignment of `shards` shards over `members`: every member gets
/// `shards / n` or one more; a member keeps as many of the shards it held as that
/// allows (the busiest holders get the extra shard); the rest go round-robin to the
/// members with room, in member id order. The same input gives the same output,
/// whatever the order of `members`. Two claims on one shard: the newer generation
/// wins, then the smaller member id. Claims outside `0..shards` are ignored, and a
/// repeated member id counts once.
pub fn assign_sticky(shards: i32, members: &[MemberClaim]) -> BTreeMap<String, BTreeSet<i32>> {
    let mut by_id: BTreeMap<&str, &MemberClaim> = BTreeMap::new();
    for m in members {
        by_id.entry(m.member_id.as_str()).or_insert(m);
    }
    let mut out: BTreeMap<String, BTreeSet<i32>> = by_id
        .keys()
        .map(|id| (id.to_string(), BTreeSet::new()))
        .collect();
    let n = by_id.len();
    if n == 0 || shards < 1 {
        return out;
    }

    // Each contested shard goes to one claimant.
    let mut holder: BTreeMap<i32, (&str, i32)> = BTreeMap::new();
    for (id, m) in &by_id {
        for &s in m.owned.iter().filter(|s| (0..shards).contains(*s)) {
            match holder.get(&s) {
                Some(&(_, generation)) if generation >= m.generation => {}
                _ => {
                    holder.insert(s, (id, m.generation));
                }
            }
        }
    }
    let mut claims: BTreeMap<&str, Vec<i32>> = by_id.keys().map(|id| (*id, Vec::new())).collect();
    for (s, (id, _)) in &holder {
        if let Some(list) = claims.get_mut(id) {
            list.push(*s);
        }
    }

    // Quotas: floor for all, the remainder to the members holding the most.
    let base = usize::try_from(shards).unwrap_or(0) / n;
    let extra = usize::try_from(shards).unwrap_or(0) % n;
    let mut by_claims: Vec<&str> = by_id.keys().copied().collect();
    by_claims.sort_by(|a, b| claims[b].len().cmp(&claims[a].len()).then(a.cmp(b)));
    let quota: BTreeMap<&str, usize> = by_claims
        .iter()
        .enumerate()
        .map(|(rank, id)| (*id, base + usize::from(rank < extra)))
        .collect();

    // Keep what fits, spread over what the member held (every other shard of a range,
    // not its lower half), so that consecutive shards (one topic's partitions) stay
    // spread over members; the rest joins the free pool.
    let mut kept: BTreeSet<i32> = BTreeSet::new();
    for (id, list) in &claims {
        let take = quota[id].min(list.len());
        let spread = (0..take).filter_map(|i| list.get(i * list.len() / take.max(1)).copied());
        let spread: Vec<i32> = spread.collect();
        if let Some(set) = out.get_mut(*id) {
            set.extend(spread.iter().copied());
        }
        kept.extend(spread);
    }
    let mut free = (0..shards).filter(|s| !kept.contains(s));
    let ids: Vec<&str> = by_id.keys().copied().collect();
    'fill: loop {
        let mut progressed = false;
        for id in &ids {
            let Some(set) = out.get_mut(*id) else {
                continue;
            };
            if set.len() < quota[id] {
                match free.next() {
                    Some(s) => {
                        set.insert(s);
                        progressed = true;
                    }
                    None => break 'fill,
                }
            }
        }
        if !progressed {
            break;
        }
    }
    out
}

/// A member's subscription as decoded from its JoinGroup metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub topics: Vec<String>,
    /// Partitions of `topic` the member says it holds (other topics are dropped).
    pub owned: BTreeSet<i32>,
    pub generation: i32,
    /// The member's shard count, when it sent our user data.
    pub shards: Option<i32>,
}

/// A member's assignment as decoded from its SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecodedAssignment {
    pub shards: BTreeSet<i32>,
    /// Members of the generation, as the leader counted them.
    pub members: Option<usize>,
    /// The leader's shard count.
    pub leader_shards: Option<i32>,
}

fn malformed(what: &'static str, reason: impl Into<String>) -> MembershipError {
    MembershipError::Malformed {
        what,
        reason: reason.into(),
    }
}

fn with_version(version: i16, body: &impl Encodable) -> Result<Bytes, MembershipError> {
    let size = body
        .compute_size(version)
        .map_err(|e| malformed("encoding", e.to_string()))?;
    let mut buf = BytesMut::with_capacity(2 + size);
    buf.put_i16(version);
    body.encode(&mut buf, version)
        .map_err(|e| malformed("encoding", e.to_string()))?;
    Ok(buf.freeze())
}

/// The version prefix of ConsumerProtocol bytes, clamped to what the codec knows.
fn read_version(what: &'static str, bytes: &mut Bytes) -> Result<i16, MembershipError> {
    if bytes.len() > MAX_PROTOCOL_BYTES {
        return Err(malformed(what, format!("{} bytes", bytes.len())));
    }
    if bytes.len() < 2 {
        return Err(malformed(what, "no version"));
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(malformed(what, format!("version {version}")));
    }
    Ok(version.min(NEWEST_VERSION))
}

fn user_data(shards: i32, members: Option<i32>) -> Bytes {
    let mut buf = BytesMut::with_capacity(10);
    buf.put_i16(USER_DATA_VERSION);
    buf.put_i32(shards);
    if let Some(members) = members {
        buf.put_i32(members);
    }
    buf.freeze()
}

/// (shards, members) from our user data; other senders' user data reads as nothing.
fn read_user_data(data: Option<&Bytes>) -> (Option<i32>, Option<i32>) {
    let Some(mut data) = data.cloned() else {
        return (None, None);
    };
    if data.len() < 6 || data.get_i16() != USER_DATA_VERSION {
        return (None, None);
    }
    let shards = data.get_i32();
    let members = (data.len() >= 4).then(|| data.get_i32());
    (Some(shards), members)
}

pub fn encode_subscription(
    topic: &str,
    shards: i32,
    owned: &BTreeSet<i32>,
    generation: i32,
) -> Result<Bytes, MembershipError> {
    let owned_partitions = if owned.is_empty() {
        Vec::new()
    } else {
        vec![OwnedTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(owned.iter().copied().collect())]
    };
    let body = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_string(topic.to_string())])
        .with_user_data(Some(user_data(shards, None)))
        .with_owned_partitions(owned_partitions)
        .with_generation_id(generation);
    with_version(SUBSCRIPTION_VERSION, &body)
}

/// Decodes a member's subscription; `topic` is the shards topic, `shards` bounds
/// the owned partitions kept.
pub fn decode_subscription(
    bytes: &Bytes,
    topic: &str,
    shards: i32,
) -> Result<Subscription, MembershipError> {
    const WHAT: &str = "subscription";
    let mut buf = bytes.clone();
    let version = read_version(WHAT, &mut buf)?;
    let body = ConsumerProtocolSubscription::decode(&mut buf, version)
        .map_err(|e| malformed(WHAT, e.to_string()))?;
    let owned = body
        .owned_partitions
        .iter()
        .filter(|t| t.topic.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter().copied())
        .filter(|p| (0..shards).contains(p))
        .collect();
    Ok(Subscription {
        topics: body.topics.iter().map(|t| t.as_str().to_string()).collect(),
        owned,
        generation: body.generation_id,
        shards: read_user_data(body.user_data.as_ref()).0,
    })
}

pub fn encode_assignment(
    topic: &str,
    assigned: &BTreeSet<i32>,
    shards: i32,
    members: i32,
) -> Result<Bytes, MembershipError> {
    let partitions = if assigned.is_empty() {
        Vec::new()
    } else {
        vec![AssignedTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(assigned.iter().copied().collect())]
    };
    let body = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(partitions)
        .with_user_data(Some(user_data(shards, Some(members))));
    with_version(ASSIGNMENT_VERSION, &body)
}

/// Decodes the assignment the leader sent us, strictly: only `topic`, only shards in
/// `0..shards`, each once. Empty bytes are an empty assignment (what the coordinator
/// sends a member the leader left out).
pub fn decode_assignment(
    bytes: &Bytes,
    topic: &str,
    shards: i32,
) -> Result<DecodedAssignment, MembershipError> {
    const WHAT: &str = "assignment";
    if bytes.is_empty() {
        return Ok(DecodedAssignment::default());
    }
    let mut buf = bytes.clone();
    let version = read_version(WHAT, &mut buf)?;
    let body = ConsumerProtocolAssignment::decode(&mut buf, version)
        .map_err(|e| malformed(WHAT, e.to_string()))?;
    let mut out = BTreeSet::new();
    for t in &body.assigned_partitions {
        if t.topic.0.as_str() != topic {
            return Err(malformed(
                WHAT,
                format!("topic '{}' is not the shards topic", t.topic.0.as_str()),
            ));
        }
        for &p in &t.partitions {
            if !(0..shards).contains(&p) {
                return Err(malformed(WHAT, format!("shard {p} outside 0..{shards}")));
            }
            if !out.insert(p) {
                return Err(malformed(WHAT, format!("shard {p} assigned twice")));
            }
        }
    }
    let (leader_shards, members) = read_user_data(body.user_data.as_ref());
    Ok(DecodedAssignment {
        shards: out,
        members: members.and_then(|m| usize::try_from(m).ok()),
        leader_shards,
    })
}
