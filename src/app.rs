//! `mirrorgate run`: load the config, start the proxy and the admin listener, and
//! shut down cleanly on SIGTERM/SIGINT (stop accepting, drain, exit 0).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::proxy::Proxy;
use crate::registry::{Registry, Snapshot};

pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let grace = config.proxy.shutdown_grace();
    let admin_bind = config
        .admin
        .bind
        .parse()
        .with_context(|| format!("admin.bind '{}'", config.admin.bind))?;
    let registry = Arc::new(Registry::new(Snapshot::from_config(config)));
    let shutdown = CancellationToken::new();
    let proxy = Arc::new(Proxy::start(registry, shutdown.clone()).context("starting the proxy")?);
    crate::admin::serve(admin_bind, proxy.clone(), shutdown.clone()).await?;

    wait_for_signal().await?;
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining connections"
    );
    shutdown.cancel();
    let still_open = proxy.drain(grace).await;
    if still_open > 0 {
        tracing::warn!(
            still_open,
            "grace period over; closing remaining connections"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
