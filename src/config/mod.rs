//! The TOML configuration: serde model, defaults, and validation that reports every
//! problem at once, each naming its key. `config/mirrorgate.example.toml` documents it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod admin;
pub mod routing;

pub use admin::AdminConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config file {path}:\n  {}", .errors.join("\n  "))]
    Invalid { path: PathBuf, errors: Vec<String> },
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub destination: DestinationConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub replicator: ReplicatorConfig,
    #[serde(default)]
    pub mirror_topics: Vec<MirrorTopicConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Bootstrap listener that clients point at.
    pub bind: String,
    /// Host written into every rewritten broker address.
    pub advertised_host: String,
    /// Destination node N is served at advertised_host:(broker_port_base + N).
    pub broker_port_base: u16,
    #[serde(default = "defaults::max_frame_bytes")]
    pub max_frame_bytes: usize,
    #[serde(default = "defaults::max_in_flight_per_connection")]
    pub max_in_flight_per_connection: usize,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Connections the kernel completes ahead of our accepting them, per listener
    /// (Kafka's `socket.listen.backlog.size`); capped by the kernel's `somaxconn`. A
    /// reload applies it to listeners opened afterwards.
    #[serde(default = "defaults::listen_backlog")]
    pub listen_backlog: u32,
    #[serde(default = "defaults::shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// How broker addresses are handed out: a port per broker, or SNI names on the
    /// bootstrap port (needs TLS).
    #[serde(default)]
    pub routing: RoutingMode,
    /// With routing = "sni": broker N's host name, `$(node_id)` replaced by N.
    pub sni_broker_pattern: Option<String>,
    /// With routing = "sni": the host name of the bootstrap address.
    pub sni_bootstrap_host: Option<String>,
    #[serde(default = "defaults::tls_handshake_timeout_ms")]
    pub tls_handshake_timeout_ms: u64,
    /// Bytes of client request frames buffered across all connections (read, or being
    /// processed); a connection that finds it spent stops reading until there is room.
    /// Fixed at start.
    #[serde(default = "defaults::max_buffered_request_bytes")]
    pub max_buffered_request_bytes: usize,
    /// A client that sends no whole first request within this is closed (the
    /// destination connection is opened only on that first request).
    #[serde(default = "defaults::first_request_timeout_ms")]
    pub first_request_timeout_ms: u64,
    /// A client that sends no whole request for this long is closed; the default is
    /// the brokers' `connections.max.idle.ms`, so clients see no difference.
    #[serde(default = "defaults::client_idle_timeout_ms")]
    pub client_idle_timeout_ms: u64,
    /// Present: every proxy listener speaks TLS only.
    pub tls: Option<ProxyTlsConfig>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    #[default]
    Port,
    Sni,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyTlsConfig {
    /// Certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Present: clients must present a certificate signed by this CA (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DestinationTlsConfig {
    /// CA that signed the brokers' certificates (PEM).
    pub ca_file: PathBuf,
    /// Client certificate and key, when the brokers require one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplicatorConfig {
    /// Copy mirror topics and run link jobs in this process. Replicating instances on
    /// the same metadata topic share the work through a consumer group (`group_id`).
    #[serde(default)]
    pub enabled: bool,
    /// Compacted topic on the destination holding links, mirrors and their states.
    #[serde(default = "defaults::metadata_topic")]
    pub metadata_topic: String,
    /// Replication factor of the metadata topic when mirrorgate creates it; the
    /// destination broker's `default.replication.factor` when unset.
    pub metadata_topic_replication_factor: Option<i16>,
    /// 32-byte key (hex or base64) sealing link credentials in the metadata topic.
    pub secret_key_file: Option<PathBuf>,
    /// Bytes fetched from a link's source and not yet acknowledged by the destination;
    /// a slower destination slows the fetching instead of filling memory.
    #[serde(default = "defaults::max_bytes_in_flight_per_link")]
    pub max_bytes_in_flight_per_link: usize,
    /// The consumer group replicating instances share the copying through; default
    /// `mirrorgate.<metadata_topic>`.
    pub group_id: Option<String>,
    /// Static group membership (`group.instance.id`): a restart within the session
    /// timeout keeps this instance's share without a rebalance.
    pub instance_id: Option<String>,
    /// How long the group waits for a silent instance before its share moves to the
    /// others (the takeover time after a crash); the broker allows 6 s to 30 min.
    #[serde(default = "defaults::session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// Threads of the runtime the mirror partitions are copied on, apart from the
    /// proxy's (read at start). One copies a GB with the least CPU; more serve
    /// destinations faster than one core can feed.
    #[serde(default = "defaults::copy_threads")]
    pub copy_threads: usize,
}

