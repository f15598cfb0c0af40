//! The admin HTTP listener: health and readiness now; the REST API and /metrics join it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;

pub async fn serve(
    bind: SocketAddr,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(proxy);
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

async fn readyz(State(proxy): State<Arc<Proxy>>) -> (StatusCode, &'static str) {
    if proxy.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "destination metadata not known yet\n",
        )
    }
}
