//! Cluster link operations: create, list, alter, delete. Each change is written to the
//! metadata topic and applied when read back (`reconcile`); every link runs a
//! `link_runtime` task on replicating instances.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

use super::catalog::{LINK_PREFIX, PRODUCER_PREFIX};
use super::link_config::LinkConfig;
use super::link_runtime::TaskStatus;
use super::manager::{lost_race, unavailable, ApiError, Replicator};
use super::source::Source;
use super::store::{self, LinkRecord, MirrorState};
use super::{link_config, now_ms};
use crate::kafka::admin;

/// Keys that shape names on the destination; changing them later would orphan mirrors
/// and groups created under the old names.
const FIXED_AT_CREATION: &[&str] = &["cluster.link.prefix", "consumer.group.prefix.enable"];

/// Keys that change how the link reaches the source: altering them restarts its tasks.
pub(super) fn is_connection_key(key: &str) -> bool {
    key == "bootstrap.servers"
        || key == "security.protocol"
        || key.starts_with("sasl.")
        || key.starts_with("ssl.")
}

/// Keys that authenticate mirrorgate to the source: the SASL login (its password goes to
/// whatever server the link names) and the client key material. A stored credential is
/// never offered to a server the caller names: when an alter adds a server to
/// `bootstrap.servers`, every credential the link holds must be given again in the same
/// request (proof the caller knows it), otherwise the alter is refused before anything
/// connects, `validate_only` included. Trust stores are public certificates, not
/// credentials.
pub const CREDENTIAL_KEYS: &[&str] = &[
    "sasl.jaas.config",
    "ssl.keystore.location",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.key.password",
];

