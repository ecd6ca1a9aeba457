//! Acceptance tests for `atomic-factory mirror`, on loopback only, judged by the real `ostree`
//! client: repositories made with the `ostree` CLI are published to static HTTP mirrors started
//! in this process, scanned, crawled and served by our binary, then pulled through a metalink
//! or a mirrorlist.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::ostree::ostree;
use crate::support::{BIN, capture, require, run};

const REF: &str = "exampleos/x86_64/stable";
const REPO_DIR: &str = "pub/fedora/linux/atomic/21";

/// Commits `content` as the ref's only file and regenerates the summary; returns the commit.
fn commit(repo: &Path, work: &Path, content: &str) -> String {
    let tree = work.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("usr/share")).unwrap();
    std::fs::write(tree.join("usr/share/release"), content).unwrap();
    run(ostree(repo)
        .args(["commit", "-b", REF, "-s", content])
        .arg(format!("--tree=dir={}", tree.display())));
    run(ostree(repo).args(["summary", "-u"]));
    // From the second commit on, publish a static delta from the parent too (issue 14):
    // scan, crawl and metalinks must work on a repository with deltas/ and delta-indexes/.
    if ostree(repo)
        .args(["rev-parse", &format!("{REF}^")])
        .output()
        .unwrap()
        .status
        .success()
    {
        run(Command::new(BIN)
            .args(["static-delta", "generate", "--to", REF])
            .arg(format!("--repo={}", repo.display())));
        run(Command::new(BIN)
            .args(["summary", "-u"])
            .arg(format!("--repo={}", repo.display())));
    }
    capture(ostree(repo).args(["rev-parse", REF]))
}

fn init_repo(repo: &Path) {
    std::fs::create_dir_all(repo).unwrap();
    run(ostree(repo).args(["init", "--mode=archive"]));
}

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// A static HTTP mirror (tower-http ServeDir) that counts the requests it gets.
struct StaticMirror {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Holds a killable mirror's port after it is killed (see `start_killable`).
    tombstone: Option<tokio::net::TcpSocket>,
}

async fn count(
    axum::extract::State(hits): axum::extract::State<Arc<AtomicUsize>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    hits.fetch_add(1, Ordering::SeqCst);
    next.run(req).await
}

impl StaticMirror {
    fn start(rt: &tokio::runtime::Runtime, dir: &Path) -> StaticMirror {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        Self::serve(rt, dir, listener)
    }

    /// A mirror that `kill` makes dead for good. A second socket is bound to the same port
    /// with SO_REUSEPORT and never listens: once the listener closes, connects are refused,
    /// and no other bind, nor the kernel picking a source port for a connect, can take the
    /// port while the mirror lives on in the test.
    fn start_killable(rt: &tokio::runtime::Runtime, dir: &Path) -> StaticMirror {
        let _in_runtime = rt.enter();
        let reuseport_socket = || {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.set_reuseport(true).unwrap();
            s
        };
        let listening = reuseport_socket();
        listening.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = listening.local_addr().unwrap();
        let tombstone = reuseport_socket();
        tombstone.bind(addr).unwrap();
        let mut mirror = Self::serve(rt, dir, listening.listen(64).unwrap());
        mirror.tombstone = Some(tombstone);
        mirror
    }

