//! The replicator's decisions, without I/O: the state a command moves a mirror to,
//! which mirror partitions run here, which state a mirror shows, when a mirror's tasks
//! restart, and what a link change needs.
//! Every instance takes the same decisions from the same catalog and share.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::fleet::Share;
use super::link_config::LinkConfig;
use super::link_ops::is_connection_key;
use super::manager::Change;
use super::store::{LinkRecord, MirrorRecord, MirrorState};

/// The state `change` moves a mirror in `current` to, or why it does not apply.
/// A STOPPED mirror is writable for good: nothing makes it a mirror again.
pub(super) fn next_state(
    topic: &str,
    link: &str,
    change: Change,
    current: MirrorState,
) -> Result<MirrorState, String> {
    match (change, current) {
        (Change::Promote | Change::Failover, MirrorState::Stopped) => Err(format!(
            "Topic '{topic}' has already stopped its mirror from '{link}'"
        )),
        (Change::Pause, MirrorState::Active) => Ok(MirrorState::Paused),
        (Change::Resume, MirrorState::Paused) => Ok(MirrorState::Active),
        // Failover also ends a FAILED mirror: the operator takes the topic over.
        (Change::Failover, _) => Ok(MirrorState::Stopped),
        (Change::Promote, MirrorState::Active | MirrorState::Paused) => Ok(MirrorState::Stopped),
        (_, state) => Err(format!(
            "Topic '{topic}' is {}; {change:?} does not apply.",
            state.as_str()
        )),
    }
}

/// The parsed config of each usable link, parsed once per record.
pub(super) type LinkConfigs = BTreeMap<String, Arc<LinkConfig>>;

/// Parses each link's config once; a record that no longer validates has none.
pub(super) fn parse_links(links: &BTreeMap<String, LinkRecord>) -> LinkConfigs {
    links
        .iter()
        .filter_map(|(name, record)| {
            let config = LinkConfig::from_properties(record.config.clone()).ok()?;
            Some((name.clone(), Arc::new(config)))
        })
        .collect()
}

pub(super) fn link_paused(configs: &LinkConfigs, link: &str) -> bool {
    configs.get(link).is_some_and(|c| c.paused)
}

/// The partitions of a mirror copied here: an ACTIVE mirror of a usable, unpaused link,
/// on a replicating instance, the partitions of this instance's share.
pub(super) fn wanted_partitions(
    record: &MirrorRecord,
    configs: &LinkConfigs,
    share: &Share,
    replicating: bool,
) -> BTreeSet<i32> {
    let runs = replicating
        && record.state == MirrorState::Active
        && configs.contains_key(&record.link)
        // A paused link copies nothing; its mirrors show LINK_PAUSED.
        && !link_paused(configs, &record.link);
    if !runs {
        return BTreeSet::new();
    }
    (0..record.partitions)
        .filter(|p| share.owns_partition(&record.topic, *p))
        .collect()
}

/// The state users see: an ACTIVE mirror shows its link's trouble.
pub(super) fn shown_state(
    record: &MirrorRecord,
    link_paused: bool,
    source_unavailable: bool,
) -> &'static str {
    match record.state {
        MirrorState::Active if link_paused => "LINK_PAUSED",
        MirrorState::Active if source_unavailable => "SOURCE_UNAVAILABLE",
        state => state.as_str(),
    }
}

/// A new record of a mirror restarts its running tasks when what they copy changed
/// (state, link, source topic, fewer partitions); more partitions only add tasks.
pub(super) fn tasks_restart(before: &MirrorRecord, after: &MirrorRecord) -> bool {
    before.state != after.state
        || before.link != after.link
        || before.source_topic != after.source_topic
        || after.partitions < before.partitions
}

/// What a new record of a link means for what runs under it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct LinkChange {
    /// A new way to reach the source: new source connections.
    pub(super) connection: bool,
    /// Paused or resumed.
    pub(super) pause: bool,
}

impl LinkChange {
    pub(super) fn of(before: &LinkRecord, now: &LinkRecord) -> Self {
        if before.config == now.config {
            return Self::default();
        }
        let connection = before
            .config
            .keys()
            .chain(now.config.keys())
            .any(|k| is_connection_key(k) && before.config.get(k) != now.config.get(k));
        let paused = |r: &LinkRecord| {
            LinkConfig::from_properties(r.config.clone())
                .map(|c| c.paused)
                .ok()
        };
        Self {
            connection,
            pause: paused(before) != paused(now),
        }
    }

