//! Cluster link configuration: Java properties, as operators write them for Confluent
//! (`--config k=v,...` or `--config-file config.txt`), checked key by key. Every
//! problem is reported at once, naming the key; an unknown key is an error.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::kafka::acls::AclFilter;

/// Parses Java properties text as Java does (`key=value`, `key: value` or `key value`;
/// `#` and `!` comments; a trailing backslash continues the line; `\uXXXX` and other
/// escapes). The text is UTF-8 (Java's `Properties.load(InputStream)` would read
/// Latin-1 and garble any other character). Values are trimmed, as Kafka trims config
/// values.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut parsed = BTreeMap::new();
    java_properties::PropertiesIter::new_with_encoding(text.as_bytes(), encoding_rs::UTF_8)
        .read_into(|k, v| {
            parsed.insert(k, v.trim().to_string());
        })
        .map_err(|e| e.to_string())?;
    Ok(parsed)
}

/// `--config k=v,k2=v2` (values may not contain commas; use --config-file for those).
pub fn parse_inline(config: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in config.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("'{pair}' is not key=value"))?;
        out.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
    /// Milliseconds since the epoch, from an ISO-8601 timestamp.
    Timestamp(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

/// `{"groupFilters":[...]}` / `{"topicFilters":[...]}` entries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub name: String,
    #[serde(rename = "patternType")]
    pub pattern_type: PatternType,
    #[serde(rename = "filterType")]
    pub filter_type: FilterType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PatternType {
    Literal,
    Prefixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FilterType {
    Include,
    Exclude,
}

/// Confluent's rule: `"*"` LITERAL matches everything, a name no filter includes is
/// excluded, and EXCLUDE wins over INCLUDE.
pub fn filters_match(filters: &[Filter], name: &str) -> bool {
    let hits = |f: &&Filter| match f.pattern_type {
        PatternType::Literal => f.name == "*" || f.name == name,
        PatternType::Prefixed => name.starts_with(&f.name),
    };
    let matching: Vec<&Filter> = filters.iter().filter(hits).collect();
    !matching.is_empty()
        && matching
            .iter()
            .all(|f| f.filter_type == FilterType::Include)
}

fn parse_filters(json: &str, field: &str) -> Result<Vec<Filter>, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let list = value
        .get(field)
        .ok_or_else(|| format!("expected {{\"{field}\": [...]}}"))?;
    serde_json::from_value(list.clone()).map_err(|e| e.to_string())
}

/// What the proxy does with Produce to an ACTIVE mirror of the link
/// (`mirror.produce.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProduceMode {
    /// Refused per partition with INVALID_REQUEST and Confluent's message.
    #[default]
    Reject,
    /// Sent to the source cluster's partition leader; its answer returned to the client.
    Forward,
}

pub const PRODUCE_MODE_KEY: &str = "mirror.produce.mode";

/// `DESTINATION` (the default: this fleet mirrors from the link's cluster) or
/// `BIDIRECTIONAL` (each side's fleet has a link to the other, and mirrors copy both
/// ways: a topic that is a mirror of ours on the other side is never mirrored back).
pub const LINK_MODE_KEY: &str = "link.mode";
/// The other fleet's metadata topic, when its name differs from ours: read for
/// bidirectional links and by truncate-and-restore.
pub const REMOTE_METADATA_TOPIC_KEY: &str = "mirror.remote.metadata.topic";

/// Bytes per second the whole link (or one mirror) copies at most (unset: unlimited).
pub const THROTTLED_RATE_KEY: &str = "mirror.replication.throttled.rate";

/// A `mirror.replication.throttled.rate` value: a positive number of bytes per second.
pub fn parse_throttled_rate(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(rate) if rate > 0 => Ok(rate),
        _ => Err(format!(
            "{THROTTLED_RATE_KEY}: '{value}' is not a positive number of bytes per second"
        )),
    }
}

impl ProduceMode {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "reject" => Some(Self::Reject),
            "forward" => Some(Self::Forward),
            _ => None,
        }
    }

    /// The mode of a stored link config; a value that does not parse (a record that
    /// skipped validation) is the default, refusing.
    pub fn of(raw: &BTreeMap<String, String>) -> Self {
        raw.get(PRODUCE_MODE_KEY)
            .and_then(|v| Self::parse(v))
            .unwrap_or_default()
    }
}