    fn serve(
        rt: &tokio::runtime::Runtime,
        dir: &Path,
        listener: tokio::net::TcpListener,
    ) -> StaticMirror {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .fallback_service(tower_http::services::ServeDir::new(dir))
            .layer(axum::middleware::from_fn_with_state(hits.clone(), count));
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        StaticMirror {
            addr,
            hits,
            stop: Some(tx),
            task: Some(task),
            tombstone: None,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Closes the port: the mirror is now dead.
    fn kill(&mut self, rt: &tokio::runtime::Runtime) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await })
            .expect("static mirror did not stop")
            .unwrap();
        // A child that a parallel test forks holds a copy of the listening socket until it
        // execs, so the port can stay open for a few milliseconds after the listener is
        // dropped (seen: 10 ms in 3 of 40 runs). The tombstone keeps the port ours meanwhile.
        let closing = std::time::Instant::now();
        while TcpStream::connect(self.addr).is_ok() {
            assert!(
                closing.elapsed() < Duration::from_secs(10),
                "port {} still open 10 s after the mirror was killed",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.tombstone.is_some() {
            assert!(
                std::net::TcpListener::bind(self.addr).is_err(),
                "port {} of a killed mirror is not reserved",
                self.addr
            );
        }
    }
}

/// Our `mirror serve`, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(mirrors: &Path, state: &Path) -> Server {
        let mut child = Command::new(BIN)
            .args([
                "mirror",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--reload-interval",
                "0.2",
            ])
            .arg("--mirrors")
            .arg(mirrors)
            .arg("--state")
            .arg(state)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("mirror serve exited before listening")
                .unwrap();
            if let Some(a) = line.strip_prefix("listening on http://") {
                break a.parse().unwrap();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Server { child, addr }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 request; returns (status, body). Raw so hostile targets go out unchanged.
fn http(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in reply to {target:.80}: {text:.200}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The published world of tests 1-3: a master tree with one ostree repository, three static
/// mirrors (`dead` and `good` up to date, `stale` one commit behind), scanned and crawled.
struct World {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    old_rev: String,
    new_rev: String,
    dead: StaticMirror,
    stale: StaticMirror,
    good: StaticMirror,
    mirrors_yaml: PathBuf,
    state: PathBuf,
}

impl World {
    fn new() -> World {
        require(&["ostree"]);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let repo = d.join("master").join(REPO_DIR);
        init_repo(&repo);
        let old_rev = commit(&repo, d, "version 1");
        copy_tree(&d.join("master/pub"), &d.join("stale/pub"));
        // A later second keeps the summary mtime apart even on coarse clocks.
        let new_rev = commit(&repo, d, "version 2");
        assert_ne!(old_rev, new_rev);
        copy_tree(&d.join("master/pub"), &d.join("good/pub"));
        copy_tree(&d.join("master/pub"), &d.join("dead/pub"));
        let dead = StaticMirror::start_killable(&rt, &d.join("dead"));
        let stale = StaticMirror::start(&rt, &d.join("stale"));
        let good = StaticMirror::start(&rt, &d.join("good"));
        let mirrors_yaml = d.join("mirrors.yaml");
        // `dead` has the highest preference so it is listed first.
        std::fs::write(
            &mirrors_yaml,
            format!(
                "mirrors:
  - name: good
    urls: [{}]
    country: US
  - name: stale
    urls: [{}]
    country: US
    preference: 5
  - name: dead
    urls: [{}, rsync://127.0.0.1/dead/]
    country: US
    preference: 10
",
                good.url(),
                stale.url(),
                dead.url()
            ),
        )
        .unwrap();
        let state = d.join("state.json");
        run(Command::new(BIN)
            .args(["mirror", "scan"])
            .arg(d.join("master"))
            .arg("-o")
            .arg(&state)
            .args(["--alias", "fedora-atomic-21=atomic-21"]));
        let report = capture(
            Command::new(BIN)
                .args(["mirror", "crawl", "--timeout", "5", "--mirrors"])
                .arg(&mirrors_yaml)
                .arg("--state")
                .arg(&state),
        );
        let line = |name: &str| {
            report
                .lines()
                .find(|l| l.starts_with(&format!("{name}\t")))
                .unwrap_or_else(|| panic!("no crawl line for {name}: {report}"))
                .to_string()
        };
        assert!(line("good").ends_with("up to date"), "{report}");
        assert!(line("dead").ends_with("up to date"), "{report}");
        assert!(line("stale").ends_with("stale"), "{report}");
        World {
            rt,
            dir,
            old_rev,
            new_rev,
            dead,
            stale,
            good,
            mirrors_yaml,
            state,
        }
    }

    /// A fresh client repository with one remote configured by `remote_args`.
    fn client(&self, name: &str, remote_args: &[&str]) -> PathBuf {
        let c = self.dir.path().join(name);
        init_repo(&c);
        run(ostree(&c)
            .args(["remote", "add", "--no-gpg-verify"])
            .args(remote_args));
        c
    }
}

fn pull_and_check(client: &Path, want: &str) {
    run(ostree(client).args(["pull", "origin", REF]));
    let got = capture(ostree(client).args(["rev-parse", &format!("origin:{REF}")]));
    assert_eq!(got.trim(), want, "pulled the wrong commit");
    run(ostree(client).args(["fsck"]));
}

#[test]
fn ostree_pulls_through_our_metalink_skipping_dead_and_stale_mirrors() {
    let mut w = World::new();
    w.dead.kill(&w.rt);
    let mut server = Server::start(&w.mirrors_yaml, &w.state);
    let target = "/metalink?repo=fedora-atomic-21&arch=x86_64";
    let (status, doc) = http(server.addr, target);
    assert_eq!(status, 200, "{doc}");
    let dead_at = doc
        .find(&format!("{}{REPO_DIR}/summary", w.dead.url()))
        .expect(&doc);
    let good_at = doc
        .find(&format!("{}{REPO_DIR}/summary", w.good.url()))
        .expect(&doc);
    assert!(dead_at < good_at, "dead mirror must be listed first: {doc}");
    assert!(!doc.contains(&w.stale.url()), "stale mirror listed: {doc}");

    let stale_hits = w.stale.hits.load(Ordering::SeqCst);
    let good_hits = w.good.hits.load(Ordering::SeqCst);
    let url = format!("http://{}{target}", server.addr);
    let client = w.client(
        "client-ml",
        &[
            &format!("--set=metalink={url}"),
            "origin",
            "http://127.0.0.1:9/unused",
        ],
    );
    pull_and_check(&client, &w.new_rev);
    assert_eq!(
        w.stale.hits.load(Ordering::SeqCst),
        stale_hits,
        "the client asked the stale mirror"
    );
    assert!(
        w.good.hits.load(Ordering::SeqCst) > good_hits,
        "the good mirror served nothing"
    );
    assert_ne!(w.old_rev, w.new_rev);

    // The stale mirror catches up; after a crawl the running server lists it, and requests
    // made during the reload all succeed.
    copy_tree(
        &w.dir.path().join("master/pub"),
        &w.dir.path().join("stale/pub"),
    );
    let addr = server.addr;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let (s, body) = http(addr, target);
                assert_eq!(s, 200, "request failed during reload: {body}");
                n += 1;
            }
            n
        })
    };
    run(Command::new(BIN)
        .args(["mirror", "crawl", "--timeout", "5", "--mirrors"])
        .arg(&w.mirrors_yaml)
        .arg("--state")
        .arg(&w.state));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, doc) = http(server.addr, target);
        if doc.contains(&w.stale.url()) {
            // The dead mirror failed this crawl, so it is gone now.
            assert!(!doc.contains(&w.dead.url()), "{doc}");
            break;
        }
        assert!(Instant::now() < deadline, "state reload not seen: {doc}");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let served = hammer.join().expect("a request failed during the reload");
    assert!(served > 0);
    assert!(server.alive());
}