impl ReplicatorConfig {
    pub fn group_id(&self) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("mirrorgate.{}", self.metadata_topic))
    }
}

impl Default for ReplicatorConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            metadata_topic: defaults::metadata_topic(),
            metadata_topic_replication_factor: None,
            secret_key_file: None,
            max_bytes_in_flight_per_link: defaults::max_bytes_in_flight_per_link(),
            group_id: None,
            instance_id: None,
            session_timeout_ms: defaults::session_timeout_ms(),
            copy_threads: defaults::copy_threads(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "mirrorgate=debug,info"; RUST_LOG wins at start.
    pub level: Option<String>,
}

/// The destination's SASL settings are the Kafka client's own credentials.
pub use crate::kafka::sasl::{SaslConfig, SaslMechanism};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Comma-separated host:port list, as in a Kafka client's bootstrap.servers.
    pub bootstrap_servers: String,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "defaults::metadata_refresh_ms")]
    pub metadata_refresh_ms: u64,
    /// Present: the proxy speaks TLS to the brokers.
    pub tls: Option<DestinationTlsConfig>,
    /// Present: mirrorgate's own connections authenticate with SASL (clients' SASL
    /// passes through the proxy untouched).
    pub sasl: Option<SaslConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MirrorTopicConfig {
    pub name: String,
}

