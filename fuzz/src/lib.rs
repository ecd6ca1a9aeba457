//! Helpers shared by the fuzz targets.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A scratch directory for this fuzzing process (removed when the process exits normally;
/// libFuzzer's exit after a crash leaves it in the temp dir, which is harmless). In memory
/// when /dev/shm exists: the targets write files on every execution, and on a disk's
/// filesystem that made treefile 2.3-2.6 times slower.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        match std::env::var_os("TMPDIR") {
            None if shm.is_dir() => tempfile::tempdir_in(shm),
            _ => tempfile::tempdir(),
        }
        .expect("creating a scratch directory")
    })
    .path()
}

/// Writes `data` to `name` in the scratch directory and returns its path: most of our parsers
/// read a file, as they do in production (a repo file, a treefile, a qcow2 image).
pub fn file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, data).expect("writing a fuzz input file");
    path
}

/// One current-thread runtime per process for the HTTP targets.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime")
    })
}

/// Splits `data` at the first occurrence of `sep` (for targets that take two inputs).
pub fn split2<'a>(data: &'a [u8], sep: &[u8]) -> (&'a [u8], &'a [u8]) {
    match data.windows(sep.len()).position(|w| w == sep) {
        Some(i) => (&data[..i], &data[i + sep.len()..]),
        None => (data, &[]),
    }
}

/// A small mirror catalog: two mirrors (one private, one with a netblock), an ostree repo
/// and a yum repo, as `mirror scan` would record them.
pub fn mirror_catalog() -> atomic_factory::mirror::catalog::Catalog {
    use atomic_factory::mirror::state::{FileDetail, Repo, RepoKind, State};
    let cfg = atomic_factory::mirror::config::parse(
        "mirrors:\n  - {name: a, urls: [http://a/pub/, rsync://a/pub/], country: us, netblocks: [10.0.0.0/8], private: true}\n  - {name: b, urls: [https://b/], country: DE}\n",
    )
    .expect("the fuzz mirror config parses");
    let d = FileDetail {
        size: 282,
        mtime: 5,
        mtime_nsec: 0,
        timestamp: 1795633156,
        first_seen: 0,
        md5: "ec02aec488aa55879af6a91c31c90325".into(),
        sha1: "455db12d2097a87a1841177ac505b06efed8ca23".into(),
        sha256: "ea48b464165dcde0ab647cb54ecf75114a4235c2cd52fe597be3864b597f61a6".into(),
        sha512: "21fd".repeat(32),
    };
    let mut state = State::new("/".into());
    state.repos.push(Repo {
        kind: RepoKind::Ostree,
        name: Some("atomic-21".into()),
        arch: Some("x86_64".into()),
        path: "atomic/21".into(),
        file: "summary".into(),
        detail: d.clone(),
        alternates: vec![d.clone()],
    });
    state.repos.push(Repo {
        kind: RepoKind::Yum,
        name: Some("fedora-41".into()),
        arch: Some("x86_64".into()),
        path: "fedora/41/x86_64/os".into(),
        file: "repodata/repomd.xml".into(),
        detail: d,
        alternates: Vec::new(),
    });
    atomic_factory::mirror::catalog::Catalog::new(state, cfg)
}

/// Sends one request to `app` in-process and returns the status and the whole body.
pub fn call(app: axum::Router, req: axum::http::Request<axum::body::Body>) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    runtime().block_on(async move {
        let resp = app.oneshot(req).await.expect("axum routers are infallible");
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        (status, body)
    })
}

/// A request from fuzz bytes: a method byte, then the request target up to the first
/// newline, then `Name: value` header lines. `None` when http rejects it (as hyper would).
pub fn request(data: &[u8]) -> Option<axum::http::Request<axum::body::Body>> {
    let (&m, rest) = data.split_first()?;
    let method = match m % 4 {
        0 => "GET",
        1 => "HEAD",
        2 => "POST",
        _ => "OPTIONS",
    };
    let (target, headers) = split2(rest, b"\n");
    let mut b = axum::http::Request::builder().method(method).uri(target);
    for line in headers.split(|&c| c == b'\n') {
        let (name, value) = split2(line, b": ");
        b = b.header(name, value);
    }
    b.body(axum::body::Body::empty()).ok()
}
