//! `mirror serve`: MirrorManager's `/metalink` and `/mirrorlist` over HTTP (axum on tokio).
//!
//! The catalog lives behind `RwLock<Arc<Catalog>>`: a request clones the `Arc` and drops the
//! lock at once, so a reload (mtime polling of both input files, parsed off the async threads)
//! swaps in a new catalog without blocking or dropping requests. A file that fails to parse is
//! logged and the previous catalog keeps serving.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;

use super::catalog::{Catalog, LookupError, PathTarget};
use super::selection::{self, Client};
use super::{metalink, mirrorlist};

/// Longer query strings get 414: real ones are under 200 bytes.
pub const MAX_QUERY: usize = 2048;
const MAX_PATH: usize = 1024;
const MAX_NAME: usize = 128;

/// What `mirror serve` reads and where it listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The mirrors file.
    pub mirrors: PathBuf,
    /// The state file.
    pub state: PathBuf,
    /// The address to bind (port 0 picks a free one).
    pub listen: SocketAddr,
    /// How often both files are checked for changes.
    pub reload_interval: Duration,
}

/// The catalog being served, swapped whole on reload.
pub struct Shared {
    current: RwLock<Arc<Catalog>>,
}

impl Shared {
    /// Shares `cat` for serving.
    pub fn new(cat: Catalog) -> Arc<Shared> {
        Arc::new(Shared {
            current: RwLock::new(Arc::new(cat)),
        })
    }

    /// The current catalog; a request keeps it for its whole life, even across a reload.
    pub fn catalog(&self) -> Arc<Catalog> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc: the value is intact.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn replace(&self, cat: Catalog) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cat);
    }
}

/// Binds, serves until SIGINT/SIGTERM.
pub fn serve(opts: ServeOptions) -> Result<()> {
    let cat = Catalog::load(&opts.mirrors, &opts.state)?;
    crate::runtime::block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("listening on {}", opts.listen))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read the bound port from this line.
        eprintln!("listening on http://{addr}");
        let shared = Shared::new(cat);
        tokio::spawn(reload_loop(shared.clone(), opts.clone()));
        axum::serve(
            listener,
            router(shared).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")
    })?
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// What identifies a file version cheaply.
fn fingerprint(p: &std::path::Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

async fn reload_loop(shared: Arc<Shared>, opts: ServeOptions) {
    let mut last = (fingerprint(&opts.mirrors), fingerprint(&opts.state));
    let mut tick = tokio::time::interval(opts.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = (fingerprint(&opts.mirrors), fingerprint(&opts.state));
        if now == last {
            continue;
        }
        last = now;
        let (m, s) = (opts.mirrors.clone(), opts.state.clone());
        match tokio::task::spawn_blocking(move || Catalog::load(&m, &s)).await {
            Ok(Ok(cat)) => {
                tracing::info!(
                    "reloaded: {} repositories, {} mirrors",
                    cat.state.repos.len(),
                    cat.config.mirrors.len()
                );
                shared.replace(cat);
            }
            Ok(Err(e)) => tracing::error!("reload failed, still serving the previous data: {e:#}"),
            Err(e) => tracing::error!("reload task failed: {e}"),
        }
    }
}

/// The HTTP routes: every request goes to the one handler.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    respond(status, mirrorlist::CONTENT_TYPE, body.into())
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let path = uri.path();
    let is_metalink = path.ends_with("/metalink");
    if !is_metalink && !path.ends_with("/mirrorlist") {
        return text(StatusCode::NOT_FOUND, "We don't serve their kind here!\n");
    }
    let raw = uri.query().unwrap_or("");
    let now = SystemTime::now();
    let q = match parse_query(raw) {
        Ok(q) => q,
        Err((status, msg)) => {
            return if is_metalink {
                respond(status, metalink::CONTENT_TYPE, metalink::failure(&msg, now))
            } else {
                text(status, format!("# {msg}\n"))
            };
        }
    };
    let ip =
        q.ip.or_else(|| forwarded_for(&headers))
            .unwrap_or(peer.ip());
    let cat = shared.catalog();
    let client = Client {
        countries: q.country.clone(),
        ip: Some(ip),
        use_netblocks: q.netblock,
        protocols: q.protocol.clone(),
    };
    let protocols = q.protocol.as_deref();

    // Resolve the target: a repository folder or file, and the header text.
    let target = if let Some(p) = &q.path {
        match cat.lookup_path(p) {
            Some(t) => Ok((t, format!("# path = {p} "))),
            None if is_metalink => Err(respond(
                StatusCode::NOT_FOUND,
                metalink::CONTENT_TYPE,
                metalink::failure(&format!("{p} not found or has no metalink"), now),
            )),
            None => Err(text(StatusCode::NOT_FOUND, "error: invalid path\n")),
        }
    } else if let (Some(repo), Some(arch)) = (&q.repo, &q.arch) {
        match cat.lookup_repo(repo, arch) {
            Ok((i, name, arch)) => Ok((
                PathTarget::Dir(i),
                format!("# repo = {name} arch = {arch} "),
            )),
            Err(LookupError::Unknown { repo, arch }) => {
                let msg = mirrorlist::unknown_repo(&cat, &repo, &arch);
                Err(if is_metalink {
                    respond(
                        StatusCode::NOT_FOUND,
                        metalink::CONTENT_TYPE,
                        metalink::failure(&msg, now),
                    )
                } else {
                    text(StatusCode::NOT_FOUND, msg)
                })
            }
        }
    } else {
        let msg = "# either path=, or repo= and arch= must be specified";
        Err(if is_metalink {
            respond(
                StatusCode::BAD_REQUEST,
                metalink::CONTENT_TYPE,
                metalink::failure(msg, now),
            )
        } else {
            text(StatusCode::BAD_REQUEST, format!("{msg}\n"))
        })
    };
    let (target, mut head) = match target {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let (i, is_dir) = match target {
        PathTarget::Dir(i) => (i, true),
        PathTarget::File(i) => (i, false),
    };
    let repo = cat.repo(i);
    let sel = selection::select(&cat, i, &client);
    if is_metalink {
        let body = metalink::render(&cat, repo, &sel.hosts, protocols, now);
        return respond(StatusCode::OK, metalink::CONTENT_TYPE, body);
    }
    head.push_str(&sel.header);
    let rel = if is_dir {
        repo.path.clone()
    } else {
        repo.file_path()
    };
    let created = q.time.then_some(cat.state.scanned_at);
    let body = mirrorlist::render(&cat, &head, &rel, is_dir, &sel.hosts, protocols, created);
    if q.redirect {
        let first = body
            .lines()
            .find(|l| l.starts_with("http://") || l.starts_with("https://"));
        return match first.and_then(|l| header::HeaderValue::from_str(l).ok()) {
            Some(loc) => {
                let mut r = text(StatusCode::FOUND, String::new());
                r.headers_mut().insert(header::LOCATION, loc);
                r
            }
            None => text(StatusCode::NOT_FOUND, "no http or https mirror\n"),
        };
    }
    text(StatusCode::OK, body)
}

/// The last X-Forwarded-For entry (the one our proxy added), as MirrorManager does.
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let v = headers.get("x-forwarded-for")?.to_str().ok()?;
    v.rsplit(',').next()?.trim().parse().ok()
}

