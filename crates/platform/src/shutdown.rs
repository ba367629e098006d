//! Graceful shutdown: one token every task watches, cancelled by Ctrl-C or SIGTERM.

pub use tokio_util::sync::CancellationToken;

/// Resolves on Ctrl-C or SIGTERM (the handlers are installed when it is first polled).
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// A token cancelled when the process is asked to stop, its handlers installed before this
/// returns. Call it before any start-up work: until a handler is installed, SIGTERM kills the
/// process mid-start, and a container's first process (PID 1), whose signals without a handler
/// are dropped, ignores it until the kubelet's SIGKILL.
pub fn on_signal() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let child = token.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut term, mut interrupt) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("shutdown requested, draining");
            child.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown requested, draining");
        child.cancel();
    });
    Ok(token)
}