mod defaults {
    pub fn max_bytes_in_flight_per_link() -> usize {
        64 * 1024 * 1024
    }
    pub fn max_frame_bytes() -> usize {
        100 * 1024 * 1024
    }
    pub fn max_in_flight_per_connection() -> usize {
        256
    }
    pub fn max_connections() -> usize {
        10_000
    }
    /// A burst of reconnecting clients (a restart behind a load balancer) outruns
    /// accept() at once; with a short queue the kernel drops their SYNs and each waits
    /// a 1 s retransmission.
    pub fn listen_backlog() -> u32 {
        1024
    }
    pub fn shutdown_grace_ms() -> u64 {
        10_000
    }
    pub fn connect_timeout_ms() -> u64 {
        10_000
    }
    pub fn metadata_refresh_ms() -> u64 {
        30_000
    }
    pub fn tls_handshake_timeout_ms() -> u64 {
        10_000
    }
    pub fn max_buffered_request_bytes() -> usize {
        256 * 1024 * 1024
    }
    pub fn first_request_timeout_ms() -> u64 {
        30_000
    }
    pub fn client_idle_timeout_ms() -> u64 {
        600_000
    }
    pub fn metadata_topic() -> String {
        "_mirrorgate-metadata".to_string()
    }
    pub fn session_timeout_ms() -> u64 {
        10_000
    }
    pub fn copy_threads() -> usize {
        1
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        let mut errors = config.validate();
        if let Err(e) = config.admin.read_token() {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                errors,
            })
        }
    }

    /// File paths in the config are relative to the config file's folder, so a reload
    /// reads the same files whatever the working directory.
    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(tls) = &mut self.proxy.tls {
            join(&mut tls.cert_file);
            join(&mut tls.key_file);
            if let Some(ca) = &mut tls.client_ca_file {
                join(ca);
            }
        }
        if let Some(key) = &mut self.replicator.secret_key_file {
            join(key);
        }
        if let Some(token) = &mut self.admin.token_file {
            join(token);
        }
        if let Some(tls) = &mut self.destination.tls {
            join(&mut tls.ca_file);
            for p in [&mut tls.cert_file, &mut tls.key_file]
                .into_iter()
                .flatten()
            {
                join(p);
            }
        }
    }

    /// Every problem, each prefixed with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, msg: String| {
            if !ok {
                errors.push(msg);
            }
        };
        let p = &self.proxy;
        check(
            p.bind.parse::<SocketAddr>().is_ok(),
            format!("proxy.bind: '{}' is not an ip:port socket address", p.bind),
        );
        check(
            valid_host(&p.advertised_host),
            format!(
                "proxy.advertised_host: '{}' is not a host name or address",
                p.advertised_host
            ),
        );
        check(
            p.broker_port_base > 0,
            "proxy.broker_port_base: must be a port number above 0".to_string(),
        );
        check(
            (1024..=i32::MAX as usize).contains(&p.max_frame_bytes),
            format!(
                "proxy.max_frame_bytes: {} is outside 1024..=2147483647",
                p.max_frame_bytes
            ),
        );
        check(
            (1..=65_536).contains(&p.max_in_flight_per_connection),
            format!(
                "proxy.max_in_flight_per_connection: {} is outside 1..=65536",
                p.max_in_flight_per_connection
            ),
        );
        check(
            p.max_connections >= 1,
            "proxy.max_connections: must be at least 1".to_string(),
        );
        check(
            (1..=65_535).contains(&p.listen_backlog),
            format!(
                "proxy.listen_backlog: {} is outside 1..=65535",
                p.listen_backlog
            ),
        );
        if p.routing == RoutingMode::Sni {
            check(
                p.tls.is_some(),
                "proxy.routing: \"sni\" needs [proxy.tls] (the server name comes from the TLS handshake)".to_string(),
            );
            check(
                p.sni_broker_pattern
                    .as_deref()
                    .is_some_and(|pattern| pattern.matches("$(node_id)").count() == 1),
                "proxy.sni_broker_pattern: required with routing = \"sni\", containing $(node_id) once".to_string(),
            );
            check(
                p.sni_bootstrap_host.as_deref().is_some_and(valid_host),
                "proxy.sni_bootstrap_host: required with routing = \"sni\"".to_string(),
            );
        }
        check(
            p.tls_handshake_timeout_ms > 0,
            "proxy.tls_handshake_timeout_ms: must be above 0".to_string(),
        );
        check(
            p.max_buffered_request_bytes >= p.max_frame_bytes,
            format!(
                "proxy.max_buffered_request_bytes: {} is below proxy.max_frame_bytes ({}): a largest frame could never be read",
                p.max_buffered_request_bytes, p.max_frame_bytes
            ),
        );
        check(
            p.first_request_timeout_ms > 0,
            "proxy.first_request_timeout_ms: must be above 0".to_string(),
        );
        check(
            p.client_idle_timeout_ms > 0,
            "proxy.client_idle_timeout_ms: must be above 0".to_string(),
        );
        if let Some(tls) = &self.destination.tls {
            check(
                tls.cert_file.is_some() == tls.key_file.is_some(),
                "destination.tls: cert_file and key_file go together".to_string(),
            );
        }
        if let Some(level) = &self.log.level {
            check(
                tracing_subscriber::EnvFilter::try_new(level).is_ok(),
                format!("log.level: '{level}' is not a valid filter"),
            );
        }
        let servers = self.destination.bootstrap_list();
        check(
            !servers.is_empty(),
            "destination.bootstrap_servers: no server given".to_string(),
        );
        for server in &servers {
            check(
                valid_host_port(server),
                format!("destination.bootstrap_servers: '{server}' is not host:port"),
            );
        }
        check(
            self.destination.connect_timeout_ms > 0,
            "destination.connect_timeout_ms: must be above 0".to_string(),
        );
        check(
            self.destination.metadata_refresh_ms >= 100,
            "destination.metadata_refresh_ms: must be at least 100".to_string(),
        );
        check(
            valid_topic_name(&self.replicator.metadata_topic),
            format!(
                "replicator.metadata_topic: '{}' is not a legal topic name",
                self.replicator.metadata_topic
            ),
        );
        check(
            self.replicator
                .metadata_topic_replication_factor
                .is_none_or(|rf| rf >= 1),
            "replicator.metadata_topic_replication_factor: must be at least 1".to_string(),
        );
        check(
            self.replicator.max_bytes_in_flight_per_link > 0,
            "replicator.max_bytes_in_flight_per_link: must be above 0".to_string(),
        );
        check(
            (1..=64).contains(&self.replicator.copy_threads),
            "replicator.copy_threads: must be 1..=64".to_string(),
        );
        check(
            (6_000..=1_800_000).contains(&self.replicator.session_timeout_ms),
            "replicator.session_timeout_ms: must be 6000..=1800000 (the broker's group limits)"
                .to_string(),
        );
        check(
            self.replicator
                .group_id
                .as_ref()
                .is_none_or(|g| !g.is_empty() && g.len() <= 255),
            "replicator.group_id: 1 to 255 characters".to_string(),
        );
        check(
            self.replicator
                .instance_id
                .as_ref()
                .is_none_or(|i| !i.is_empty() && i.len() <= 249),
            "replicator.instance_id: 1 to 249 characters".to_string(),
        );
        let mut seen = HashSet::new();
        for (i, topic) in self.mirror_topics.iter().enumerate() {
            check(
                valid_topic_name(&topic.name),
                format!(
                    "mirror_topics[{i}].name: '{}' is not a legal Kafka topic name",
                    topic.name
                ),
            );
            check(
                seen.insert(topic.name.as_str()),
                format!("mirror_topics[{i}].name: '{}' is listed twice", topic.name),
            );
        }
        self.admin.validate(&mut errors);
        errors
    }
}

