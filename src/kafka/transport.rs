//! Byte streams to Kafka brokers: plain TCP or TLS, behind one boxed type so the
//! proxy and the client code do not care which.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connected stream, plain or TLS.
pub type BoxIo = Box<dyn Io>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr}: {reason}")]
    Tcp { addr: String, reason: String },
    #[error("connect to {addr}: timed out after {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("TLS handshake with {addr}: {reason}")]
    Tls { addr: String, reason: String },
}

/// Connects to `addr` (host:port), with TLS when `tls` is given (the host is the
/// name verified against the broker's certificate).
pub async fn connect(
    addr: &str,
    timeout: Duration,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<BoxIo, ConnectError> {
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| ConnectError::Tcp {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(Box::new(tcp) as BoxIo);
        };
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(host, _)| host)
            .trim_matches(['[', ']']);
        let name = ServerName::try_from(host.to_string()).map_err(|e| ConnectError::Tls {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        let stream = TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError::Tls {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Box::new(stream) as BoxIo)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnectError::Timeout {
            addr: addr.to_string(),
            timeout,
        })?
}
