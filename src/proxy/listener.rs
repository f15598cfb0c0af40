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
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std_listener)?;
    tracing::info!(%addr, %target, "listening");
    let span = tracing::info_span!("listener", %addr, %target);
    tokio::spawn(accept_loop(shared, listener, target, stop).instrument(span));
    Ok(())
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
