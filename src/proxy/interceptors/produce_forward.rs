//! Produce to mirrors in `mirror.produce.mode=forward`: those topics are cut out of
//! the request and handed to the forwarder of their link (the registry's
//! `ProduceForwarder`); the rest goes to the destination (or is refused) as usual, and
//! the client gets one answer, in request order, once both parts are answered.

use std::sync::Arc;

use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::TopicName;

use super::produce_guard::Produce;
use super::write_guard::{self, Cut};
use super::{Later, RequestAction};
use crate::kafka::codec::encode_request;
use crate::kafka::error_code::REQUEST_TIMED_OUT;
use crate::kafka::frame::RequestFrame;
use crate::proxy::error::ConnError;
use crate::registry::fence::Entered;
use crate::registry::forward::{ForwardRequest, ProduceForwarder};
use crate::registry::{Registry, Snapshot};
use kafka_protocol::protocol::StrBytes;

/// First versions with these partition answer fields.
const LOG_START_OFFSET_SINCE: i16 = 5;
const ERROR_MESSAGE_SINCE: i16 = 8;

/// The forwarded topics of one link, with what the client's answer must name.
struct LinkPart {
    forwarder: Arc<dyn ProduceForwarder>,
    request: ForwardRequest,
    names: Vec<(TopicName, uuid::Uuid)>,
}

pub async fn split(
    frame: &RequestFrame,
    registry: &Arc<Registry>,
    snapshot: &Snapshot,
    rest: Cut<Produce>,
    forwarded: Vec<TopicProduceData>,
    entered: Option<Entered>,
) -> Result<RequestAction, ConnError> {
    let (upstream, refused) = match rest {
        Cut::Untouched(rest) => (rest, Vec::new()),
        Cut::Refused { rest, refused } => (rest, refused),
        Cut::Close(reason) => return Ok(RequestAction::Close(reason)),
    };
    let mut parts: Vec<LinkPart> = Vec::new();
    for topic in forwarded {
        let Some((target, forwarder)) = snapshot.forward_of(topic.name.as_str()) else {
            continue; // `forwarded` holds only topics that have one
        };
        let part = match parts.iter().position(|p| p.request.link == target.link) {
            Some(i) => &mut parts[i],
            None => {
                parts.push(LinkPart {
                    forwarder: forwarder.clone(),
                    request: ForwardRequest {
                        link: target.link.clone(),
                        acks: upstream.acks,
                        timeout_ms: upstream.timeout_ms,
                        transactional_id: upstream.transactional_id.clone().map(|t| t.0),
                        topics: Vec::new(),
                    },
                    names: Vec::new(),
                });
                let last = parts.len() - 1;
                &mut parts[last]
            }
        };
        part.names.push((topic.name.clone(), topic.topic_id));
        part.request
            .topics
            .push((target.source_topic.clone(), topic));
    }
    let upstream = match upstream.topic_data.is_empty() {
        true => None,
        false => Some(encode_request(frame, &upstream).map_err(ConnError::internal)?),
    };
    // Sent on their way before the next request of this connection is read, so a
    // producer's batches reach the source in the order it sent them.
    let mut waits = Vec::with_capacity(parts.len());
    let mut refused_before_sending = false;
    for part in parts {
        let forwarded = part.forwarder.forward(part.request).await;
        refused_before_sending |= forwarded.refused_before_sending;
        waits.push((part.names, forwarded.answers));
    }
    let version = frame.api_version;
    let registry = registry.clone();
    let later: Later = Box::pin(async move {
        // Counted as on the way to the source until every answer is in.
        let _entered = entered;
        let mut entries = refused;
        for (names, wait) in waits {
            let answers = wait.await;
            // Answered so long after this instance's last heartbeat that the others may
            // have taken it for gone and cut the topic over: the write may never reach
            // the mirror, and only a retriable error is true either way. (Sent only under
            // a valid lease, so this takes a freeze of several seconds mid-request.)
            let lapsed = !registry.lease().answer_trusted();
            for ((name, id), partitions) in names.into_iter().zip(answers) {
                let partitions = partitions
                    .into_iter()
                    .map(|p| if lapsed { lapsed_answer(p) } else { p })
                    .map(|p| fit_version(p, version))
                    .collect();
                // Both identities are kept; the encoder writes the one of the version.
                entries.push(
                    TopicProduceResponse::default()
                        .with_name(name)
                        .with_topic_id(id)
                        .with_partition_responses(partitions),
                );
            }
        }
        Ok(write_guard::merge_of::<Produce>(entries))
    });
    let action = RequestAction::Await { upstream, later };
    if refused_before_sending {
        // Not written while the client's later batches are already on their way: read
        // none of them before this one is retried (`registry::forward::Forwarded`).
        return Ok(RequestAction::Last(Box::new(action)));
    }
    Ok(action)
}

/// A source's answer that arrived too late to be trusted, as REQUEST_TIMED_OUT.
fn lapsed_answer(p: PartitionProduceResponse) -> PartitionProduceResponse {
    let text = "mirrorgate lost touch with its fleet while this write was on its way to the source; retry it";
    PartitionProduceResponse::default()
        .with_index(p.index)
        .with_error_code(REQUEST_TIMED_OUT)
        .with_base_offset(-1)
        .with_error_message(Some(StrBytes::from_static_str(text)))
}

/// Clears what the client's version cannot carry (the encoder refuses such fields).
fn fit_version(mut p: PartitionProduceResponse, version: i16) -> PartitionProduceResponse {
    if version < ERROR_MESSAGE_SINCE {
        p.error_message = None;
        p.record_errors.clear();
    }
    if version < LOG_START_OFFSET_SINCE {
        p.log_start_offset = -1;
    }
    p
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_response::PartitionProduceResponse;
    use kafka_protocol::protocol::StrBytes;

    use super::fit_version;

    #[test]
    fn fields_a_version_cannot_carry_are_cleared() {
        let full = PartitionProduceResponse::default()
            .with_error_code(6)
            .with_log_start_offset(3)
            .with_error_message(Some(StrBytes::from_static_str("moved")));
        let v4 = fit_version(full.clone(), 4);
        assert_eq!((v4.error_message, v4.log_start_offset), (None, -1));
        let v7 = fit_version(full.clone(), 7);
        assert_eq!((v7.error_message, v7.log_start_offset), (None, 3));
        assert_eq!(fit_version(full.clone(), 9), full);
    }
}
