//! Topic config sync: keeps the configs of each mirror topic in line with its source
//! topic, one `round` at a time (the link runs one every `topic.config.sync.ms`).
//!
//! Which keys follow the source:
//! - `ALWAYS_MIRRORED` keys always equal the source's: set, or deleted when the source
//!   does not set them. The proxy refuses to alter them on a mirror.
//! - `message.timestamp.type` is never copied: mirrorgate writes the source's
//!   timestamps itself, so a mirror stays CreateTime (LogAppendTime would restamp every
//!   copied batch). The proxy refuses to alter it on a mirror too.
//! - Throttled-replica lists name the source's brokers: never copied, never touched.
//! - Every other key follows the source, unless it was overridden at mirror creation
//!   (`--config`), or someone changed it on the mirror since the sync last wrote it.
//!
//! Operator changes are found by memory: `ConfigSync` remembers, per mirror and key,
//! the value it last wrote (or found already equal to the source's). A mirror value
//! that differs from it was set by someone else and is left alone from then on. To
//! hand a key back, set it to the source's value (or delete it where the source has
//! none): once equal, it follows again.
//!
//! The memory is stored in the metadata topic (`configs/<mirror>`) whenever it
//! changes, so the instance that runs the link next (after a restart or a rebalance)
//! starts from it. A mirror with no stored memory (its first round) adopts the keys that
//! already equal the source's and treats every other difference as an operator's
//! choice, kept: overwriting an operator's value cannot be undone, while a kept
//! difference is visible and can be handed back. Always-mirrored keys need no memory
//! and are corrected in the first round.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use anyhow::Context;

use super::source::{Source, SourceSettings};
use super::store;
use super::Destination;
use crate::config::DestinationConfig;
use crate::kafka::admin::{self, AdminError};
use crate::kafka::client::KafkaConnection;
use crate::kafka::kept::KeptConnection;

/// Topic configs a mirror always takes from its source, and that cannot be altered on
/// the mirror.
pub const ALWAYS_MIRRORED: &[&str] = &[
    "cleanup.policy",
    "max.message.bytes",
    "message.timestamp.difference.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
];

/// Always mirrored by the rules users know, but a mirror must keep CreateTime.
pub const TIMESTAMP_TYPE: &str = "message.timestamp.type";

/// Configs the destination never takes from the source: the timestamp type (above),
/// and throttled-replica lists, which name the source's brokers.
pub const NOT_COPIED: &[&str] = &[
    TIMESTAMP_TYPE,
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
];

/// True for the keys clients may not alter on a mirror topic.
pub fn is_locked_on_mirror(key: &str) -> bool {
    key == TIMESTAMP_TYPE || ALWAYS_MIRRORED.contains(&key)
}

/// One mirror topic to keep in line with its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfigs {
    pub source_topic: String,
    pub mirror_topic: String,
    /// Set at mirror creation: these keys no longer follow the source.
    pub overrides: BTreeMap<String, String>,
    /// The memory last stored in the metadata topic (by whichever instance ran it).
    pub synced: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSyncReport {
    /// Keys set or deleted on mirrors this round.
    pub changed: u64,
    /// One line per mirror that could not be synced; the others were.
    pub errors: Vec<String>,
}

/// What one mirror needs this round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Keys to set (`Some`) or delete (`None`) on the mirror.
    pub changes: BTreeMap<String, Option<String>>,
    /// The memory for this mirror once `changes` are applied.
    pub written: BTreeMap<String, String>,
}

/// The changes that bring `mirror` in line with `source` (both: the topics' own,
/// dynamic configs). `written` is the memory of the previous round for this mirror,
/// `None` on its first round (see the module doc).
pub fn plan(
    source: &BTreeMap<String, String>,
    mirror: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
    written: Option<&BTreeMap<String, String>>,
) -> Plan {
    let mut plan = Plan::default();
    let keys: BTreeSet<&String> = source
        .keys()
        .chain(mirror.keys())
        .chain(written.into_iter().flat_map(|w| w.keys()))
        .collect();
    for key in keys {
        if NOT_COPIED.contains(&key.as_str()) {
            continue;
        }
        let (wanted, current) = (source.get(key), mirror.get(key));
        if ALWAYS_MIRRORED.contains(&key.as_str()) {
            if wanted != current {
                plan.changes.insert(key.clone(), wanted.cloned());
            }
            continue;
        }
        if overrides.contains_key(key) {
            continue;
        }
        let follows = wanted == current || written.is_some_and(|w| w.get(key) == current);
        let remembered = if follows {
            if wanted != current {
                plan.changes.insert(key.clone(), wanted.cloned());
            }
            wanted
        } else {
            // Someone else's value: keep remembering ours, so it stays theirs.
            match written {
                Some(w) => w.get(key),
                None => wanted,
            }
        };
        if let Some(value) = remembered {
            plan.written.insert(key.clone(), value.clone());
        }
    }
    plan
}

