//! `mirrorgate run`: load the config, start the proxy, the admin listener and the
//! config watcher; reload on SIGHUP; shut down cleanly on SIGTERM/SIGINT (stop
//! accepting, drain, exit 0).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::proxy::reload::{Reloader, SetLogLevel};
use crate::proxy::Proxy;
use crate::registry::{Registry, Snapshot};
use crate::replicator::manager::Replicator;

pub async fn run(config_path: &Path, set_log_level: SetLogLevel) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    if std::env::var_os("RUST_LOG").is_none() {
        if let Some(level) = &config.log.level {
            set_log_level(level).map_err(anyhow::Error::msg)?;
        }
    }
    let admin_bind: std::net::SocketAddr = config
        .admin
        .bind
        .parse()
        .with_context(|| format!("admin.bind '{}'", config.admin.bind))?;
    let metrics = crate::admin::metrics::install();
    let registry = Arc::new(Registry::new(Snapshot::build(config)?));
    let shutdown = CancellationToken::new();
    let proxy =
        Arc::new(Proxy::start(registry.clone(), shutdown.clone()).context("starting the proxy")?);
    let reloader = Arc::new(Reloader::new(
        config_path.to_path_buf(),
        proxy.clone(),
        set_log_level,
        admin_bind,
    ));
    tokio::spawn(reloader.clone().watch(shutdown.clone()));
    let replicator = Replicator::start(registry.clone(), shutdown.clone());
    let admin = crate::admin::AdminState {
        proxy: proxy.clone(),
        registry,
        reloader: reloader.clone(),
        replicator,
        metrics,
        lag_history: Default::default(),
    };
    crate::admin::serve(admin_bind, admin, shutdown.clone()).await?;

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
            _ = int.recv() => { tracing::info!("SIGINT received"); break; }
            _ = hup.recv() => { let _ = reloader.reload("SIGHUP").await; }
        }
    }
    let grace = proxy.shutdown_grace();
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
