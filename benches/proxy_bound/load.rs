//! Load like real clients make it: requests pipelined on a few connections, each
//! response checked for the correlation id it must carry.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{FetchShape, FETCH_TOPIC, PRODUCE_TOPIC};

pub const PRODUCE_VERSION: i16 = 9;
pub const FETCH_VERSION: i16 = 12;
/// A client of Kafka 3.7+ (KIP-951): topic ids, NodeEndpoints possible in responses.
pub const MODERN_FETCH_VERSION: i16 = 17;
/// First Fetch version naming topics by id.
const TOPIC_IDS_SINCE: i16 = 13;
/// Where the correlation id sits in a request frame: length, key, version, then it.
const CORRELATION_AT: usize = 8;

/// What one run moved and how long each request took.
#[derive(Default)]
pub struct Outcome {
    pub requests: u64,
    /// Request and response frames, both directions.
    pub bytes: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u64>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.elapsed = self.elapsed.max(other.elapsed);
        self.latencies_us.extend(other.latencies_us);
    }

    /// The latency at quantile `q` (0..=1), in milliseconds.
    pub fn latency_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

fn frame(key: ApiKey, version: i16, body: &impl Encodable) -> Result<Bytes> {
    frame_as(key, version, body, FetchShape::Whole.client_id())
}

fn frame_as(
    key: ApiKey,
    version: i16,
    body: &impl Encodable,
    client: &'static str,
) -> Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(0)
        .with_client_id(Some(StrBytes::from_static_str(client)));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, key.request_header_version(version))?;
    body.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// A Produce of one `batch_bytes` batch (acks=1) to the bench topic.
pub fn produce_request(batch_bytes: usize) -> Result<Bytes> {
    let records = super::upstream::record_batches(batch_bytes)?;
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(PRODUCE_TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    frame(ApiKey::Produce, PRODUCE_VERSION, &request)
}

/// A consumer's Fetch of the bench topic; the stand-in answers in `shape`.
pub fn fetch_request(version: i16, shape: FetchShape) -> Result<Bytes> {
    let mut topic = FetchTopic::default().with_partitions(vec![FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(0)
        .with_partition_max_bytes(64 << 20)]);
    if version >= TOPIC_IDS_SINCE {
        topic.topic_id = super::FETCH_TOPIC_ID;
    } else {
        topic.topic = TopicName(StrBytes::from_static_str(FETCH_TOPIC));
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        .with_topics(vec![topic]);
    frame_as(ApiKey::Fetch, version, &request, shape.client_id())
}

/// Where the load goes: an address, and TLS when the middle terminates it.
#[derive(Clone)]
pub struct Target {
    pub addr: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect(target: &Target) -> Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(&target.addr)
        .await
        .with_context(|| format!("connect {}", target.addr))?;
    tcp.set_nodelay(true)?;
    match &target.tls {
        None => Ok(Box::new(tcp)),
        Some(config) => {
            let name = ServerName::try_from("localhost")?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await?;
            Ok(Box::new(tls))
        }
    }
}

struct Conn {
    stream: Box<dyn Io>,
    request: BytesMut,
    response: Vec<u8>,
    next_correlation: i32,
}

impl Conn {
    async fn open(target: &Target, template: &Bytes) -> Result<Self> {
        let stream = connect(target).await?;
        Ok(Self {
            stream,
            request: BytesMut::from(&template[..]),
            response: Vec::new(),
            next_correlation: 1,
        })
    }

    /// Sends one request; returns its correlation id.
    async fn send(&mut self) -> Result<i32> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1).max(1);
        self.request[CORRELATION_AT..CORRELATION_AT + 4]
            .copy_from_slice(&correlation.to_be_bytes());
        self.stream.write_all(&self.request).await?;
        // TLS holds written records until flushed; on plain TCP this does nothing.
        self.stream.flush().await?;
        Ok(correlation)
    }

    /// Reads one response, which must answer `correlation`; returns its frame size.
    async fn receive(&mut self, correlation: i32) -> Result<usize> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await?;
        let len = i32::from_be_bytes(len);
        if !(4..=256 << 20).contains(&len) {
            bail!("response of {len} bytes");
        }
        self.response.resize(len as usize, 0);
        self.stream.read_exact(&mut self.response).await?;
        let got = i32::from_be_bytes([
            self.response[0],
            self.response[1],
            self.response[2],
            self.response[3],
        ]);
        if got != correlation {
            bail!("response for correlation {got}, expected {correlation}");
        }
        Ok(4 + len as usize)
    }
}