/// Config sync for the mirrors of one link; keeps its memory between rounds.
#[derive(Debug, Default)]
pub struct ConfigSync {
    /// Per mirror topic: the values of following keys as last written or adopted.
    written: HashMap<String, BTreeMap<String, String>>,
    /// Kept from one round to the next (a round every few seconds).
    source_conn: KeptConnection<SourceSettings>,
    dest_conn: KeptConnection<DestinationConfig>,
}

type Described = HashMap<String, Result<BTreeMap<String, String>, AdminError>>;

impl ConfigSync {
    pub fn new() -> Self {
        Self::default()
    }

    /// Brings every mirror in line with its source. A mirror that cannot be read or
    /// altered is reported in `errors` and the others are still synced; an error is
    /// returned only when a cluster cannot be reached at all. `still_mirrored` is asked
    /// just before writing: a topic promoted meanwhile is not written.
    pub async fn round(
        &mut self,
        source: &Source,
        dest: &Destination,
        link: &str,
        mirrors: &[MirrorConfigs],
        still_mirrored: &(dyn Fn(&str) -> bool + Sync),
    ) -> anyhow::Result<ConfigSyncReport> {
        let result = self.sync(source, dest, link, mirrors, still_mirrored).await;
        let errors = match &result {
            Ok(report) => {
                metrics::counter!("mirrorgate_config_sync_changes_total", "link" => link.to_string())
                    .increment(report.changed);
                report.errors.len() as u64
            }
            Err(_) => 1,
        };
        metrics::counter!("mirrorgate_config_sync_errors_total", "link" => link.to_string())
            .increment(errors);
        result
    }

    async fn sync(
        &mut self,
        source: &Source,
        dest: &Destination,
        link: &str,
        mirrors: &[MirrorConfigs],
        still_mirrored: &(dyn Fn(&str) -> bool + Sync),
    ) -> anyhow::Result<ConfigSyncReport> {
        let listed: HashSet<&str> = mirrors.iter().map(|m| m.mirror_topic.as_str()).collect();
        self.written
            .retain(|topic, _| listed.contains(topic.as_str()));
        let mut report = ConfigSyncReport::default();
        if mirrors.is_empty() {
            return Ok(report);
        }
        let source_configs = self
            .source_conn
            .call(
                source.settings(),
                source.connect_any(),
                |mut conn| async move {
                    let described =
                        describe(&mut conn, mirrors.iter().map(|m| &m.source_topic)).await;
                    (conn, described)
                },
            )
            .await
            .context("config sync: describe source topic configs")?;
        let mirror_configs = self
            .dest_conn
            .call(dest.settings(), dest.connect_any(), |mut conn| async move {
                let described = describe(&mut conn, mirrors.iter().map(|m| &m.mirror_topic)).await;
                (conn, described)
            })
            .await
            .context("config sync: describe mirror topic configs")?;

        let mut plans: HashMap<String, Plan> = HashMap::new();
        for mirror in mirrors {
            let topic = &mirror.mirror_topic;
            let found = configs_of(&source_configs, &mirror.source_topic)
                .map_err(|e| format!("source topic '{}': {e}", mirror.source_topic))
                .and_then(|s| {
                    configs_of(&mirror_configs, topic)
                        .map(|m| (s, m))
                        .map_err(|e| format!("mirror topic '{topic}': {e}"))
                });
            let (source, current) = match found {
                Ok(both) => both,
                Err(e) => {
                    report.errors.push(e);
                    continue;
                }
            };
            let memory = self.written.get(topic).or(mirror.synced.as_ref());
            let plan = plan(source, current, &mirror.overrides, memory);
            if plan.changes.is_empty() {
                self.written.insert(topic.clone(), plan.written);
            } else {
                plans.insert(topic.clone(), plan);
            }
        }
        plans.retain(|topic, _| still_mirrored(topic));
        if !plans.is_empty() {
            self.apply(dest, link, plans, &mut report).await?;
        }
        self.store(dest, mirrors, &mut report).await;
        Ok(report)
    }

