//! The HTTP server the guest installs from: exactly `/ks.cfg` and the ostree repository
//! under `/repo/`, read-only, no directory listings, no path traversal (tower-http's
//! ServeDir), with range requests. Every request goes to an access log channel that drives
//! progress and the "never fetched" diagnostics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{mpsc, oneshot};
use tower_http::services::ServeDir;

/// One served request.
#[derive(Debug, Clone)]
pub struct Access {
    /// The HTTP method.
    pub method: String,
    /// The request path as sent (still percent-encoded).
    pub path: String,
    /// The response's status code.
    pub status: u16,
    /// When the response was ready.
    pub at: Instant,
}

/// The running HTTP server for the guest; [`GuestServer::stop`] shuts it down gracefully,
/// dropping it aborts it.
pub struct GuestServer {
    /// The address it listens on (127.0.0.1 and the bound port).
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl GuestServer {
    /// Binds 127.0.0.1:`port` (0 = any free port); loopback only, QEMU's user networking
    /// maps the guest's 10.0.2.2 onto it.
    pub async fn bind(port: u16) -> Result<tokio::net::TcpListener> {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
                "port {port} on 127.0.0.1 is in use by another program: pass another --port, or --port 0 for any free port"
            ),
            Err(e) => Err(e).with_context(|| format!("binding 127.0.0.1:{port}")),
        }
    }

    /// Serves `ks` at /ks.cfg and `repo` (if any) under /repo/.
    pub async fn serve(
        listener: tokio::net::TcpListener,
        ks: Vec<u8>,
        repo: Option<&Path>,
    ) -> Result<(GuestServer, mpsc::UnboundedReceiver<Access>)> {
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let app = router(ks, repo.map(Path::to_path_buf), tx);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // TCP_NODELAY: without it Nagle + delayed ACKs cost ~40 ms per small object
            // on keep-alive connections (measured: 3x slower than python's http.server).
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        Ok((
            GuestServer {
                addr,
                shutdown: Some(stop_tx),
                task: Some(task),
            },
            rx,
        ))
    }

    /// Stops accepting and waits (briefly) for the server task to end.
    pub async fn stop(mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(mut t) = self.task.take()
            && tokio::time::timeout(std::time::Duration::from_millis(300), &mut t)
                .await
                .is_err()
        {
            // Keep-alive connections of a guest that is gone: do not wait for them.
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for GuestServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

#[doc(hidden)] // public for the fuzz targets (fuzz/)
pub fn router(ks: Vec<u8>, repo: Option<PathBuf>, log: mpsc::UnboundedSender<Access>) -> Router {
    let ks = std::sync::Arc::new(ks);
    let mut app =
        Router::new().route(
            "/ks.cfg",
            get(move || {
                let ks = ks.clone();
                async move {
                    ([(header::CONTENT_TYPE, "text/plain")], ks.as_ref().clone()).into_response()
                }
            }),
        );
    if let Some(repo) = repo {
        let root =
            std::sync::Arc::new(std::fs::canonicalize(&repo).unwrap_or_else(|_| repo.clone()));
        let files = Router::new()
            .fallback_service(ServeDir::new(repo).append_index_html_on_directories(false))
            .layer(middleware::from_fn_with_state(root, confine));
        app = app.nest("/repo", files);
    }
    app.fallback(|| async { StatusCode::NOT_FOUND })
        .layer(middleware::from_fn_with_state(log, access_log))
}

/// 404 for a path that resolves outside the repository through a symlink. ServeDir refuses
/// `..` (also percent-encoded) but follows symlinks, and a repository can hold any symlink
/// (a bare-user-only repo stores symlink objects as symlinks).
async fn confine(
    State(root): State<std::sync::Arc<PathBuf>>,
    req: Request,
    next: Next,
) -> Response {
    let decoded = percent_encoding::percent_decode_str(req.uri().path()).decode_utf8();
    let Ok(decoded) = decoded else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let rel = Path::new(decoded.trim_start_matches('/'));
    if decoded.contains('\0')
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    // Missing files fall through to ServeDir's own 404.
    if let Ok(real) = std::fs::canonicalize(root.join(rel))
        && !real.starts_with(root.as_path())
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    next.run(req).await
}

async fn access_log(
    State(log): State<mpsc::UnboundedSender<Access>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let _ = log.send(Access {
        method,
        path,
        status: resp.status().as_u16(),
        at: Instant::now(),
    });
    resp
}