/// The parameters MirrorManager's server understands, checked.
#[derive(Debug, Default, PartialEq)]
pub struct Query {
    /// `repo=`: the repository name (with `arch=`).
    pub repo: Option<String>,
    /// `arch=`: the repository arch (with `repo=`).
    pub arch: Option<String>,
    /// `path=`: a repository folder or its file, relative to the master root.
    pub path: Option<String>,
    /// `country=`: upper-case codes, `GLOBAL` for any.
    pub country: Option<Vec<String>>,
    /// False with `netblock=0`: no netblock matching.
    pub netblock: bool,
    /// `protocol=`: lower-case schemes to keep.
    pub protocol: Option<Vec<String>>,
    /// `ip=`: the client address to select for.
    pub ip: Option<IpAddr>,
    /// `redirect`: answer with a 302 to the first http(s) mirror.
    pub redirect: bool,
    /// `time`: the mirrorlist header names the scan time.
    pub time: bool,
}

type QueryError = (StatusCode, String);

fn bad(msg: impl Into<String>) -> QueryError {
    (StatusCode::BAD_REQUEST, msg.into())
}

/// Parses and validates a raw query string. Anything odd is a 400 (414 when huge), never a
/// lookup: `..` in a path, bytes that are not UTF-8, control characters, duplicate keys.
pub fn parse_query(raw: &str) -> Result<Query, QueryError> {
    if raw.len() > MAX_QUERY {
        return Err((
            StatusCode::URI_TOO_LONG,
            format!("query string longer than {MAX_QUERY} bytes"),
        ));
    }
    let mut q = Query {
        netblock: true,
        ..Query::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if seen.contains(&key) {
            return Err(bad(format!("parameter {} given twice", sanitize(key))));
        }
        seen.push(key);
        // Form encoding: '+' is a space; then strict percent-decoding to UTF-8.
        let plus = value.replace('+', " ");
        let value = percent_encoding::percent_decode_str(&plus)
            .decode_utf8()
            .map_err(|_| bad(format!("parameter {} is not UTF-8", sanitize(key))))?;
        if value.chars().any(char::is_control) {
            return Err(bad(format!(
                "parameter {} holds control characters",
                sanitize(key)
            )));
        }
        match key {
            "repo" => q.repo = Some(name_value("repo", &value)?),
            "arch" => q.arch = Some(name_value("arch", &value)?),
            "path" => q.path = Some(clean_path(&value)?),
            "country" => {
                let mut list = Vec::new();
                for c in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    if c.eq_ignore_ascii_case("global") {
                        list.push("GLOBAL".to_string());
                    } else if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) {
                        list.push(c.to_ascii_uppercase());
                    } else {
                        return Err(bad(format!(
                            "country {} is not a two-letter code",
                            sanitize(c)
                        )));
                    }
                }
                if list.len() > 16 {
                    return Err(bad("too many countries"));
                }
                q.country = (!list.is_empty()).then_some(list);
            }
            "netblock" => q.netblock = value != "0",
            "protocol" => {
                let mut list = Vec::new();
                for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let p = p.to_ascii_lowercase();
                    if !["http", "https", "ftp", "rsync"].contains(&p.as_str()) {
                        return Err(bad(format!(
                            "protocol {} is not http, https, ftp or rsync",
                            sanitize(&p)
                        )));
                    }
                    if !list.contains(&p) {
                        list.push(p);
                    }
                }
                q.protocol = (!list.is_empty()).then_some(list);
            }
            "ip" => {
                q.ip =
                    Some(value.parse().map_err(|_| {
                        bad(format!("ip {} is not an IP address", sanitize(&value)))
                    })?)
            }
            "redirect" => q.redirect = true,
            "time" => q.time = true,
            // MirrorManager ignores parameters it does not know (e.g. dnf's countme).
            _ => {}
        }
    }
    Ok(q)
}

