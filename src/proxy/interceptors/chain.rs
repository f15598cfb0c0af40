//! How an answer is changed on its way back: the steps the request's interceptors asked
//! for run in order on one decoded response, which is encoded once, and only when a
//! step changed it. Before decoding, each step looks at the raw answer (`Step::wants`):
//! when none wants it, the original bytes go back untouched.
//!
//! Steps are values of their own types, composed as tuples (`Chain<R, (A, B)>`), so a
//! chain of steps without data is a zero-sized value: choosing one per request
//! allocates nothing.

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::RequestMeta;
use crate::admin::metrics::ProxyMetrics;
use crate::kafka::codec::{decode_response, encode_response, response_body};
use crate::kafka::fetch_scan::{scan_fetch_response, FetchLayout, ScannedTopic};
use crate::proxy::error::ConnError;
use crate::proxy::Shared;

/// One change to a decoded response of type `R`.
pub trait Step<R>: Send + 'static {
    /// The step's name in `mirrorgate_interceptor_*` metrics.
    const NAME: &'static str;

    /// Whether the step may change this answer, judged without decoding it; a step
    /// that cannot tell says true.
    fn wants(&self, _look: &Look<'_>) -> bool {
        true
    }

    /// Changes `response`; true when it changed anything.
    fn apply(
        self,
        shared: &Arc<Shared>,
        meta: &RequestMeta,
        response: &mut R,
    ) -> Result<bool, ConnError>;
}

/// The raw answer as the steps see it before it is decoded. What one step finds by
/// walking it is kept for the next.
pub struct Look<'a> {
    pub shared: &'a Arc<Shared>,
    pub frame: &'a Bytes,
    pub meta: &'a RequestMeta,
    fetch_layout: OnceCell<Option<FetchLayout>>,
}

impl<'a> Look<'a> {
    fn new(shared: &'a Arc<Shared>, frame: &'a Bytes, meta: &'a RequestMeta) -> Self {
        Self {
            shared,
            frame,
            meta,
            fetch_layout: OnceCell::new(),
        }
    }

    /// The response after its header; `None` when the frame is too short for one.
    pub fn body(&self) -> Option<Bytes> {
        response_body(self.frame, self.meta.api_key, self.meta.api_version).ok()
    }

    /// Walks a Fetch answer, calling `partition` for each partition (see
    /// `kafka::fetch_scan`); `None` when it cannot be walked. The layout is kept.
    pub fn walk_fetch<'b>(
        &self,
        body: &'b Bytes,
        partition: impl FnMut(ScannedTopic<'b>, i32, Option<&'b [u8]>),
    ) -> Option<FetchLayout> {
        let layout = scan_fetch_response(body, self.meta.api_version, partition).ok();
        // A second walk of the same answer would find the same.
        let _ = self.fetch_layout.set(layout);
        layout
    }

    /// A Fetch answer's layout, from an earlier step's walk or from a walk now.
    pub fn fetch_layout(&self) -> Option<FetchLayout> {
        *self.fetch_layout.get_or_init(|| {
            let body = self.body()?;
            scan_fetch_response(&body, self.meta.api_version, |_, _, _| {}).ok()
        })
    }
}

/// Steps in the order they run: a tuple of `Step`s.
pub trait Steps<R>: Send + 'static {
    fn wants(&self, look: &Look<'_>) -> bool;
    fn apply(
        self,
        shared: &Arc<Shared>,
        meta: &RequestMeta,
        response: &mut R,
    ) -> Result<bool, ConnError>;
}

/// Runs one step, its time counted under its name.
fn timed<T>(name: &'static str, run: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = run();
    ProxyMetrics::get().interceptor_time(name, "response", start.elapsed());
    out
}

macro_rules! steps_tuple {
    ($($s:ident),+) => {
        impl<R, $($s: Step<R>),+> Steps<R> for ($($s,)+) {
            fn wants(&self, look: &Look<'_>) -> bool {
                #[allow(non_snake_case)]
                let ($($s,)+) = self;
                // Every step looks (each may keep what it found for the next); any one
                // wanting the answer decodes it.
                let mut any = false;
                $( any |= timed($s::NAME, || $s.wants(look)); )+
                any
            }

            fn apply(
                self,
                shared: &Arc<Shared>,
                meta: &RequestMeta,
                response: &mut R,
            ) -> Result<bool, ConnError> {
                #[allow(non_snake_case)]
                let ($($s,)+) = self;
                let mut changed = false;
                $( changed |= timed($s::NAME, || $s.apply(shared, meta, response))?; )+
                Ok(changed)
            }
        }
    };
}
steps_tuple!(A);
steps_tuple!(A, B);
steps_tuple!(A, B, C);

/// What is done with an answer before it goes back to the client. `frame` is the
/// broker's answer; `None` when nothing of the request went to the broker.
pub trait Rewrite: Send {
    fn rewrite(
        self: Box<Self>,
        shared: &Arc<Shared>,
        frame: Option<Bytes>,
        meta: &RequestMeta,
    ) -> Result<Bytes, ConnError>;
}

