//! How an answer is changed on its way back: the steps the request's interceptors asked
//! for run in order on one decoded response, which is encoded once, and only when a
//! step changed it. Before decoding, each step looks at the raw answer (`Step::wants`):
//! when none wants it, the original bytes go back untouched.
//!
//! A step alone in wanting an answer may change its raw bytes instead (`Step::splice`):
//! a Fetch answer's NodeEndpoints are its last bytes, so the records before them go
//! back as the broker sent them, not decoded and encoded again.
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
use crate::kafka::frame_writer::OutFrame;
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

    /// The answer changed without decoding it, when this step is the only one that
    /// wants it; `None` when the step cannot (then the answer is decoded).
    fn splice(&self, _look: &Look<'_>) -> Option<Result<OutFrame, ConnError>> {
        None
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

/// What the steps make of a raw answer.
pub enum Raw {
    /// No step wants it: it goes back as it came.
    Untouched,
    /// The one step that wanted it changed its bytes.
    Spliced(OutFrame),
    /// It must be decoded for the steps.
    Decode,
}

/// Steps in the order they run: a tuple of `Step`s.
pub trait Steps<R>: Send + 'static {
    fn look(&self, look: &Look<'_>) -> Result<Raw, ConnError>;
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
            fn look(&self, look: &Look<'_>) -> Result<Raw, ConnError> {
                #[allow(non_snake_case)]
                let ($($s,)+) = self;
                // Every step looks (each may keep what it found for the next); one alone
                // wanting the answer may splice it, else it is decoded.
                let wants = [$( timed($s::NAME, || $s.wants(look)) ),+];
                match wants.iter().filter(|w| **w).count() {
                    0 => return Ok(Raw::Untouched),
                    1 => {
                        let mut wanted = wants.iter();
                        $(
                            if wanted.next() == Some(&true) {
                                if let Some(out) = timed($s::NAME, || $s.splice(look)) {
                                    return out.map(Raw::Spliced);
                                }
                            }
                        )+
                    }
                    _ => {}
                }
                Ok(Raw::Decode)
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
    ) -> Result<OutFrame, ConnError>;
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
    ) -> Result<OutFrame, ConnError> {
        let mut response = match &frame {
            Some(frame) => match self.steps.look(&Look::new(shared, frame, meta))? {
                Raw::Untouched => return Ok(OutFrame::Whole(frame.clone())),
                Raw::Spliced(out) => return Ok(out),
                Raw::Decode => decode_response::<R>(frame, meta.api_key, meta.api_version)
                    .map_err(ConnError::upstream)?,
            },
            None => R::default(),
        };
        let changed = self.steps.apply(shared, meta, &mut response)?;
        match frame {
            Some(frame) if !changed => Ok(OutFrame::Whole(frame)),
            _ => encode(meta, meta.api_key, &response).map(OutFrame::Whole),
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

    /// Answers with its own bytes, without decoding, when it alone wants the answer.
    struct Splicer;
    const SPLICED: &[u8] = b"spliced";
    impl Step<MetadataResponse> for Splicer {
        const NAME: &'static str = "test_splicer";
        fn splice(&self, _: &Look<'_>) -> Option<Result<OutFrame, ConnError>> {
            Some(Ok(OutFrame::Whole(Bytes::from_static(SPLICED))))
        }
        fn apply(
            self,
            _: &Arc<Shared>,
            _: &RequestMeta,
            r: &mut MetadataResponse,
        ) -> Result<bool, ConnError> {
            r.throttle_time_ms = 77;
            Ok(true)
        }
    }

    fn run(rewrite: Box<dyn Rewrite>, frame: Option<Bytes>) -> Bytes {
        let shared = crate::proxy::tests_support::shared();
        match rewrite.rewrite(&shared, frame, &meta()).unwrap() {
            OutFrame::Whole(frame) => frame,
            OutFrame::Parts(parts) => parts.concat().into(),
        }
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
    fn a_step_alone_in_wanting_an_answer_splices_it_and_with_another_it_is_decoded() {
        let original = frame_of(&MetadataResponse::default());
        let alone = run(Chain::boxed((Never, Splicer)), Some(original.clone()));
        assert_eq!(&alone[..], SPLICED);
        // Two want it: decoded once, both applied in order, encoded once.
        let both = run(Chain::boxed((Splicer, Throttle(3))), Some(original));
        let decoded: MetadataResponse = decode_response(&both, ApiKey::Metadata, 12).unwrap();
        assert_eq!(decoded.throttle_time_ms, 3);
    }

    #[test]
    fn without_an_upstream_answer_the_steps_build_it_from_empty() {
        let built = run(Chain::boxed((Throttle(0),)), None);
        let decoded: MetadataResponse = decode_response(&built, ApiKey::Metadata, 12).unwrap();
        assert_eq!(decoded, MetadataResponse::default());
    }
}
