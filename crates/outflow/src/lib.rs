//! Wiring: configuration → store → API, and an orderly shutdown.

pub mod clock;
pub mod config;
pub mod template_cmd;

use anyhow::Context;
use config::Config;
use outflow_core::{Clock, SystemClock};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// A running server, for `main` and for tests that start it in-process.
pub struct Server {
    pub addr: SocketAddr,
    /// The key created on first start of an empty store (shown once).
    pub bootstrapped: Option<outflow_store::accounts::Bootstrapped>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The flow engine sharing this process's store (tests call its
    /// `run_until_idle` after moving the clock).
    pub engine: Arc<outflow_engine::Engine>,
    workers: Option<outflow_engine::Worker>,
}

impl Server {
    /// Stops accepting, lets in-flight requests finish, then returns.
    /// Every request that got a 2xx had its writes committed before it.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait().await
    }

    /// Waits for the HTTP server to end, then stops the engine workers
    /// (their current batch commits first).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let served = self.task.await;
        if let Some(w) = self.workers.take() {
            w.stop().await;
        }
        served.context("server task")?.context("server")?;
        Ok(())
    }
}

/// Opens the store (running migrations), bootstraps an empty one, binds
/// and starts serving.
pub async fn start(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Server> {
    config.validate()?;
    let store = outflow_store::Store::open(&config.database_url)
        .await
        .with_context(|| format!("opening the store at {}", redact(&config.database_url)))?;
    let now = clock.now().timestamp_micros();
    let known = config.bootstrap_api_key.clone();
    let bootstrapped = store
        .write(move |ctx| outflow_store::accounts::bootstrap(ctx.conn, known.as_deref(), now))
        .await
        .context("bootstrapping the first account")?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr()?)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let engine = Arc::new(
        outflow_engine::Engine::new(store.clone(), clock.clone(), config.engine())
            .context("starting the flow engine")?,
    );
    let workers = engine.clone().spawn().await;
    let woken = engine.clone();
    let woken_by_events = engine.clone();
    let state = outflow_api::AppState::new(store, clock)
        .with_wake(Arc::new(move || woken.notify()))
        .with_wake_events(Arc::new(move || woken_by_events.notify_events()))
        .with_deliverer(engine.deliverer.clone())
        .with_webhooks_allow_private(config.webhooks_allow_private.clone())
        .with_password_cost(config.password_cost())
        .with_session_ttl_secs(config.session_ttl_secs);
    let app = outflow_api::router(state);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Server {
        addr,
        bootstrapped,
        task,
        stop: Some(stop),
        engine,
        workers: Some(workers),
    })
}

/// `outflow serve`: runs until SIGINT or SIGTERM.
pub async fn serve(config: Config, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = match clock::OffsetFileClock::from_env() {
        Some(c) => {
            tracing::warn!(file = %c.path().display(), "testing aid: the clock adds the offset in OUTFLOW_CLOCK_FILE");
            Arc::new(c)
        }
        None => Arc::new(SystemClock),
    };
    let server = start(&config, clock).await?;
    if let Some(b) = &server.bootstrapped {
        if config.bootstrap_api_key.is_some() {
            println!(
                "Created account {} with the API key from OUTFLOW_BOOTSTRAP_API_KEY.",
                b.account_id
            );
        } else {
            println!(
                "Created account {} and its owner {}.\nPrivate API key (shown once, store it now): {}",
                b.account_id, b.owner_email, b.api_key
            );
        }
    }
    // On stdout for scripts (with --listen 127.0.0.1:0 this is how they learn the port).
    println!("Listening on http://{}", server.addr);
    tracing::info!(addr = %server.addr, database = %redact(&config.database_url), "outflow listening");
    signal.await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

/// The runtime `outflow serve` runs on. The store's writer thread keeps
/// one core busy under load, so the async workers take the others (at
/// least one); `TOKIO_WORKER_THREADS` overrides. Blocking work (SQLite
/// reads) stays on a few threads that are reused, so their allocator heaps
/// and caches stay warm instead of new threads faulting in fresh memory.
pub fn serve_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        b.worker_threads(cores.saturating_sub(1).max(1));
    }
    b.max_blocking_threads(BLOCKING_THREADS);
    no_transparent_huge_pages();
    b.enable_all().build()
}

/// Turns transparent huge pages off for this process. The allocator hands
/// freed memory back to the kernel in small pieces; with THP on, touching
/// such a piece again faulted in and zeroed a whole 2 MB page (12–20% of
/// the async threads' CPU in the delivery benchmark).
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // The kernel reads every argument as an unsigned long and refuses
        // non-zero unused ones, so they are passed at that width.
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        // SAFETY: PR_SET_THP_DISABLE takes integers only and sets a flag
        // of the calling process; no memory is shared with the kernel.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "transparent huge pages stay on"
            );
        }
    }
}

/// Threads for blocking work; more concurrent SQLite reads than this gain
/// nothing on the machines we target.
const BLOCKING_THREADS: usize = 8;

/// Hides a password in a database URL before it is logged.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