/// A validated link configuration; `raw` keeps every key as given (for storage and
/// describe, secrets redacted by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    pub raw: BTreeMap<String, String>,
    pub bootstrap_servers: Vec<String>,
    pub security_protocol: SecurityProtocol,
    pub start_offset: StartOffset,
    pub paused: bool,
    pub retry_timeout: Duration,
    pub availability_check: Duration,
    pub availability_failure_threshold: u32,
    pub consumer_offset_sync: bool,
    pub consumer_offset_sync_interval: Duration,
    pub group_filters: Vec<Filter>,
    pub topic_config_sync_interval: Duration,
    pub auto_create_mirror_topics: bool,
    pub topic_filters: Vec<Filter>,
    pub prefix: Option<String>,
    /// With a prefix: synced consumer groups get it too.
    pub group_prefix: bool,
    pub produce_mode: ProduceMode,
    /// `mirror.replication.throttled.rate`: bytes per second the whole link copies at
    /// most, over every instance; None: unlimited.
    pub replication_throttled_rate: Option<u64>,
    /// `link.mode=BIDIRECTIONAL`.
    pub bidirectional: bool,
    /// `mirror.remote.metadata.topic`.
    pub remote_metadata_topic: Option<String>,
    /// `acl.sync.enable`, `acl.sync.ms`, `acl.filters` (`acl_sync`).
    pub acl_sync: bool,
    pub acl_sync_interval: Duration,
    pub acl_filters: Vec<AclFilter>,
}

/// Shortest `acl.sync.ms`: each round describes ACLs on both clusters.
const MIN_ACL_SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// Keys taken as given (passed to the source connection or kept for later features).
const PASSED_THROUGH: &[&str] = &[
    "sasl.mechanism",
    "sasl.jaas.config",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
];

/// Keys whose values are secrets.
pub const SECRET_KEYS: &[&str] = &["sasl.jaas.config", "ssl.keystore.key", "ssl.key.password"];

impl LinkConfig {
    /// Validates `raw`; every problem is listed, each naming its key.
    pub fn from_properties(raw: BTreeMap<String, String>) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let get = |key: &str| raw.get(key).map(String::as_str);
        let ms = |key: &str, default: u64, errors: &mut Vec<String>| -> Duration {
            match get(key) {
                None => Duration::from_millis(default),
                Some(v) => v
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .unwrap_or_else(|_| {
                        errors.push(format!(
                            "{key}: '{v}' is not a non-negative number of milliseconds"
                        ));
                        Duration::from_millis(default)
                    }),
            }
        };
        let retry_timeout = ms("cluster.link.retry.timeout.ms", 300_000, &mut errors);
        let availability_check = ms("availability.check.ms", 60_000, &mut errors);
        let consumer_offset_sync_interval = ms("consumer.offset.sync.ms", 30_000, &mut errors);
        let topic_config_sync_interval = ms("topic.config.sync.ms", 5_000, &mut errors);
        let acl_sync_interval = ms("acl.sync.ms", 5_000, &mut errors);
        if acl_sync_interval < MIN_ACL_SYNC_INTERVAL {
            errors.push(format!(
                "acl.sync.ms: at least {} ms",
                MIN_ACL_SYNC_INTERVAL.as_millis()
            ));
        }
        let boolean = |key: &str, errors: &mut Vec<String>| match get(key) {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => {
                errors.push(format!("{key}: '{v}' is not true or false"));
                false
            }
        };
        let paused = boolean("cluster.link.paused", &mut errors);
        let consumer_offset_sync = boolean("consumer.offset.sync.enable", &mut errors);
        let auto_create_mirror_topics = boolean("auto.create.mirror.topics.enable", &mut errors);
        let acl_sync = boolean("acl.sync.enable", &mut errors);
        let group_prefix = boolean("consumer.group.prefix.enable", &mut errors);

