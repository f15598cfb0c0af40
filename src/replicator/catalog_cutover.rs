//! The cut-over's records in the catalog (`cutover`): what a cut-over of a link is
//! doing, which instances confirmed its fence, and which instances are alive to be
//! asked. Like every record they come from the metadata topic, so every instance reads
//! the same fence, and whichever instance runs the link next resumes the cut-over where
//! the record says it is.
//!
//! - `cutover/<link>`: the link's latest cut-over, versioned like links and mirrors
//!   (of two writers that read the same version, the first wins).
//! - `cutover-ack/<link>/<instance>`: that instance holds the fence of cut-over `id`.
//! - `instance/<id>`: a heartbeat. The cut-over's driver stops waiting for an instance
//!   whose heartbeat it has not seen change for a while (`cutover`); `LIVE_WITHIN_MS`
//!   is only what listings show. Records silent for `STALE_AFTER_MS` are deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{is_stale, parse_json, Catalog, Invalid, Outcome, Parsed};
use crate::registry::fence::Fence;

pub const CUTOVER_PREFIX: &str = "cutover/";
pub const CUTOVER_ACK_PREFIX: &str = "cutover-ack/";
pub const INSTANCE_PREFIX: &str = "instance/";
/// Most topics one cut-over may name (a mirror record's bound on partitions is larger;
/// a link with more mirrors than this is cut over in several runs).
pub const MAX_CUTOVER_TOPICS: usize = 1_000;
/// Most partitions one cut-over may hold the source's fenced end offsets of (so its
/// record stays well under the metadata topic's record limit).
pub const MAX_CUTOVER_PARTITIONS: usize = 50_000;
/// Most instances and confirmations kept; records past these are ignored by all alike.
pub const MAX_INSTANCES: usize = 1_024;
pub const MAX_ACKS: usize = 65_536;
/// An instance heartbeats every few seconds; silent this long, it is taken for gone.
pub const LIVE_WITHIN_MS: i64 = 12_000;
/// A heartbeat this old (by the wall clock) belongs to an instance long gone: its record
/// and its confirmations are deleted, so instance ids that never come back do not fill
/// the catalog's room.
pub const STALE_AFTER_MS: i64 = 600_000;

/// Where a cut-over is. The fence holds in `Fencing`, `Verifying` and `Syncing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CutoverStep {
    /// Step 1: waiting until the mirrors' lag is under the limit; nothing is held.
    WaitingForLag,
    /// Step 2: every instance parks Produce to the topics and confirms it does.
    Fencing,
    /// Step 3: the source's end offsets must stand still; the mirrors catch up.
    Verifying,
    /// Steps 4-5: final offset and config sync, promote; released when done.
    Syncing,
    /// A reverse only, after promoting: the fence is lifted, and the source topics on
    /// the link's cluster are made mirrors of the promoted ones (`reverse`).
    Reversing,
    Done,
    Aborted,
}

impl CutoverStep {
    pub fn fences(self) -> bool {
        matches!(self, Self::Fencing | Self::Verifying | Self::Syncing)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Aborted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WaitingForLag => "WAITING_FOR_LAG",
            Self::Fencing => "FENCING",
            Self::Verifying => "VERIFYING",
            Self::Syncing => "SYNCING",
            Self::Reversing => "REVERSING",
            Self::Done => "DONE",
            Self::Aborted => "ABORTED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CutoverRecord {
    /// Names this run of the cut-over; confirmations name it too.
    pub id: String,
    pub topics: Vec<String>,
    pub step: CutoverStep,
    pub max_lag_records: i64,
    /// How long the fence may hold before the cut-over aborts (and parked writes wait
    /// at most this long before a retriable answer).
    pub timeout_ms: u64,
    pub started_ms: i64,
    pub step_time_ms: i64,
    /// When the fence went up: its deadline is this plus `timeout_ms`.
    #[serde(default)]
    pub fenced_ms: Option<i64>,
    /// Why it aborted, or what is being waited for.
    #[serde(default)]
    pub reason: Option<String>,
    /// The source's end offsets once every instance held the fence, by mirror topic
    /// (index = partition): from then on they must not move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced_source_ends: Option<BTreeMap<String, Vec<i64>>>,
    /// Set by `mirrors --reverse-and-start-mirror` / `--reverse-and-pause-mirror`: the
    /// source topics on the link's cluster become mirrors of the promoted topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse: Option<Reverse>,
    pub version: u64,
}

/// What the source topic on the link's cluster becomes once its mirror here is promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reverse {
    /// An ACTIVE mirror: it copies from the promoted topic at once.
    Start,
    /// A PAUSED mirror: read-only, copying when resumed there.
    Pause,
}

