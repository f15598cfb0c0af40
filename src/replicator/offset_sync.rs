//! Consumer-group offset sync for one link: committed offsets of the source groups the
//! link's filters include are copied, as they are, to the same partitions of the mirror
//! topics on the destination. Offsets are identical on both sides by construction, so
//! nothing is translated; an offset is only lowered to what the mirror already holds,
//! so a consumer that fails over never lands past the mirrored data.
//!
//! A destination group with members is never overwritten (it is reported as in use),
//! and groups are never deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;

use super::link_config::{filters_match, Filter};
use super::source::{Source, SourceSettings};
use super::Destination;
use crate::config::DestinationConfig;
use crate::kafka::admin::{self, AdminError};
use crate::kafka::client::{ClientError, KafkaConnection};
use crate::kafka::error_code::{
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, FENCED_MEMBER_EPOCH,
    ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID,
};
use crate::kafka::groups::{self, CommittedOffset, ListedGroup};
use crate::kafka::offsets;

/// Groups handled per round at most; the rest wait (and a warning says so), so one
/// round's memory and duration stay bounded on clusters with very many groups.
pub const MAX_GROUPS_PER_ROUND: usize = 2000;
/// Groups per FindCoordinator request.
const COORDINATOR_BATCH: usize = 500;
/// Groups per OffsetFetch request (they must share a coordinator).
const FETCH_BATCH: usize = 100;
/// FindCoordinator attempts while the offsets topic is being created or loaded.
const COORDINATOR_ATTEMPTS: u32 = 5;
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(300);

/// Group states with members, for either protocol (classic: PreparingRebalance,
/// CompletingRebalance, Stable; consumer: Assigning, Reconciling, Stable; streams:
/// NotReady too). Asking only for these keeps the destination's answer small; a group
/// that turns busy after the listing is still caught by the commit's own error.
const ACTIVE_STATES: &[&str] = &[
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Assigning",
    "Reconciling",
    "NotReady",
];

/// Commit errors that mean the destination group has members right now.
const IN_USE_ERRORS: &[i16] = &[
    UNKNOWN_MEMBER_ID,
    ILLEGAL_GENERATION,
    REBALANCE_IN_PROGRESS,
    STALE_MEMBER_EPOCH,
    FENCED_MEMBER_EPOCH,
];

/// One mirror topic of the link, as the sync needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorOffsets {
    pub source_topic: String,
    pub mirror_topic: String,
    /// Log end offset of each destination partition: no committed offset goes above it.
    /// One entry per partition; a round reads the values from the destination itself.
    pub mirrored_end: Vec<i64>,
}

/// What one round did. Group names are destination names (prefix included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Partition offsets written on the destination.
    pub committed: u64,
    /// Groups with at least one offset written this round.
    pub groups_synced: Vec<String>,
    /// Groups left alone because they have members on the destination.
    pub groups_in_use: Vec<String>,
    /// One line per group (or partition) that could not be synced.
    pub errors: Vec<String>,
}

/// (mirror topic, partition) -> (offset, metadata) last written for one group.
type Written = BTreeMap<(String, i32), (i64, Option<String>)>;

/// The sync state of one link: what it last committed, so that a round writes only
/// offsets that changed.
#[derive(Debug, Default)]
pub struct OffsetSync {
    last: HashMap<String, Written>,
    /// Kept from one round to the next.
    src: Conns,
    dst: Conns,
}

impl OffsetSync {
    pub fn new() -> Self {
        Self::default()
    }

