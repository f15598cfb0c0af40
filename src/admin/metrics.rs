//! Prometheus metrics. Handles are created once (per API key, per outcome) and kept
//! here; labels are bounded: API keys, outcomes, reasons, and mirror topic names only.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use kafka_protocol::messages::ApiKey;
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Request latency buckets in seconds: 50 µs .. 30 s (long-poll Fetch sits at the top).
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];

/// Installs the Prometheus recorder for the process; `None` if one is already set.
pub fn install() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("mirrorgate_request_duration_seconds".into()),
            LATENCY_BUCKETS,
        )
        .ok()?
        .install_recorder()
        .ok()?;
    metrics::gauge!("mirrorgate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Some(handle)
}

pub struct RequestMetrics {
    pub count: Counter,
    pub latency: Histogram,
}

/// The proxy's metric handles.
pub struct ProxyMetrics {
    pub client_connections_active: Gauge,
    pub client_connections_total: Counter,
    pub upstream_connections_active: Gauge,
    pub upstream_connections_total: Counter,
    pub client_bytes_in: Counter,
    pub client_bytes_out: Counter,
    pub malformed_frames: Counter,
    /// Client connections closed for sending no whole request in time.
    pub idle_closed: Counter,
    pub connections_refused: Counter,
    /// Produce requests parked at a cut-over's fence, and those answered for waiting
    /// too long.
    pub produce_parked: Counter,
    pub produce_park_timeouts: Counter,
    /// Destination metadata the proxy fetched itself (its timer, unknown topic ids).
    pub destination_refreshes: Counter,
    /// Indexed by API key.
    requests: Vec<Option<RequestMetrics>>,
    refused_by_topic: DashMap<String, Counter>,
    tls_failures: DashMap<&'static str, Counter>,
    reloads: DashMap<&'static str, Counter>,
    /// By interceptor (or response step) and phase: a fixed set of names.
    interceptors: DashMap<(&'static str, &'static str), InterceptorMetrics>,
}

struct InterceptorMetrics {
    calls: Counter,
    nanoseconds: Counter,
}

impl ProxyMetrics {
    fn new() -> Self {
        let mut requests: Vec<Option<RequestMetrics>> = Vec::new();
        for key in ApiKey::iter() {
            let api = format!("{key:?}");
            let index = key as usize;
            if requests.len() <= index {
                requests.resize_with(index + 1, || None);
            }
            requests[index] = Some(RequestMetrics {
                count: metrics::counter!("mirrorgate_requests_total", "api" => api.clone()),
                latency: metrics::histogram!("mirrorgate_request_duration_seconds", "api" => api),
            });
        }
        Self {
            client_connections_active: metrics::gauge!("mirrorgate_client_connections_active"),
            client_connections_total: metrics::counter!("mirrorgate_client_connections_total"),
            upstream_connections_active: metrics::gauge!("mirrorgate_upstream_connections_active"),
            upstream_connections_total: metrics::counter!("mirrorgate_upstream_connections_total"),
            client_bytes_in: metrics::counter!("mirrorgate_client_bytes_in_total"),
            client_bytes_out: metrics::counter!("mirrorgate_client_bytes_out_total"),
            malformed_frames: metrics::counter!("mirrorgate_malformed_frames_total"),
            idle_closed: metrics::counter!("mirrorgate_client_idle_closed_total"),
            connections_refused: metrics::counter!("mirrorgate_connections_refused_total"),
            produce_parked: metrics::counter!("mirrorgate_produce_parked_total"),
            produce_park_timeouts: metrics::counter!("mirrorgate_produce_park_timeouts_total"),
            destination_refreshes: metrics::counter!(
                "mirrorgate_destination_metadata_refreshes_total"
            ),
            requests,
            refused_by_topic: DashMap::new(),
            tls_failures: DashMap::new(),
            reloads: DashMap::new(),
            interceptors: DashMap::new(),
        }
    }

    /// The process-wide handles.
    pub fn get() -> &'static Arc<ProxyMetrics> {
        static METRICS: OnceLock<Arc<ProxyMetrics>> = OnceLock::new();
        METRICS.get_or_init(|| Arc::new(ProxyMetrics::new()))
    }

    pub fn request(&self, api: ApiKey) -> Option<&RequestMetrics> {
        self.requests.get(api as usize)?.as_ref()
    }

    /// Produce partitions refused; `topic` is always a mirror topic, so the label set
    /// is bounded by the configured mirrors.
    pub fn produce_refused(&self, topic: &str, partitions: u64) {
        if let Some(counter) = self.refused_by_topic.get(topic) {
            counter.increment(partitions);
            return;
        }
        let counter = metrics::counter!(
            "mirrorgate_produce_partitions_refused_total",
            "topic" => topic.to_string()
        );
        counter.increment(partitions);
        self.refused_by_topic.insert(topic.to_string(), counter);
    }

    pub fn tls_handshake_failed(&self, reason: &'static str) {
        self.tls_failures
            .entry(reason)
            .or_insert_with(
                || metrics::counter!("mirrorgate_tls_handshake_failures_total", "reason" => reason),
            )
            .increment(1);
    }

    pub fn config_reload(&self, outcome: &'static str) {
        self.reloads
            .entry(outcome)
            .or_insert_with(
                || metrics::counter!("mirrorgate_config_reloads_total", "outcome" => outcome),
            )
            .increment(1);
    }

    /// Time spent in one interceptor's code for one request or answer: `phase` is
    /// "request" or "response". Waits (a fence, a topic-id lookup) are not counted.
    pub fn interceptor_time(
        &self,
        interceptor: &'static str,
        phase: &'static str,
        spent: Duration,
    ) {
        let key = (interceptor, phase);
        if let Some(m) = self.interceptors.get(&key) {
            m.calls.increment(1);
            m.nanoseconds.increment(spent.as_nanos() as u64);
            return;
        }
        let labels = [("interceptor", interceptor), ("phase", phase)];
        let m = InterceptorMetrics {
            calls: metrics::counter!("mirrorgate_interceptor_calls_total", &labels),
            nanoseconds: metrics::counter!("mirrorgate_interceptor_nanoseconds_total", &labels),
        };
        m.calls.increment(1);
        m.nanoseconds.increment(spent.as_nanos() as u64);
        self.interceptors.insert(key, m);
    }
}
