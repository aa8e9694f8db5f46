//! The server's connection loop: accepts TCP connections and serves the
//! router on each (HTTP/1 with WebSocket upgrades, or HTTP/2), with the
//! timeouts a server on the internet needs:
//!
//! - a client must send a request's headers within the header timeout
//!   ([`DEFAULT_HEADER_TIMEOUT`]) or its connection is closed (a request
//!   whose headers never finish holds nothing for long);
//! - after the shutdown signal the listener closes at once, connections are
//!   asked to finish what they are doing, and those still open after the
//!   shutdown timeout are dropped (a body that never ends cannot hold the
//!   process).

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long a client has to send a request's headers: 30 s (nginx allows
/// 60 s; a browser or SDK sends them in one packet).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The timeouts of [`serve`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub header: Duration,
    pub shutdown: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then as the
/// module says.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
    timeouts: Timeouts,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    let graceful = GracefulShutdown::new();
    // Every connection's task, so that those left at the deadline end.
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: the listener stays, and
                    // accepting resumes once some are free.
                    tracing::warn!(%err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Events are small frames written as they happen: without
        // TCP_NODELAY, Nagle holds each one until the previous is acked
        // (tens of milliseconds behind a delayed ACK).
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY on a connection");
        }
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "a connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(timeouts.shutdown, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_ms = u64::try_from(timeouts.shutdown.as_millis()).unwrap_or(u64::MAX),
            open = connections.len(),
            "connections still open after the shutdown timeout are closed"
        );
    }
    connections.abort_all();
}