/// Steps over a response of type `R`.
pub struct Chain<R, S> {
    steps: S,
    response: std::marker::PhantomData<fn() -> R>,
}

impl<R, S: Steps<R>> Chain<R, S> {
    pub fn new(steps: S) -> Self {
        Self {
            steps,
            response: std::marker::PhantomData,
        }
    }

    /// As the answer to a forwarded request.
    pub fn boxed(steps: S) -> Box<dyn Rewrite>
    where
        R: Decodable + Encodable + Default + 'static,
    {
        Box::new(Self::new(steps))
    }
}

impl<R, S> Rewrite for Chain<R, S>
where
    R: Decodable + Encodable + Default + 'static,
    S: Steps<R>,
{
    fn rewrite(
        self: Box<Self>,
        shared: &Arc<Shared>,
        frame: Option<Bytes>,
        meta: &RequestMeta,
    ) -> Result<Bytes, ConnError> {
        let mut response = match &frame {
            Some(frame) => {
                if !self.steps.wants(&Look::new(shared, frame, meta)) {
                    return Ok(frame.clone());
                }
                decode_response::<R>(frame, meta.api_key, meta.api_version)
                    .map_err(ConnError::upstream)?
            }
            None => R::default(),
        };
        let changed = self.steps.apply(shared, meta, &mut response)?;
        match frame {
            Some(frame) if !changed => Ok(frame),
            _ => encode(meta, meta.api_key, &response),
        }
    }
}

fn encode<R: Encodable>(meta: &RequestMeta, api: ApiKey, response: &R) -> Result<Bytes, ConnError> {
    encode_response(meta.correlation_id, api, meta.api_version, response)
        .map_err(ConnError::internal)
}

#[cfg(test)]
mod tests {
    //! The chain's contract with fakes for steps; the real steps are tested in their
    //! modules and through the proxy.
    use super::*;
    use kafka_protocol::messages::MetadataResponse;

    fn meta() -> RequestMeta {
        RequestMeta {
            correlation_id: 7,
            api_key: ApiKey::Metadata,
            api_version: 12,
        }
    }

    fn frame_of(response: &MetadataResponse) -> Bytes {
        encode(&meta(), ApiKey::Metadata, response).unwrap()
    }

    struct Throttle(i32);
    impl Step<MetadataResponse> for Throttle {
        const NAME: &'static str = "test_throttle";
        fn apply(
            self,
            _: &Arc<Shared>,
            _: &RequestMeta,
            r: &mut MetadataResponse,
        ) -> Result<bool, ConnError> {
            let changed = r.throttle_time_ms != self.0;
            r.throttle_time_ms = self.0;
            Ok(changed)
        }
    }

    struct Never;
    impl Step<MetadataResponse> for Never {
        const NAME: &'static str = "test_never";
        fn wants(&self, _: &Look<'_>) -> bool {
            false
        }
        fn apply(
            self,
            _: &Arc<Shared>,
            _: &RequestMeta,
            _: &mut MetadataResponse,
        ) -> Result<bool, ConnError> {
            panic!("a step that wants nothing is applied only when another step decodes")
        }
    }

    fn run(rewrite: Box<dyn Rewrite>, frame: Option<Bytes>) -> Bytes {
        let shared = crate::proxy::tests_support::shared();
        rewrite.rewrite(&shared, frame, &meta()).unwrap()
    }

    #[test]
    fn steps_run_in_order_on_one_decode_and_an_unchanged_answer_keeps_its_bytes() {
        let original = frame_of(&MetadataResponse::default().with_throttle_time_ms(5));
        // Unchanged: the very bytes come back (same allocation).
        let same = run(Chain::boxed((Throttle(5),)), Some(original.clone()));
        assert_eq!(same.as_ptr(), original.as_ptr());
        // The later step wins: they ran in order on one response.
        let changed = run(Chain::boxed((Throttle(1), Throttle(9))), Some(original));
        let decoded: MetadataResponse = decode_response(&changed, ApiKey::Metadata, 12).unwrap();
        assert_eq!(decoded.throttle_time_ms, 9);
    }

    #[test]
    fn an_answer_no_step_wants_is_not_decoded() {
        // Not a Metadata response at all: decoding it would fail.
        let garbage = Bytes::from_static(&[0, 0, 0, 7, 0xff, 0xff]);
        let back = run(Chain::boxed((Never,)), Some(garbage.clone()));
        assert_eq!(back, garbage);
    }

    #[test]
    fn without_an_upstream_answer_the_steps_build_it_from_empty() {
        let built = run(Chain::boxed((Throttle(0),)), None);
        let decoded: MetadataResponse = decode_response(&built, ApiKey::Metadata, 12).unwrap();
        assert_eq!(decoded, MetadataResponse::default());
    }
}
