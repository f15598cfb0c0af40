//! One client connection: TLS handshake (when configured), then a request loop and a
//! response loop joined in one task.
//!
//! Requests are forwarded as soon as they are read (pipelined); what each one expects
//! back goes into a bounded FIFO (`in_flight`), whose capacity is the per-connection
//! in-flight limit.
//! The response loop takes FIFO entries in order, so local answers and upstream answers
//! reach the client in request order, as Kafka requires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::error::ConnError;
use super::in_flight::{InFlight, Receiver, Sender};
use super::interceptors::{self, OnResponse, RequestAction, RequestMeta};
use super::{Shared, Target};
use crate::kafka::frame::{
    response_correlation_id, FrameError, FrameReader, MaxFrame, RequestFrame, MIN_RESPONSE_BODY,
};
use crate::kafka::frame_writer::{FrameWriter, OutFrame};
use crate::kafka::transport::BoxIo;

/// What the response loop must send back next, in request order.
struct Pending {
    meta: RequestMeta,
    received: Instant,
    answer: Answer,
}

enum Answer {
    Upstream(OnResponse),
    Local(Bytes),
    /// Resolves elsewhere (`RequestAction::Await`); `upstream`: a part went upstream too.
    Later {
        upstream: bool,
        later: interceptors::Later,
    },
}

/// Decrements a gauge when the connection (or its upstream) ends, however it ends.
struct Active(metrics::Gauge);
impl Active {
    fn new(gauge: &metrics::Gauge, total: &metrics::Counter) -> Self {
        gauge.increment(1.0);
        total.increment(1);
        Self(gauge.clone())
    }
}
impl Drop for Active {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

pub async fn serve(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    listener: Target,
    _slot: OwnedSemaphorePermit,
) {
    let m = shared.metrics;
    let _active = Active::new(&m.client_connections_active, &m.client_connections_total);
    let span =
        tracing::info_span!("connection", %peer, %listener, server_name = tracing::field::Empty);
    async move {
        tracing::debug!("accepted");
        let Some((stream, target)) = accept(&shared, client, listener).await else {
            return;
        };
        match run(&shared, stream, target).await {
            Ok(()) => tracing::debug!("closed"),
            Err(ConnError::ClientGone(e)) => tracing::debug!(error = %e, "client went away"),
            Err(e @ ConnError::ClientIdle(_)) => {
                shared.metrics.idle_closed.increment(1);
                tracing::debug!(side = e.side(), error = %e, "closing idle connection")
            }
            Err(e @ (ConnError::ClientFrame(_) | ConnError::ClientRequest(_))) => {
                if matches!(e, ConnError::ClientFrame(_)) {
                    shared.metrics.malformed_frames.increment(1);
                }
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

/// The TLS handshake, bounded by `proxy.tls_handshake_timeout_ms`, and the upstream
/// target (from the server name under SNI routing). `None`: the connection is done.
async fn accept(
    shared: &Arc<Shared>,
    client: TcpStream,
    listener: Target,
) -> Option<(BoxIo, Target)> {
    let snapshot = shared.registry.load();
    let Some(tls) = &snapshot.tls else {
        return Some((Box::new(client), listener));
    };
    let timeout = snapshot.config.proxy.tls_handshake_timeout();
    let handshake = TlsAcceptor::from(tls.clone()).accept(client);
    let stream = match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let reason = handshake_failure(&e);
            shared.metrics.tls_handshake_failed(reason);
            if reason == "client_closed" {
                tracing::debug!(error = %e, "client hung up during the TLS handshake");
            } else {
                tracing::warn!(side = "client", reason, error = %e, "TLS handshake failed");
            }
            return None;
        }
        Err(_) => {
            shared.metrics.tls_handshake_failed("timeout");
            tracing::warn!(side = "client", ?timeout, "TLS handshake timed out");
            return None;
        }
    };
    let server_name = stream.get_ref().1.server_name().map(str::to_string);
    if let Some(name) = &server_name {
        tracing::Span::current().record("server_name", name.as_str());
    }
    let target = match snapshot.routing.sni() {
        None => listener,
        Some(sni) => match server_name.as_deref().and_then(|n| sni.target_of(n)) {
            Some(target) => target,
            None => {
                // The certificate resolver refuses these; a routing change mid-handshake
                // can still get here.
                tracing::warn!(
                    side = "client",
                    "no broker for this TLS server name; closing"
                );
                return None;
            }
        },
    };
    Some((Box::new(stream), target))
}

fn handshake_failure(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
    ) {
        return "client_closed";
    }
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::NoCertificatesPresented) => "client_certificate_missing",
        Some(rustls::Error::InvalidCertificate(_)) => "client_certificate_invalid",
        Some(rustls::Error::General(msg)) if msg.contains("certificate") => "unknown_server_name",
        Some(rustls::Error::PeerIncompatible(_)) => "incompatible",
        Some(_) => "protocol",
        None => "io",
    }
}