#[test]
fn ostree_pulls_through_our_mirrorlist() {
    let mut w = World::new();
    w.dead.kill(&w.rt);
    let server = Server::start(&w.mirrors_yaml, &w.state);
    let target = "/mirrorlist?repo=atomic-21&arch=x86_64";
    let (status, list) = http(server.addr, target);
    assert_eq!(status, 200, "{list}");
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].starts_with("# repo = atomic-21 arch = x86_64 "),
        "{list}"
    );
    assert_eq!(
        &lines[1..],
        [
            format!("{}{REPO_DIR}/", w.dead.url()),
            format!("{}{REPO_DIR}/", w.good.url())
        ],
        "{list}"
    );
    let stale_hits = w.stale.hits.load(Ordering::SeqCst);
    let client = w.client(
        "client-mirrorlist",
        &[
            "origin",
            &format!("mirrorlist=http://{}{target}", server.addr),
        ],
    );
    pull_and_check(&client, &w.new_rev);
    assert_eq!(w.stale.hits.load(Ordering::SeqCst), stale_hits);
}

#[test]
fn unknown_repos_get_the_error_document_and_hostile_queries_a_4xx() {
    let w = World::new();
    let mut server = Server::start(&w.mirrors_yaml, &w.state);
    let a = server.addr;

    let (status, body) = http(a, "/mirrorlist?repo=nope&arch=x86_64");
    assert_eq!(status, 404);
    assert_eq!(
        body,
        "# repo = nope arch = x86_64 error: invalid repo or arch\n\
         # following repositories are available:\n# repo=atomic-21&arch=x86_64\n"
    );
    let (status, body) = http(a, "/metalink?repo=atomic-21&arch=ppc64le");
    assert_eq!(status, 404);
    assert!(
        body.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<metalink version=\"3.0\""),
        "{body}"
    );
    assert!(
        body.contains("<!-- # repo = atomic-21 arch = ppc64le error: invalid repo or arch\n"),
        "{body}"
    );
    assert!(
        body.contains("# repo=atomic-21&arch=x86_64\n-->\n</metalink>"),
        "{body}"
    );
    let (status, body) = http(a, "/metalink?path=pub/nothing/summary");
    assert_eq!(status, 404);
    assert!(
        body.contains("<!-- pub/nothing/summary not found or has no metalink"),
        "{body}"
    );
    let (status, body) = http(a, "/index.html");
    assert_eq!(
        (status, body.as_str()),
        (404, "We don't serve their kind here!\n")
    );

    let huge = format!("/metalink?repo={}&arch=x86_64", "a".repeat(100_000));
    let hostile = [
        "/metalink?path=../../etc/passwd".to_string(),
        "/metalink?path=pub/fedora/../../../../etc/passwd".to_string(),
        "/mirrorlist?path=%2e%2e/%2e%2e/etc/passwd".to_string(),
        "/metalink?repo=%ff%fe&arch=x86_64".to_string(),
        "/metalink?repo=a%00&arch=x86_64".to_string(),
        "/metalink?repo=%zz&arch=x86_64".to_string(),
        "/metalink?repo=atomic-21&repo=x&arch=x86_64".to_string(),
        "/metalink?repo=atomic-21&arch=x86_64&country=<script>".to_string(),
        "/metalink?repo=atomic-21&arch=x86_64&ip=1.2.3.4.5".to_string(),
        "/metalink".to_string(),
        format!(
            "/metalink?repo=atomic-21&arch=x86_64&path={}",
            "a/".repeat(1500)
        ),
        huge,
    ];
    for target in &hostile {
        let (status, body) = http(a, target);
        assert!(
            (400..500).contains(&status),
            "{target:.80} gave {status}: {body:.200}"
        );
        assert!(!body.contains("root:"), "{target:.80} leaked a file");
    }
    // A request that is not HTTP at all.
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(b"\x16\x03\x01garbage\r\n\r\n").unwrap();
    let mut junk = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut junk);

    assert!(server.alive(), "server died");
    let (status, doc) = http(a, "/metalink?repo=atomic-21&arch=x86_64");
    assert_eq!(status, 200, "{doc}");
    assert!(doc.contains("<file name=\"summary\">"), "{doc}");
    let (status, _) = http(a, &format!("/metalink?path={REPO_DIR}/summary"));
    assert_eq!(status, 200);
}

