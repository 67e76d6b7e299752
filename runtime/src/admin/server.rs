//! The admin API's connections: accepted up to a limit, wrapped in TLS when configured,
//! served as HTTP/1.1, and closed gracefully when the daemon stops.
//!
//! Every wait a caller can cause is bounded, because the API faces whatever can reach
//! its port: a TLS handshake gets [`HANDSHAKE_TIMEOUT`], and a request's headers get
//! [`HEADER_READ_TIMEOUT`] from the moment the connection is ready for them, which
//! also closes a connection that sends nothing at all and an idle keep-alive one.
//! HTTP/1.1 only, on purpose: protocol detection (HTTP/1 or HTTP/2) would read a
//! caller's first bytes with no deadline, and a control API gains nothing from HTTP/2.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a caller may take to send a request's headers, counted from when the
/// connection waits for them (its start, or the end of its previous request). A
/// request's body has no such bound: only a caller with the token gets as far as
/// sending one.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once. Past it, new callers wait in the listen backlog until
/// one closes; with the timeouts above none is held for long, and the daemon's file
/// descriptors stay its own.
const MAX_CONNECTIONS: usize = 128;

/// How long open requests get to finish once the server is told to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long to wait after `accept` fails (out of file descriptors, typically) before
/// trying again, so that the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// Serve `router` on `listener`, over TLS when `tls` is given, until `stopped`.
pub(super) async fn serve(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "the admin API cannot use its socket");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            _ = &mut stopped => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "the admin API cannot accept a connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let watcher = graceful.watcher();
        let router = router.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(stream, router, watcher).await,
                Some(tls) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, router, watcher).await,
                        Ok(Err(error)) => tracing::debug!(%error, "admin TLS handshake failed"),
                        Err(_) => tracing::debug!("admin TLS handshake timed out"),
                    }
                }
            }
        });
    }
    // Stop listening at once, then give open requests their grace; whatever is left
    // (a handshake in progress, a request past its grace) ends with the runtime.
    drop(listener);
    if tokio::time::timeout(STOP_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("admin requests still open after the stop grace were cut");
    }
}

/// Serve one connection's requests until it closes, fails, or the server stops.
async fn connection<S>(
    stream: S,
    router: axum::Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let served = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    if let Err(error) = watcher.watch(served).await {
        // A caller that went away or timed out: nothing the daemon must act on.
        tracing::debug!(%error, "admin connection ended");
    }
}