    /// One sync round. Per-group problems land in the report's `errors`; an
    /// unreachable source or destination is an `Err`.
    pub async fn round(
        &mut self,
        link: &str,
        source: &Source,
        dest: &Destination,
        filters: &[Filter],
        group_prefix: Option<&str>,
        mirrors: &[MirrorOffsets],
    ) -> anyhow::Result<SyncReport> {
        let mut report = SyncReport::default();
        // Without a filter nothing is synced (Confluent's rule), and without mirrors
        // there is nowhere to write: no need to bother the clusters.
        if filters.is_empty() || mirrors.is_empty() {
            self.last.clear();
            return Ok(report);
        }
        let kept = self.src.held() || self.dst.held();
        let mut result = self
            .sync(source, dest, filters, group_prefix, mirrors, &mut report)
            .await;
        if result.is_err() {
            self.src.close();
            self.dst.close();
            if kept {
                // A connection kept from the round before may have been closed by its
                // broker meanwhile: the round once more, on new ones (it only reads,
                // and commits what it would commit again).
                report = SyncReport::default();
                result = self
                    .sync(source, dest, filters, group_prefix, mirrors, &mut report)
                    .await;
                if result.is_err() {
                    self.src.close();
                    self.dst.close();
                }
            }
        }
        let labels = [("link", link.to_string())];
        metrics::counter!("mirrorgate_offset_sync_commits_total", &labels)
            .increment(report.committed);
        metrics::counter!("mirrorgate_offset_sync_groups_in_use_total", &labels)
            .increment(report.groups_in_use.len() as u64);
        let failures = report.errors.len() as u64 + u64::from(result.is_err());
        metrics::counter!("mirrorgate_offset_sync_errors_total", &labels).increment(failures);
        for error in &report.errors {
            tracing::warn!(link, "offset sync: {error}");
        }
        result.map(|()| report)
    }

