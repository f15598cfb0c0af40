//! The admin HTTP listener: health, readiness, Prometheus metrics, the active config
//! and reload, the status page (`status`). The REST API of links and mirrors joins it. Every request passes the
//! browser guard (Host, Origin, Content-Type) and, with a token configured, the bearer
//! token check; the probes `/healthz` and `/readyz` are outside both.

mod auth;
pub mod cli;
pub mod cli_cutover;
pub mod cli_output;
mod cli_restore;
mod cli_wait;
mod cutover;
mod guard;
mod links;
pub mod metrics;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::AdminConfig;
use crate::proxy::reload::Reloader;
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
    /// Sampled for the status page while the admin listener runs.
    pub lag_history: Arc<status::LagHistory>,
}

/// What the access checks need: the address listened on and the `[admin]` settings of
/// the active config, read for every request so a reload (a rotated token) applies at once.
#[derive(Clone)]
pub(crate) struct Access {
    pub bind: SocketAddr,
    pub settings: Arc<dyn Fn() -> AdminConfig + Send + Sync>,
}

/// The project's JSON error shape, `{"error_code": <status>, "message": ...}`.
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({ "error_code": status.as_u16(), "message": message.into() });
    (status, Json(body)).into_response()
}

/// `api` behind the browser guard (outermost) and the token check; `probes` beside it,
/// open to anyone: orchestrators call them by pod address without a token, and they
/// reveal nothing.
pub(crate) fn protect(api: Router, probes: Router, access: Access) -> Router {
    api.layer(from_fn_with_state(access.clone(), auth::require_token))
        .layer(from_fn_with_state(access, guard::browser_guard))
        .merge(probes)
}

pub async fn serve(
    bind: SocketAddr,
    state: AdminState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The page holds no data (its requests carry the token), so it is open like the
    // probes.
    let probes = Router::new()
        .route("/", get(status::page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state.clone());
    let api = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/admin/config", get(active_config))
        .route("/admin/reload", post(reload))
        .route("/admin/fleet", get(fleet))
        .route("/admin/lag-history", get(status::lag_history))
        .merge(links::routes())
        .merge(cutover::routes())
        .with_state(state.clone());
    let registry = state.registry.clone();
    let access = Access {
        bind,
        settings: Arc::new(move || registry.load().config.admin.clone()),
    };
    let app = protect(api, probes, access);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("admin.bind {bind}"))?;
    tracing::info!(%bind, "admin listening");
    state
        .lag_history
        .spawn_sampler(state.replicator.clone(), shutdown.child_token());
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!(side = "internal", error = %e, "admin server failed");
        }
    });
    Ok(())
}

/// Ready once the proxy knows the destination's brokers and the catalog is loaded
/// (until then every write is refused, as any topic may be a mirror).
async fn readyz(State(state): State<AdminState>) -> (StatusCode, String) {
    if !state.proxy.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "destination metadata not known yet\n".into(),
        );
    }
    let snapshot = state.registry.load();
    let catalog = snapshot.catalog();
    if !catalog.loaded {
        let why = catalog
            .problem
            .as_deref()
            .unwrap_or("reading the metadata topic");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("catalog not loaded (writes are refused until it is): {why}\n"),
        );
    }
    (StatusCode::OK, "ready\n".into())
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

/// This instance's group membership and the work it holds.
async fn fleet(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.replicator.fleet().await)
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

/// `POST /admin/reload`; any body (the CLI and tests send `{}`) is ignored.
async fn reload(State(state): State<AdminState>) -> Response {
    match state.reloader.reload("admin").await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "reloaded" }))).into_response(),
        Err(e) => json_error(StatusCode::BAD_REQUEST, e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{HeaderMap, Method, Request};
    use tower::ServiceExt;

    /// A route `/x` (GET, POST, PUT, DELETE) and the probes, behind the access checks,
    /// on a listener at 127.0.0.1:8090 with these `[admin]` settings.
    pub(crate) fn app(token: Option<&str>, hosts: &[String], origins: &[String]) -> Router {
        let admin = AdminConfig {
            token: token.map(|t| crate::config::admin::AdminToken::new(t.to_string())),
            allowed_hosts: hosts.to_vec(),
            allowed_origins: origins.to_vec(),
            ..Default::default()
        };
        let api = Router::new().route(
            "/x",
            get(|| async { "ok" })
                .post(|| async { "ok" })
                .put(|| async { "ok" })
                .delete(|| async { "ok" }),
        );
        let probes = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(|| async { "ok" }));
        let access = Access {
            bind: ([127, 0, 0, 1], 8090).into(),
            settings: Arc::new(move || admin.clone()),
        };
        protect(api, probes, access)
    }

    pub(crate) async fn send_full(
        app: &Router,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value, HeaderMap) {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from("{}")).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, body, headers)
    }

    pub(crate) async fn send(
        app: &Router,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let (status, body, _) = send_full(app, method, path, headers).await;
        (status, body)
    }
}
