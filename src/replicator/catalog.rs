//! The catalog: every cluster link and mirror topic as the metadata topic says, built
//! record by record in log order. No I/O here: every instance that reads the same log
//! builds the same catalog, and the read-only set every proxy enforces comes from it.
//!
//! Conflicts: each record carries a version per key, one more than the version its
//! writer read. A record applies only when it is newer than the one it replaces, so of
//! two writers that both read version n, the first in the log wins and the other's
//! record is stale (its writer sees that and answers 409). Version 0 marks records
//! written before versions existed; they always apply. A STOPPED mirror stays STOPPED:
//! no record can make a promoted topic read-only again.
//!
//! Nothing in the topic is trusted: a record that does not parse, claims absurd sizes
//! or carries credentials this instance cannot open is kept as a *problem* of its key:
//! the link shows FAILED with the reason, and a mirror named by a bad record stays
//! read-only.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::acl_sync::MAX_SYNCED_ACLS;
use super::link_config::ProduceMode;
use super::secrets::{open_config, Sealer};
use super::store::{LinkRecord, MirrorRecord, MirrorState};
use crate::kafka::acls::AclBinding;
use crate::registry::forward::ForwardTarget;
pub use cutover::{
    ack_key, AckRecord, CutoverRecord, CutoverStep, InstanceRecord, Reverse, CUTOVER_ACK_PREFIX,
    CUTOVER_PREFIX, INSTANCE_PREFIX, MAX_CUTOVER_PARTITIONS, MAX_CUTOVER_TOPICS,
};

#[path = "catalog_cutover.rs"]
mod cutover;

/// Longest key: `mirror/` plus a topic name (Kafka allows 249 characters), with room.
const MAX_KEY_BYTES: usize = 512;
/// Longest value: Kafka's default `max.message.bytes`; real ones are a few kilobytes.
const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most partitions a mirror record may claim. Kafka has no per-topic maximum, but
/// clusters are sized for a few hundred thousand partitions in all; a record claiming
/// more than this is forged or corrupt, and starting that many tasks would exhaust
/// memory.
pub const MAX_MIRROR_PARTITIONS: i32 = 100_000;

pub const LINK_PREFIX: &str = "link/";
pub const MIRROR_PREFIX: &str = "mirror/";
/// The config sync's memory of a mirror (`config_sync`): the values it last wrote or
/// adopted, so whichever instance runs the link next tells source changes from
/// operator changes. Last write wins; only the link's owner writes it.
pub const SYNCED_CONFIGS_PREFIX: &str = "configs/";
/// The ACL sync's memory of a link (`acl_sync`): `acls/<link>` holds the ACLs the link
/// created on the destination, the only ones it ever deletes there. Last write wins;
/// only the link's owner writes it.
pub const ACLS_PREFIX: &str = "acls/";
/// Forward mode's producer ids (`produce_forward`): `producer/<link>/<client producer
/// id>/<client epoch>` holds the source producer id standing for that client, so every
/// instance forwards a producer's batches with the same one. The first record of a key
/// wins; later ones are stale.
pub const PRODUCER_PREFIX: &str = "producer/";
/// Most producer records kept; past this a new one is ignored (by every instance alike)
/// and its writer keeps the id to itself.
pub const MAX_PRODUCER_RECORDS: usize = 65_536;

/// Why a metadata record was not applied; the label of
/// `mirrorgate_metadata_records_invalid_total` (a fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Batch,
    Key,
    ValueSize,
    Json,
    Partitions,
    StartOffsets,
    LastMirrored,
    SealedConfig,
}

impl Invalid {
    pub fn label(self) -> &'static str {
        match self {
            Invalid::Batch => "batch",
            Invalid::Key => "key",
            Invalid::ValueSize => "value_size",
            Invalid::Json => "json",
            Invalid::Partitions => "partitions",
            Invalid::StartOffsets => "start_offsets",
            Invalid::LastMirrored => "last_mirrored",
            Invalid::SealedConfig => "sealed_config",
        }
    }
}

