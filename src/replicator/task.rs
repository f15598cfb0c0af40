//! One task per mirror partition: find both leaders, run the copier, and keep going
//! through transient errors (leader moves, restarts); a fatal copier error fails the
//! mirror with its reason.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::manager::Inner;
use super::now_ms;
use super::partition::PartitionCopier;
use super::source::Source;
use crate::kafka::admin;
use crate::kafka::producer::init_producer_id;

/// What `--describe` shows per partition.
#[derive(Debug, Default)]
pub struct PartitionStatus {
    pub dest_end_offset: AtomicI64,
    pub source_high_watermark: AtomicI64,
    pub last_fetch_ms: AtomicI64,
}

const RETRY: Duration = Duration::from_secs(1);
const FETCH_WAIT_MS: i32 = 500;

pub struct PartitionJob {
    pub link: String,
    pub mirror: String,
    pub source_topic: String,
    pub partition: i32,
    pub source: Source,
    pub status: Arc<PartitionStatus>,
    pub stop: CancellationToken,
}

pub fn spawn(inner: Arc<Inner>, job: PartitionJob) {
    let span =
        tracing::info_span!("mirror_partition", mirror = %job.mirror, partition = job.partition);
    tokio::spawn(run(inner, job).instrument(span));
}

/// Metric handles of one mirror partition, created once per task.
struct PartitionMetrics {
    lag: metrics::Gauge,
    last_fetch: metrics::Gauge,
    records: metrics::Counter,
    bytes: metrics::Counter,
    batches: metrics::Counter,
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
        }
    }
}

async fn run(inner: Arc<Inner>, job: PartitionJob) {
    let metrics = PartitionMetrics::new(&job);
    while !job.stop.is_cancelled() {
        let copier = tokio::select! {
            _ = job.stop.cancelled() => return,
            copier = start(&inner, &job) => copier,
        };
        let mut copier = match copier {
            Ok(copier) => copier,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start copying; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        job.status
            .dest_end_offset
            .store(copier.next_offset(), Ordering::Relaxed);
        loop {
            let round = tokio::select! {
                _ = job.stop.cancelled() => return,
                round = copier.copy_once(FETCH_WAIT_MS) => round,
            };
            match round {
                Ok(progress) => {
                    let now = now_ms();
                    let status = &job.status;
                    status
                        .dest_end_offset
                        .store(progress.next_offset, Ordering::Relaxed);
                    status
                        .source_high_watermark
                        .store(progress.source_high_watermark, Ordering::Relaxed);
                    status.last_fetch_ms.store(now, Ordering::Relaxed);
                    let lag = (progress.source_high_watermark - progress.next_offset).max(0);
                    metrics.lag.set(lag as f64);
                    metrics.last_fetch.set(now as f64 / 1000.0);
                    metrics.records.increment(progress.records);
                    metrics.bytes.increment(progress.bytes);
                    metrics.batches.increment(progress.batches);
                }
                Err(e) if e.is_fatal() => {
                    tracing::error!(error = %e, "mirror partition failed");
                    inner.fail(&job.mirror, e.to_string()).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "copy interrupted; reconnecting");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            }
        }
    }
}

async fn start(inner: &Inner, job: &PartitionJob) -> anyhow::Result<PartitionCopier> {
    use anyhow::Context;
    let mut source_any = job.source.connect_any().await.context("source")?;
    let source_meta = admin::metadata(&mut source_any, Some(&[job.source_topic.as_str()])).await?;
    let source_leader = admin::leader_of(&source_meta, &job.source_topic, job.partition)
        .context("no leader for the source partition")?;
    let source = job
        .source
        .connect(&source_leader)
        .await
        .context("source leader")?;
    let dest = inner
        .dest
        .connect_leader(&job.mirror, job.partition)
        .await
        .context("destination leader")?;
    let mut init = inner.dest.connect_any().await.context("destination")?;
    let producer = init_producer_id(&mut init).await.context("producer id")?;
    Ok(PartitionCopier::resume(
        &job.source_topic,
        &job.mirror,
        job.partition,
        source,
        dest,
        producer,
    )
    .await?)
}