        let bootstrap_servers: Vec<String> = get("bootstrap.servers")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if bootstrap_servers.is_empty() {
            errors.push("bootstrap.servers: required".into());
        }
        for server in &bootstrap_servers {
            if !server
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                errors.push(format!("bootstrap.servers: '{server}' is not host:port"));
            }
        }
        let security_protocol = match get("security.protocol")
            .unwrap_or("PLAINTEXT")
            .to_ascii_uppercase()
            .as_str()
        {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            other => {
                errors.push(format!("security.protocol: '{other}' is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"));
                SecurityProtocol::Plaintext
            }
        };
        let start_offset = match get("mirror.start.offset.spec").unwrap_or("earliest") {
            "earliest" => StartOffset::Earliest,
            "latest" => StartOffset::Latest,
            other => match parse_iso8601_ms(other) {
                Some(ms) => StartOffset::Timestamp(ms),
                None => {
                    errors.push(format!(
                        "mirror.start.offset.spec: '{other}' is not earliest, latest or an ISO-8601 timestamp"
                    ));
                    StartOffset::Earliest
                }
            },
        };
        let availability_failure_threshold = match get(
            "availability.check.consecutive.failure.threshold",
        ) {
            None => 5,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    errors.push(format!(
                        "availability.check.consecutive.failure.threshold: '{v}' is not a number of at least 1"
                    ));
                    5
                }
            },
        };
        let filters = |key: &str, field: &str, errors: &mut Vec<String>| match get(key) {
            None | Some("") => Vec::new(),
            Some(json) => parse_filters(json, field).unwrap_or_else(|e| {
                errors.push(format!("{key}: {e}"));
                Vec::new()
            }),
        };
        let group_filters = filters("consumer.offset.group.filters", "groupFilters", &mut errors);
        let topic_filters = filters(
            "auto.create.mirror.topics.filters",
            "topicFilters",
            &mut errors,
        );
        let acl_filters = match get("acl.filters") {
            None | Some("") => Vec::new(),
            Some(json) => crate::kafka::acls::parse_filters(json).unwrap_or_else(|e| {
                errors.push(format!("acl.filters: {e}"));
                Vec::new()
            }),
        };
        if acl_sync && get("acl.filters").is_none_or(str::is_empty) {
            errors.push("acl.filters: required with acl.sync.enable=true".into());
        }
        let prefix = get("cluster.link.prefix").map(String::from);
        if prefix
            .as_ref()
            .is_some_and(|p| p.len() > 12 || !crate::config::valid_topic_name(p))
        {
            errors.push("cluster.link.prefix: at most 12 characters of a legal topic name".into());
        }
        let produce_mode = match get(PRODUCE_MODE_KEY) {
            None => ProduceMode::Reject,
            Some(v) => ProduceMode::parse(v).unwrap_or_else(|| {
                errors.push(format!(
                    "{PRODUCE_MODE_KEY}: '{v}' is not reject or forward"
                ));
                ProduceMode::Reject
            }),
        };
        let replication_throttled_rate =
            get(THROTTLED_RATE_KEY).and_then(|v| match parse_throttled_rate(v) {
                Ok(rate) => Some(rate),
                Err(e) => {
                    errors.push(e);
                    None
                }
            });
        let bidirectional = match get(LINK_MODE_KEY) {
            None | Some("DESTINATION") => false,
            Some("BIDIRECTIONAL") => true,
            Some(other) => {
                errors.push(format!(
                    "{LINK_MODE_KEY}: '{other}' is not DESTINATION or BIDIRECTIONAL (source-initiated links are not supported)"
                ));
                false
            }
        };
        let remote_metadata_topic = get(REMOTE_METADATA_TOPIC_KEY).map(String::from);
        if remote_metadata_topic
            .as_deref()
            .is_some_and(|t| !crate::config::valid_topic_name(t))
        {
            errors.push(format!(
                "{REMOTE_METADATA_TOPIC_KEY}: not a legal topic name"
            ));
        }
        if group_prefix && prefix.is_none() {
            errors.push("consumer.group.prefix.enable: needs cluster.link.prefix".into());
        }
        if matches!(
            security_protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        ) && get("sasl.jaas.config").is_none()
        {
            errors.push("sasl.jaas.config: required with a SASL security.protocol".into());
        }

        const TYPED: &[&str] = &[
            "bootstrap.servers",
            "security.protocol",
            "mirror.start.offset.spec",
            "cluster.link.paused",
            "cluster.link.retry.timeout.ms",
            "cluster.link.prefix",
            "consumer.group.prefix.enable",
            "availability.check.ms",
            "availability.check.consecutive.failure.threshold",
            "consumer.offset.sync.enable",
            "consumer.offset.group.filters",
            "consumer.offset.sync.ms",
            "topic.config.sync.ms",
            "auto.create.mirror.topics.enable",
            "auto.create.mirror.topics.filters",
            "acl.sync.enable",
            "acl.sync.ms",
            "acl.filters",
            PRODUCE_MODE_KEY,
            THROTTLED_RATE_KEY,
            LINK_MODE_KEY,
            REMOTE_METADATA_TOPIC_KEY,
        ];
        for key in raw.keys() {
            if !TYPED.contains(&key.as_str()) && !PASSED_THROUGH.contains(&key.as_str()) {
                errors.push(format!("{key}: unknown cluster link config"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            raw,
            bootstrap_servers,
            security_protocol,
            start_offset,
            paused,
            retry_timeout,
            availability_check,
            availability_failure_threshold,
            consumer_offset_sync,
            consumer_offset_sync_interval,
            group_filters,
            topic_config_sync_interval,
            auto_create_mirror_topics,
            topic_filters,
            prefix,
            group_prefix,
            produce_mode,
            replication_throttled_rate,
            bidirectional,
            remote_metadata_topic,
            acl_sync,
            acl_sync_interval,
            acl_filters,
        })
    }

    /// The config as stored or shown: secrets replaced by "***".
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.raw
            .iter()
            .map(|(k, v)| {
                let shown = if SECRET_KEYS.contains(&k.as_str()) {
                    "***".to_string()
                } else {
                    v.clone()
                };
                (k.clone(), shown)
            })
            .collect()
    }
}