    async fn sync(
        &mut self,
        source: &Source,
        dest: &Destination,
        filters: &[Filter],
        group_prefix: Option<&str>,
        mirrors: &[MirrorOffsets],
        report: &mut SyncReport,
    ) -> anyhow::Result<()> {
        let mut src = Pool::new(Side::Source(source), &mut self.src);
        let listed = src
            .list_groups(&[], &mut report.errors)
            .await
            .context("listing the source's consumer groups")?;
        let (selected, skipped) = select_groups(listed, filters, MAX_GROUPS_PER_ROUND);
        if skipped > 0 {
            tracing::warn!(
                handled = selected.len(),
                skipped,
                "offset sync: more matching groups than one round handles; the rest wait"
            );
        }
        // Forget groups that no longer match (or vanished): memory follows the source.
        let names: HashSet<String> = selected
            .iter()
            .map(|g| destination_group(group_prefix, g))
            .collect();
        self.last.retain(|dest_group, _| names.contains(dest_group));
        if selected.is_empty() {
            return Ok(());
        }

        let topics: Vec<(String, i32)> = mirrors
            .iter()
            .map(|m| {
                let partitions = i32::try_from(m.mirrored_end.len()).unwrap_or(i32::MAX);
                (m.source_topic.clone(), partitions)
            })
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let committed = src
            .fetch_offsets(&selected, &topics)
            .await
            .context("reading committed offsets on the source")?;
        let mut dst = Pool::new(Side::Destination(dest), &mut self.dst);
        let mirrors = &mirrored_ends(&mut dst, mirrors, &mut report.errors).await?;

        let mut pending: Vec<(String, Vec<CommittedOffset>)> = Vec::new();
        for (group, offsets) in committed {
            let dest_group = destination_group(group_prefix, &group);
            match offsets {
                Err(e) => report.errors.push(format!(
                    "group '{group}': reading offsets on the source: {e}"
                )),
                Ok(offsets) => {
                    let planned = plan(&offsets, mirrors);
                    let last = self.last.entry(dest_group.clone()).or_default();
                    // Mirrors dropped from the link take their entries with them.
                    last.retain(|(topic, _), _| mirrors.iter().any(|m| &m.mirror_topic == topic));
                    let changed = changes(last, planned);
                    if !changed.is_empty() {
                        pending.push((dest_group, changed));
                    }
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }

        let wanted: BTreeSet<&str> = pending.iter().map(|(g, _)| g.as_str()).collect();
        let busy: BTreeSet<String> = dst
            .list_groups(ACTIVE_STATES, &mut report.errors)
            .await
            .context("listing the destination's active consumer groups")?
            .into_iter()
            .map(|g| g.group_id)
            .filter(|g| wanted.contains(g.as_str()))
            .collect();
        let (in_use, free): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(g, _)| busy.contains(g));
        report
            .groups_in_use
            .extend(in_use.into_iter().map(|(g, _)| g));
        if free.is_empty() {
            return Ok(());
        }

        let free_names: Vec<String> = free.iter().map(|(g, _)| g.clone()).collect();
        let mut coordinators = dst
            .coordinators(&free_names)
            .await
            .context("finding the destination's group coordinators")?;
        for (group, offsets) in free {
            let coordinator = match coordinators.remove(&group) {
                Some(Ok(addr)) => addr,
                Some(Err(e)) => {
                    report.errors.push(format!(
                        "group '{group}': no coordinator on the destination: {e}"
                    ));
                    continue;
                }
                None => continue,
            };
            let conn = dst
                .get(&coordinator)
                .await
                .with_context(|| format!("connecting to destination broker {coordinator}"))?;
            let refused = groups::commit_offsets(conn, &group, &offsets)
                .await
                .with_context(|| format!("committing offsets of '{group}' on the destination"))?;
            if refused
                .iter()
                .any(|(_, _, code)| IN_USE_ERRORS.contains(code))
            {
                report.groups_in_use.push(group);
                continue;
            }
            let last = self.last.entry(group.clone()).or_default();
            let mut written = 0u64;
            for offset in offsets {
                let refusal = refused
                    .iter()
                    .find(|(t, p, _)| t == &offset.topic && *p == offset.partition);
                if let Some((topic, partition, code)) = refusal {
                    report.errors.push(format!(
                        "group '{group}': committing {topic}-{partition}: {}",
                        groups::error_name(*code)
                    ));
                    continue;
                }
                written += 1;
                last.insert(
                    (offset.topic, offset.partition),
                    (offset.offset, offset.metadata),
                );
            }
            if written > 0 {
                report.committed += written;
                report.groups_synced.push(group);
            }
        }
        Ok(())
    }
}

/// The destination's name for a source group.
/// `mirrors` with each partition's mirrored end read from the destination now: other
/// instances copy some of the partitions, so this one's progress is not enough. A
/// mirror whose ends cannot be read is skipped this round (-1), with an error.
async fn mirrored_ends(
    dst: &mut Pool<'_>,
    mirrors: &[MirrorOffsets],
    errors: &mut Vec<String>,
) -> anyhow::Result<Vec<MirrorOffsets>> {
    dst.any().await.context("connecting to the destination")?;
    let mut out = Vec::with_capacity(mirrors.len());
    for m in mirrors {
        let ends = match dst.end_offsets(&m.mirror_topic).await {
            // The destination itself failed: the round fails (and is made again).
            Err(AdminError::Client(e)) => {
                return Err(e).context("reading the mirrors' end offsets")
            }
            ends => ends,
        };
        let partitions = m.mirrored_end.len();
        let mirrored_end = match ends {
            Ok(ends) => (0..partitions)
                .map(|p| {
                    i32::try_from(p)
                        .ok()
                        .and_then(|p| ends.get(&p).copied())
                        .unwrap_or(-1)
                })
                .collect(),
            Err(e) => {
                errors.push(format!(
                    "mirror '{}': reading its end offsets: {e}",
                    m.mirror_topic
                ));
                vec![-1; partitions]
            }
        };
        out.push(MirrorOffsets {
            mirrored_end,
            ..m.clone()
        });
    }
    Ok(out)
}

pub fn destination_group(prefix: Option<&str>, group: &str) -> String {
    format!("{}{group}", prefix.unwrap_or(""))
}

/// Source groups to sync: those the filters include, of the protocols that keep
/// consumer offsets (share groups do not), each once, in name order, at most `max`.
/// Returns them and how many matching groups were left for lack of room.
pub fn select_groups(
    listed: impl IntoIterator<Item = ListedGroup>,
    filters: &[Filter],
    max: usize,
) -> (Vec<String>, usize) {
    let matching: BTreeSet<String> = listed
        .into_iter()
        .filter(|g| g.group_type != "share")
        .filter(|g| filters_match(filters, &g.group_id))
        .map(|g| g.group_id)
        .collect();
    let skipped = matching.len().saturating_sub(max);
    (matching.into_iter().take(max).collect(), skipped)
}

/// `offset` lowered to the mirrored end; `None` when the mirror's end is unknown.
pub fn clamp(offset: i64, mirrored_end: i64) -> Option<i64> {
    (mirrored_end >= 0).then(|| offset.min(mirrored_end))
}

/// Source offsets moved onto the mirror topics: only partitions the mirror has,
/// each clamped to what the mirror holds.
pub fn plan(committed: &[CommittedOffset], mirrors: &[MirrorOffsets]) -> Vec<CommittedOffset> {
    let mut out = Vec::new();
    for offset in committed {
        for mirror in mirrors.iter().filter(|m| m.source_topic == offset.topic) {
            let end = usize::try_from(offset.partition)
                .ok()
                .and_then(|p| mirror.mirrored_end.get(p));
            if let Some(clamped) = end.and_then(|end| clamp(offset.offset, *end)) {
                out.push(CommittedOffset {
                    topic: mirror.mirror_topic.clone(),
                    partition: offset.partition,
                    offset: clamped,
                    metadata: offset.metadata.clone(),
                });
            }
        }
    }
    out
}

/// The planned offsets that differ from what was last written.
pub fn changes(last: &Written, planned: Vec<CommittedOffset>) -> Vec<CommittedOffset> {
    planned
        .into_iter()
        .filter(|o| {
            last.get(&(o.topic.clone(), o.partition))
                .is_none_or(|(offset, metadata)| *offset != o.offset || *metadata != o.metadata)
        })
        .collect()
}

/// Consumer groups with members on the source right now ("group (state)"): who still
/// reads the source directly, for a cut-over's dry run.
pub(super) async fn active_source_groups(source: &Source) -> anyhow::Result<Vec<String>> {
    let mut conns = Conns::default();
    let mut src = Pool::new(Side::Source(source), &mut conns);
    let mut errors = Vec::new();
    let groups = src
        .list_groups(ACTIVE_STATES, &mut errors)
        .await
        .context("listing the source's active consumer groups")?;
    if let Some(error) = errors.first() {
        anyhow::bail!("{error}");
    }
    Ok(groups
        .into_iter()
        .map(|g| format!("{} ({})", g.group_id, g.state))
        .collect())
}

/// A coordinator error that clears once the offsets topic is created or loaded.
fn is_loading(error: &AdminError) -> bool {
    matches!(
        error,
        AdminError::Kafka { code, .. }
            if *code == COORDINATOR_NOT_AVAILABLE
                || *code == COORDINATOR_LOAD_IN_PROGRESS
    )
}

enum Side<'a> {
    Source(&'a Source),
    Destination(&'a Destination),
}

/// How a cluster is reached: connections kept for other settings are not used.
#[derive(Debug, PartialEq)]
enum Settings {
    Source(SourceSettings),
    Destination(Box<DestinationConfig>),
}

impl Side<'_> {
    fn settings(&self) -> Settings {
        match self {
            Side::Source(s) => Settings::Source(s.settings()),
            Side::Destination(d) => Settings::Destination(Box::new(d.settings())),
        }
    }

    async fn connect(&self, addr: &str) -> Result<KafkaConnection, ClientError> {
        match self {
            Side::Source(s) => s.connect(addr).await,
            Side::Destination(d) => d.connect(addr).await,
        }
    }

    async fn connect_any(&self) -> Result<KafkaConnection, ClientError> {
        match self {
            Side::Source(s) => s.connect_any().await,
            Side::Destination(d) => d.connect_any().await,
        }
    }
}

/// Connections to one cluster, by broker address, kept from one round to the next (a
/// round every `consumer.offset.sync.ms`, 30 s by default) while the cluster's
/// settings stay the same. A round that fails closes them.
#[derive(Default)]
struct Conns {
    settings: Option<Settings>,
    bootstrap: Option<KafkaConnection>,
    brokers: HashMap<String, KafkaConnection>,
}

impl std::fmt::Debug for Conns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conns")
            .field(
                "bootstrap",
                &self.bootstrap.as_ref().map(KafkaConnection::addr),
            )
            .field("brokers", &self.brokers.keys())
            .finish()
    }
}

