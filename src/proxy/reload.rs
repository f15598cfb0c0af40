//! Hot config swap. Triggers: the file changing on disk, SIGHUP, `POST /admin/reload`.
//! The new file is parsed, validated and turned into a snapshot (certificates read)
//! before anything changes; an invalid one is refused and the old config keeps running.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Proxy;
use crate::admin::metrics::ProxyMetrics;
use crate::config::Config;
use crate::registry::Snapshot;

/// Sets the log filter (e.g. "info", "mirrorgate=debug").
pub type SetLogLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub struct Reloader {
    path: PathBuf,
    proxy: Arc<Proxy>,
    set_log_level: SetLogLevel,
    /// Where the admin API listens; a reload does not move it.
    admin_bind: SocketAddr,
    /// The file content last acted on, so the watcher reloads once per change.
    last_seen: Mutex<Option<Vec<u8>>>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        proxy: Arc<Proxy>,
        set_log_level: SetLogLevel,
        admin_bind: SocketAddr,
    ) -> Self {
        let last_seen = Mutex::new(std::fs::read(&path).ok());
        Self {
            path,
            proxy,
            set_log_level,
            admin_bind,
            last_seen,
        }
    }

    /// Loads, validates and applies the file; the error names the key (and line for
    /// syntax errors). One reload at a time.
    pub async fn reload(&self, trigger: &'static str) -> Result<(), String> {
        let mut last_seen = self.last_seen.lock().await;
        *last_seen = std::fs::read(&self.path).ok();
        let result = self.apply().await;
        let metrics = ProxyMetrics::get();
        match &result {
            Ok(()) => {
                metrics.config_reload("success");
                tracing::info!(trigger, path = %self.path.display(), "config reloaded");
            }
            Err(e) => {
                metrics.config_reload("rejected");
                tracing::error!(trigger, error = %e, "config reload refused; the previous config stays active");
            }
        }
        result
    }

    async fn apply(&self) -> Result<(), String> {
        let config = Config::load(&self.path).map_err(|e| e.to_string())?;
        // The file's own admin.bind was checked; the listener may be elsewhere.
        if let Some(e) = crate::config::admin::exposure_error(self.admin_bind, &config.admin) {
            return Err(format!(
                "invalid config file {}:\n  {e}",
                self.path.display()
            ));
        }
        let log_level = config.log.level.clone();
        let snapshot = Snapshot::build(config).map_err(|e| e.to_string())?;
        self.proxy
            .apply(snapshot)
            .await
            .map_err(|e| format!("{e:#}"))?;
        if std::env::var_os("RUST_LOG").is_none() || log_level.is_some() {
            (self.set_log_level)(log_level.as_deref().unwrap_or("info"))?;
        }
        Ok(())
    }

    /// Polls the file once a second and reloads when its content changes. Polling
    /// (not inotify) also sees editors that replace the file and mounted configs.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let Ok(content) = tokio::fs::read(&self.path).await else {
                continue;
            };
            let changed = self.last_seen.lock().await.as_deref() != Some(content.as_slice());
            if changed {
                let _ = self.reload("file change").await;
            }
        }
    }
}
