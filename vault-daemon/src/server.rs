//! `qvault serve`: the qrexec socket-service daemon. Each connection starts with
//! qrexec's descriptor `<service> <source>\0`; the call itself is served by
//! [`crate::session`] on a blocking thread. A semaphore bounds concurrent calls,
//! socket timeouts bound how long a stalled client holds one, and SIGTERM stops
//! accepting and lets calls in flight finish.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use qubes_rpc::transport::read_descriptor;
use qubes_rpc::{FrameWriter, ServerFrame};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;

use crate::session::{serve_call, Service, Vault};

pub struct ServeOptions {
    pub socket: PathBuf,
    pub max_calls: usize,
    /// Longest a call may wait for the peer's next bytes.
    pub io_timeout: Duration,
}

pub fn run(vault: Vault, opts: ServeOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(opts.max_calls + 4)
        // Idle call threads go soon: their stacks and arenas are memory the
        // vault otherwise keeps (it locks its memory).
        .thread_keep_alive(Duration::from_secs(2))
        .enable_all()
        .build()?;
    rt.block_on(serve(Arc::new(vault), opts))
}

fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        // Only a stale socket is replaced: a live one means another daemon.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another daemon is listening on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))
}

async fn serve(vault: Arc<Vault>, opts: ServeOptions) -> anyhow::Result<()> {
    let listener = bind(&opts.socket)?;
    let permits = Arc::new(Semaphore::new(opts.max_calls));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tracing::info!(socket = %opts.socket.display(), "serving");
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p?,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let stream = tokio::select! {
            s = listener.accept() => match s {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let vault = vault.clone();
        let timeout = opts.io_timeout;
        let stream = stream.into_std()?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            if let Err(e) = call(&vault, stream, timeout) {
                tracing::info!("call ended: {e}");
            }
        });
    }
    tracing::info!("shutting down; waiting for calls in flight");
    let _all = permits.acquire_many(opts.max_calls as u32).await?;
    let _ = std::fs::remove_file(&opts.socket);
    Ok(())
}

fn call(vault: &Vault, stream: std::os::unix::net::UnixStream, timeout: Duration) -> anyhow::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // Small: it holds the descriptor and the first frames; large reads bypass it.
    let mut r = std::io::BufReader::with_capacity(4096, &stream);
    let (svc, source) = read_descriptor(&mut r)?;
    let service = match Service::from_name(&svc) {
        Ok(s) => s,
        Err(refusal) => {
            // The caller sees nothing but what we write: say why there too.
            let mut w = FrameWriter::new(&stream);
            let _ = w.send(&ServerFrame::Error(refusal.clone()));
            let _ = w.flush();
            anyhow::bail!("{}", refusal.message);
        }
    };
    serve_call(vault, service, &source, r, &stream)?;
    Ok(())
}
