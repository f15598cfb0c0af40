//! This instance's share of the replication work. Replicating instances on one
//! metadata topic are members of one consumer group (`kafka::membership`) over the
//! partitions of a small internal topic, the *shards*. A mirror's partition `p` maps to
//! shard `(murmur2("mirror/<topic>") + p) mod shards`, so one topic's partitions sit on
//! consecutive shards, which the assignor keeps spread over members; a link's jobs map
//! to `murmur2("link/<name>")`. An instance copies and runs what its shards cover.
//! Holding no assignment (joining, fenced, left) means running nothing.
//!
//! Two instances may briefly both run a partition around a rebalance; the conditional
//! appends (one producer id per mirror, sequences from offsets) keep that from writing
//! anything twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Destination;
use crate::config::ReplicatorConfig;
use crate::kafka::membership::{
    shard_of, Assignment, FleetMember, Membership, MembershipConfig, MembershipError,
    DEFAULT_SHARDS,
};

/// The shards topic of a metadata topic: internal (`_mirrorgate-` prefix) either way.
/// It only names the shards in the group's assignments (what `kafka-consumer-groups
/// --members` prints); the group works without it, so it is never created: 64
/// partitions per fleet would cost the destination more than they tell.
pub fn shards_topic(metadata_topic: &str) -> String {
    if metadata_topic.starts_with(crate::registry::INTERNAL_TOPIC_PREFIX) {
        format!("{metadata_topic}-shards")
    } else {
        format!(
            "{}shards-{metadata_topic}",
            crate::registry::INTERNAL_TOPIC_PREFIX
        )
    }
}

/// What this instance runs, frozen at one assignment.
#[derive(Debug, Clone, Default)]
pub struct Share {
    shards: Arc<BTreeSet<i32>>,
    count: i32,
    generation: i32,
}

impl Share {
    pub fn new(assignment: &Assignment, count: i32) -> Self {
        Self {
            shards: Arc::new(assignment.shards.clone()),
            count,
            generation: assignment.generation,
        }
    }

    pub fn owns_partition(&self, topic: &str, partition: i32) -> bool {
        if self.count < 1 {
            return false;
        }
        let first = i64::from(shard_of(&format!("mirror/{topic}"), self.count));
        let shard = (first + i64::from(partition)).rem_euclid(i64::from(self.count));
        self.shards.contains(&(shard as i32))
    }

    pub fn owns_link(&self, link: &str) -> bool {
        self.count > 0
            && self
                .shards
                .contains(&shard_of(&format!("link/{link}"), self.count))
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn shards(&self) -> &BTreeSet<i32> {
        &self.shards
    }
}

/// This instance as `/admin/fleet` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetView {
    /// The id this instance heartbeats and confirms cut-over fences under.
    pub instance_id: String,
    pub replicating: bool,
    /// Its group membership (none on an instance that does not replicate).
    pub member: Option<FleetMember>,
    /// Links whose jobs run here.
    pub links: Vec<String>,
    /// Mirror partitions copied here, as `topic-partition`.
    pub mirror_partitions: Vec<String>,
}

/// The running membership; dropping it leaves the group.
pub struct Fleet {
    membership: Membership,
    shards: i32,
}

impl Fleet {
    pub fn start(
        dest: Destination,
        config: &ReplicatorConfig,
        bootstrap_servers: Vec<String>,
        shutdown: &CancellationToken,
    ) -> Result<Self, MembershipError> {
        let session = Duration::from_millis(config.session_timeout_ms);
        let mut membership = MembershipConfig::new(
            &config.group_id(),
            "mirrorgate-replicator",
            bootstrap_servers,
        );
        membership.instance_id = config.instance_id.clone();
        membership.shards_topic = shards_topic(&config.metadata_topic);
        membership.shards = DEFAULT_SHARDS;
        membership.session_timeout = session;
        membership.heartbeat_interval = session / 3;
        // Members rejoin within a heartbeat of a rebalance starting; twice the session
        // leaves room for a slow one without fencing everybody.
        membership.rebalance_timeout = session * 2;
        let connector = move |addr: String| {
            let dest = dest.clone();
            async move { dest.connect(&addr).await }
        };
        let membership = Membership::start(membership, connector, shutdown.child_token())?;
        Ok(Self {
            membership,
            shards: DEFAULT_SHARDS,
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<Assignment> {
        self.membership.subscribe()
    }

    pub fn shards(&self) -> i32 {
        self.shards
    }

    pub fn describe(&self) -> FleetMember {
        self.membership.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_topics_are_internal_and_work_maps_to_one_shard_each() {
        assert_eq!(
            shards_topic("_mirrorgate-metadata"),
            "_mirrorgate-metadata-shards"
        );
        assert_eq!(shards_topic("ops.meta"), "_mirrorgate-shards-ops.meta");
        let all = Assignment {
            generation: 3,
            member_id: "m".into(),
            shards: (0..8).collect(),
            members: 1,
            leader: true,
        };
        let half = Assignment {
            shards: (0..4).collect(),
            ..all.clone()
        };
        let (all, half) = (Share::new(&all, 8), Share::new(&half, 8));
        // Consecutive partitions on consecutive shards: half of them here.
        let owned: usize = (0..200).filter(|p| half.owns_partition("t", *p)).count();
        assert!((0..200).all(|p| all.owns_partition("t", p)));
        assert_eq!(owned, 100);
        assert!(!Share::default().owns_link("l"));
        assert_eq!(all.generation(), 3);
    }
}