/// What applying one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Older than (or as old as) the record it would replace: a lost race.
    Stale,
    /// A key of no kind we know (a newer version's, perhaps): left alone.
    Ignored,
    Invalid(Invalid, String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkEntry {
    /// The latest readable record, its config opened.
    pub record: Option<LinkRecord>,
    /// Why the latest record of the link could not be used: the link does not run and
    /// shows FAILED with this reason.
    pub problem: Option<String>,
}

impl LinkEntry {
    /// The link as it can run: readable and without a problem.
    pub fn usable(&self) -> Option<&LinkRecord> {
        self.record.as_ref().filter(|_| self.problem.is_none())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorEntry {
    pub record: Option<MirrorRecord>,
    /// Why the latest record of the mirror could not be read; the topic stays
    /// read-only (unless it was already STOPPED).
    pub problem: Option<String>,
}

impl MirrorEntry {
    /// Read-only in every state but STOPPED, and whenever the state is unknown.
    pub fn is_read_only(&self) -> bool {
        self.record
            .as_ref()
            .is_none_or(|r| r.state != MirrorState::Stopped)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    // The large maps are shared between a catalog and its clones until one of them
    // changes (`Arc::make_mut`): every view the feed publishes is a clone, and most
    // bring only heartbeats, which touch `instances` alone.
    links: Arc<BTreeMap<String, LinkEntry>>,
    mirrors: Arc<BTreeMap<String, MirrorEntry>>,
    synced_configs: Arc<BTreeMap<String, BTreeMap<String, String>>>,
    synced_acls: Arc<BTreeMap<String, BTreeSet<AclBinding>>>,
    /// `producer/` records by the rest of their key.
    producers: Arc<BTreeMap<String, SourceProducer>>,
    /// How many of `producers` are transactional.
    transactional_producers: usize,
    /// The cut-over's records (`catalog_cutover`): by link, by `<link>/<instance>`, by
    /// instance id.
    cutovers: BTreeMap<String, CutoverRecord>,
    acks: BTreeMap<String, AckRecord>,
    instances: BTreeMap<String, InstanceRecord>,
    /// See `revision`; not part of the content.
    revision: u64,
}

/// The content only: two instances folding the same records hold equal catalogs with
/// different revisions.
impl PartialEq for Catalog {
    fn eq(&self, other: &Self) -> bool {
        self.links == other.links
            && self.mirrors == other.mirrors
            && self.synced_configs == other.synced_configs
            && self.synced_acls == other.synced_acls
            && self.producers == other.producers
            && self.transactional_producers == other.transactional_producers
            && self.cutovers == other.cutovers
            && self.acks == other.acks
            && self.instances == other.instances
    }
}
impl Eq for Catalog {}

/// Revisions are drawn from one counter per process, so a catalog rebuilt from the log
/// start never repeats the number of an older one.
static NEXT_REVISION: AtomicU64 = AtomicU64::new(1);

/// A source producer id and epoch, as a `producer/` record holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceProducer {
    pub id: i64,
    pub epoch: i16,
    /// Set for a transactional producer: its transactions run on the source's
    /// coordinator under this id (`replicator::txn_forward`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional_id: Option<String>,
}

/// Longest transactional id a `producer/` record may hold (Kafka's own limit is the
/// string length, 32,767 bytes).
pub const MAX_TRANSACTIONAL_ID: usize = 32_767;

/// The rest of a `producer/` key after the prefix.
pub fn producer_key(link: &str, client_id: i64, client_epoch: i16) -> String {
    format!("{link}/{client_id}/{client_epoch}")
}

impl Catalog {
    /// Changes with every record applied except instance heartbeats, which every
    /// instance writes every few seconds: equal revisions mean the same links, mirrors,
    /// syncs, producers and cut-overs, so whoever acts on those alone (the proxy's
    /// read-only set, the controller) can skip a view that only brought heartbeats,
    /// without comparing the whole catalog. 0 only for a catalog that never applied one.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn links(&self) -> &BTreeMap<String, LinkEntry> {
        &self.links
    }

    pub fn mirrors(&self) -> &BTreeMap<String, MirrorEntry> {
        &self.mirrors
    }

    pub fn link(&self, name: &str) -> Option<&LinkEntry> {
        self.links.get(name)
    }

    pub fn mirror(&self, topic: &str) -> Option<&MirrorEntry> {
        self.mirrors.get(topic)
    }

    /// The ACLs link `link` created on the destination (its ACL sync's memory).
    pub fn synced_acls(&self, link: &str) -> Option<&BTreeSet<AclBinding>> {
        self.synced_acls.get(link)
    }

    /// The config sync's stored memory of mirror `topic`.
    pub fn synced_configs(&self, topic: &str) -> Option<&BTreeMap<String, String>> {
        self.synced_configs.get(topic)
    }

    /// The source producer standing for a client's producer in forward mode.
    pub fn source_producer(
        &self,
        link: &str,
        client_id: i64,
        client_epoch: i16,
    ) -> Option<SourceProducer> {
        self.producers
            .get(&producer_key(link, client_id, client_epoch))
            .cloned()
    }

    /// The `producer/` records of `link`, by the rest of their key.
    pub fn producer_keys(&self, link: &str) -> Vec<String> {
        let prefix = format!("{link}/");
        self.producers
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// True when some client producer's transactions are forwarded to a source: the
    /// proxy then checks every transactional request for them.
    pub fn has_transactional_producers(&self) -> bool {
        self.transactional_producers > 0
    }

    /// The latest source session of each transactional id forwarded through `link`
    /// (highest source epoch): what a cut-over of the link must close on the source.
    pub fn transactional_sessions(&self, link: &str) -> Vec<(String, SourceProducer)> {
        let prefix = format!("{link}/");
        let mut latest: BTreeMap<&str, &SourceProducer> = BTreeMap::new();
        for (key, producer) in self.producers.range(prefix.clone()..) {
            if !key.starts_with(&prefix) {
                break;
            }
            let Some(txn) = producer.transactional_id.as_deref() else {
                continue;
            };
            let newer = latest
                .get(txn)
                .is_none_or(|seen| (seen.id, seen.epoch) < (producer.id, producer.epoch));
            if newer {
                latest.insert(txn, producer);
            }
        }
        latest
            .into_iter()
            .map(|(txn, p)| (txn.to_string(), p.clone()))
            .collect()
    }

    /// The topics clients may not write to.
    pub fn read_only(&self) -> HashSet<String> {
        self.mirrors
            .iter()
            .filter(|(_, m)| m.is_read_only())
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    /// The mirrors whose Produce the proxy forwards to the source: ACTIVE, of a usable
    /// link in `mirror.produce.mode=forward`. Every other mirror is refused.
    pub fn forwarded(&self) -> HashMap<String, ForwardTarget> {
        self.mirrors
            .iter()
            .filter_map(|(topic, m)| {
                let record = m.record.as_ref().filter(|_| m.problem.is_none())?;
                if record.state != MirrorState::Active {
                    return None;
                }
                let link = self.links.get(&record.link)?.usable()?;
                (ProduceMode::of(&link.config) == ProduceMode::Forward).then(|| {
                    let target = ForwardTarget {
                        link: Arc::from(record.link.as_str()),
                        source_topic: Arc::from(record.source_topic.as_str()),
                    };
                    (topic.clone(), target)
                })
            })
            .collect()
    }

    /// The version a writer puts on its next record for `key`.
    pub fn next_version(&self, key: &str) -> u64 {
        let current = if let Some(name) = key.strip_prefix(LINK_PREFIX) {
            self.links
                .get(name)
                .and_then(|l| l.record.as_ref())
                .map(|r| r.version)
        } else if let Some(topic) = key.strip_prefix(MIRROR_PREFIX) {
            self.mirrors
                .get(topic)
                .and_then(|m| m.record.as_ref())
                .map(|r| r.version)
        } else if let Some(link) = key.strip_prefix(CUTOVER_PREFIX) {
            self.cutover_version(link)
        } else {
            None
        };
        current.unwrap_or(0) + 1
    }

    /// Applies one record of the metadata topic; a null value deletes.
    pub fn apply(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        sealer: Option<&Sealer>,
    ) -> Outcome {
        let key = key.unwrap_or_default();
        if key.len() > MAX_KEY_BYTES {
            return Outcome::Invalid(Invalid::Key, format!("key of {} bytes", key.len()));
        }
        let Ok(key) = std::str::from_utf8(key) else {
            return Outcome::Invalid(Invalid::Key, "key is not UTF-8".into());
        };
        let outcome = if let Some(name) = key.strip_prefix(LINK_PREFIX) {
            let parsed = parse_link(key, value, sealer);
            self.apply_link(name, parsed)
        } else if let Some(topic) = key.strip_prefix(MIRROR_PREFIX) {
            let parsed = parse_mirror(key, value);
            self.apply_mirror(topic, parsed)
        } else if let Some(topic) = key.strip_prefix(SYNCED_CONFIGS_PREFIX) {
            self.apply_synced_configs(topic, parse_synced_configs(key, value))
        } else if let Some(link) = key.strip_prefix(ACLS_PREFIX) {
            self.apply_synced_acls(link, parse_synced_acls(key, value))
        } else if let Some(rest) = key.strip_prefix(PRODUCER_PREFIX) {
            self.apply_producer(rest, parse_json(key, value))
        } else if let Some(link) = key.strip_prefix(CUTOVER_PREFIX) {
            self.apply_cutover(link, key, value)
        } else if let Some(rest) = key.strip_prefix(CUTOVER_ACK_PREFIX) {
            self.apply_ack(rest, key, value)
        } else if let Some(id) = key.strip_prefix(INSTANCE_PREFIX) {
            return self.apply_instance(id, key, value);
        } else {
            return Outcome::Ignored;
        };
        self.revision = NEXT_REVISION.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    fn apply_link(&mut self, name: &str, parsed: Parsed<LinkRecord>) -> Outcome {
        match parsed {
            Parsed::Delete => {
                Arc::make_mut(&mut self.links).remove(name);
                // Its client producers' mappings went with it (their records are
                // deleted after the link's; until then they would hold places under
                // the cap that other links' producers need).
                for key in self.producer_keys(name) {
                    if let Some(gone) = Arc::make_mut(&mut self.producers).remove(&key) {
                        if gone.transactional_id.is_some() {
                            self.transactional_producers -= 1;
                        }
                    }
                }
                Outcome::Applied
            }
            Parsed::Bad(reason, detail) => {
                let entry = Arc::make_mut(&mut self.links)
                    .entry(name.to_string())
                    .or_default();
                entry.problem = Some(format!("{}: {detail}", reason.label()));
                Outcome::Invalid(reason, detail)
            }
            Parsed::Record(record) => {
                let entry = Arc::make_mut(&mut self.links)
                    .entry(name.to_string())
                    .or_default();
                if is_stale(record.version, entry.record.as_ref().map(|r| r.version)) {
                    return Outcome::Stale;
                }
                *entry = LinkEntry {
                    record: Some(record),
                    problem: None,
                };
                Outcome::Applied
            }
            // The record parsed but its credentials do not open here: keep it for the
            // views, and say why the link cannot run.
            Parsed::Unopened(record, detail) => {
                let entry = Arc::make_mut(&mut self.links)
                    .entry(name.to_string())
                    .or_default();
                if is_stale(record.version, entry.record.as_ref().map(|r| r.version)) {
                    return Outcome::Stale;
                }
                *entry = LinkEntry {
                    record: Some(record),
                    problem: Some(detail.clone()),
                };
                Outcome::Invalid(Invalid::SealedConfig, detail)
            }
        }
    }

    fn apply_mirror(&mut self, topic: &str, parsed: Parsed<MirrorRecord>) -> Outcome {
        let current = self.mirrors.get(topic).and_then(|m| m.record.as_ref());
        let stopped = current.is_some_and(|r| r.state == MirrorState::Stopped);
        match parsed {
            Parsed::Delete => {
                Arc::make_mut(&mut self.mirrors).remove(topic);
                Outcome::Applied
            }
            Parsed::Bad(reason, detail) => {
                let entry = Arc::make_mut(&mut self.mirrors)
                    .entry(topic.to_string())
                    .or_default();
                entry.problem = Some(format!("{}: {detail}", reason.label()));
                Outcome::Invalid(reason, detail)
            }
            Parsed::Record(record) | Parsed::Unopened(record, _) => {
                if is_stale(record.version, current.map(|r| r.version)) {
                    return Outcome::Stale;
                }
                if stopped && record.state != MirrorState::Stopped {
                    return Outcome::Stale;
                }
                Arc::make_mut(&mut self.mirrors).insert(
                    topic.to_string(),
                    MirrorEntry {
                        record: Some(record),
                        problem: None,
                    },
                );
                Outcome::Applied
            }
        }
    }
}

impl Catalog {
    fn apply_synced_configs(
        &mut self,
        topic: &str,
        parsed: Parsed<BTreeMap<String, String>>,
    ) -> Outcome {
        match parsed {
            Parsed::Delete => {
                Arc::make_mut(&mut self.synced_configs).remove(topic);
                Outcome::Applied
            }
            Parsed::Record(configs) | Parsed::Unopened(configs, _) => {
                Arc::make_mut(&mut self.synced_configs).insert(topic.to_string(), configs);
                Outcome::Applied
            }
            // A bad memory is no memory: the sync then keeps every difference.
            Parsed::Bad(reason, detail) => {
                Arc::make_mut(&mut self.synced_configs).remove(topic);
                Outcome::Invalid(reason, detail)
            }
        }
    }
}

impl Catalog {
    fn apply_synced_acls(&mut self, link: &str, parsed: Parsed<BTreeSet<AclBinding>>) -> Outcome {
        match parsed {
            Parsed::Delete => {
                Arc::make_mut(&mut self.synced_acls).remove(link);
                Outcome::Applied
            }
            Parsed::Record(acls) | Parsed::Unopened(acls, _) => {
                Arc::make_mut(&mut self.synced_acls).insert(link.to_string(), acls);
                Outcome::Applied
            }
            // A bad memory is no memory: the sync then deletes nothing it did not
            // create again itself.
            Parsed::Bad(reason, detail) => {
                Arc::make_mut(&mut self.synced_acls).remove(link);
                Outcome::Invalid(reason, detail)
            }
        }
    }
}

impl Catalog {
    fn apply_producer(&mut self, rest: &str, parsed: Parsed<SourceProducer>) -> Outcome {
        match parsed {
            Parsed::Delete => {
                if let Some(gone) = Arc::make_mut(&mut self.producers).remove(rest) {
                    if gone.transactional_id.is_some() {
                        self.transactional_producers -= 1;
                    }
                }
                Outcome::Applied
            }
            Parsed::Record(producer) | Parsed::Unopened(producer, _) => {
                if self.producers.contains_key(rest) {
                    return Outcome::Stale;
                }
                if self.producers.len() >= MAX_PRODUCER_RECORDS {
                    return Outcome::Ignored;
                }
                if let Some(txn) = &producer.transactional_id {
                    if txn.is_empty() || txn.len() > MAX_TRANSACTIONAL_ID {
                        let detail = format!("{rest}: a transactional id of {} bytes", txn.len());
                        return Outcome::Invalid(Invalid::Json, detail);
                    }
                    self.transactional_producers += 1;
                }
                Arc::make_mut(&mut self.producers).insert(rest.to_string(), producer);
                Outcome::Applied
            }
            Parsed::Bad(reason, detail) => Outcome::Invalid(reason, detail),
        }
    }
}

/// A JSON record value, bounded.
fn parse_json<T: serde::de::DeserializeOwned>(key: &str, value: Option<&[u8]>) -> Parsed<T> {
    match bounded(key, value) {
        Ok(Some(v)) => match serde_json::from_slice(v) {
            Ok(record) => Parsed::Record(record),
            Err(e) => Parsed::Bad(Invalid::Json, format!("{key}: {e}")),
        },
        Ok(None) => Parsed::Delete,
        Err((reason, detail)) => Parsed::Bad(reason, detail),
    }
}

/// Version 0 predates versions and always applies; otherwise only a newer one does.
fn is_stale(incoming: u64, current: Option<u64>) -> bool {
    incoming != 0 && current.is_some_and(|c| incoming <= c)
}

enum Parsed<T> {
    Delete,
    Record(T),
    /// Parsed, but its sealed credentials do not open with this instance's key.
    Unopened(T, String),
    Bad(Invalid, String),
}

fn bounded<'a>(key: &str, value: Option<&'a [u8]>) -> Result<Option<&'a [u8]>, (Invalid, String)> {
    match value {
        Some(v) if v.len() > MAX_VALUE_BYTES => Err((
            Invalid::ValueSize,
            format!("{key}: value of {} bytes", v.len()),
        )),
        v => Ok(v),
    }
}

fn parse_link(key: &str, value: Option<&[u8]>, sealer: Option<&Sealer>) -> Parsed<LinkRecord> {
    let value = match bounded(key, value) {
        Ok(Some(v)) => v,
        Ok(None) => return Parsed::Delete,
        Err((reason, detail)) => return Parsed::Bad(reason, detail),
    };
    let mut link: LinkRecord = match serde_json::from_slice(value) {
        Ok(link) => link,
        Err(e) => return Parsed::Bad(Invalid::Json, format!("{key}: {e}")),
    };
    match open_config(&link.config, sealer, key) {
        Ok(config) => {
            link.config = config;
            Parsed::Record(link)
        }
        Err(e) => Parsed::Unopened(link, format!("{key}: {e}")),
    }
}

fn parse_mirror(key: &str, value: Option<&[u8]>) -> Parsed<MirrorRecord> {
    let value = match bounded(key, value) {
        Ok(Some(v)) => v,
        Ok(None) => return Parsed::Delete,
        Err((reason, detail)) => return Parsed::Bad(reason, detail),
    };
    let mirror: MirrorRecord = match serde_json::from_slice(value) {
        Ok(mirror) => mirror,
        Err(e) => return Parsed::Bad(Invalid::Json, format!("{key}: {e}")),
    };
    match validate_mirror(&mirror) {
        Ok(()) => Parsed::Record(mirror),
        Err((reason, detail)) => Parsed::Bad(reason, format!("{key}: {detail}")),
    }
}

fn parse_synced_configs(key: &str, value: Option<&[u8]>) -> Parsed<BTreeMap<String, String>> {
    parse_json(key, value)
}

/// At most `MAX_SYNCED_ACLS` concrete, bounded bindings.
fn parse_synced_acls(key: &str, value: Option<&[u8]>) -> Parsed<BTreeSet<AclBinding>> {
    match parse_json::<Vec<AclBinding>>(key, value) {
        Parsed::Record(acls) => {
            if acls.len() > MAX_SYNCED_ACLS {
                let detail = format!("{key}: {} ACLs, more than {MAX_SYNCED_ACLS}", acls.len());
                return Parsed::Bad(Invalid::Json, detail);
            }
            if let Some(bad) = acls.iter().find(|a| !a.is_valid()) {
                return Parsed::Bad(Invalid::Json, format!("{key}: not an ACL: {bad:?}"));
            }
            Parsed::Record(acls.into_iter().collect())
        }
        // parse_json never leaves a record unopened.
        Parsed::Delete | Parsed::Unopened(..) => Parsed::Delete,
        Parsed::Bad(reason, detail) => Parsed::Bad(reason, detail),
    }
}

/// What the replicator sizes by a mirror record: tasks and status per partition, and
/// a start offset per partition.
fn validate_mirror(mirror: &MirrorRecord) -> Result<(), (Invalid, String)> {
    if !(1..=MAX_MIRROR_PARTITIONS).contains(&mirror.partitions) {
        return Err((
            Invalid::Partitions,
            format!(
                "{} partitions, outside 1..={MAX_MIRROR_PARTITIONS}",
                mirror.partitions
            ),
        ));
    }
    if mirror.start_offsets.len() > mirror.partitions as usize {
        return Err((
            Invalid::StartOffsets,
            format!(
                "{} start offsets for {} partitions",
                mirror.start_offsets.len(),
                mirror.partitions
            ),
        ));
    }
    if mirror
        .restoring
        .as_ref()
        .is_some_and(|r| r.set_aside_from.len() > mirror.partitions as usize)
    {
        return Err((
            Invalid::LastMirrored,
            "more set-aside offsets than partitions".to_string(),
        ));
    }
    if mirror.last_mirrored.len() > mirror.partitions as usize {
        return Err((
            Invalid::LastMirrored,
            format!(
                "{} last mirrored offsets for {} partitions",
                mirror.last_mirrored.len(),
                mirror.partitions
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
