//! A small Kafka client connection typed with the `kafka-protocol` messages, for
//! mirrorgate's own calls (metadata refresh, the replicator's fetches, produces and
//! admin calls), never on the client data path. `call` is one request at a time;
//! `send` + `receive` pipeline up to [`MAX_IN_FLIGHT`] requests (a broker answers a
//! connection's requests in order, so responses are matched first in, first out);
//! `send_deferred` queues a request to go out with the next write, so a window of
//! requests costs one syscall instead of one each.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rustls::ClientConfig;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};

use super::frame::{FrameReader, LEN_PREFIX, MIN_RESPONSE_BODY};
use super::sasl::{Conversation, SaslConfig, ScramError};
use super::transport::{self, BoxIo, ConnectError};

/// Responses to our own calls (metadata of a large cluster) stay well under this.
const CLIENT_MAX_FRAME: usize = 256 * 1024 * 1024;

/// ApiVersions version of the bootstrap probe (every broker since 2.4 knows v3).
const API_VERSIONS_VERSION: i16 = 3;
/// SaslHandshake v1 frames the exchange in SaslAuthenticate requests (KIP-152).
const SASL_HANDSHAKE_VERSION: i16 = 1;
const SASL_AUTHENTICATE_VERSION: i16 = 2;

/// Most requests sent and not yet answered on one connection.
pub const MAX_IN_FLIGHT: usize = 16;
/// Deferred request bytes written at once when they reach this much.
const DEFERRED_WRITE_MAX: usize = 1 << 20;
/// A write buffer grown past this by one large request is not kept for the next.
const OUT_KEEP_MAX: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection closed by the broker")]
    Closed,
    #[error("response correlation id {got} does not match request {expected}")]
    CorrelationMismatch { expected: i32, got: i32 },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("SASL authentication: {0}")]
    Scram(#[from] ScramError),
    #[error("SASL authentication: {0}")]
    Authentication(String),
    #[error("more than {MAX_IN_FLIGHT} requests in flight on one connection")]
    TooManyInFlight,
    #[error(transparent)]
    Frame(#[from] super::frame::FrameError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub struct KafkaConnection {
    reader: FrameReader<ReadHalf<BoxIo>>,
    writer: WriteHalf<BoxIo>,
    /// Encoded requests not written yet (`send_deferred`); reused between writes.
    out: BytesMut,
    next_correlation_id: i32,
    client_id: StrBytes,
    request_timeout: Duration,
    addr: String,
    /// Correlation ids sent by `send` and not yet received, oldest first.
    in_flight: VecDeque<i32>,
    /// The broker's highest version of each API, once asked (`max_version`).
    max_versions: Option<HashMap<i16, i16>>,
}

/// A request sent with [`KafkaConnection::send`]; redeem it with `receive`.
#[must_use = "a sent request must be received before later ones"]
pub struct Pending<R: Request> {
    correlation_id: i32,
    version: i16,
    request: PhantomData<fn() -> R>,
}

/// v3+ brokers check the software name and version (a dotted word each).
fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("mirrorgate"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
}

impl KafkaConnection {
    /// A plaintext connection.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        connect_timeout: Duration,
    ) -> Result<Self, ClientError> {
        Self::connect_with(addr, client_id, connect_timeout, None, None).await
    }

    /// A connection, over TLS when `tls` is given, authenticated when `sasl` is.
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        connect_timeout: Duration,
        tls: Option<&Arc<ClientConfig>>,
        sasl: Option<&SaslConfig>,
    ) -> Result<Self, ClientError> {
        let stream = transport::connect(addr, connect_timeout, tls).await?;
        // A steady rise on an idle instance is connection churn the brokers see.
        metrics::counter!("mirrorgate_own_connections_opened_total").increment(1);
        let (read, write) = tokio::io::split(stream);
        let mut connection = Self {
            reader: FrameReader::new(read, CLIENT_MAX_FRAME, MIN_RESPONSE_BODY),
            writer: write,
            out: BytesMut::new(),
            next_correlation_id: 1,
            client_id: StrBytes::from_string(client_id.to_string()),
            request_timeout: Duration::from_secs(30),
            addr: addr.to_string(),
            in_flight: VecDeque::new(),
            max_versions: None,
        };
        if let Some(sasl) = sasl {
            connection.authenticate(sasl).await?;
        }
        Ok(connection)
    }

    /// Runs a SASL exchange on a fresh connection: the mechanism in SaslHandshake,
    /// then the conversation's tokens in SaslAuthenticate until it is complete.
    async fn authenticate(&mut self, sasl: &SaslConfig) -> Result<(), ClientError> {
        let mut conversation = Conversation::new(sasl.clone());
        let mechanism = conversation.mechanism();
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        let response = self.call(&handshake, SASL_HANDSHAKE_VERSION).await?;
        if response.error_code != 0 {
            let offered: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(ClientError::Authentication(format!(
                "broker refused mechanism {mechanism} (error {}; it offers {offered:?})",
                response.error_code
            )));
        }
        let mut token = conversation.first_token();
        loop {
            let request = SaslAuthenticateRequest::default().with_auth_bytes(token.into());
            let response = self.call(&request, SASL_AUTHENTICATE_VERSION).await?;
            if response.error_code != 0 {
                return Err(ClientError::Authentication(
                    response.error_message.map_or_else(
                        || format!("error {}", response.error_code),
                        |m| m.as_str().to_string(),
                    ),
                ));
            }
            // SCRAM's key derivation is seconds of CPU at high counts: keep it off the
            // async workers.
            let (back, next) = tokio::task::spawn_blocking(move || {
                let next = conversation.answer(&response.auth_bytes);
                (conversation, next)
            })
            .await
            .map_err(|e| ScramError::Derivation(e.to_string()))?;
            conversation = back;
            match next? {
                Some(next) => token = next,
                None => return Ok(()),
            }
        }
    }

    /// A connection to the first of `servers` that answers (bootstrap semantics).
    ///
    /// "Answers" means a Kafka answer, not a TCP accept: behind a load balancer or a
    /// relay the connect succeeds even when the broker is down, so without SASL (which
    /// is an exchange already) an ApiVersions request must come back before the
    /// server is taken; otherwise the next one is tried.
    pub async fn connect_first(
        servers: &[String],
        client_id: &str,
        connect_timeout: Duration,
        tls: Option<&Arc<ClientConfig>>,
        sasl: Option<&SaslConfig>,
    ) -> Result<Self, ClientError> {
        let mut last = ClientError::Closed;
        for server in servers {
            match Self::connect_with(server, client_id, connect_timeout, tls, sasl).await {
                Ok(mut conn) => {
                    if sasl.is_some() {
                        return Ok(conn);
                    }
                    match conn.probe(connect_timeout).await {
                        Ok(()) => return Ok(conn),
                        Err(e) => last = e,
                    }
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// One ApiVersions round trip within `timeout`.
    async fn probe(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let request = api_versions_request();
        let previous = std::mem::replace(&mut self.request_timeout, timeout);
        let answer = self.call(&request, API_VERSIONS_VERSION).await;
        self.request_timeout = previous;
        answer.map(|_| ())
    }

    /// The highest version of `api` the broker serves (None: not at all), asked once
    /// per connection: a call at a version the broker does not know closes the
    /// connection, so one older brokers lack (e.g. ListGroups v5 before Kafka 3.8) is
    /// chosen with this.
    pub async fn max_version(&mut self, api: ApiKey) -> Result<Option<i16>, ClientError> {
        if self.max_versions.is_none() {
            let response = self
                .call(&api_versions_request(), API_VERSIONS_VERSION)
                .await?;
            if response.error_code != 0 {
                return Err(ClientError::Protocol(format!(
                    "ApiVersions answered error {}",
                    response.error_code
                )));
            }
            let versions = response
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.max_version))
                .collect();
            self.max_versions = Some(versions);
        }
        Ok(self
            .max_versions
            .as_ref()
            .and_then(|v| v.get(&(api as i16)).copied()))
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How long `call`, `send` and `receive` wait (30 s unless set). A call the broker
    /// may hold on purpose (JoinGroup, up to the rebalance timeout) needs more.
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    /// Sends one request at `version` and waits for its response.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        if !self.in_flight.is_empty() {
            // Its response would be read as ours.
            return Err(ClientError::Protocol(
                "a call while pipelined requests are outstanding".into(),
            ));
        }
        let timeout = self.request_timeout;
        tokio::time::timeout(timeout, self.call_inner(request, version))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    /// Sends one request without waiting for its response; at most [`MAX_IN_FLIGHT`]
    /// may be outstanding. Not to be mixed with `call` while any is outstanding.
    pub async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<Pending<R>, ClientError> {
        let pending = self.send_deferred(request, version).await?;
        self.flush_writes().await?;
        Ok(pending)
    }

    /// Like `send`, but the request is only queued: it goes out with the next
    /// `receive`, `flush_writes` or `send`, or once 1 MiB is queued. The caller must
    /// flush before it waits on anything but this connection.
    pub async fn send_deferred<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<Pending<R>, ClientError> {
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            return Err(ClientError::TooManyInFlight);
        }
        let correlation_id = self.encode_request(request, version)?;
        self.in_flight.push_back(correlation_id);
        if self.out.len() >= DEFERRED_WRITE_MAX {
            self.flush_writes().await?;
        }
        Ok(Pending {
            correlation_id,
            version,
            request: PhantomData,
        })
    }

    /// Writes every queued request.
    pub async fn flush_writes(&mut self) -> Result<(), ClientError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let timeout = self.request_timeout;
        tokio::time::timeout(timeout, self.write_out())
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    async fn write_out(&mut self) -> Result<(), ClientError> {
        self.writer.write_all(&self.out).await?;
        self.writer.flush().await?;
        self.out.clear();
        if self.out.capacity() > OUT_KEEP_MAX {
            self.out = BytesMut::new();
        }
        Ok(())
    }

    /// Waits for the response to `pending`, which must be the oldest outstanding
    /// request (responses come in request order).
    pub async fn receive<R: Request>(
        &mut self,
        pending: Pending<R>,
    ) -> Result<R::Response, ClientError> {
        self.flush_writes().await?;
        self.read_answer(&pending).await
    }

    /// Like `receive` without writing queued requests first, and cancel-safe: dropped
    /// before it completes, the bytes already read stay buffered and `pending` stays
    /// the oldest, to be awaited again. The caller flushes (`flush_writes`) first.
    pub async fn read_answer<R: Request>(
        &mut self,
        pending: &Pending<R>,
    ) -> Result<R::Response, ClientError> {
        let expected = self.in_flight.front().copied();
        if expected != Some(pending.correlation_id) {
            return Err(ClientError::CorrelationMismatch {
                expected: expected.unwrap_or(-1),
                got: pending.correlation_id,
            });
        }
        let timeout = self.request_timeout;
        let response = tokio::time::timeout(
            timeout,
            self.read_response::<R>(pending.correlation_id, pending.version),
        )
        .await
        .map_err(|_| ClientError::Timeout(timeout))?;
        self.in_flight.pop_front();
        response
    }

    /// Requests sent and not yet received.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends a request that gets no response (Produce with acks=0).
    pub async fn send_only<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        self.write_request(request, version).await.map(|_| ())
    }

    async fn call_inner<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let correlation_id = self.write_request(request, version).await?;
        self.read_response::<R>(correlation_id, version).await
    }

    async fn read_response<R: Request>(
        &mut self,
        correlation_id: i32,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let mut frame = self.reader.next().await?.ok_or(ClientError::Closed)?;
        let _ = frame.split_to(LEN_PREFIX);
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::CorrelationMismatch {
                expected: correlation_id,
                got: header.correlation_id,
            });
        }
        R::Response::decode(&mut frame, version).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Queues the request and writes it with whatever was queued before it.
    async fn write_request<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<i32, ClientError> {
        let correlation_id = self.encode_request(request, version)?;
        self.write_out().await?;
        Ok(correlation_id)
    }

    /// Appends the framed request to the write buffer.
    fn encode_request<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<i32, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let api = ApiKey::try_from(R::KEY).map_err(|()| ClientError::Protocol("api key".into()))?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let header_version = api.request_header_version(version);
        let protocol = |e: anyhow::Error| ClientError::Protocol(e.to_string());
        let size = header.compute_size(header_version).map_err(protocol)?
            + request.compute_size(version).map_err(protocol)?;
        let size32 = i32::try_from(size).map_err(|_| ClientError::Protocol("too large".into()))?;
        let start = self.out.len();
        self.out.reserve(LEN_PREFIX + size);
        self.out.put_i32(size32);
        let encoded = header
            .encode(&mut self.out, header_version)
            .and_then(|()| request.encode(&mut self.out, version));
        if let Err(e) = encoded {
            // Nothing half-encoded may reach the wire.
            self.out.truncate(start);
            return Err(protocol(e));
        }
        Ok(correlation_id)
    }
}
