//! One task per mirror partition: find both leaders, feed the copier with what the
//! link's fetcher of the source leader delivers, and keep going through transient
//! errors (leader moves, restarts); a fatal copier error fails the mirror with its
//! reason.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use tokio::sync::mpsc::error::TryRecvError;

use super::failure::{FailureReason, MirrorFailure};
use super::fetcher::LinkFetchers;
use super::manager::Inner;
use super::partition::{CopyError, PartitionCopier, Progress, SourceData};
use super::source::Source;
use super::store::MirrorRecord;
use crate::kafka::admin;
use crate::kafka::backoff::{Backoff, Jitter};
use crate::kafka::client::{ClientError, KafkaConnection};
use crate::kafka::error_code::OFFSET_OUT_OF_RANGE;
use crate::kafka::producer::{init_producer_id, ProducerIdentity};

/// What `--describe` shows per partition.
#[derive(Debug, Default)]
pub struct PartitionStatus {
    pub dest_end_offset: AtomicI64,
    pub source_high_watermark: AtomicI64,
    pub last_fetch_ms: AtomicI64,
    /// Copied here so far, for the bytes a lag is estimated at.
    pub copied_records: AtomicU64,
    pub copied_bytes: AtomicU64,
}

/// Retry delays after a copier fails to start or is interrupted: exponential with
/// jitter, so a bad credential or a missing topic is not retried every second.
fn retry_backoff() -> Backoff {
    Backoff::new(
        Duration::from_millis(500),
        Duration::from_secs(10),
        Jitter::Equal,
    )
}
/// Pause before subscribing again after the source partition moved.
const RESUBSCRIBE: Duration = Duration::from_millis(200);

pub struct PartitionJob {
    pub link: String,
    pub mirror: String,
    pub source_topic: String,
    pub partition: i32,
    /// Where to start while the mirror partition is empty (None: the log start).
    pub start_at: Option<i64>,
    /// The mirror's producer (None for a mirror stored by an older version).
    pub producer: Option<ProducerIdentity>,
    pub source: Source,
    pub status: Arc<PartitionStatus>,
    /// The mirror's own throttle on this instance (unlimited when it has none).
    pub throttle: Arc<super::throttle::Throttle>,
    pub stop: CancellationToken,
}

/// The producer stored with the mirror; a negative id or epoch counts as none (a
/// negative id would produce without idempotence).
pub fn mirror_producer(record: &MirrorRecord) -> Option<ProducerIdentity> {
    match (record.producer_id, record.producer_epoch) {
        (Some(id), Some(epoch)) if id >= 0 && epoch >= 0 => Some(ProducerIdentity { id, epoch }),
        _ => None,
    }
}

pub fn spawn(inner: Arc<Inner>, job: PartitionJob) {
    let span =
        tracing::info_span!("mirror_partition", mirror = %job.mirror, partition = job.partition);
    // On the copy runtime: the fetcher and Produce connection this task starts run
    // there with it.
    let task = run(inner.clone(), job).instrument(span);
    inner.copy_runtime.spawn(task);
}

/// Metric handles of one mirror partition, created once per task.
struct PartitionMetrics {
    lag: metrics::Gauge,
    last_fetch: metrics::Gauge,
    records: metrics::Counter,
    bytes: metrics::Counter,
    batches: metrics::Counter,
    records_lost: metrics::Counter,
    fillers: metrics::Counter,
    retries: metrics::Counter,
    refusals: metrics::Counter,
}

impl PartitionMetrics {
    fn new(job: &PartitionJob) -> Self {
        let partition = job.partition.to_string();
        let labels = [
            ("link", job.link.clone()),
            ("mirror", job.mirror.clone()),
            ("partition", partition),
        ];
        let link = [("link", job.link.clone())];
        Self {
            lag: metrics::gauge!("mirrorgate_mirror_partition_lag", &labels),
            last_fetch: metrics::gauge!(
                "mirrorgate_mirror_partition_last_fetch_timestamp_seconds",
                &labels
            ),
            records: metrics::counter!("mirrorgate_replicated_records_total", &link),
            bytes: metrics::counter!("mirrorgate_replicated_bytes_total", &link),
            batches: metrics::counter!("mirrorgate_replicated_batches_total", &link),
            records_lost: metrics::counter!("mirrorgate_mirror_records_lost_total", &link),
            fillers: metrics::counter!("mirrorgate_filler_records_total", &link),
            retries: metrics::counter!("mirrorgate_produce_retries_total", &link),
            refusals: metrics::counter!("mirrorgate_conditional_append_refusals_total", &link),
        }
    }
}