    /// Writes the memory of every mirror whose stored one differs.
    async fn store(
        &mut self,
        dest: &Destination,
        mirrors: &[MirrorConfigs],
        report: &mut ConfigSyncReport,
    ) {
        for mirror in mirrors {
            let topic = &mirror.mirror_topic;
            let Some(written) = self.written.get(topic) else {
                continue;
            };
            if mirror.synced.as_ref() == Some(written) {
                continue;
            }
            if let Err(e) = store::put_synced_configs(dest, topic, written).await {
                report.errors.push(format!(
                    "mirror topic '{topic}': storing the sync's memory: {e}"
                ));
            }
        }
    }

    async fn apply(
        &mut self,
        dest: &Destination,
        link: &str,
        mut plans: HashMap<String, Plan>,
        report: &mut ConfigSyncReport,
    ) -> anyhow::Result<()> {
        let changes: Vec<(String, BTreeMap<String, Option<String>>)> = plans
            .iter()
            .map(|(topic, plan)| (topic.clone(), plan.changes.clone()))
            .collect();
        let changes = changes.as_slice();
        let results = self
            .dest_conn
            .call(dest.settings(), dest.connect_any(), |mut conn| async move {
                let altered = admin::alter_topic_configs(&mut conn, changes).await;
                (conn, altered)
            })
            .await
            .context("config sync: alter mirror topic configs")?;
        for (topic, result) in results {
            let Some(plan) = plans.remove(&topic) else {
                continue;
            };
            match result {
                Ok(()) => {
                    tracing::info!(
                        link,
                        topic,
                        keys = ?plan.changes.keys().collect::<Vec<_>>(),
                        "mirror topic configs synced from the source"
                    );
                    report.changed += plan.changes.len() as u64;
                    self.written.insert(topic, plan.written);
                }
                // The memory stays as it was, so the same change is tried next round.
                Err(e) => report.errors.push(format!("mirror topic '{topic}': {e}")),
            }
        }
        for topic in plans.into_keys() {
            report.errors.push(format!(
                "mirror topic '{topic}': no answer to the config change"
            ));
        }
        Ok(())
    }
}

/// DescribeConfigs of each distinct topic, keyed by topic.
async fn describe(
    conn: &mut KafkaConnection,
    topics: impl Iterator<Item = &String>,
) -> anyhow::Result<Described> {
    let names: BTreeSet<&str> = topics.map(String::as_str).collect();
    let names: Vec<&str> = names.into_iter().collect();
    Ok(admin::describe_topic_configs(conn, &names)
        .await?
        .into_iter()
        .map(|(topic, configs)| (topic, configs.map(|c| c.into_iter().collect())))
        .collect())
}