/// sha256sum & co. as the oracle for our digests.
fn digest(tool: &str, file: &Path) -> String {
    let out = capture(Command::new(tool).arg(file));
    out.split_whitespace().next().unwrap().to_string()
}

#[test]
fn scan_finds_every_repository_and_ignores_decoys() {
    require(&["ostree", "createrepo_c"]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let atomic = root.join("pub/fedora/linux/atomic/21");
    let other = root.join("pub/exampleos/7");
    for r in [&atomic, &other] {
        init_repo(r);
        commit(r, dir.path(), "x");
    }
    let yum = root.join("pub/fedora/linux/releases/39/Everything/x86_64/os");
    std::fs::create_dir_all(&yum).unwrap();
    run(Command::new("createrepo_c").arg("--quiet").arg(&yum));
    // Decoys: a summary without objects/, objects/ without a summary, an empty repodata/.
    std::fs::create_dir_all(root.join("decoy/summary-only")).unwrap();
    std::fs::write(root.join("decoy/summary-only/summary"), "not a repo").unwrap();
    std::fs::create_dir_all(root.join("decoy/objects-only/objects/00")).unwrap();
    std::fs::create_dir_all(root.join("decoy/empty-repodata/repodata")).unwrap();
    // A folder called objects/ holding a summary inside an ostree repository is never walked.
    std::fs::create_dir_all(atomic.join("objects/zz/objects")).unwrap();
    std::fs::write(atomic.join("objects/zz/summary"), "inside objects").unwrap();

    let state = dir.path().join("state.json");
    let scan = || {
        let out = run(Command::new(BIN)
            .args(["mirror", "scan"])
            .arg(&root)
            .arg("-o")
            .arg(&state));
        let log = String::from_utf8(out.stderr).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        (json, log)
    };
    let (json, log) = scan();
    let repos = json["repos"].as_array().unwrap();
    let mut found: Vec<(String, String, String, String)> = repos
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            (s("kind"), s("path"), s("name"), s("arch"))
        })
        .collect();
    found.sort();
    let t = |a: &str, b: &str, c: &str, d: &str| {
        (a.to_string(), b.to_string(), c.to_string(), d.to_string())
    };
    assert_eq!(
        found,
        [
            t("ostree", "pub/exampleos/7", "atomic-7", "x86_64"),
            t(
                "ostree",
                "pub/fedora/linux/atomic/21",
                "atomic-21",
                "x86_64"
            ),
            t(
                "yum",
                "pub/fedora/linux/releases/39/Everything/x86_64/os",
                "fedora-39",
                "x86_64"
            ),
        ]
    );
    for r in repos {
        let file = root
            .join(r["path"].as_str().unwrap())
            .join(r["file"].as_str().unwrap());
        let d = &r["detail"];
        assert_eq!(
            d["size"].as_u64().unwrap(),
            std::fs::metadata(&file).unwrap().len()
        );
        for (key, tool) in [
            ("md5", "md5sum"),
            ("sha1", "sha1sum"),
            ("sha256", "sha256sum"),
            ("sha512", "sha512sum"),
        ] {
            assert_eq!(
                d[key].as_str().unwrap(),
                digest(tool, &file),
                "{key} of {}",
                file.display()
            );
        }
    }
    assert!(log.contains("hashed 3, unchanged 0"), "{log}");

    // A rescan hashes nothing; after a new commit only the changed summary is re-hashed and the
    // old version becomes the alternate.
    let (again, log) = scan();
    assert!(log.contains("hashed 0, unchanged 3"), "{log}");
    assert_eq!(again["repos"], json["repos"]);
    let old_sha = digest("sha256sum", &atomic.join("summary"));
    commit(&atomic, dir.path(), "y");
    let (after, log) = scan();
    assert!(log.contains("hashed 1, unchanged 2"), "{log}");
    let changed = after["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "pub/fedora/linux/atomic/21")
        .unwrap();
    assert_eq!(
        changed["detail"]["sha256"].as_str().unwrap(),
        digest("sha256sum", &atomic.join("summary"))
    );
    assert_eq!(
        changed["alternates"][0]["sha256"].as_str().unwrap(),
        old_sha
    );

    // The yum repository gets a repomd.xml metalink by repo= and arch=.
    let mirrors = dir.path().join("mirrors.yaml");
    std::fs::write(
        &mirrors,
        "mirrors:\n  - {name: m, urls: [http://m.example/], country: DE, always_up_to_date: true}\n",
    )
    .unwrap();
    let doc = capture(
        Command::new(BIN)
            .args([
                "mirror",
                "metalink",
                "--repo",
                "fedora-39",
                "--arch",
                "x86_64",
                "--mirrors",
            ])
            .arg(&mirrors)
            .arg("--state")
            .arg(&state),
    );
    let repomd = yum.join("repodata/repomd.xml");
    assert!(doc.contains("<file name=\"repomd.xml\">"), "{doc}");
    assert!(
        doc.contains(&format!(
            "<hash type=\"sha256\">{}</hash>",
            digest("sha256sum", &repomd)
        )),
        "{doc}"
    );
    assert!(doc.contains(
        ">http://m.example/pub/fedora/linux/releases/39/Everything/x86_64/os/repodata/repomd.xml</url>"
    ), "{doc}");
}