/// Short, printable form of client text for error messages.
fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if s.len() > 64 {
        out.push_str("...");
    }
    out.replace("--", "-")
}

fn name_value(key: &str, v: &str) -> Result<String, QueryError> {
    if v.is_empty()
        || v.len() > MAX_NAME
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
    {
        return Err(bad(format!(
            "{key}={} must be 1-{MAX_NAME} letters, digits, '.', '_', '+' or '-'",
            sanitize(v)
        )));
    }
    Ok(v.to_string())
}

/// MirrorManager trims `/` and collapses `//`; we also refuse `.`/`..` components, backslashes
/// and overlong paths, so a path never walks outside the tree (it is only a map key anyway).
fn clean_path(v: &str) -> Result<String, QueryError> {
    if v.len() > MAX_PATH {
        return Err(bad(format!("path longer than {MAX_PATH} bytes")));
    }
    let parts: Vec<&str> = v.split('/').filter(|c| !c.is_empty()).collect();
    if parts
        .iter()
        .any(|c| *c == "." || *c == ".." || c.contains('\\'))
    {
        return Err(bad(format!(
            "path {} is not a plain relative path",
            sanitize(v)
        )));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_accepts_mirrormanager_parameters() {
        let q = parse_query("repo=atomic-21&arch=x86_64&country=de,Global&netblock=0&protocol=https,http&ip=10.0.0.1&countme=1").unwrap();
        assert_eq!(q.repo.as_deref(), Some("atomic-21"));
        assert_eq!(
            q.country,
            Some(vec!["DE".to_string(), "GLOBAL".to_string()])
        );
        assert!(!q.netblock);
        assert_eq!(
            q.protocol,
            Some(vec!["https".to_string(), "http".to_string()])
        );
        assert_eq!(q.ip, Some("10.0.0.1".parse().unwrap()));
        let q = parse_query("path=%2Fpub//atomic/21/summary/").unwrap();
        assert_eq!(q.path.as_deref(), Some("pub/atomic/21/summary"));
    }

    #[test]
    fn hostile_queries_are_client_errors() {
        let huge = format!("repo={}", "a".repeat(MAX_QUERY));
        let cases: Vec<(String, StatusCode)> = vec![
            ("path=../../etc/passwd".into(), StatusCode::BAD_REQUEST),
            (
                "path=pub/%2e%2e/%2E%2E/etc/passwd".into(),
                StatusCode::BAD_REQUEST,
            ),
            ("path=a\\..\\b".into(), StatusCode::BAD_REQUEST),
            ("repo=%ff%fe&arch=x".into(), StatusCode::BAD_REQUEST),
            ("repo=a%00b&arch=x".into(), StatusCode::BAD_REQUEST),
            ("repo=<script>&arch=x".into(), StatusCode::BAD_REQUEST),
            ("repo=a&repo=b".into(), StatusCode::BAD_REQUEST),
            ("country=usa".into(), StatusCode::BAD_REQUEST),
            ("protocol=gopher".into(), StatusCode::BAD_REQUEST),
            ("ip=999.1.1.1".into(), StatusCode::BAD_REQUEST),
            (format!("repo={}", "a".repeat(200)), StatusCode::BAD_REQUEST),
            (huge, StatusCode::URI_TOO_LONG),
        ];
        for (q, status) in cases {
            assert_eq!(
                parse_query(&q).map(|_| ()).unwrap_err().0,
                status,
                "{q:.80}"
            );
        }
    }
}
