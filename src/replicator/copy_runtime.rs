//! The runtime mirror partitions are copied on, apart from the proxy's: each
//! partition's task, its fetcher and the shared Produce connections hand batches to
//! one another many thousand times a second. On few threads (`[replicator]
//! copy_threads`, default 1) those hand-offs seldom wake another thread; on the
//! proxy's runtime, where every core has a worker, most did (BENCHMARKS.md, "Where the
//! replicator's CPU goes").

use std::future::Future;

use tokio::runtime::{Builder, Runtime};

/// Owns the copy runtime; dropping it stops the runtime's threads without waiting.
pub struct CopyRuntime {
    runtime: Option<Runtime>,
}

impl CopyRuntime {
    /// A runtime of `threads` workers; when the system refuses the threads, copying
    /// runs on the caller's runtime instead.
    pub fn start(threads: usize) -> Self {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("mirrorgate-copy")
            .enable_all()
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "no copy runtime: copying on the proxy's runtime");
            })
            .ok();
        Self { runtime }
    }

    /// Runs `task` on the copy runtime; what it spawns runs there too. Must be called
    /// within a runtime (the fallback spawns on the caller's).
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }
}

impl Drop for CopyRuntime {
    fn drop(&mut self) {
        // A runtime may not block its dropper (which may be one of its own tasks).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