#[test]
fn metalink_command_prints_what_the_server_serves() {
    let w = World::new();
    let out = capture(
        Command::new(BIN)
            .args([
                "mirror",
                "metalink",
                "--repo",
                "atomic-21",
                "--arch",
                "x86_64",
                "--mirrors",
            ])
            .arg(&w.mirrors_yaml)
            .arg("--state")
            .arg(&w.state),
    );
    assert!(out.contains("<file name=\"summary\">"), "{out}");
    assert!(
        out.contains(&format!("{}{REPO_DIR}/summary", w.good.url())),
        "{out}"
    );
    assert!(!out.contains(&w.stale.url()), "{out}");
    let sha = digest(
        "sha256sum",
        &w.dir.path().join("master").join(REPO_DIR).join("summary"),
    );
    assert!(
        out.contains(&format!("<hash type=\"sha256\">{sha}</hash>")),
        "{out}"
    );
    let err = Command::new(BIN)
        .args([
            "mirror",
            "metalink",
            "--repo",
            "nope",
            "--arch",
            "x86_64",
            "--mirrors",
        ])
        .arg(&w.mirrors_yaml)
        .arg("--state")
        .arg(&w.state)
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("# repo=atomic-21&arch=x86_64"));
}

#[test]
fn bad_mirrors_yaml_is_refused_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("mirrors.yaml");
    std::fs::write(
        &yaml,
        "mirrors:\n  - name: a\n    urls: [http://a/]\n    country: USA\n",
    )
    .unwrap();
    let state = dir.path().join("state.json");
    std::fs::create_dir_all(dir.path().join("root")).unwrap();
    run(Command::new(BIN)
        .args(["mirror", "scan"])
        .arg(dir.path().join("root"))
        .arg("-o")
        .arg(&state));
    let out = Command::new(BIN)
        .args(["mirror", "serve", "--listen", "127.0.0.1:0", "--mirrors"])
        .arg(&yaml)
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mirrors.yaml"), "{err}");
    assert!(err.contains("line 4 column"), "{err}");
    assert!(err.contains("two-letter"), "{err}");
}
