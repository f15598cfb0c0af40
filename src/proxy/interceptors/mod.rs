//! Interceptors decode only the API keys they act on; every other frame is forwarded
//! byte for byte. Each interceptor declares the API keys whose requests it looks at
//! (`INTERCEPTORS`); its `on_request` decides what happens to a request, and the
//! `OnResponse` it leaves in the in-flight FIFO says which steps (`chain`) change the
//! answer. Time spent in each is counted per interceptor
//! (`mirrorgate_interceptor_nanoseconds_total`).

pub mod addresses;
pub mod api_versions;
pub mod chain;
pub mod fetch_fillers;
pub mod fleet_group_guard;
pub mod internal_guard;
pub mod produce_fence;
pub mod produce_forward;
pub mod produce_guard;
pub mod txn_forward;
pub mod write_guard;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::kafka::frame::RequestFrame;
use crate::kafka::frame_writer::OutFrame;
use crate::proxy::error::ConnError;
use crate::proxy::Shared;
use crate::registry::forward::Boxed;
pub use chain::Rewrite;

/// What to do with the answer to a forwarded request.
pub enum OnResponse {
    /// Back to the client as it came.
    Forward,
    /// Through these steps first (`chain::Chain`).
    Rewrite(Box<dyn Rewrite>),
}

/// What the response handler needs to know of the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta {
    pub correlation_id: i32,
    pub api_key: ApiKey,
    pub api_version: i16,
}

impl RequestMeta {
    pub fn of(frame: &RequestFrame) -> Self {
        Self {
            correlation_id: frame.correlation_id,
            api_key: frame.api_key,
            api_version: frame.api_version,
        }
    }
}

/// The rest of an answer, computed elsewhere.
pub type Later = Boxed<'static, Result<Box<dyn Rewrite>, ConnError>>;

pub enum RequestAction {
    /// Send `bytes` upstream; `on_response` is `None` when no response will come (acks=0).
    Forward {
        bytes: Bytes,
        on_response: Option<OnResponse>,
    },
    /// Answer the client with this frame, in order, without going upstream.
    Respond(Bytes),
    /// Part of the answer comes from elsewhere (Produce forwarded to a link's source):
    /// `upstream` (if any) is sent now, and once `later` resolves, in request order, its
    /// rewrite answers the client, with the upstream answer as its input.
    Await {
        upstream: Option<Bytes>,
        later: Later,
    },
    /// Close the connection; the reason says what the client did.
    Close(String),
    /// Carry out this action, then read no more requests: the connection closes once the
    /// answers in flight (this one's included) are written.
    Last(Box<RequestAction>),
}

fn forward(frame: RequestFrame, on_response: OnResponse) -> RequestAction {
    RequestAction::Forward {
        bytes: frame.bytes,
        on_response: Some(on_response),
    }
}

/// What an interceptor does with a request of one of its API keys.
pub type OnRequest =
    for<'a> fn(&'a Arc<Shared>, RequestFrame) -> Boxed<'a, Result<RequestAction, ConnError>>;

/// One interceptor: its name in metrics and logs, and the API keys it looks at.
pub struct Interceptor {
    pub name: &'static str,
    pub api_keys: &'static [ApiKey],
    pub on_request: OnRequest,
}

/// Every interceptor. An API key is looked at by one interceptor at most; the steps it
/// chooses for the answer may come from others (Metadata's hide mirrorgate's topics,
/// a Produce answer's merged refusals get their addresses rewritten).
pub const INTERCEPTORS: &[Interceptor] = &[
    api_versions::INTERCEPTOR,
    addresses::INTERCEPTOR,
    fetch_fillers::INTERCEPTOR,
    produce_guard::INTERCEPTOR,
    write_guard::INTERCEPTOR,
    txn_forward::INTERCEPTOR,
    internal_guard::INTERCEPTOR,
    fleet_group_guard::INTERCEPTOR,
];

fn interceptor_of(api: ApiKey) -> Option<&'static Interceptor> {
    INTERCEPTORS.iter().find(|i| i.api_keys.contains(&api))
}

/// What happens to a request: at once for API keys no interceptor looks at, else what
/// its interceptor decides.
pub fn on_request(shared: &Arc<Shared>, frame: RequestFrame) -> Decision<'_> {
    let (api, version) = (frame.api_key, frame.api_version);
    if !api_versions::is_offered(api, version) {
        if api == ApiKey::ApiVersions {
            return Decision::ready(
                api_versions::unsupported_version(frame.correlation_id)
                    .map(RequestAction::Respond)
                    .map_err(ConnError::internal),
            );
        }
        return Decision::ready(Ok(RequestAction::Close(format!(
            "{api:?} v{version} was not offered by the proxy"
        ))));
    }
    match interceptor_of(api) {
        None => Decision::ready(Ok(forward(frame, OnResponse::Forward))),
        Some(interceptor) => Decision::Running {
            interceptor: interceptor.name,
            spent: Duration::ZERO,
            decision: (interceptor.on_request)(shared, frame),
        },
    }
}

/// An interceptor's decision on a request, with the time spent computing it: only the
/// time inside its code, not its waits (a fence, a topic-id lookup).
pub enum Decision<'a> {
    Ready(Option<Result<RequestAction, ConnError>>),
    Running {
        interceptor: &'static str,
        spent: Duration,
        decision: Boxed<'a, Result<RequestAction, ConnError>>,
    },
}

impl Decision<'_> {
    fn ready(result: Result<RequestAction, ConnError>) -> Self {
        Self::Ready(Some(result))
    }
}

impl Future for Decision<'_> {
    type Output = Result<RequestAction, ConnError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut *self {
            Decision::Ready(result) => match result.take() {
                Some(result) => Poll::Ready(result),
                None => Poll::Ready(Err(ConnError::internal("a decision was polled twice"))),
            },
            Decision::Running {
                interceptor,
                spent,
                decision,
            } => {
                let start = Instant::now();
                let poll = decision.as_mut().poll(cx);
                *spent += start.elapsed();
                if poll.is_ready() {
                    crate::admin::metrics::ProxyMetrics::get().interceptor_time(
                        interceptor,
                        "request",
                        *spent,
                    );
                }
                poll
            }
        }
    }
}

pub fn on_response(
    shared: &Arc<Shared>,
    meta: RequestMeta,
    on_response: OnResponse,
    frame: Bytes,
) -> Result<OutFrame, ConnError> {
    match on_response {
        OnResponse::Forward => Ok(OutFrame::Whole(frame)),
        OnResponse::Rewrite(rewrite) => rewrite.rewrite(shared, Some(frame), &meta),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_key_is_looked_at_by_one_interceptor_at_most() {
        for key in ApiKey::iter() {
            let claims: Vec<&str> = INTERCEPTORS
                .iter()
                .filter(|i| i.api_keys.contains(&key))
                .map(|i| i.name)
                .collect();
            assert!(claims.len() <= 1, "{key:?} is claimed by {claims:?}");
        }
    }

    #[test]
    fn every_intercepted_key_is_offered_to_clients() {
        for interceptor in INTERCEPTORS {
            for key in interceptor.api_keys {
                assert!(
                    api_versions::proxy_range(*key).is_some(),
                    "{} looks at {key:?}, which the proxy does not offer",
                    interceptor.name
                );
            }
        }
    }
}
