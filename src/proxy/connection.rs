//! One client connection: a request loop and a response loop joined in one task.
//!
//! Requests are forwarded as soon as they are read (pipelined); what each one expects
//! back goes into a bounded FIFO, whose capacity is the per-connection in-flight limit.
//! The response loop takes FIFO entries in order, so local answers and upstream answers
//! reach the client in request order, as Kafka requires.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tracing::Instrument;

use super::error::ConnError;
use super::interceptors::{self, InFlight, RequestAction};
use super::{Shared, Target};
use crate::kafka::frame::{
    response_correlation_id, FrameError, FrameReader, RequestFrame, MIN_RESPONSE_BODY,
};

/// What the response loop must send back next.
enum Pending {
    Upstream(InFlight),
    Local(Bytes),
}

pub async fn serve(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    target: Target,
    _slot: OwnedSemaphorePermit,
) {
    let span = tracing::info_span!("connection", %peer, listener = %target);
    async move {
        tracing::debug!("accepted");
        match run(&shared, client, target).await {
            Ok(()) => tracing::debug!("closed"),
            Err(ConnError::ClientGone(e)) => tracing::debug!(error = %e, "client went away"),
            Err(e @ (ConnError::ClientFrame(_) | ConnError::ClientRequest(_))) => {
                tracing::warn!(side = e.side(), error = %e, "closing connection")
            }
            Err(e @ ConnError::Upstream(_)) => {
                tracing::warn!(side = e.side(), error = %e, "closing connection")
            }
            Err(e @ ConnError::Internal(_)) => {
                tracing::error!(side = e.side(), error = %e, "closing connection")
            }
        }
    }
    .instrument(span)
    .await
}

async fn run(shared: &Arc<Shared>, client: TcpStream, target: Target) -> Result<(), ConnError> {
    let config = shared.registry.load().config.clone();
    let upstream = shared
        .connect_upstream(target)
        .await
        .map_err(ConnError::upstream)?;
    let max_frame = config.proxy.max_frame_bytes;
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    // The upstream write half lives until both loops end: dropping it early would
    // half-close the broker connection while responses are still owed.
    let mut upstream_write = BufWriter::new(upstream_write);
    let (pending_tx, pending_rx) = mpsc::channel(config.proxy.max_in_flight_per_connection);
    let requests = request_loop(
        shared,
        FrameReader::new(client_read, max_frame, 0),
        &mut upstream_write,
        pending_tx,
    );
    let responses = response_loop(
        shared,
        FrameReader::new(upstream_read, max_frame, MIN_RESPONSE_BODY),
        BufWriter::new(client_write),
        pending_rx,
    );
    tokio::try_join!(requests, responses)?;
    Ok(())
}

async fn request_loop(
    shared: &Arc<Shared>,
    mut client: FrameReader<OwnedReadHalf>,
    upstream: &mut BufWriter<OwnedWriteHalf>,
    pending: mpsc::Sender<Pending>,
) -> Result<(), ConnError> {
    loop {
        let next = tokio::select! {
            // On shutdown stop reading; dropping `pending` lets the response loop
            // drain what is in flight, then the connection closes.
            _ = shared.shutdown.cancelled() => return Ok(()),
            next = client.next() => next,
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(FrameError::Io(e)) => return Err(ConnError::ClientGone(e)),
            Err(e) => return Err(ConnError::ClientFrame(e)),
        };
        let request = RequestFrame::parse(frame).map_err(ConnError::ClientFrame)?;
        tracing::trace!(api = ?request.api_key, version = request.api_version, correlation_id = request.correlation_id, "request");
        match interceptors::on_request(shared, request).await? {
            RequestAction::Forward { bytes, in_flight } => {
                if let Some(in_flight) = in_flight {
                    // Waits while the in-flight limit is reached (backpressure).
                    if pending.send(Pending::Upstream(in_flight)).await.is_err() {
                        return Ok(());
                    }
                }
                upstream
                    .write_all(&bytes)
                    .await
                    .map_err(|e| ConnError::upstream(format!("write: {e}")))?;
            }
            RequestAction::Respond(bytes) => {
                if pending.send(Pending::Local(bytes)).await.is_err() {
                    return Ok(());
                }
            }
            RequestAction::Close(reason) => return Err(ConnError::ClientRequest(reason)),
        }
        // Batch writes of pipelined requests: flush only when no whole frame is waiting.
        if !client.has_buffered_frame() {
            upstream
                .flush()
                .await
                .map_err(|e| ConnError::upstream(format!("write: {e}")))?;
        }
    }
}

async fn response_loop(
    shared: &Arc<Shared>,
    mut upstream: FrameReader<OwnedReadHalf>,
    mut client: BufWriter<OwnedWriteHalf>,
    mut pending: mpsc::Receiver<Pending>,
) -> Result<(), ConnError> {
    while let Some(next) = pending.recv().await {
        let bytes = match next {
            Pending::Local(bytes) => bytes,
            Pending::Upstream(in_flight) => {
                let frame = upstream
                    .next()
                    .await
                    .map_err(ConnError::upstream)?
                    .ok_or_else(|| ConnError::upstream("broker closed the connection"))?;
                let got = response_correlation_id(&frame);
                if got != Some(in_flight.meta.correlation_id) {
                    return Err(ConnError::upstream(format!(
                        "response correlation id {got:?} does not match request {}",
                        in_flight.meta.correlation_id
                    )));
                }
                interceptors::on_response(shared, in_flight, frame)?
            }
        };
        client
            .write_all(&bytes)
            .await
            .map_err(ConnError::ClientGone)?;
        if pending.is_empty() {
            client.flush().await.map_err(ConnError::ClientGone)?;
        }
    }
    client.flush().await.map_err(ConnError::ClientGone)?;
    Ok(())
}