impl Conns {
    fn held(&self) -> bool {
        self.bootstrap.is_some() || !self.brokers.is_empty()
    }

    fn close(&mut self) {
        self.bootstrap = None;
        self.brokers.clear();
    }
}

/// A round's connections to one cluster: those kept from the round before, and any it
/// opens. Brokers it did not ask are let go when it ends.
struct Pool<'a> {
    side: Side<'a>,
    conns: &'a mut Conns,
    used: HashSet<String>,
}

impl Drop for Pool<'_> {
    fn drop(&mut self) {
        let used = &self.used;
        self.conns.brokers.retain(|addr, _| used.contains(addr));
    }
}

impl<'a> Pool<'a> {
    fn new(side: Side<'a>, conns: &'a mut Conns) -> Self {
        let settings = side.settings();
        if conns.settings.as_ref() != Some(&settings) {
            conns.close();
            conns.settings = Some(settings);
        }
        Self {
            side,
            conns,
            used: HashSet::new(),
        }
    }

    async fn any(&mut self) -> Result<&mut KafkaConnection, ClientError> {
        if self.conns.bootstrap.is_none() {
            self.conns.bootstrap = Some(self.side.connect_any().await?);
        }
        self.conns
            .bootstrap
            .as_mut()
            .ok_or_else(|| ClientError::Protocol("no bootstrap connection".into()))
    }

