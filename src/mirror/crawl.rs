//! `mirror crawl`: fetch every mirror's copy of every summary and repomd.xml, hash it and record
//! whether it matches the master. Unlike MirrorManager's crawler, which checks a summary by size
//! only, the whole file is hashed: a new summary often has the same size as the old one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Digest;

use super::config::{MirrorConfig, MirrorsConfig};
use super::scan::unix_now;
use super::state::{self, CrawlResult, State};

/// ostree 2023.4's metadata cap; nothing a metalink points at is larger.
const MAX_BODY: usize = 128 << 20;
const MAX_REDIRECTS: usize = 5;

/// How `crawl` fetches.
#[derive(Debug, Clone)]
pub struct CrawlOptions {
    /// Requests in flight at once.
    pub jobs: usize,
    /// Per request, connect to last byte.
    pub timeout: Duration,
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// One line of the crawl report.
#[derive(Debug)]
pub struct Outcome {
    /// The mirror's name.
    pub mirror: String,
    /// The repository file checked, relative to the master root.
    pub file: String,
    /// The URL fetched; None when the mirror has no http URL.
    pub url: Option<String>,
    /// What the fetch found, as stored in the state.
    pub result: CrawlResult,
    /// Whether the mirror's copy has the expected sha256.
    pub up_to_date: bool,
}

/// Fetches each (mirror, repository) pair concurrently. Mirrors marked `always_up_to_date` are
/// not contacted.
pub async fn crawl(cfg: &MirrorsConfig, state: &State, opts: &CrawlOptions) -> Vec<Outcome> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(opts.timeout));
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for mirror in cfg.mirrors.iter().filter(|m| !m.always_up_to_date) {
        for repo in &state.repos {
            let file = repo.file_path();
            let url = crawl_url(mirror, &file);
            let expected = repo.detail.sha256.clone();
            let (client, sem, timeout, name) = (
                client.clone(),
                sem.clone(),
                opts.timeout,
                mirror.name.clone(),
            );
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let fetched = match &url {
                    Ok(u) => match tokio::time::timeout(timeout, fetch_sha256(&client, u)).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("timed out after {}s", timeout.as_secs_f32())),
                    },
                    Err(e) => Err(e.clone()),
                };
                let (sha256, error) = match fetched {
                    Ok(h) => (Some(h), None),
                    Err(e) => (None, Some(e)),
                };
                let up_to_date = sha256.as_deref() == Some(expected.as_str());
                Outcome {
                    mirror: name,
                    file,
                    url: url.ok(),
                    result: CrawlResult {
                        checked_at: unix_now(),
                        sha256,
                        error,
                    },
                    up_to_date,
                }
            });
        }
    }
    let total = set.len();
    let progress = crate::progress::Reporter::new(false).task(
        "crawling",
        total as u64,
        crate::progress::Unit::Items("files"),
    );
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(o) => out.push(o),
            Err(e) => tracing::error!("crawl task failed: {e}"),
        }
        progress.advance(1);
    }
    progress.finish();
    out.sort_by(|a, b| (&a.mirror, &a.file).cmp(&(&b.mirror, &b.file)));
    out
}

/// The URL to check: the mirror's first http URL. https needs a TLS stack the crawler does not
/// carry yet; such mirrors need an http URL too or `always_up_to_date`.
fn crawl_url(m: &MirrorConfig, file: &str) -> Result<String, String> {
    m.urls
        .iter()
        .find(|u| u.scheme == "http")
        .map(|u| u.join(file))
        .ok_or_else(|| {
            "no http:// URL to crawl (https is not crawled yet); add one or set \
             always_up_to_date"
                .to_string()
        })
}

/// GETs `url` (following a few redirects) and returns the body's sha256.
async fn fetch_sha256(client: &HttpClient, url: &str) -> Result<String, String> {
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
        let resp = client.get(uri).await.map_err(|e| error_chain(&e))?;
        let status = resp.status();
        if status.is_redirection()
            && let Some(loc) = resp.headers().get(hyper::header::LOCATION)
        {
            let loc = loc
                .to_str()
                .map_err(|_| "redirect Location is not text".to_string())?;
            url = if loc.starts_with("http://") || loc.starts_with("https://") {
                loc.to_string()
            } else if let Some(rest) = loc.strip_prefix('/') {
                let origin_end = url.find("://").map_or(0, |i| i + 3);
                let host_end = url[origin_end..]
                    .find('/')
                    .map_or(url.len(), |i| origin_end + i);
                format!("{}/{rest}", &url[..host_end])
            } else {
                return Err(format!("unsupported redirect to {loc}"));
            };
            continue;
        }
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading body: {e}"))?
            .to_bytes();
        return Ok(hex::encode(sha2::Sha256::digest(&body)));
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Crawls and merges the results into the state file (re-read under the lock so a scan that
/// ran meanwhile is not lost). Returns the outcomes for the report.
pub fn crawl_to_file(
    mirrors: &Path,
    state_path: &Path,
    opts: &CrawlOptions,
) -> Result<Vec<Outcome>> {
    let cfg = super::config::load(mirrors)?;
    let snapshot = state::load(state_path)?;
    let outcomes = crate::runtime::block_on(crawl(&cfg, &snapshot, opts))?;
    let _lock = state::StateLock::acquire(state_path)?;
    let mut current = state::load(state_path)?;
    let mut fresh: BTreeMap<String, BTreeMap<String, CrawlResult>> = BTreeMap::new();
    for o in &outcomes {
        fresh
            .entry(o.mirror.clone())
            .or_default()
            .insert(o.file.clone(), o.result.clone());
    }
    // Mirrors no longer in mirrors.yaml are dropped; crawled ones replaced.
    current
        .crawl
        .retain(|name, _| cfg.mirrors.iter().any(|m| &m.name == name));
    for (name, files) in fresh {
        current.crawl.insert(name, files);
    }
    state::save(state_path, &current)?;
    Ok(outcomes)
}
