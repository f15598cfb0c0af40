//! How a link reaches its source cluster: bootstrap servers, TLS (PEM trust store and
//! key store, as Kafka's `ssl.*` PEM keys) and SASL (`sasl.mechanism` with the
//! username and password of `sasl.jaas.config`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use super::link_config::{LinkConfig, SecurityProtocol};
use crate::config::{SaslConfig, SaslMechanism};
use crate::kafka::client::{ClientError, KafkaConnection};
use crate::tls::{client_config_pem, ClientPem};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CLIENT_ID: &str = "mirrorgate-replicator";

#[derive(Clone)]
pub struct Source {
    pub bootstrap: Vec<String>,
    tls: Option<Arc<ClientConfig>>,
    sasl: Option<SaslConfig>,
    /// The link config it was made from: a connection kept across rounds is not used
    /// once this differs.
    settings: SourceSettings,
}

/// How a source is reached: the keys of the link config it was made from.
pub type SourceSettings = Arc<BTreeMap<String, String>>;

impl Source {
    /// The connection settings of a validated link config; errors name the key.
    pub fn from_config(config: &LinkConfig) -> Result<Self, String> {
        let get = |key: &str| config.raw.get(key).map(String::as_str);
        let read = |key: &str| -> Result<Option<Vec<u8>>, String> {
            match get(key) {
                Some(path) => std::fs::read(path)
                    .map(Some)
                    .map_err(|e| format!("{key}: cannot read '{path}': {e}")),
                None => Ok(None),
            }
        };
        let uses_tls = matches!(
            config.security_protocol,
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
        );
        let tls = if uses_tls {
            let roots = match (
                read("ssl.truststore.location")?,
                get("ssl.truststore.certificates"),
            ) {
                (Some(file), _) => file,
                (None, Some(inline)) => inline.as_bytes().to_vec(),
                (None, None) => {
                    return Err(
                        "ssl.truststore.location: a PEM trust store is required with SSL".into(),
                    )
                }
            };
            let identity = match (
                read("ssl.keystore.location")?,
                get("ssl.keystore.key"),
                get("ssl.keystore.certificate.chain"),
            ) {
                (Some(file), _, _) => Some(ClientPem {
                    certs: file.clone(),
                    key: file,
                    key_name: "ssl.keystore.location",
                }),
                (None, Some(key), Some(chain)) => Some(ClientPem {
                    certs: chain.as_bytes().to_vec(),
                    key: key.as_bytes().to_vec(),
                    key_name: "ssl.keystore.key",
                }),
                _ => None,
            };
            Some(
                client_config_pem("ssl.truststore.location", &roots, identity.as_ref())
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        let uses_sasl = matches!(
            config.security_protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        );
        let sasl = if uses_sasl {
            let mechanism = match get("sasl.mechanism").unwrap_or("GSSAPI") {
                "PLAIN" => SaslMechanism::Plain,
                "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                other => {
                    return Err(format!(
                        "sasl.mechanism: '{other}' is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                    ))
                }
            };
            let jaas = get("sasl.jaas.config").unwrap_or("");
            let field = |name: &str| {
                jaas_option(jaas, name)
                    .ok_or_else(|| format!("sasl.jaas.config: no {name}=\"...\""))
            };
            Some(SaslConfig {
                mechanism,
                username: field("username")?,
                password: field("password")?,
            })
        } else {
            None
        };
        Ok(Self {
            bootstrap: config.bootstrap_servers.clone(),
            tls,
            sasl,
            settings: Arc::new(config.raw.clone()),
        })
    }

    /// The link config this was made from (its keys as given).
    pub fn settings(&self) -> SourceSettings {
        self.settings.clone()
    }

    pub async fn connect(&self, addr: &str) -> Result<KafkaConnection, ClientError> {
        KafkaConnection::connect_with(
            addr,
            CLIENT_ID,
            CONNECT_TIMEOUT,
            self.tls.as_ref(),
            self.sasl.as_ref(),
        )
        .await
    }

    /// The first bootstrap server that answers.
    pub async fn connect_any(&self) -> Result<KafkaConnection, ClientError> {
        KafkaConnection::connect_first(
            &self.bootstrap,
            CLIENT_ID,
            CONNECT_TIMEOUT,
            self.tls.as_ref(),
            self.sasl.as_ref(),
        )
        .await
    }

    /// The end offset (high watermark) of each partition of `topic` on the source now.
    pub async fn end_offsets(
        &self,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<i32, i64>, anyhow::Error> {
        let mut any = self.connect_any().await?;
        let ends = crate::kafka::offsets::end_offsets(
            &mut any,
            |addr| {
                let source = self.clone();
                async move { source.connect(&addr).await }
            },
            topic,
        )
        .await?;
        Ok(ends)
    }
}

impl Source {
    /// As [`Source::end_offsets`], with the leader epoch of each partition's last record.
    pub async fn end_offsets_with_epochs(
        &self,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<i32, (i64, i32)>, anyhow::Error> {
        let mut any = self.connect_any().await?;
        let ends = crate::kafka::offsets::end_offsets_with_epochs(
            &mut any,
            |addr| {
                let source = self.clone();
                async move { source.connect(&addr).await }
            },
            topic,
        )
        .await?;
        Ok(ends)
    }
}

/// `name="value"` from a JAAS line such as
/// `...ScramLoginModule required username="alice" password="alice-secret";`.
fn jaas_option(jaas: &str, name: &str) -> Option<String> {
    let start = jaas.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + jaas[start..].find('"')?;
    Some(jaas[start..end].to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn jaas_options() {
        let jaas = r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="s3cret";"#;
        assert_eq!(
            super::jaas_option(jaas, "username").as_deref(),
            Some("alice")
        );
        assert_eq!(
            super::jaas_option(jaas, "password").as_deref(),
            Some("s3cret")
        );
        assert_eq!(super::jaas_option(jaas, "token"), None);
    }
}