    async fn get(&mut self, addr: &str) -> Result<&mut KafkaConnection, ClientError> {
        if !self.conns.brokers.contains_key(addr) {
            let conn = self.side.connect(addr).await?;
            self.conns.brokers.insert(addr.to_string(), conn);
        }
        self.used.insert(addr.to_string());
        self.conns
            .brokers
            .get_mut(addr)
            .ok_or_else(|| ClientError::Protocol(format!("no connection to {addr}")))
    }

    /// The high watermark of every partition of `topic`, asked of the leaders.
    async fn end_offsets(&mut self, topic: &str) -> Result<BTreeMap<i32, i64>, AdminError> {
        let (count, by_leader) = offsets::partitions_by_leader(self.any().await?, topic).await?;
        let mut ends = BTreeMap::new();
        for (leader, partitions) in by_leader {
            let latest = offsets::latest_offsets(self.get(&leader).await?, topic, &partitions);
            ends.extend(latest.await?.into_iter().map(|(p, (end, _))| (p, end)));
        }
        offsets::all_answered(topic, count, ends)
    }

    /// ListGroups on every broker: each lists only the groups it coordinates. A
    /// broker still loading its coordinators is asked again briefly; one that keeps
    /// answering with an error costs only its own groups this round: the error is
    /// pushed to `errors`.
    async fn list_groups(
        &mut self,
        states: &[&str],
        errors: &mut Vec<String>,
    ) -> Result<Vec<ListedGroup>, ClientError> {
        let metadata = admin::metadata(self.any().await?, Some(&[])).await?;
        let brokers: Vec<String> = metadata
            .brokers
            .iter()
            .map(|b| format!("{}:{}", b.host.as_str(), b.port))
            .collect();
        let mut all = Vec::new();
        for broker in brokers {
            for attempt in 1..=COORDINATOR_ATTEMPTS {
                match groups::list_groups(self.get(&broker).await?, states).await {
                    Ok(listed) => all.extend(listed),
                    Err(AdminError::Client(e)) => return Err(e),
                    Err(e) if is_loading(&e) && attempt < COORDINATOR_ATTEMPTS => {
                        tokio::time::sleep(COORDINATOR_BACKOFF * attempt).await;
                        continue;
                    }
                    Err(e) => errors.push(format!("listing groups on broker {broker}: {e}")),
                }
                break;
            }
        }
        Ok(all)
    }

    /// Coordinators of `names`, retrying briefly while the offsets topic is created
    /// or loaded (a fresh cluster answers COORDINATOR_NOT_AVAILABLE at first).
    async fn coordinators(
        &mut self,
        names: &[String],
    ) -> Result<BTreeMap<String, Result<String, AdminError>>, ClientError> {
        let mut found = BTreeMap::new();
        for chunk in names.chunks(COORDINATOR_BATCH) {
            let mut todo = chunk.to_vec();
            for attempt in 1..=COORDINATOR_ATTEMPTS {
                let answers = groups::find_coordinators(self.any().await?, &todo).await?;
                todo.clear();
                for (group, answer) in answers {
                    let retriable = matches!(&answer, Err(e) if is_loading(e));
                    if retriable && attempt < COORDINATOR_ATTEMPTS {
                        todo.push(group);
                    } else {
                        found.insert(group, answer);
                    }
                }
                if todo.is_empty() {
                    break;
                }
                tokio::time::sleep(COORDINATOR_BACKOFF).await;
            }
        }
        Ok(found)
    }

