//! The contract between the proxy and whoever forwards Produce for mirror topics in
//! `mirror.produce.mode=forward` (the replicator, which owns the links' connections to
//! their source clusters). The proxy cuts the forwarded topics out of a request and
//! hands them over; it never reaches into the replicator.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;

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

pub trait ProduceForwarder: Send + Sync {
    /// Sends the batches on their way (per partition in call order: the caller awaits
    /// this before it reads the client's next request) and returns the wait for the
    /// answers. Never fails: a partition that cannot be written gets a retriable error
    /// code in its answer.
    fn forward(&self, request: ForwardRequest) -> Boxed<'_, Forwarded>;
}