    /// The link's mirror tasks restart (they resume where the destination ends).
    pub(super) fn restarts_tasks(&self) -> bool {
        self.connection || self.pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::membership::Assignment;

    fn link(config: &[(&str, &str)]) -> LinkRecord {
        LinkRecord {
            name: "l".into(),
            link_id: "id".into(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            source_cluster_id: "src".into(),
            created_ms: 0,
            version: 1,
        }
    }

    fn mirror(state: MirrorState, partitions: i32) -> MirrorRecord {
        MirrorRecord {
            topic: "m".into(),
            source_topic: "m".into(),
            link: "l".into(),
            partitions,
            state,
            reason: None,
            state_time_ms: 0,
            source_topic_id: None,
            overrides: BTreeMap::new(),
            start_offsets: vec![],
            version: 1,
            producer_id: Some(7),
            producer_epoch: Some(0),
            throttled_rate: None,
            last_mirrored: Vec::new(),
            restoring: None,
            reversing: None,
            topic_pending: false,
        }
    }

    fn every_shard(count: i32) -> Share {
        let assignment = Assignment {
            generation: 1,
            member_id: "me".into(),
            shards: (0..count).collect(),
            members: 1,
            leader: true,
        };
        Share::new(&assignment, count)
    }

    fn links(config: &[(&str, &str)]) -> LinkConfigs {
        parse_links(&BTreeMap::from([("l".to_string(), link(config))]))
    }

    #[test]
    fn commands_move_mirrors_only_along_the_allowed_edges() {
        use MirrorState::*;
        let next = |change, current| next_state("m", "l", change, current);
        assert_eq!(next(Change::Pause, Active), Ok(Paused));
        assert_eq!(next(Change::Resume, Paused), Ok(Active));
        for from in [Active, Paused] {
            assert_eq!(next(Change::Promote, from), Ok(Stopped));
        }
        for from in [Active, Paused, Failed, PendingStopped] {
            assert_eq!(next(Change::Failover, from), Ok(Stopped));
        }
        let refused = [
            (Change::Pause, Paused),
            (Change::Pause, Failed),
            (Change::Resume, Active),
            (Change::Resume, Stopped),
            (Change::Promote, Failed),
        ];
        for (change, from) in refused {
            let e = next(change, from).unwrap_err();
            assert!(
                e.contains("does not apply"),
                "{change:?} from {from:?}: {e}"
            );
        }
        for change in [Change::Promote, Change::Failover] {
            let e = next(change, Stopped).unwrap_err();
            assert!(e.contains("already stopped"), "{e}");
        }
    }

    #[test]
    fn an_active_mirror_runs_every_partition_of_a_whole_share() {
        let configs = links(&[("bootstrap.servers", "h:1")]);
        let wanted = wanted_partitions(
            &mirror(MirrorState::Active, 3),
            &configs,
            &every_shard(8),
            true,
        );
        assert_eq!(wanted, BTreeSet::from([0, 1, 2]));
    }

    #[test]
    fn nothing_runs_without_replication_a_share_an_active_state_or_an_unpaused_link() {
        let configs = links(&[("bootstrap.servers", "h:1")]);
        let share = every_shard(8);
        let active = mirror(MirrorState::Active, 3);
        assert!(wanted_partitions(&active, &configs, &share, false).is_empty());
        assert!(wanted_partitions(&active, &configs, &Share::default(), true).is_empty());
        for state in [
            MirrorState::Paused,
            MirrorState::Stopped,
            MirrorState::Failed,
        ] {
            assert!(wanted_partitions(&mirror(state, 3), &configs, &share, true).is_empty());
        }
        let paused = links(&[
            ("bootstrap.servers", "h:1"),
            ("cluster.link.paused", "true"),
        ]);
        assert!(wanted_partitions(&active, &paused, &share, true).is_empty());
        // A link whose record no longer validates runs nothing either.
        let broken = links(&[("bootstrap.servers", "nohost")]);
        assert!(broken.is_empty());
        assert!(wanted_partitions(&active, &broken, &share, true).is_empty());
    }

    #[test]
    fn a_share_split_in_two_covers_every_partition_once() {
        let half = |shards: std::ops::Range<i32>| {
            let assignment = Assignment {
                generation: 3,
                member_id: "m".into(),
                shards: shards.collect(),
                members: 2,
                leader: false,
            };
            Share::new(&assignment, 8)
        };
        let configs = links(&[("bootstrap.servers", "h:1")]);
        let record = mirror(MirrorState::Active, 6);
        let a = wanted_partitions(&record, &configs, &half(0..4), true);
        let b = wanted_partitions(&record, &configs, &half(4..8), true);
        assert!(a.is_disjoint(&b));
        assert_eq!(a.union(&b).count(), 6);
    }

    #[test]
    fn an_active_mirror_shows_its_links_trouble_and_other_states_their_own() {
        let active = mirror(MirrorState::Active, 1);
        assert_eq!(shown_state(&active, false, false), "ACTIVE");
        assert_eq!(shown_state(&active, true, true), "LINK_PAUSED");
        assert_eq!(shown_state(&active, false, true), "SOURCE_UNAVAILABLE");
        let paused = mirror(MirrorState::Paused, 1);
        assert_eq!(shown_state(&paused, true, true), "PAUSED");
    }

    #[test]
    fn tasks_restart_when_what_they_copy_changes_not_when_partitions_grow() {
        let before = mirror(MirrorState::Active, 3);
        assert!(!tasks_restart(&before, &mirror(MirrorState::Active, 4)));
        assert!(tasks_restart(&before, &mirror(MirrorState::Active, 2)));
        assert!(tasks_restart(&before, &mirror(MirrorState::Paused, 3)));
        let mut moved = before.clone();
        moved.source_topic = "other".into();
        assert!(tasks_restart(&before, &moved));
        let mut described = before.clone();
        described.reason = Some("note".into());
        assert!(!tasks_restart(&before, &described));
    }

    #[test]
    fn a_link_change_restarts_tasks_only_for_connection_or_pause_keys() {
        let base = link(&[("bootstrap.servers", "h:1")]);
        assert_eq!(LinkChange::of(&base, &base), LinkChange::default());
        let tuned = link(&[
            ("bootstrap.servers", "h:1"),
            ("consumer.offset.sync.ms", "5000"),
        ]);
        assert!(!LinkChange::of(&base, &tuned).restarts_tasks());
        let moved = link(&[("bootstrap.servers", "h:2")]);
        let change = LinkChange::of(&base, &moved);
        assert!(change.connection && !change.pause);
        let paused = link(&[
            ("bootstrap.servers", "h:1"),
            ("cluster.link.paused", "true"),
        ]);
        let change = LinkChange::of(&base, &paused);
        assert!(change.pause && !change.connection);
    }
}