async fn run(shared: &Arc<Shared>, client: BoxIo, target: Target) -> Result<(), ConnError> {
    let config = shared.registry.load().config.clone();
    let (client_read, client_write) = tokio::io::split(client);
    let mut client_frames = FrameReader::with_budget(
        client_read,
        live_max_frame(shared),
        0,
        shared.request_budget.clone(),
    );
    // The destination connection is opened for a first whole request only, so idle
    // sockets cost no broker connection.
    let first = tokio::select! {
        _ = shared.shutdown.cancelled() => return Ok(()),
        first = next_request(&mut client_frames, config.proxy.first_request_timeout()) => first?,
    };
    let Some(first) = first else {
        return Ok(());
    };
    let upstream = shared
        .connect_upstream(target)
        .await
        .map_err(ConnError::upstream)?;
    let m = shared.metrics;
    let _upstream_active = Active::new(
        &m.upstream_connections_active,
        &m.upstream_connections_total,
    );
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    // The upstream write half lives until both loops end: dropping it early would
    // half-close the broker connection while responses are still owed.
    let mut upstream_write = FrameWriter::new(upstream_write);
    let in_flight = InFlight::new(config.proxy.max_in_flight_per_connection);
    let requests = request_loop(
        shared,
        client_frames,
        first,
        &mut upstream_write,
        in_flight.sender(),
    );
    let responses = response_loop(
        shared,
        FrameReader::with_limit(upstream_read, live_max_frame(shared), MIN_RESPONSE_BODY),
        FrameWriter::new(client_write),
        in_flight.receiver(),
    );
    in_flight.drive(requests, responses).await
}

/// The next whole request frame, `None` at a clean end of stream; a client that sends
/// none within `limit` is idle.
async fn next_request(
    client: &mut FrameReader<ReadHalf<BoxIo>>,
    limit: std::time::Duration,
) -> Result<Option<Bytes>, ConnError> {
    match tokio::time::timeout(limit, client.next()).await {
        Err(_) => Err(ConnError::ClientIdle(limit)),
        Ok(next) => client_side(next),
    }
}

/// A read from the client: its end of stream, a frame, or why the connection ends.
fn client_side(next: Result<Option<Bytes>, FrameError>) -> Result<Option<Bytes>, ConnError> {
    match next {
        Ok(frame) => Ok(frame),
        Err(FrameError::Io(e)) => Err(ConnError::ClientGone(e)),
        Err(e) => Err(ConnError::ClientFrame(e)),
    }
}

/// `proxy.max_frame_bytes` of the current snapshot, so a reload applies to the next frame.
fn live_max_frame(shared: &Arc<Shared>) -> MaxFrame {
    let registry = shared.registry.clone();
    MaxFrame::Live(Box::new(move || {
        registry.load().config.proxy.max_frame_bytes
    }))
}

fn is_produce_answer(entry: &Pending) -> bool {
    entry.meta.api_key == ApiKey::Produce && matches!(entry.answer, Answer::Upstream(_))
}

