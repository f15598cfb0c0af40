//! The contract between the proxy and whoever forwards Produce for mirror topics in
//! `mirror.produce.mode=forward` (the replicator, which owns the links' connections to
//! their source clusters). The proxy cuts the forwarded topics out of a request and
//! hands them over; it never reaches into the replicator.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::protocol::StrBytes;

/// Where Produce to one mirror topic goes instead of the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    pub link: Arc<str>,
    pub source_topic: Arc<str>,
}

/// The part of one client Produce request going to one link's source.
pub struct ForwardRequest {
    pub link: Arc<str>,
    pub acks: i16,
    pub timeout_ms: i32,
    /// Set for a transactional producer's batches (its session's, see `TxnProducer`).
    pub transactional_id: Option<StrBytes>,
    /// Each topic with its source name; partitions as the client sent them.
    pub topics: Vec<(Arc<str>, TopicProduceData)>,
}

/// The source's answers, one list per topic of the request, in its order.
pub type ForwardAnswers = Vec<Vec<PartitionProduceResponse>>;

pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What `forward` did: the wait for the answers, and whether any partition was refused
/// before it was sent. Then the client's later batches, already on their way behind
/// this request, must not be sent before it is retried (an idempotent producer's
/// sequence would have a hole): the proxy reads no more from that connection.
pub struct Forwarded {
    pub answers: Boxed<'static, ForwardAnswers>,
    pub refused_before_sending: bool,
}

/// A client's transactional producer: its id and the destination's producer id and
/// epoch it was given.
#[derive(Debug, Clone)]
pub struct TxnProducer {
    pub transactional_id: String,
    pub producer_id: i64,
    pub epoch: i16,
}

/// A client producer's session on a link's source.
#[derive(Debug, Clone)]
pub struct TxnSession {
    pub link: Arc<str>,
    /// This instance began the session's current transaction there and has not seen
    /// it end.
    pub open_here: bool,
}

/// Partitions a client adds to its transaction, each topic by its source name.
pub struct TxnAdd {
    pub link: Arc<str>,
    pub producer: TxnProducer,
    pub topics: Vec<(String, Vec<i32>)>,
}

pub trait ProduceForwarder: Send + Sync {
    /// Sends the batches on their way (per partition in call order: the caller awaits
    /// this before it reads the client's next request) and returns the wait for the
    /// answers. Never fails: a partition that cannot be written gets a retriable error
    /// code in its answer.
    fn forward(&self, request: ForwardRequest) -> Boxed<'_, Forwarded>;

    /// The session on a link's source of the client's transactional producer (`id`,
    /// `epoch`), when it has one.
    fn transaction_session(&self, producer_id: i64, epoch: i16) -> Option<TxnSession>;

    /// Whether that session has a transaction open on the source (asked of it: the
    /// session began on another instance).
    fn transaction_open_on_source(
        &self,
        link: Arc<str>,
        producer_id: i64,
        epoch: i16,
    ) -> Boxed<'_, Result<bool, String>>;

    /// Adds partitions to the client's transaction on the link's source (starting its
    /// session there first): an error code per partition, per topic in order.
    fn add_partitions(&self, request: TxnAdd) -> Boxed<'_, Vec<Vec<i16>>>;

    /// Commits or aborts the client's transaction on the link's source: the code to
    /// answer it with.
    fn end_transaction(
        &self,
        link: Arc<str>,
        producer: TxnProducer,
        committed: bool,
    ) -> Boxed<'_, i16>;
}