/// The stored credentials an alter to `new` servers would send there without their
/// being resupplied in `set`; empty when no server is new.
fn credentials_to_resupply(
    stored: &BTreeMap<String, String>,
    set: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<&'static str> {
    let servers = |config: &BTreeMap<String, String>| -> Vec<String> {
        config
            .get("bootstrap.servers")
            .map(|s| {
                s.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default()
    };
    let old = servers(stored);
    if servers(new).iter().all(|s| s.is_empty() || old.contains(s)) {
        return Vec::new();
    }
    CREDENTIAL_KEYS
        .iter()
        .copied()
        .filter(|key| stored.contains_key(*key) && new.contains_key(*key))
        .filter(|key| !set.contains_key(*key))
        .collect()
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkView {
    pub link_name: String,
    pub link_id: String,
    pub source_cluster_id: String,
    pub destination_cluster_id: String,
    pub configs: BTreeMap<String, String>,
    pub remote_cluster_available: bool,
    /// ACTIVE, PAUSED, SOURCE_UNAVAILABLE, or FAILED when its record cannot be used.
    pub link_state: String,
    /// Why the link is FAILED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_error_message: Option<String>,
    pub tasks: Vec<TaskStatus>,
}

/// One link config entry as the REST API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkConfigView {
    pub name: String,
    pub value: String,
    pub read_only: bool,
    pub sensitive: bool,
}

impl Replicator {
    /// Every key checked; credentials must be sealable before anything is stored.
    fn validated(&self, raw: BTreeMap<String, String>) -> Result<LinkConfig, ApiError> {
        let config = LinkConfig::from_properties(raw)
            .map_err(|errors| ApiError::Invalid(errors.join("; ")))?;
        super::secrets::seal_config(&config.raw, self.inner.sealer.as_ref(), LINK_PREFIX)
            .map_err(ApiError::Invalid)?;
        Ok(config)
    }

    pub async fn create_link(
        &self,
        name: &str,
        raw: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        if !crate::config::valid_topic_name(name) {
            return Err(ApiError::Invalid(format!(
                "Link name '{name}' is not valid."
            )));
        }
        let config = self.validated(raw)?;
        let source_cluster_id = source_cluster_id(&config).await?;
        if validate_only {
            return Ok(());
        }
        let version = {
            let state = self.inner.current_state().await?;
            if state.links.contains_key(name) || state.failed_links.contains_key(name) {
                return Err(ApiError::Conflict(format!(
                    "Cluster link '{name}' already exists."
                )));
            }
            state.catalog.next_version(&format!("{LINK_PREFIX}{name}"))
        };
        let record = LinkRecord {
            name: name.to_string(),
            link_id: uuid::Uuid::new_v4().to_string(),
            config: config.raw.clone(),
            source_cluster_id,
            created_ms: now_ms(),
            version,
        };
        self.put_link(name, Some(&record)).await
    }

    /// Writes a link (None deletes it), waits until it is applied, and checks that it
    /// is ours that was applied.
    async fn put_link(&self, name: &str, record: Option<&LinkRecord>) -> Result<(), ApiError> {
        let offset = store::put_link(&self.inner.dest, name, record, self.inner.sealer.as_ref())
            .await
            .map_err(unavailable)?;
        let view = self.inner.commit(offset).await?;
        let applied = view.catalog.link(name).and_then(|l| l.usable());
        if applied != record {
            return Err(lost_race(&format!("{LINK_PREFIX}{name}")));
        }
        Ok(())
    }

    pub async fn links(&self) -> Result<Vec<LinkView>, ApiError> {
        // Asked before the lock is taken: no lock is held across I/O.
        let destination_cluster_id = self.inner.destination_cluster_id().await;
        let state = self.inner.loaded_state()?;
        let mut views = Vec::new();
        for link in state.links.values() {
            let paused = state.link_paused(&link.name);
            let status = state.runtimes.get(&link.name).map(|r| r.status.clone());
            let shown = match &status {
                Some(status) => status.state(paused),
                None if paused => "PAUSED",
                None => "ACTIVE",
            };
            views.push(LinkView {
                link_name: link.name.clone(),
                link_id: link.link_id.clone(),
                source_cluster_id: link.source_cluster_id.clone(),
                destination_cluster_id: destination_cluster_id.clone(),
                configs: link_config::redact(&link.config),
                remote_cluster_available: status.as_ref().is_some_and(|s| s.available()),
                link_state: shown.to_string(),
                link_error_message: None,
                tasks: status.map(|s| s.tasks()).unwrap_or_default(),
            });
        }
        for (name, (record, reason)) in state.failed_links.iter() {
            views.push(LinkView {
                link_name: name.clone(),
                link_id: record
                    .as_ref()
                    .map(|r| r.link_id.clone())
                    .unwrap_or_default(),
                source_cluster_id: record
                    .as_ref()
                    .map(|r| r.source_cluster_id.clone())
                    .unwrap_or_default(),
                destination_cluster_id: destination_cluster_id.clone(),
                configs: record
                    .as_ref()
                    .map(|r| link_config::redact(&r.config))
                    .unwrap_or_default(),
                remote_cluster_available: false,
                link_state: "FAILED".to_string(),
                link_error_message: Some(reason.clone()),
                tasks: Vec::new(),
            });
        }
        views.sort_by(|a, b| a.link_name.cmp(&b.link_name));
        Ok(views)
    }

    /// The link's configs, secrets redacted; keys fixed at creation are read-only.
    pub async fn link_configs(&self, name: &str) -> Result<Vec<LinkConfigView>, ApiError> {
        let state = self.inner.loaded_state()?;
        let link = state.links.get(name).ok_or_else(|| not_found(name))?;
        Ok(link_config::redact(&link.config)
            .into_iter()
            .map(|(key, value)| LinkConfigView {
                read_only: FIXED_AT_CREATION.contains(&key.as_str()),
                sensitive: link_config::SECRET_KEYS.contains(&key.as_str()),
                name: key,
                value,
            })
            .collect())
    }

    /// Sets and deletes link configs. The whole new config is validated first; a new
    /// way to reach the source must reach the same cluster. Connection or pause changes
    /// restart the link's mirror tasks (they resume where the destination ends).
    pub async fn alter_link(
        &self,
        name: &str,
        set: BTreeMap<String, String>,
        delete: &[String],
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let (link, catalog) = {
            let state = self.inner.current_state().await?;
            let link = state
                .links
                .get(name)
                .cloned()
                .ok_or_else(|| not_found(name))?;
            (link, state.catalog.clone())
        };
        let fixed: Vec<String> = set
            .keys()
            .chain(delete)
            .filter(|k| FIXED_AT_CREATION.contains(&k.as_str()))
            .map(|k| format!("{k}: fixed at link creation and cannot be altered"))
            .collect();
        if !fixed.is_empty() {
            return Err(ApiError::Invalid(fixed.join("; ")));
        }
        let mut raw = link.config.clone();
        for key in delete {
            raw.remove(key);
        }
        raw.extend(set.clone());
        let resupply = credentials_to_resupply(&link.config, &set, &raw);
        if !resupply.is_empty() {
            return Err(ApiError::Invalid(format!(
                "bootstrap.servers: a new server gets the link's credentials only when the request gives them again; resupply {}",
                resupply.join(", ")
            )));
        }
        let config = self.validated(raw)?;
        let changed = |key: &str| link.config.get(key) != config.raw.get(key);
        let connection_changed = link
            .config
            .keys()
            .chain(config.raw.keys())
            .any(|k| is_connection_key(k) && changed(k));
        if connection_changed {
            let reached = source_cluster_id(&config).await?;
            if !link.source_cluster_id.is_empty() && reached != link.source_cluster_id {
                return Err(ApiError::Invalid(format!(
                    "bootstrap.servers: reaches cluster '{reached}', not the link's source cluster '{}'",
                    link.source_cluster_id
                )));
            }
        }
        if validate_only {
            return Ok(());
        }
        let mut record = link.clone();
        record.config = config.raw;
        record.version = catalog.next_version(&format!("{LINK_PREFIX}{name}"));
        // Tasks restart when the record is applied (`reconcile`).
        self.put_link(name, Some(&record)).await?;
        tracing::info!(link = name, "cluster link altered");
        Ok(())
    }

    pub async fn delete_link(&self, name: &str, force: bool) -> Result<(), ApiError> {
        let (has_mirrors, producers) = {
            let state = self.inner.current_state().await?;
            if !state.links.contains_key(name) && !state.failed_links.contains_key(name) {
                return Err(not_found(name));
            }
            let has_mirrors = state
                .mirrors
                .values()
                .any(|m| m.record.link == name && m.record.state != MirrorState::Stopped);
            (has_mirrors, state.catalog.producer_keys(name))
        };
        if has_mirrors && !force {
            return Err(ApiError::Invalid(format!(
                "Cluster link '{name}' has active mirror topics; stop them first or use --force."
            )));
        }
        // Applied when read back: the link's runtime, fetchers and every copier of its
        // mirrors stop.
        self.put_link(name, None).await?;
        // Forward mode's producer mappings of the link are garbage now; every instance
        // already forgot them at the link's tombstone, and these let compaction drop
        // them from the topic too. Deleting twice is harmless.
        let count = producers.len();
        let keys = producers
            .into_iter()
            .map(|rest| format!("{PRODUCER_PREFIX}{rest}"))
            .collect();
        if let Err(e) = store::delete_keys(&self.inner.dest, keys).await {
            tracing::warn!(link = name, count, error = %e, "producer records of the deleted link not deleted");
        }
        Ok(())
    }
}

fn not_found(link: &str) -> ApiError {
    ApiError::NotFound(format!("Cluster link '{link}' does not exist."))
}

/// What copying and the syncs ask of a source broker, at least (Kafka 3.0 and newer
/// serve all of it; the offset sync takes newer versions where a broker has them).
const SOURCE_NEEDS: &[(ApiKey, i16)] = &[
    (ApiKey::Metadata, 12),
    (ApiKey::Fetch, 12),
    (ApiKey::ListOffsets, 7),
    (ApiKey::DescribeConfigs, 4),
    (ApiKey::FindCoordinator, 4),
    (ApiKey::OffsetFetch, 8),
];

/// The source's cluster id, proving the link config reaches it and its brokers serve
/// what mirrorgate asks of them.
async fn source_cluster_id(config: &LinkConfig) -> Result<String, ApiError> {
    let source = Source::from_config(config).map_err(ApiError::Invalid)?;
    let mut conn = tokio::time::timeout(Duration::from_secs(15), source.connect_any())
        .await
        .map_err(|_| {
            ApiError::Unavailable("bootstrap.servers: the source cluster did not answer".into())
        })?
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "bootstrap.servers: the source cluster is unreachable: {e}"
            ))
        })?;
    let mut missing = Vec::new();
    for &(api, version) in SOURCE_NEEDS {
        match conn.max_version(api).await.map_err(unavailable)? {
            Some(max) if max >= version => {}
            Some(max) => missing.push(format!("{api:?} v{version} (it serves up to v{max})")),
            None => missing.push(format!("{api:?} (it does not serve it)")),
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::Invalid(format!(
            "bootstrap.servers: the source cluster's brokers lack {}; mirrorgate needs Kafka 3.0 or newer",
            missing.join(", ")
        )));
    }
    let metadata = admin::metadata(&mut conn, Some(&[]))
        .await
        .map_err(unavailable)?;
    Ok(metadata
        .cluster_id
        .map(|c| c.as_str().to_string())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Java properties, one `key=value` a line.
    fn props(text: &str) -> BTreeMap<String, String> {
        link_config::parse_properties(text).unwrap()
    }

    #[test]
    fn a_new_server_needs_every_stored_credential_again() {
        let stored = props(
            "bootstrap.servers=a:9092,b:9092\nsasl.jaas.config=secret\n\
             ssl.keystore.key=key\nssl.truststore.certificates=ca",
        );
        let with = |set: &BTreeMap<String, String>| {
            let mut new = stored.clone();
            new.extend(set.clone());
            credentials_to_resupply(&stored, set, &new)
        };
        // Same or fewer servers: nothing to resupply.
        assert!(with(&props("bootstrap.servers=B:9092")).is_empty());
        assert!(with(&props("topic.config.sync.ms=1000")).is_empty());
        assert_eq!(
            with(&props("bootstrap.servers=evil:9092")),
            ["sasl.jaas.config", "ssl.keystore.key"]
        );
        assert_eq!(
            with(&props(
                "bootstrap.servers=evil:9092\nsasl.jaas.config=again"
            )),
            ["ssl.keystore.key"]
        );
        // A credential the alter deletes is not sent anywhere.
        let set = props("bootstrap.servers=evil:9092\nsasl.jaas.config=x");
        let mut new = stored.clone();
        new.remove("ssl.keystore.key");
        new.extend(set.clone());
        assert!(credentials_to_resupply(&stored, &set, &new).is_empty());
    }
}