/// One round trip, for readiness.
pub async fn once(target: &Target, template: &Bytes) -> Result<()> {
    let mut conn = Conn::open(target, template).await?;
    let correlation = conn.send().await?;
    conn.receive(correlation).await?;
    Ok(())
}

/// As fast as it goes: `connections` connections with `depth` requests in flight each.
pub async fn bulk(
    target: &Target,
    template: &Bytes,
    connections: usize,
    depth: usize,
    duration: Duration,
) -> Result<Outcome> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let target = target.clone();
        let template = template.clone();
        tasks.push(tokio::spawn(async move {
            bulk_connection(&target, &template, depth, deadline).await
        }));
    }
    let mut total = Outcome::default();
    for task in tasks {
        total.merge(task.await??);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn bulk_connection(
    target: &Target,
    template: &Bytes,
    depth: usize,
    deadline: Instant,
) -> Result<Outcome> {
    let mut conn = Conn::open(target, template).await?;
    let mut outcome = Outcome::default();
    let mut in_flight = VecDeque::new();
    for _ in 0..depth {
        in_flight.push_back((conn.send().await?, Instant::now()));
    }
    while let Some((correlation, sent)) = in_flight.pop_front() {
        let size = conn.receive(correlation).await?;
        outcome.requests += 1;
        outcome.bytes += (size + template.len()) as u64;
        outcome.latencies_us.push(sent.elapsed().as_micros() as u64);
        if Instant::now() < deadline {
            in_flight.push_back((conn.send().await?, Instant::now()));
        }
    }
    Ok(outcome)
}

/// `rate` requests a second on one connection for `duration`. Latency counts from when
/// a request was due, not when it went out, so a stall is not hidden by the requests
/// it delayed. Pacing is at the timer's millisecond granularity.
pub async fn fixed_rate(
    target: &Target,
    template: &Bytes,
    rate: u32,
    duration: Duration,
) -> Result<Outcome> {
    let conn = Conn::open(target, template).await?;
    let Conn {
        stream,
        mut request,
        mut response,
        ..
    } = conn;
    let (mut read, mut write) = tokio::io::split(stream);
    let (due_tx, mut due_rx) = tokio::sync::mpsc::channel::<(i32, Instant)>(4096);
    let started = Instant::now();
    let count = (f64::from(rate) * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let request_len = request.len() as u64;
    let writer = tokio::spawn(async move {
        for i in 0..count {
            let due = started + interval.mul_f64(i as f64);
            tokio::time::sleep_until(due.into()).await;
            let correlation = (i as i32).wrapping_add(1).max(1);
            request[CORRELATION_AT..CORRELATION_AT + 4].copy_from_slice(&correlation.to_be_bytes());
            due_tx.send((correlation, due)).await?;
            write.write_all(&request).await?;
            write.flush().await?;
        }
        Ok::<_, anyhow::Error>(write)
    });
    let mut outcome = Outcome::default();
    while let Some((correlation, due)) = due_rx.recv().await {
        let mut len = [0u8; 4];
        read.read_exact(&mut len).await?;
        let len = i32::from_be_bytes(len);
        if !(4..=256 << 20).contains(&len) {
            bail!("response of {len} bytes");
        }
        response.resize(len as usize, 0);
        read.read_exact(&mut response).await?;
        let got = i32::from_be_bytes([response[0], response[1], response[2], response[3]]);
        if got != correlation {
            bail!("response for correlation {got}, expected {correlation}");
        }
        outcome.requests += 1;
        outcome.bytes += request_len + 4 + len as u64;
        outcome.latencies_us.push(due.elapsed().as_micros() as u64);
    }
    writer.await??;
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}