async fn run(inner: Arc<Inner>, job: PartitionJob) {
    let metrics = PartitionMetrics::new(&job);
    let mut failing = Failing::default();
    let mut backoff = retry_backoff();
    while !job.stop.is_cancelled() {
        let copier = tokio::select! {
            _ = job.stop.cancelled() => return,
            copier = start(&inner, &job) => copier,
        };
        let mut copier = match copier {
            Ok(copier) => copier,
            Err(e) => {
                if let Some(failure) = e.downcast_ref::<CopyError>().and_then(CopyError::failure) {
                    tracing::error!(%failure, "mirror partition failed");
                    inner.fail(&job.mirror, failure).await;
                    return;
                }
                tracing::warn!(error = %e, "cannot start copying; retrying");
                metrics.retries.increment(1);
                if failing.timed_out(&inner, &job, &format!("{e:#}")).await {
                    return;
                }
                tokio::select! {
                    _ = job.stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
                continue;
            }
        };
        let started = tokio::time::Instant::now();
        job.status
            .dest_end_offset
            .store(copier.next_offset(), Ordering::Relaxed);
        let fetchers = inner.fetchers.of_link(
            &job.link,
            &job.source,
            inner.dest.max_bytes_in_flight_per_link(),
            &inner.shutdown,
        );
        let error = tokio::select! {
            _ = job.stop.cancelled() => return,
            error = copy(&mut copier, &fetchers, &job, &metrics) => error,
        };
        if let Some(failure) = error.failure() {
            tracing::error!(%failure, "mirror partition failed");
            inner.fail(&job.mirror, failure).await;
            return;
        }
        if let CopyError::Refused { code, offset } = error {
            // Another copier wrote these offsets first: not a failure, only a resume.
            tracing::info!(
                topic = %job.mirror,
                partition = job.partition,
                code,
                offset,
                "append refused by the sequence check; resuming at the destination's end"
            );
            metrics.refusals.increment(1);
            continue;
        }
        // Whatever was in flight is dropped with the copier; the next one resumes at
        // the destination's settled end.
        tracing::warn!(error = %error, "copy interrupted; reconnecting");
        metrics.retries.increment(1);
        if failing.timed_out(&inner, &job, &error.to_string()).await {
            return;
        }
        if started.elapsed() > HEALTHY_AFTER {
            backoff.reset();
        }
        tokio::select! {
            _ = job.stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Errors this close together belong to one failing stretch.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// A stretch of transient errors; past `cluster.link.retry.timeout.ms` the mirror
/// fails, unless the link's source itself is not answering (that is the link's
/// SOURCE_UNAVAILABLE state, and copying resumes when it is back).
#[derive(Default)]
struct Failing {
    since: Option<tokio::time::Instant>,
    last: Option<tokio::time::Instant>,
}

impl Failing {
    /// Records an error; true when the mirror was failed for it.
    async fn timed_out(&mut self, inner: &Arc<Inner>, job: &PartitionJob, error: &str) -> bool {
        let now = tokio::time::Instant::now();
        if self.last.is_none_or(|last| now - last > HEALTHY_AFTER) {
            self.since = Some(now);
        }
        self.last = Some(now);
        let failing_for = now - self.since.unwrap_or(now);
        let Some(config) = inner.link_config(&job.link) else {
            return false;
        };
        if failing_for <= config.retry_timeout || !inner.link_source_answers(&job.link) {
            return false;
        }
        let failure = MirrorFailure::new(
            FailureReason::RetryTimeout,
            format!(
                "partition {} kept failing for {} ms: {error}",
                job.partition,
                failing_for.as_millis()
            ),
        );
        tracing::error!(%failure, "mirror partition failed");
        inner.fail(&job.mirror, failure).await;
        true
    }
}

/// Copies until an error: data from the link's fetcher of the partition's source
/// leader, pipelined into the copier; the window is drained whenever no fetched data
/// is waiting, so progress (and lag) is reported as soon as the partition is idle.
async fn copy(
    copier: &mut PartitionCopier,
    fetchers: &LinkFetchers,
    job: &PartitionJob,
    metrics: &PartitionMetrics,
) -> CopyError {
    let result: Result<std::convert::Infallible, CopyError> = async {
        metrics.report(job, copier.prepare().await?);
        // From here the link's fetcher reads the source for this partition.
        copier.detach_source();
        let mut data = subscribe(copier.fetch_offset(), fetchers, job, metrics).await?;
        loop {
            let chunk = match data.try_recv() {
                Ok(chunk) => Some(chunk),
                Err(TryRecvError::Empty) => {
                    metrics.report(job, copier.flush().await?);
                    data.recv().await
                }
                Err(TryRecvError::Disconnected) => None,
            };
            let Some(chunk) = chunk else {
                // The fetcher let go of the partition (connection lost, leader moved).
                metrics.report(job, copier.flush().await?);
                tokio::time::sleep(RESUBSCRIBE).await;
                data = subscribe(copier.fetch_offset(), fetchers, job, metrics).await?;
                continue;
            };
            let error = chunk.error_code;
            match error {
                0 => metrics.report(job, copier.process(chunk).await?),
                OFFSET_OUT_OF_RANGE => {
                    // The catch-up reads the source's log start from the leader.
                    if !copier.has_source() {
                        copier.attach_source(source_leader(job).await?);
                    }
                    metrics.report(job, copier.process(chunk).await?);
                    copier.detach_source();
                }
                _ => tracing::debug!(error, "source partition moved; resubscribing"),
            }
            if error != 0 {
                metrics.report(job, copier.flush().await?);
                if error != OFFSET_OUT_OF_RANGE {
                    tokio::time::sleep(RESUBSCRIBE).await;
                }
                data = subscribe(copier.fetch_offset(), fetchers, job, metrics).await?;
            }
        }
    }
    .await;
    match result {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

async fn subscribe(
    offset: i64,
    fetchers: &LinkFetchers,
    job: &PartitionJob,
    metrics: &PartitionMetrics,
) -> Result<tokio::sync::mpsc::Receiver<SourceData>, CopyError> {
    Ok(fetchers
        .subscribe(
            &job.source_topic,
            job.partition,
            offset,
            job.status.clone(),
            metrics.last_fetch.clone(),
            job.throttle.clone(),
        )
        .await?)
}

impl PartitionMetrics {
    fn report(&self, job: &PartitionJob, progress: Progress) {
        let status = &job.status;
        status
            .dest_end_offset
            .store(progress.next_offset, Ordering::Relaxed);
        let high_watermark = status.source_high_watermark.load(Ordering::Relaxed);
        self.lag
            .set((high_watermark - progress.next_offset).max(0) as f64);
        self.records.increment(progress.records);
        self.bytes.increment(progress.bytes);
        status
            .copied_records
            .fetch_add(progress.records, Ordering::Relaxed);
        status
            .copied_bytes
            .fetch_add(progress.bytes, Ordering::Relaxed);
        self.batches.increment(progress.batches);
        self.records_lost.increment(progress.lost);
        self.fillers.increment(progress.fillers);
    }
}

/// A connection to the source partition's leader.
async fn source_leader(job: &PartitionJob) -> Result<KafkaConnection, ClientError> {
    let mut any = job.source.connect_any().await?;
    let metadata = admin::metadata(&mut any, Some(&[job.source_topic.as_str()])).await?;
    let leader =
        admin::leader_of(&metadata, &job.source_topic, job.partition).ok_or_else(|| {
            ClientError::Protocol(format!(
                "no leader for {}-{} on the source",
                job.source_topic, job.partition
            ))
        })?;
    job.source.connect(&leader).await
}

async fn start(inner: &Inner, job: &PartitionJob) -> anyhow::Result<PartitionCopier> {
    use anyhow::Context;
    let source = source_leader(job).await.context("source leader")?;
    let dest = inner
        .dest
        .connect_leader(&job.mirror, job.partition)
        .await
        .context("destination leader")?;
    let mux = inner
        .produce_muxes
        .get(&inner.dest, dest.addr())
        .await
        .context("destination leader")?;
    let producer = match job.producer {
        Some(producer) => producer,
        None => {
            tracing::warn!(
                "the mirror has no stored producer id (created by an older version); \
                 copying with a fresh one, so appends are not conditional across copiers"
            );
            let mut init = inner.dest.connect_any().await.context("destination")?;
            init_producer_id(&mut init).await.context("producer id")?
        }
    };
    let mut copier = PartitionCopier::resume(
        &job.source_topic,
        &job.mirror,
        job.partition,
        source,
        dest,
        mux,
        producer,
    )
    .await?
    .with_start_offset(job.start_at);
    copier.verify_resume().await?;
    Ok(copier)
}
