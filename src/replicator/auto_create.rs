//! Auto-created mirrors (`auto.create.mirror.topics.enable`): each round, source
//! topics matching the link's topic filters that have no mirror yet become mirrors
//! named prefix + source topic. Internal topics never do.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::Context;

use super::link_config::{filters_match, LinkConfig};
use super::manager::{ApiError, Inner, Replicator};
use super::source::Source;
use crate::kafka::admin;

/// What one round did; `errors` name the topics that could not become mirrors.
#[derive(Debug, Default)]
pub struct AutoCreateReport {
    pub created: Vec<String>,
    pub errors: Vec<String>,
}

/// Kafka's internal topics and mirrorgate's own are never mirrored automatically.
pub fn is_internal(topic: &str) -> bool {
    topic.starts_with("__") || topic.starts_with("_mirrorgate-")
}

/// The source topics that should be mirrors and are not yet.
pub fn wanted<'a>(
    config: &LinkConfig,
    source_topics: impl IntoIterator<Item = &'a str>,
    existing_mirrors: &HashSet<String>,
) -> Vec<&'a str> {
    let prefix = config.prefix.as_deref().unwrap_or("");
    source_topics
        .into_iter()
        .filter(|t| !is_internal(t))
        .filter(|t| filters_match(&config.topic_filters, t))
        .filter(|t| !existing_mirrors.contains(&format!("{prefix}{t}")))
        .collect()
}

pub(super) async fn round(
    inner: &Arc<Inner>,
    link: &str,
    config: &LinkConfig,
) -> anyhow::Result<AutoCreateReport> {
    let source = Source::from_config(config).map_err(anyhow::Error::msg)?;
    let mut conn = source.connect_any().await.context("source")?;
    let metadata = admin::metadata(&mut conn, None)
        .await
        .context("source metadata")?;
    let topics: Vec<String> = metadata
        .topics
        .iter()
        .filter(|t| t.error_code == 0 && !t.is_internal)
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    let mut existing = inner.mirror_names();
    if config.bidirectional {
        // Mirrors of ours on the other side are never mirrored back: skipped as if
        // mirrored already, without a refusal every round.
        let ours = inner.destination_cluster_id().await;
        anyhow::ensure!(!ours.is_empty(), "this cluster's id cannot be read now");
        let remote = super::remote_catalog::read(&source, &inner.remote_metadata_topic(config))
            .await
            .map_err(anyhow::Error::msg)
            .context("the other side's catalog")?;
        let prefix = config.prefix.as_deref().unwrap_or("");
        existing.extend(
            super::remote_catalog::mirrored_from(&remote, &ours)
                .into_iter()
                .map(|t| format!("{prefix}{t}")),
        );
    }
    let prefix = config.prefix.as_deref().unwrap_or("");
    let replicator = Replicator::from_inner(inner.clone());
    let mut report = AutoCreateReport::default();
    for topic in wanted(config, topics.iter().map(String::as_str), &existing) {
        let mirror = format!("{prefix}{topic}");
        match replicator
            .create_mirror(link, &mirror, Some(topic), &BTreeMap::new())
            .await
        {
            Ok(()) => {
                tracing::info!(mirror, source_topic = topic, "mirror auto-created");
                report.created.push(mirror);
            }
            Err(ApiError::Conflict(message)) => {
                // A topic of that name that is no mirror: leave it, say so.
                report.errors.push(message);
            }
            Err(e) => report.errors.push(format!("{mirror}: {e}")),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> LinkConfig {
        let mut raw: BTreeMap<String, String> = [("bootstrap.servers", "s:9092")]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        raw.insert("auto.create.mirror.topics.enable".into(), "true".into());
        LinkConfig::from_properties(raw).expect("valid")
    }

    #[test]
    fn filters_prefix_and_internal_topics_decide() {
        let config = config(&[
            (
                "auto.create.mirror.topics.filters",
                r#"{"topicFilters":[{"name":"orders","patternType":"PREFIXED","filterType":"INCLUDE"},
                    {"name":"orders.secret","patternType":"LITERAL","filterType":"EXCLUDE"}]}"#,
            ),
            ("cluster.link.prefix", "dc1."),
        ]);
        let existing: HashSet<String> = ["dc1.orders.old".to_string()].into();
        let topics = [
            "orders.new",
            "orders.old",
            "orders.secret",
            "payments",
            "__consumer_offsets",
            "_mirrorgate-metadata",
        ];
        assert_eq!(wanted(&config, topics, &existing), vec!["orders.new"]);
    }

    #[test]
    fn no_filter_means_no_topic() {
        let config = config(&[]);
        assert!(wanted(&config, ["a", "b"], &HashSet::new()).is_empty());
    }
}
