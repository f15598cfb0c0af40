//! rustls configurations built from the config file: the proxy's server side (with
//! optional client certificates and SNI routing) and the client side towards the
//! destination. Built anew on every config load, so a reload rotates certificates:
//! new handshakes use the new files, established connections keep theirs.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::routing::SniRouting;
use crate::config::{DestinationTlsConfig, ProxyTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read '{path}': {reason}")]
    File {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |reason: String| TlsError::File {
        key,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

fn load_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        key,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn load_roots(key: &'static str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(key, path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            key,
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

fn certified_key(
    cert_key: &'static str,
    cert: &Path,
    key_key: &'static str,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs(cert_key, cert)?;
    let private = load_key(key_key, key)?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError::Invalid {
            key: key_key,
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Invalid {
        key: key_key,
        reason: format!("does not match the certificate: {e}"),
    })?;
    Ok(Arc::new(certified))
}

/// The server side of every proxy listener.
pub fn server_config(
    tls: &ProxyTlsConfig,
    sni: Option<SniRouting>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let key = certified_key(
        "proxy.tls.cert_file",
        &tls.cert_file,
        "proxy.tls.key_file",
        &tls.key_file,
    )?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            key: "proxy.tls",
            reason: e.to_string(),
        })?;
    let builder = match &tls.client_ca_file {
        Some(ca) => {
            let roots = load_roots("proxy.tls.client_ca_file", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::Invalid {
                    key: "proxy.tls.client_ca_file",
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(Resolver { key, sni }));
    // Kafka clients do not use ALPN; accept whatever they offer.
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

/// The client side towards the destination brokers.
pub fn client_config(tls: &DestinationTlsConfig) -> Result<Arc<ClientConfig>, TlsError> {
    let read = |key: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| TlsError::File {
            key,
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    };
    let roots = read("destination.tls.ca_file", &tls.ca_file)?;
    let client = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(ClientPem {
            certs: read("destination.tls.cert_file", cert)?,
            key: read("destination.tls.key_file", key)?,
            key_name: "destination.tls.key_file",
        }),
        _ => None,
    };
    client_config_pem("destination.tls.ca_file", &roots, client.as_ref())
}

/// A client certificate chain and its key, PEM (they may be the same text).
pub struct ClientPem {
    pub certs: Vec<u8>,
    pub key: Vec<u8>,
    /// The config key named in errors.
    pub key_name: &'static str,
}

/// A TLS client config from PEM text: the CAs to trust and an optional client identity.
pub fn client_config_pem(
    roots_key: &'static str,
    roots_pem: &[u8],
    client: Option<&ClientPem>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let invalid = |key: &'static str, e: &dyn std::fmt::Display| TlsError::Invalid {
        key,
        reason: e.to_string(),
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem) {
        roots
            .add(cert.map_err(|e| invalid(roots_key, &e))?)
            .map_err(|e| invalid(roots_key, &e))?;
    }
    if roots.is_empty() {
        return Err(invalid(roots_key, &"no PEM certificate"));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(roots_key, &e))?
        .with_root_certificates(roots);
    let config = match client {
        Some(identity) => {
            let chain = CertificateDer::pem_slice_iter(&identity.certs)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(identity.key_name, &e))?;
            let key = PrivateKeyDer::from_pem_slice(&identity.key)
                .map_err(|e| invalid(identity.key_name, &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid(identity.key_name, &e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Presents the proxy certificate; with SNI routing, only to server names the routing
/// knows, so an unknown name fails the handshake with an alert.
#[derive(Debug)]
struct Resolver {
    key: Arc<CertifiedKey>,
    sni: Option<SniRouting>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = &self.sni {
            let name = hello.server_name().unwrap_or("");
            if sni.target_of(name).is_none() {
                // The handshake then fails with an alert; the connection task counts it.
                tracing::warn!(
                    server_name = name,
                    "TLS handshake refused: unknown server name"
                );
                return None;
            }
        }
        Some(self.key.clone())
    }
}