    /// Committed offsets of `names` for `topics`, batched per coordinator.
    async fn fetch_offsets(
        &mut self,
        names: &[String],
        topics: &[(String, i32)],
    ) -> Result<BTreeMap<String, Result<Vec<CommittedOffset>, AdminError>>, ClientError> {
        let mut out = BTreeMap::new();
        let mut by_coordinator: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, coordinator) in self.coordinators(names).await? {
            match coordinator {
                Ok(addr) => by_coordinator.entry(addr).or_default().push(group),
                Err(e) => {
                    out.insert(group, Err(e));
                }
            }
        }
        for (addr, members) in by_coordinator {
            for chunk in members.chunks(FETCH_BATCH) {
                let conn = self.get(&addr).await?;
                out.extend(groups::fetch_offsets(conn, chunk, topics).await?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicator::link_config::{FilterType, PatternType};

    fn filter(name: &str, pattern: PatternType, kind: FilterType) -> Filter {
        Filter {
            name: name.into(),
            pattern_type: pattern,
            filter_type: kind,
        }
    }

    fn listed(id: &str, group_type: &str) -> ListedGroup {
        ListedGroup {
            group_id: id.into(),
            protocol_type: "consumer".into(),
            state: "Empty".into(),
            group_type: group_type.into(),
        }
    }

    fn offset(topic: &str, partition: i32, offset: i64, metadata: Option<&str>) -> CommittedOffset {
        CommittedOffset {
            topic: topic.into(),
            partition,
            offset,
            metadata: metadata.map(String::from),
        }
    }

    #[test]
    fn selection_follows_filters_and_skips_share_groups() {
        let groups = vec![
            listed("orders", "classic"),
            listed("app-a", "consumer"),
            listed("app-secret", "classic"),
            listed("app-b", "share"),
            listed("other", "classic"),
            listed("orders", "classic"),
        ];
        let filters = vec![
            filter("orders", PatternType::Literal, FilterType::Include),
            filter("app-", PatternType::Prefixed, FilterType::Include),
            filter("app-secret", PatternType::Literal, FilterType::Exclude),
        ];
        let (selected, skipped) = select_groups(groups.clone(), &filters, 100);
        assert_eq!(selected, vec!["app-a", "orders"]);
        assert_eq!(skipped, 0);
        assert_eq!(select_groups(groups, &[], 100), (vec![], 0));
    }

    #[test]
    fn selection_is_capped() {
        let groups = (0..10).map(|i| listed(&format!("g{i}"), "classic"));
        let all = [filter("*", PatternType::Literal, FilterType::Include)];
        let (selected, skipped) = select_groups(groups, &all, 4);
        assert_eq!(selected, vec!["g0", "g1", "g2", "g3"]);
        assert_eq!(skipped, 6);
    }

    #[test]
    fn clamping() {
        assert_eq!(clamp(5, 10), Some(5));
        assert_eq!(clamp(10, 10), Some(10));
        assert_eq!(clamp(12, 10), Some(10));
        assert_eq!(clamp(3, 0), Some(0));
        assert_eq!(clamp(3, -1), None);
    }

    #[test]
    fn plan_maps_topics_and_clamps() {
        let mirrors = vec![MirrorOffsets {
            source_topic: "src".into(),
            mirror_topic: "dst".into(),
            mirrored_end: vec![10, 4],
        }];
        let committed = vec![
            offset("src", 0, 7, Some("m")),
            offset("src", 1, 9, None),
            offset("src", 2, 1, None),
            offset("unmirrored", 0, 1, None),
        ];
        assert_eq!(
            plan(&committed, &mirrors),
            vec![offset("dst", 0, 7, Some("m")), offset("dst", 1, 4, None)]
        );
    }

    #[test]
    fn only_changes_are_committed() {
        let mut last = Written::new();
        last.insert(("t".into(), 0), (5, Some("m".into())));
        last.insert(("t".into(), 1), (7, None));
        let planned = vec![
            offset("t", 0, 5, Some("m")),
            offset("t", 1, 8, None),
            offset("t", 2, 1, None),
            offset("t", 0, 5, Some("changed")),
        ];
        assert_eq!(
            changes(&last, planned),
            vec![
                offset("t", 1, 8, None),
                offset("t", 2, 1, None),
                offset("t", 0, 5, Some("changed")),
            ]
        );
    }

    #[test]
    fn prefixing() {
        assert_eq!(destination_group(None, "g"), "g");
        assert_eq!(destination_group(Some("west."), "g"), "west.g");
    }
}