fn configs_of<'a>(
    described: &'a Described,
    topic: &str,
) -> Result<&'a BTreeMap<String, String>, String> {
    match described.get(topic) {
        Some(Ok(configs)) => Ok(configs),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no answer to DescribeConfigs".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn set(key: &str, value: &str) -> (String, Option<String>) {
        (key.to_string(), Some(value.to_string()))
    }

    fn delete(key: &str) -> (String, Option<String>) {
        (key.to_string(), None)
    }

    #[test]
    fn always_mirrored_keys_follow_the_source_even_when_overridden() {
        let source = map(&[("cleanup.policy", "compact")]);
        let mirror = map(&[("cleanup.policy", "delete"), ("max.message.bytes", "999")]);
        let overrides = map(&[("cleanup.policy", "delete")]);
        let written = map(&[]);
        for memory in [None, Some(&written)] {
            let plan = plan(&source, &mirror, &overrides, memory);
            assert_eq!(
                plan.changes,
                BTreeMap::from([
                    set("cleanup.policy", "compact"),
                    delete("max.message.bytes")
                ])
            );
            assert!(
                plan.written.is_empty(),
                "always-mirrored keys need no memory"
            );
        }
    }

    #[test]
    fn timestamp_type_and_throttles_are_never_touched() {
        let source = map(&[
            ("message.timestamp.type", "LogAppendTime"),
            ("leader.replication.throttled.replicas", "0:1"),
        ]);
        let mirror = map(&[("follower.replication.throttled.replicas", "0:2")]);
        let plan = plan(&source, &mirror, &map(&[]), Some(&map(&[])));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn other_keys_follow_the_source_while_the_mirror_has_what_was_written() {
        let written = map(&[("retention.ms", "1000"), ("segment.ms", "60000")]);
        let mirror = written.clone();
        let source = map(&[
            ("retention.ms", "2000"),
            ("segment.ms", "60000"),
            ("compression.type", "zstd"),
        ]);
        let plan = plan(&source, &mirror, &map(&[]), Some(&written));
        assert_eq!(
            plan.changes,
            BTreeMap::from([set("compression.type", "zstd"), set("retention.ms", "2000")])
        );
        assert_eq!(plan.written, source);
    }

    #[test]
    fn an_override_is_kept_while_the_source_changes_or_drops_the_key() {
        let overrides = map(&[("retention.ms", "5000")]);
        let mirror = map(&[("retention.ms", "5000")]);
        for source in [map(&[("retention.ms", "9000")]), map(&[])] {
            let plan = plan(&source, &mirror, &overrides, Some(&map(&[])));
            assert!(plan.changes.is_empty(), "{source:?}: {plan:?}");
            assert!(plan.written.is_empty());
        }
    }

    #[test]
    fn an_operator_change_is_kept_until_it_equals_the_source_again() {
        let written = map(&[("retention.ms", "1000")]);
        let operator = map(&[("retention.ms", "7000")]);
        let source = map(&[("retention.ms", "3000")]);
        let kept = plan(&source, &operator, &map(&[]), Some(&written));
        assert!(kept.changes.is_empty());
        assert_eq!(kept.written, written, "still remembers what the sync wrote");

        // An operator's key the source never had is kept too.
        let extra = map(&[("retention.ms", "1000"), ("segment.ms", "10")]);
        let kept = plan(
            &map(&[("retention.ms", "1000")]),
            &extra,
            &map(&[]),
            Some(&written),
        );
        assert!(kept.changes.is_empty());

        // Set back to the source's value: the key follows the source again.
        let handed_back = plan(&source, &source, &map(&[]), Some(&written));
        assert!(handed_back.changes.is_empty());
        assert_eq!(handed_back.written, source);
        let next = plan(
            &map(&[("retention.ms", "4000")]),
            &source,
            &map(&[]),
            Some(&handed_back.written),
        );
        assert_eq!(next.changes, BTreeMap::from([set("retention.ms", "4000")]));
    }

    #[test]
    fn a_key_deleted_on_the_source_is_deleted_on_the_mirror_unless_overridden() {
        let written = map(&[("retention.ms", "1000"), ("segment.ms", "60000")]);
        let mirror = written.clone();
        let source = map(&[("segment.ms", "60000")]);
        let plan_all = plan(&source, &mirror, &map(&[]), Some(&written));
        assert_eq!(plan_all.changes, BTreeMap::from([delete("retention.ms")]));
        assert_eq!(plan_all.written, source);

        let overrides = map(&[("retention.ms", "1000")]);
        let plan_kept = plan(&source, &mirror, &overrides, Some(&written));
        assert!(plan_kept.changes.is_empty());
    }

    #[test]
    fn the_first_round_adopts_equal_keys_and_keeps_differences() {
        let source = map(&[("retention.ms", "3000"), ("segment.ms", "60000")]);
        let mirror = map(&[("retention.ms", "7000"), ("segment.ms", "60000")]);
        let first = plan(&source, &mirror, &map(&[]), None);
        assert!(first.changes.is_empty(), "{first:?}");
        // The next round still sees the difference as the operator's.
        let second = plan(&source, &mirror, &map(&[]), Some(&first.written));
        assert!(second.changes.is_empty(), "{second:?}");
        // An adopted key follows from then on.
        let source = map(&[("retention.ms", "3000"), ("segment.ms", "120000")]);
        let third = plan(&source, &mirror, &map(&[]), Some(&second.written));
        assert_eq!(third.changes, BTreeMap::from([set("segment.ms", "120000")]));
    }

    #[test]
    fn locked_keys() {
        assert!(is_locked_on_mirror("cleanup.policy"));
        assert!(is_locked_on_mirror("message.timestamp.type"));
        assert!(!is_locked_on_mirror("retention.ms"));
        assert!(!is_locked_on_mirror(
            "leader.replication.throttled.replicas"
        ));
    }
}