async fn request_loop(
    shared: &Arc<Shared>,
    mut client: FrameReader<ReadHalf<BoxIo>>,
    first: Bytes,
    upstream: &mut FrameWriter<WriteHalf<BoxIo>>,
    pending: Sender<'_, Pending>,
) -> Result<(), ConnError> {
    let mut first = Some(first);
    // On shutdown stop reading; dropping `pending` lets the response loop drain what
    // is in flight, then the connection closes.
    let mut shutdown = std::pin::pin!(shared.shutdown.cancelled());
    // One idle timer for the connection, moved on only when it fires: re-arming a timer
    // for every request takes the timer wheel's lock twice per request.
    let mut idle_timer = std::pin::pin!(tokio::time::sleep(
        shared.registry.load().config.proxy.client_idle_timeout()
    ));
    loop {
        let frame = match first.take() {
            Some(frame) => frame,
            None => {
                let idle = shared.registry.load().config.proxy.client_idle_timeout();
                let deadline = tokio::time::Instant::now() + idle;
                // A reload may have shortened the limit.
                if deadline < idle_timer.deadline() {
                    idle_timer.as_mut().reset(deadline);
                }
                let next = loop {
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        next = client.next() => break next,
                        _ = &mut idle_timer => {
                            if tokio::time::Instant::now() >= deadline {
                                return Err(ConnError::ClientIdle(idle));
                            }
                            idle_timer.as_mut().reset(deadline);
                        }
                    }
                };
                match client_side(next)? {
                    Some(frame) => frame,
                    None => return Ok(()),
                }
            }
        };
        let received = Instant::now();
        shared.metrics.client_bytes_in.increment(frame.len() as u64);
        let request = RequestFrame::parse(frame).map_err(ConnError::ClientFrame)?;
        let meta = RequestMeta::of(&request);
        // An interceptor's future is boxed (`interceptors::Decision`): they are large, and
        // a connection waiting for its next request would otherwise carry their space in
        // its task all along.
        let (action, last) = match interceptors::on_request(shared, request).await? {
            RequestAction::Last(action) => (*action, true),
            action => (action, false),
        };
        let answer = match action {
            RequestAction::Forward { bytes, on_response } => {
                upstream
                    .write(bytes)
                    .await
                    .map_err(|e| ConnError::upstream(format!("write: {e}")))?;
                match on_response {
                    Some(on_response) => Some(Answer::Upstream(on_response)),
                    // No response will come (acks=0): count it as done now.
                    None => {
                        record(shared, &meta, received);
                        None
                    }
                }
            }
            RequestAction::Respond(bytes) => Some(Answer::Local(bytes)),
            RequestAction::Await {
                upstream: part,
                later,
            } => {
                let upstream_part = part.is_some();
                if let Some(bytes) = part {
                    upstream
                        .write(bytes)
                        .await
                        .map_err(|e| ConnError::upstream(format!("write: {e}")))?;
                }
                Some(Answer::Later {
                    upstream: upstream_part,
                    later,
                })
            }
            RequestAction::Close(reason) => return Err(ConnError::ClientRequest(reason)),
            RequestAction::Last(_) => {
                return Err(ConnError::internal("a request's last action was nested"))
            }
        };
        if let Some(answer) = answer {
            let entry = Pending {
                meta,
                received,
                answer,
            };
            let produce = is_produce_answer(&entry);
            pending.send(entry, produce).await;
        }
        if last {
            upstream
                .flush()
                .await
                .map_err(|e| ConnError::upstream(format!("write: {e}")))?;
            // Dropping `pending` lets the response loop write what is in flight, then
            // the connection closes.
            tracing::debug!("read no more requests: a write was answered before it was written (parked too long, or refused before reaching the source)");
            return Ok(());
        }
        // Batch writes of pipelined requests: flush only when no whole frame is waiting,
        // counting what has arrived since the last read.
        client.read_ready().map_err(ConnError::ClientGone)?;
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
    mut upstream: FrameReader<ReadHalf<BoxIo>>,
    mut client: FrameWriter<WriteHalf<BoxIo>>,
    pending: Receiver<'_, Pending>,
) -> Result<(), ConnError> {
    while let Some(entry) = pending.recv().await {
        let Pending {
            meta,
            received,
            answer,
        } = entry;
        let out = match answer {
            Answer::Local(bytes) => OutFrame::Whole(bytes),
            Answer::Upstream(on_response) => {
                let frame = next_response(&mut upstream, &meta).await?;
                interceptors::on_response(shared, meta, on_response, frame)?
            }
            Answer::Later {
                upstream: part,
                later,
            } => {
                // Flush what is written so the client is not kept waiting behind this.
                client.flush().await.map_err(ConnError::ClientGone)?;
                let rewrite = later.await?;
                let frame = match part {
                    true => Some(next_response(&mut upstream, &meta).await?),
                    false => None,
                };
                rewrite.rewrite(shared, frame, &meta)?
            }
        };
        shared.metrics.client_bytes_out.increment(out.len() as u64);
        client.write_out(out).await.map_err(ConnError::ClientGone)?;
        // Answers go out together while the next one has already come, or is a Produce
        // answer (a producer's pipeline: they come in order, soon, and one write for
        // several costs less). Otherwise at once: an answer must not wait behind, say,
        // a long-polling Fetch on the same connection.
        let next_soon = upstream.has_buffered_frame() || pending.only_counted_left();
        if pending.is_empty() || !next_soon {
            client.flush().await.map_err(ConnError::ClientGone)?;
        }
        record(shared, &meta, received);
    }
    client.flush().await.map_err(ConnError::ClientGone)?;
    Ok(())
}

/// The upstream answer to the request `meta` describes (the next frame, in order).
async fn next_response(
    upstream: &mut FrameReader<ReadHalf<BoxIo>>,
    meta: &RequestMeta,
) -> Result<Bytes, ConnError> {
    let frame = upstream
        .next()
        .await
        .map_err(ConnError::upstream)?
        .ok_or_else(|| ConnError::upstream("broker closed the connection"))?;
    let got = response_correlation_id(&frame);
    if got != Some(meta.correlation_id) {
        return Err(ConnError::upstream(format!(
            "response correlation id {got:?} does not match request {}",
            meta.correlation_id
        )));
    }
    Ok(frame)
}

/// Request count and latency (read from the client to answer written).
fn record(shared: &Shared, meta: &RequestMeta, received: Instant) {
    let elapsed = received.elapsed();
    if let Some(request) = shared.metrics.request(meta.api_key) {
        request.count.increment(1);
        request.latency.record(elapsed.as_secs_f64());
    }
    tracing::debug!(
        api = ?meta.api_key,
        version = meta.api_version,
        correlation_id = meta.correlation_id,
        latency_us = elapsed.as_micros() as u64,
        "request"
    );
}