impl CutoverRecord {
    pub fn deadline_ms(&self) -> Option<i64> {
        self.fenced_ms
            .map(|at| at.saturating_add(i64::try_from(self.timeout_ms).unwrap_or(i64::MAX)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AckRecord {
    pub id: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceRecord {
    pub heartbeat_ms: i64,
    pub started_ms: i64,
    pub replicating: bool,
}

/// The rest of a `cutover-ack/` key after the prefix.
pub fn ack_key(link: &str, instance: &str) -> String {
    format!("{link}/{instance}")
}

impl Catalog {
    pub fn cutovers(&self) -> &std::collections::BTreeMap<String, CutoverRecord> {
        &self.cutovers
    }

    pub fn cutover(&self, link: &str) -> Option<&CutoverRecord> {
        self.cutovers.get(link)
    }

    /// True when `instance` confirmed the fence of cut-over `id` of `link`.
    pub fn acked(&self, link: &str, instance: &str, id: &str) -> bool {
        self.acks
            .get(&ack_key(link, instance))
            .is_some_and(|a| a.id == id)
    }

    /// Instances whose last heartbeat is within `LIVE_WITHIN_MS` of `now_ms`.
    pub fn live_instances(&self, now_ms: i64) -> Vec<&str> {
        self.instances
            .iter()
            .filter(|(_, i)| now_ms.saturating_sub(i.heartbeat_ms) <= LIVE_WITHIN_MS)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    pub fn instances(&self) -> &std::collections::BTreeMap<String, InstanceRecord> {
        &self.instances
    }

    /// Keys (after the prefixes) of instances silent for `STALE_AFTER_MS`, each with its
    /// confirmations, at most `limit` instances.
    pub fn stale_instances(&self, now_ms: i64, limit: usize) -> Vec<(String, Vec<String>)> {
        self.instances
            .iter()
            .filter(|(_, i)| now_ms.saturating_sub(i.heartbeat_ms) > STALE_AFTER_MS)
            .take(limit)
            .map(|(id, _)| {
                let suffix = format!("/{id}");
                let acks = self
                    .acks
                    .keys()
                    .filter(|k| k.ends_with(&suffix))
                    .cloned()
                    .collect();
                (id.clone(), acks)
            })
            .collect()
    }

    /// Topics whose Produce every proxy parks: those of cut-overs in a fencing step.
    pub fn fenced(&self) -> HashMap<String, Fence> {
        let mut fenced = HashMap::new();
        for (link, c) in &self.cutovers {
            if !c.step.fences() {
                continue;
            }
            let fence = Fence {
                link: Arc::from(link.as_str()),
                timeout_ms: c.timeout_ms,
            };
            for topic in &c.topics {
                fenced.insert(topic.clone(), fence.clone());
            }
        }
        fenced
    }

    pub(super) fn cutover_version(&self, link: &str) -> Option<u64> {
        self.cutovers.get(link).map(|c| c.version)
    }

    pub(super) fn apply_cutover(&mut self, link: &str, key: &str, value: Option<&[u8]>) -> Outcome {
        match parse_json::<CutoverRecord>(key, value) {
            Parsed::Delete => {
                self.cutovers.remove(link);
                Outcome::Applied
            }
            Parsed::Record(record) | Parsed::Unopened(record, _) => {
                let ends = record.fenced_source_ends.as_ref();
                let partitions: usize = ends.map_or(0, |e| e.values().map(Vec::len).sum());
                if record.topics.len() > MAX_CUTOVER_TOPICS
                    || record.id.len() > 128
                    || partitions > MAX_CUTOVER_PARTITIONS
                {
                    return Outcome::Invalid(
                        Invalid::Json,
                        format!("{key}: {} topics", record.topics.len()),
                    );
                }
                if is_stale(record.version, self.cutover_version(link)) {
                    return Outcome::Stale;
                }
                self.cutovers.insert(link.to_string(), record);
                Outcome::Applied
            }
            Parsed::Bad(reason, detail) => Outcome::Invalid(reason, detail),
        }
    }

    pub(super) fn apply_ack(&mut self, rest: &str, key: &str, value: Option<&[u8]>) -> Outcome {
        match parse_json::<AckRecord>(key, value) {
            Parsed::Delete => {
                self.acks.remove(rest);
                Outcome::Applied
            }
            Parsed::Record(ack) | Parsed::Unopened(ack, _) => {
                if !self.acks.contains_key(rest) && self.acks.len() >= MAX_ACKS {
                    return Outcome::Ignored;
                }
                self.acks.insert(rest.to_string(), ack);
                Outcome::Applied
            }
            Parsed::Bad(reason, detail) => Outcome::Invalid(reason, detail),
        }
    }

    pub(super) fn apply_instance(&mut self, id: &str, key: &str, value: Option<&[u8]>) -> Outcome {
        match parse_json::<InstanceRecord>(key, value) {
            Parsed::Delete => {
                self.instances.remove(id);
                Outcome::Applied
            }
            Parsed::Record(instance) | Parsed::Unopened(instance, _) => {
                if !self.instances.contains_key(id) && self.instances.len() >= MAX_INSTANCES {
                    return Outcome::Ignored;
                }
                self.instances.insert(id.to_string(), instance);
                Outcome::Applied
            }
            Parsed::Bad(reason, detail) => Outcome::Invalid(reason, detail),
        }
    }
}