/// A link config as shown to users: secrets replaced by "***".
pub fn redact(config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    config
        .iter()
        .map(|(k, v)| {
            let shown = if SECRET_KEYS.contains(&k.as_str()) {
                "***".to_string()
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

/// `2023-04-20T16:03:05Z`, `2023-04-20T16:03:05.123Z`, `2023-04-20T16:03:05+09:00`:
/// an RFC 3339 instant, checked as a real date (no 2023-02-31).
fn parse_iso8601_ms(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_sync_needs_filters_and_every_bad_key_is_named() {
        let parse = |pairs: &[(&str, &str)]| {
            let mut raw: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            raw.insert("bootstrap.servers".into(), "h:9092".into());
            LinkConfig::from_properties(raw)
        };
        let errors = parse(&[("acl.sync.enable", "true")]).unwrap_err();
        assert_eq!(
            errors,
            vec!["acl.filters: required with acl.sync.enable=true"]
        );
        let errors = parse(&[
            (
                "acl.filters",
                r#"{"aclFilters":[{"resourceFilter":{"resourceType":"table"}}]}"#,
            ),
            ("acl.sync.ms", "5"),
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("acl.sync.ms: "), "{errors:?}");
        assert!(
            errors[1].starts_with("acl.filters: resourceType: 'table'"),
            "{errors:?}"
        );
        let config = parse(&[
            ("acl.sync.enable", "true"),
            (
                "acl.filters",
                r#"{"aclFilters":[{"resourceFilter":{"resourceType":"topic"}}]}"#,
            ),
        ])
        .unwrap();
        assert!(config.acl_sync);
        assert_eq!(config.acl_filters.len(), 1);
        assert_eq!(config.acl_sync_interval, Duration::from_secs(5));
    }

    #[test]
    fn parses_the_walkthrough_config_file() {
        let text = "# link\nconsumer.offset.sync.enable=true\nbootstrap.servers=ig-test1:9092\n";
        let raw = parse_properties(text).unwrap();
        let config = LinkConfig::from_properties(raw).unwrap();
        assert!(config.consumer_offset_sync);
        assert_eq!(config.bootstrap_servers, ["ig-test1:9092"]);
        assert_eq!(config.start_offset, StartOffset::Earliest);
    }

    #[test]
    fn the_replication_throttle_is_bytes_per_second_or_unlimited() {
        let parse = |text: &str| LinkConfig::from_properties(parse_inline(text).unwrap());
        let limited = parse("bootstrap.servers=h:1,mirror.replication.throttled.rate=1048576");
        assert_eq!(limited.unwrap().replication_throttled_rate, Some(1 << 20));
        assert_eq!(
            parse("bootstrap.servers=h:1")
                .unwrap()
                .replication_throttled_rate,
            None
        );
        assert!(parse("bootstrap.servers=h:1,mirror.replication.throttled.rate=-1").is_err());
    }

    #[test]
    fn a_link_is_bidirectional_only_when_it_says_so() {
        let parse = |text: &str| LinkConfig::from_properties(parse_inline(text).unwrap());
        assert!(!parse("bootstrap.servers=h:1").unwrap().bidirectional);
        assert!(
            !parse("bootstrap.servers=h:1,link.mode=DESTINATION")
                .unwrap()
                .bidirectional
        );
        let both =
            parse("bootstrap.servers=h:1,link.mode=BIDIRECTIONAL,mirror.remote.metadata.topic=_md")
                .unwrap();
        assert!(both.bidirectional);
        assert_eq!(both.remote_metadata_topic.as_deref(), Some("_md"));
        let errors =
            parse("bootstrap.servers=h:1,link.mode=SOURCE,mirror.remote.metadata.topic=a b")
                .unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with("link.mode:")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("mirror.remote.metadata.topic:")),
            "{errors:?}"
        );
    }

    #[test]
    fn properties_syntax() {
        let raw = parse_properties("a = 1\nb: two\nc three\n! comment\nd=x\\\n  y\n").unwrap();
        assert_eq!(raw["a"], "1");
        assert_eq!(raw["b"], "two");
        assert_eq!(raw["c"], "three");
        assert_eq!(raw["d"], "xy");
        let escaped = parse_properties("a\\:b = caf\\u00e9\n").unwrap();
        assert_eq!(escaped["a:b"], "caf\u{e9}");
        let utf8 = parse_properties("sasl.password=pässwörd\n").unwrap();
        assert_eq!(utf8["sasl.password"], "pässwörd", "UTF-8 text stays UTF-8");
        assert_eq!(
            parse_inline("bootstrap.servers=h:1, cluster.link.paused=true")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn every_bad_key_is_reported() {
        let raw = parse_inline(
            "bootstrap.servers=nohost,cluster.link.paused=maybe,mirror.start.offset.spec=soon,typo.key=1,mirror.produce.mode=sideways,mirror.replication.throttled.rate=0",
        )
        .unwrap();
        let errors = LinkConfig::from_properties(raw).unwrap_err();
        for key in [
            "bootstrap.servers",
            "cluster.link.paused",
            "mirror.start.offset.spec",
            "typo.key",
            "mirror.produce.mode",
            "mirror.replication.throttled.rate",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(key)),
                "{key} in {errors:?}"
            );
        }
    }

    #[test]
    fn group_filters_follow_confluent_rules() {
        let raw = parse_inline("bootstrap.servers=h:1").unwrap();
        let mut raw = raw;
        raw.insert(
            "consumer.offset.group.filters".into(),
            r#"{"groupFilters":[{"name":"*","patternType":"LITERAL","filterType":"INCLUDE"},
                {"name":"tmp-","patternType":"PREFIXED","filterType":"EXCLUDE"}]}"#
                .into(),
        );
        let config = LinkConfig::from_properties(raw).unwrap();
        assert!(filters_match(&config.group_filters, "orders-app"));
        assert!(
            !filters_match(&config.group_filters, "tmp-1"),
            "EXCLUDE wins"
        );
        assert!(!filters_match(&[], "any"), "no filter, no group");
    }

    #[test]
    fn timestamps_and_secrets() {
        assert_eq!(parse_iso8601_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(
            parse_iso8601_ms("2023-04-20T16:03:05.5+09:00"),
            Some(1_681_974_185_500)
        );
        assert_eq!(parse_iso8601_ms("yesterday"), None);
        assert_eq!(
            parse_iso8601_ms("2023-02-31T00:00:00Z"),
            None,
            "no such day"
        );
        assert_eq!(parse_iso8601_ms("2023-04-20T16:03:05"), None, "no offset");
        // These overflowed the millisecond arithmetic (the link_config fuzz target).
        assert_eq!(parse_iso8601_ms("9999999999999999-01-01T00:00:00Z"), None);
        assert_eq!(parse_iso8601_ms("2023-01-01T-9999999999999:00:00Z"), None);
        assert_eq!(
            parse_iso8601_ms("2023-01-01T00:00:00+9999999999999999:00"),
            None
        );
        assert_eq!(
            parse_iso8601_ms("9999-12-30T00:00:00.999Z"),
            Some(253_402_128_000_999)
        );
        let mut raw =
            parse_inline("bootstrap.servers=h:1,security.protocol=SASL_PLAINTEXT").unwrap();
        raw.insert("sasl.jaas.config".into(), "secret stuff".into());
        let config = LinkConfig::from_properties(raw).unwrap();
        assert_eq!(config.redacted()["sasl.jaas.config"], "***");
    }
}