impl ProxyConfig {
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        self.bind.parse().ok()
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.tls_handshake_timeout_ms)
    }
    pub fn first_request_timeout(&self) -> Duration {
        Duration::from_millis(self.first_request_timeout_ms)
    }
    pub fn client_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.client_idle_timeout_ms)
    }
}

impl DestinationConfig {
    pub fn bootstrap_list(&self) -> Vec<String> {
        self.bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn metadata_refresh(&self) -> Duration {
        Duration::from_millis(self.metadata_refresh_ms)
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

fn valid_host_port(server: &str) -> bool {
    match server.rsplit_once(':') {
        Some((host, port)) => {
            valid_host(host.trim_matches(['[', ']'])) && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

/// Kafka's rule: 1..=249 chars of [a-zA-Z0-9._-], not "." or "..".
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[proxy]
bind = "127.0.0.1:19092"
advertised_host = "127.0.0.1"
broker_port_base = 19100

[destination]
bootstrap_servers = "127.0.0.1:9092"

[admin]
bind = "127.0.0.1:8090"

[[mirror_topics]]
name = "users"
"#;

    #[test]
    fn parses_the_documented_keys() {
        let config = Config::parse(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(config.proxy.broker_port_base, 19100);
        assert_eq!(config.mirror_topics[0].name, "users");
        assert_eq!(config.proxy.max_frame_bytes, 100 * 1024 * 1024);
    }

    #[test]
    fn the_listen_backlog_defaults_to_1024_and_is_1_to_65535() {
        let config = Config::parse(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(config.proxy.listen_backlog, 1024);
        let set = GOOD.replace(
            "broker_port_base = 19100",
            "broker_port_base = 19100\nlisten_backlog = 4096",
        );
        let config = Config::parse(&set, Path::new("t.toml")).unwrap();
        assert_eq!(config.proxy.listen_backlog, 4096);
        for bad in [0, 65_536] {
            let text = GOOD.replace(
                "broker_port_base = 19100",
                &format!("broker_port_base = 19100\nlisten_backlog = {bad}"),
            );
            let err = Config::parse(&text, Path::new("t.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("proxy.listen_backlog"), "{bad}: {err}");
        }
    }

    #[test]
    fn copying_runs_on_one_thread_by_default_and_on_1_to_64() {
        let config = Config::parse(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(config.replicator.copy_threads, 1);
        let four = format!("{GOOD}\n[replicator]\ncopy_threads = 4\n");
        let config = Config::parse(&four, Path::new("t.toml")).unwrap();
        assert_eq!(config.replicator.copy_threads, 4);
        for bad in [0, 65] {
            let text = format!("{GOOD}\n[replicator]\ncopy_threads = {bad}\n");
            let err = Config::parse(&text, Path::new("t.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("replicator.copy_threads"), "{err}");
        }
    }

    #[test]
    fn the_in_flight_budget_defaults_to_64_mib_and_must_be_positive() {
        let config = Config::parse(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(
            config.replicator.max_bytes_in_flight_per_link,
            64 * 1024 * 1024
        );
        let text = format!("{GOOD}\n[replicator]\nmax_bytes_in_flight_per_link = 0\n");
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("replicator.max_bytes_in_flight_per_link"),
            "{err}"
        );
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mirrorgate.example.toml");
        Config::load(&path).unwrap();
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let text = GOOD.replace("broker_port_base", "broker_port_bsae");
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("broker_port_bsae"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn every_invalid_value_is_reported_at_once() {
        let text = GOOD
            .replace("127.0.0.1:19092", "nowhere")
            .replace("127.0.0.1:9092", "broker-without-port")
            .replace("name = \"users\"", "name = \"bad name!\"");
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        for key in [
            "proxy.bind",
            "destination.bootstrap_servers",
            "mirror_topics[0].name",
        ] {
            assert!(err.contains(key), "{key} missing from: {err}");
        }
    }
}
