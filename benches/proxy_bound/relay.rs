//! The floor: a plain TCP relay of our own, each connection copied both ways with
//! 256 KiB buffers, optionally terminating TLS as mirrorgate does. Whatever mirrorgate
//! costs above this is what it does besides moving bytes.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::arg;

const BUFFER: usize = 256 << 10;

pub fn main(args: &[String]) -> Result<()> {
    let listen = arg(args, "--listen").context("--listen")?.to_string();
    let to = arg(args, "--to").context("--to")?.to_string();
    let tls = match (arg(args, "--tls-cert"), arg(args, "--tls-key")) {
        (Some(cert), Some(key)) => Some(server_config(cert, key)?),
        _ => None,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&listen).await?;
        loop {
            let (client, _) = listener.accept().await?;
            let to = to.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _ = client.set_nodelay(true);
                match tls {
                    None => relay(client, &to).await,
                    Some(config) => {
                        let accepted = tokio_rustls::TlsAcceptor::from(config).accept(client).await;
                        if let Ok(stream) = accepted {
                            relay(stream, &to).await;
                        }
                    }
                }
            });
        }
    })
}

async fn relay(mut client: impl AsyncRead + AsyncWrite + Unpin, to: &str) {
    let Ok(mut upstream) = TcpStream::connect(to).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER).await;
}

fn server_config(cert: &str, key: &str) -> Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}
