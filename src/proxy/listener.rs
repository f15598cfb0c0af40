//! Accept loops: the bootstrap listener and one listener per destination broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
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
    let backlog = shared.registry.load().config.proxy.listen_backlog;
    let listener = bind(addr, backlog)?;
    tracing::info!(%addr, %target, backlog, "listening");
    let span = tracing::info_span!("listener", %addr, %target);
    tokio::spawn(accept_loop(shared, listener, target, stop).instrument(span));
    Ok(())
}

/// A listening socket with SO_REUSEADDR, as servers set it: a port whose old
/// connections are still open or in TIME_WAIT binds again at once (tested below). A
/// port held by an *outgoing* connection in TIME_WAIT still refuses: Linux allows that
/// only when the other socket set the option too.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
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
        let first = bind("127.0.0.1:0".parse().expect("addr"), 16).expect("first listener");
        let addr = first.local_addr().expect("addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (_accepted, _) = first.accept().await.expect("accept");
        drop(first);
        let again = bind(addr, 16).expect("bind again");
        assert_eq!(again.local_addr().expect("addr"), addr);
    }

    /// Connections beyond the backlog are not completed by the kernel until we accept
    /// (their SYNs are dropped). A listener that has not accepted yet must hold a burst
    /// of hundreds, more than the standard library's fixed 128.
    #[test]
    fn a_burst_of_connections_waits_in_the_backlog() {
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(128);
        let burst = 600.min(somaxconn.saturating_sub(1));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(async { bind("127.0.0.1:0".parse().expect("addr"), 1024) })
            .expect("listener");
        let addr = listener.local_addr().expect("addr");
        // Nothing accepts: each connection is completed from the backlog or not at all.
        let held: Vec<_> = (0..burst)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("connection {i} of {burst} not completed: {e}"))
            })
            .collect();
        assert_eq!(held.len(), burst);
    }
}
