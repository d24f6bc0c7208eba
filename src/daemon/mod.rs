//! The daemon: owns the socket, the registry of runs and their threads. It orchestrates;
//! the loop itself lives in `run`.

mod handlers;
mod lock;
mod registry;
mod server;

use std::sync::Arc;

use anyhow::Result;
use tokio::sync::watch;

use crate::config::DaemonConfig;
pub use registry::Registry;

/// A daemon started in this process (tests, `arctl demo`): stop it with `shutdown`.
pub struct DaemonHandle {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl DaemonHandle {
    /// Stop the daemon and wait until it has (runs interrupted cleanly, socket removed).
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        let _ = self.stop.send(true);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("daemon thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for DaemonHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Start a daemon on a background thread; returns once the socket accepts connections.
pub fn start(config: DaemonConfig) -> Result<DaemonHandle> {
    let (tx, rx) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let thread = std::thread::Builder::new()
        .name("arctl-daemon".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(serve(config, rx, Some(ready_tx)))
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(DaemonHandle {
            stop: tx,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(thread
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("daemon thread panicked")))
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("daemon stopped during startup"))),
    }
}

/// Run the daemon in the foreground until SIGTERM, SIGINT or `arctl shutdown`.
pub fn run(config: DaemonConfig) -> Result<()> {
    // One malloc arena per core rather than glibc's eight per core: each run's thread would
    // otherwise get an arena of its own and keep freed memory in it (scale bench: peak RSS
    // with 32 runs 66 -> 59 MiB, 128 registered runs 49 -> 37 MiB).
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning, before the threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (tx, rx) = watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
            let _ = tx.send(true);
        });
        serve(config, rx, None).await
    })
}

async fn serve(
    config: DaemonConfig,
    stop: watch::Receiver<bool>,
    ready: Option<std::sync::mpsc::Sender<Result<()>>>,
) -> Result<()> {
    raise_fd_limit();
    let setup = async {
        crate::config::create_private_dir(&config.state_dir)?;
        let pid_lock = lock::PidLock::acquire(&config.state_dir)?;
        let listener = server::bind(&config.socket)?;
        Ok::<_, anyhow::Error>((pid_lock, listener))
    };
    let (pid_lock, listener) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            if let Some(r) = &ready {
                let _ = r.send(Err(anyhow::anyhow!("{e:#}")));
            }
            return Err(e);
        }
    };
    tracing::info!(socket = %config.socket.display(), state_dir = %config.state_dir.display(), pid = std::process::id(), "daemon listening");
    let registry = Arc::new(Registry::new(config.clone()));
    {
        let reg = registry.clone();
        tokio::task::spawn_blocking(move || reg.load_all()).await?;
    }
    if let Some(r) = ready {
        let _ = r.send(Ok(()));
    }
    let result = server::accept_loop(listener, registry.clone(), stop).await;
    tracing::info!("stopping runs");
    {
        let reg = registry.clone();
        tokio::task::spawn_blocking(move || reg.shutdown_all()).await?;
    }
    let _ = std::fs::remove_file(&config.socket);
    drop(pid_lock);
    tracing::info!("daemon stopped");
    result
}

/// Use every file descriptor the hard limit allows: each connection and each child's output
/// costs some, and running out makes accept fail.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
