//! The admin HTTP listener: health, readiness, Prometheus metrics, the active config
//! and reload. The REST API of links and mirrors joins it.

pub mod cli;
mod links;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::reload::Reloader;
use crate::proxy::Proxy;
use crate::registry::Registry;
use crate::replicator::manager::Replicator;

#[derive(Clone)]
pub struct AdminState {
    pub proxy: Arc<Proxy>,
    pub registry: Arc<Registry>,
    pub reloader: Arc<Reloader>,
    pub replicator: Replicator,
    pub metrics: Option<PrometheusHandle>,
}

pub async fn serve(
    bind: SocketAddr,
    state: AdminState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/admin/config", get(active_config))
        .route("/admin/reload", post(reload))
        .merge(links::routes())
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("admin.bind {bind}"))?;
    tracing::info!(%bind, "admin listening");
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!(side = "internal", error = %e, "admin server failed");
        }
    });
    Ok(())
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.proxy.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "destination metadata not known yet\n",
        )
    }
}

async fn metrics_text(State(state): State<AdminState>) -> impl IntoResponse {
    match &state.metrics {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n".into(),
        ),
    }
}

/// The active config and when it was loaded. The config holds no secrets yet (TLS
/// keys are file paths); link credentials will be redacted here when links arrive.
async fn active_config(State(state): State<AdminState>) -> impl IntoResponse {
    let snapshot = state.registry.load();
    let loaded_at_ms = snapshot
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Json(json!({ "loaded_at_ms": loaded_at_ms, "config": *snapshot.config }))
}

async fn reload(State(state): State<AdminState>) -> impl IntoResponse {
    match state.reloader.reload("admin").await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "reloaded" }))),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error_code": 400, "message": e })),
        ),
    }
}
