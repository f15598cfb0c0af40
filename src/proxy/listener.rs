//! Accept loops: the bootstrap listener and one listener per destination broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{connection, Shared, Target};

/// Binds now (so the address is usable when this returns) and accepts until `stop`.
pub fn spawn(
    shared: Arc<Shared>,
    addr: SocketAddr,
    target: Target,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let listener = bind(addr)?;
    tracing::info!(%addr, %target, "listening");
    let span = tracing::info_span!("listener", %addr, %target);
    tokio::spawn(accept_loop(shared, listener, target, stop).instrument(span));
    Ok(())
}

/// A listening socket. Rust's standard library sets SO_REUSEADDR on Unix, as servers
/// do: a port whose old connections are still open or in TIME_WAIT binds again at once
/// (tested below). A port held by an *outgoing* connection in TIME_WAIT still refuses:
/// Linux allows that only when the other socket set the option too.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    target: Target,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(slot) = shared.connection_slots.clone().try_acquire_owned() else {
                    shared.metrics.connections_refused.increment(1);
                    tracing::warn!(%peer, "proxy.max_connections reached; connection refused");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                shared.tracker.spawn(connection::serve(
                    shared.clone(),
                    stream,
                    peer,
                    target,
                    slot,
                ));
            }
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracing::info!("listener closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener is closed while a connection it accepted stays open (drained after a
    /// reload or restart): a new listener on the same port must bind at once.
    #[tokio::test]
    async fn a_listener_binds_again_while_connections_of_the_old_one_are_open() {
        let first = bind("127.0.0.1:0".parse().expect("addr")).expect("first listener");
        let addr = first.local_addr().expect("addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (_accepted, _) = first.accept().await.expect("accept");
        drop(first);
        let again = bind(addr).expect("bind again");
        assert_eq!(again.local_addr().expect("addr"), addr);
    }
}
