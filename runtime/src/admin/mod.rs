//! The admin HTTP API: JSON status and control of a running daemon, `/metrics`,
//! health and readiness. `docs/admin-api.yaml` is its OpenAPI description.
//!
//! Reads are open; calls that change something (deploy, rollback, pause, resume) need
//! `Authorization: Bearer <token>`. With no token configured those calls are
//! disabled, never open. The server runs on its own thread, so a slow deploy (a
//! Python component compiles for seconds) never touches the processing threads.

mod routes;
mod server;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::AdminConfig;
use crate::daemon::Daemon;

/// The admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "cannot serve the admin API over TLS with {path}: {reason}; give admin.tls_cert a \
         PEM certificate chain and admin.tls_key its PEM private key"
    )]
    Tls { path: PathBuf, reason: String },
    #[error(
        "cannot listen on {listen} for the admin API: {source}; choose another admin.listen \
         (port 0 picks a free one) or set it to \"off\""
    )]
    Bind {
        listen: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the routes share.
pub(crate) struct AdminState {
    pub(crate) daemon: Arc<Daemon>,
    pub(crate) token: Option<String>,
    /// Needed (or the admin token) by state reads, when set.
    pub(crate) read_token: Option<String>,
    pub(crate) max_upload_bytes: usize,
}

/// A running admin server; dropping it stops the server.
#[derive(Debug)]
pub struct AdminServer {
    url: String,
    addr: SocketAddr,
    /// `<data_dir>/admin-url`, removed when the server stops so that no script finds
    /// the address of a daemon that is gone.
    url_file: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Where clients reach the API.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Only our own address: another daemon may have written the file since.
        if std::fs::read_to_string(&self.url_file).is_ok_and(|text| text.trim() == self.url) {
            let _ = std::fs::remove_file(&self.url_file);
        }
    }
}

/// Listen on `config.listen` and serve `daemon`'s API. The address it listens on is
/// written to `<data_dir>/admin-url` for scripts and the CLI.
pub fn start(daemon: Arc<Daemon>, config: &AdminConfig) -> Result<AdminServer, AdminError> {
    let bind_error = |source| AdminError::Bind {
        listen: config.listen.clone(),
        source,
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let listener = std::net::TcpListener::bind(&config.listen).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = config
        .advertised_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let token = config.resolved_token();
    if token.is_none() {
        tracing::warn!(
            "no admin token configured (admin.token or {}): deploy, rollback, pause and resume are disabled",
            crate::config::ADMIN_TOKEN_ENV
        );
    }
    let state = Arc::new(AdminState {
        daemon: daemon.clone(),
        token,
        read_token: config.read_token.clone(),
        max_upload_bytes: usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX),
    });
    let router = routes::router(state);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("weir-admin".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the admin API's runtime");
            runtime.block_on(server::serve(listener, tls, router, stopped));
        })
        .expect("spawning the admin thread");

    let file = daemon.data_dir().join("admin-url");
    if let Err(error) = write_whole(&file, &format!("{url}\n")) {
        tracing::warn!(file = %file.display(), %error, "cannot write the admin URL file");
    }
    daemon.set_admin_url(url.clone());
    tracing::info!(%url, "admin API listening");
    Ok(AdminServer {
        url,
        addr,
        url_file: file,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Writes `text` to `path` whole or not at all: a script that polls for the file (as
/// the tests and deployment scripts do) must never read it created but still empty.
fn write_whole(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(text.as_bytes())?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
