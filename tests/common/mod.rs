//! Shared helpers for the ostree integration tests: the real `ostree` as oracle, test trees,
//! object comparison and a loopback HTTP server.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_atomic-factory");

/// Fails (never skips) when a tool the tests need is missing.
pub fn require(tool: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{tool}` is not installed: run vm/prepare (it installs the Debian packages the tests need)"
    );
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout)
        .expect("utf-8 output")
        .trim()
        .to_string()
}

pub fn ours() -> Command {
    Command::new(BIN)
}

pub fn ostree(repo: &Path) -> Command {
    require("ostree");
    let mut c = Command::new("ostree");
    c.arg(format!("--repo={}", repo.display()));
    c
}

pub fn ostree_init(repo: &Path) {
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", repo.display()))
        .arg("--mode=archive"));
}

pub fn our_init(repo: &Path) {
    run(ours().arg("init").arg(format!("--repo={}", repo.display())));
}

pub fn fsck(repo: &Path) {
    run(ostree(repo).arg("fsck"));
}

/// A small deterministic PRNG (xorshift64*), so test data needs no extra crate.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn write_random(path: &Path, size: usize, rng: &mut Rng) {
    let mut f = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
}

pub fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Object files below `repo/objects`, as "XX/rest.ext" -> path.
pub fn objects(repo: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(repo.join("objects")).min_depth(2) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(repo.join("objects"))
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, e.path().to_path_buf());
        }
    }
    out
}

/// Splits a `.filez` into (header bytes, inflated content).
pub fn split_filez(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let b = fs::read(path).unwrap();
    let n = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
    let header = b[..8 + n].to_vec();
    let mut content = Vec::new();
    if b.len() > 8 + n {
        flate2::read::DeflateDecoder::new(&b[8 + n..])
            .read_to_end(&mut content)
            .unwrap();
    }
    (header, content)
}

/// Asserts that two repos hold the same objects: metadata byte-identical, `.filez` with the
/// same header and the same inflated content.
pub fn assert_same_objects(ours: &Path, theirs: &Path) {
    let a = objects(ours);
    let b = objects(theirs);
    let names_a: Vec<_> = a.keys().collect();
    let names_b: Vec<_> = b.keys().collect();
    assert_eq!(
        names_a,
        names_b,
        "object names differ between {} and {}",
        ours.display(),
        theirs.display()
    );
    for (name, pa) in &a {
        let pb = &b[name];
        if name.ends_with(".filez") {
            let (ha, ca) = split_filez(pa);
            let (hb, cb) = split_filez(pb);
            assert_eq!(ha, hb, "{name}: .filez headers differ");
            assert!(ca == cb, "{name}: inflated content differs");
        } else {
            assert!(
                fs::read(pa).unwrap() == fs::read(pb).unwrap(),
                "{name}: bytes differ"
            );
        }
    }
}

/// What a tree looks like: path -> (kind, mode, uid, gid, content sha/target, user xattrs).
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let md = e.path().symlink_metadata().unwrap();
        let ft = md.file_type();
        let what = if ft.is_symlink() {
            format!("link:{}", fs::read_link(e.path()).unwrap().display())
        } else if ft.is_dir() {
            "dir".to_string()
        } else {
            let data = fs::read(e.path()).unwrap();
            format!(
                "file:{}:{}",
                data.len(),
                hex::encode(sha2::Sha256::digest(&data))
            )
        };
        let mut xattrs: Vec<String> = xattr::list(e.path())
            .unwrap()
            .filter(|n| n.to_string_lossy().starts_with("user."))
            .filter_map(|n| {
                let v = xattr::get(e.path(), &n).unwrap().unwrap_or_default();
                // ostree (libglnx) drops xattrs with an empty value when committing.
                (!v.is_empty()).then(|| format!("{}={}", n.to_string_lossy(), hex::encode(v)))
            })
            .collect();
        xattrs.sort();
        // Symlink permission bits are always 0777 and not meaningful.
        let mode = if ft.is_symlink() {
            0o777
        } else {
            md.mode() & 0o7777
        };
        out.insert(
            format!("/{rel}"),
            format!(
                "{what} mode={mode:o} owner={}:{} xattrs=[{}]",
                md.uid(),
                md.gid(),
                xattrs.join(",")
            ),
        );
    }
    out
}

/// The last-modified value of a summary, read through the real ostree's `--view`.
pub fn ostree_last_modified(repo: &Path) -> u64 {
    let view = stdout(ostree(repo).args(["summary", "--view"]));
    let line = view
        .lines()
        .find(|l| l.starts_with("Last-Modified"))
        .expect("Last-Modified line");
    let date = line.rsplit(": ").next().unwrap().trim_end_matches("+00");
    let out = stdout(Command::new("date").args(["-u", "-d", &format!("{date}Z"), "+%s"]));
    out.parse().unwrap()
}

/// `python3 -m http.server` on a free loopback port, killed on drop.
pub struct HttpServer {
    child: Child,
    pub url: String,
}

impl HttpServer {
    pub fn serve(dir: &Path) -> HttpServer {
        require("python3");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 -m http.server");
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed().as_secs() < 20,
                "http.server did not start on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}/"),
        }
    }
}

/// Serves `dir` like `python3 -m http.server`, writing one `PATH STATUS` line per request to
/// `log`; answers under `/objects/` wait `objects_delay_ms` first (so a test can tell what a
/// client needs from loose objects apart from what races ahead of a delta part).
pub fn serve_logged(dir: &Path, log: &Path, objects_delay_ms: u64) -> HttpServer {
    require("python3");
    const SCRIPT: &str = r#"
import functools, http.server, sys, time
port, logpath, delay, root = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]) / 1000, sys.argv[4]
log = open(logpath, "a", buffering=1)
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if delay and self.path.startswith("/objects/"):
            time.sleep(delay)
        super().do_GET()
    def log_request(self, code="-", size="-"):
        log.write("%s %s\n" % (self.path, getattr(code, "value", code)))
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Handler, directory=root)).serve_forever()
"#;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(port.to_string())
        .arg(log)
        .arg(objects_delay_ms.to_string())
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the logging http server");
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed().as_secs() < 20,
            "logging http server did not start on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    HttpServer {
        child,
        url: format!("http://127.0.0.1:{port}/"),
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pulls `refname` from `url` into a fresh archive repo at `dest` with the real ostree, then fscks it.
pub fn ostree_pull(url: &str, refname: &str, dest: &Path) {
    ostree_init(dest);
    run(ostree(dest).args(["remote", "add", "--no-gpg-verify", "origin", url]));
    run(ostree(dest).args(["pull", "origin", refname]));
    fsck(dest);
}

/// A throwaway GnuPG home with its agent stopped on drop.
pub struct GpgHome {
    pub dir: PathBuf,
}

impl GpgHome {
    pub fn new(parent: &Path, name: &str) -> GpgHome {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        GpgHome { dir }
    }

    pub fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--homedir").arg(&self.dir).arg("--batch");
        c
    }

    /// Generates a key without passphrase; returns its fingerprint.
    pub fn gen_key(&self, uid: &str, algo: &str) -> String {
        self.gen_protected_key(uid, algo, "")
    }

    /// Generates a key protected by `passphrase` (none if empty); returns its fingerprint.
    pub fn gen_protected_key(&self, uid: &str, algo: &str, passphrase: &str) -> String {
        run(self.gpg().args([
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            passphrase,
            "--quick-gen-key",
            uid,
            algo,
            "sign",
            "never",
        ]));
        let list = stdout(
            self.gpg()
                .args(["--with-colons", "--list-secret-keys", uid]),
        );
        list.lines()
            .find_map(|l| l.strip_prefix("fpr:::::::::"))
            .map(|f| f.trim_end_matches(':').to_string())
            .expect("fingerprint of the new key")
    }

    /// Exports public keys (all of them for an empty id) to a file, binary or armored.
    pub fn export(&self, keyid: &str, to: &Path, armor: bool) {
        let mut c = self.gpg();
        if armor {
            c.arg("--armor");
        }
        c.arg("--export");
        if !keyid.is_empty() {
            c.arg(keyid);
        }
        let out = run(&mut c);
        assert!(!out.stdout.is_empty(), "{c:?} exported nothing");
        std::fs::write(to, out.stdout).unwrap();
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.dir)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// The venv vm/prepare makes, with productmd in it.
pub fn productmd_python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = Command::new(&p)
        .args(["-c", "import productmd.images"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "productmd is not in {}: run vm/prepare", p.display());
    p
}

/// Loads an images.json with productmd (which validates every field) and prints
/// `variant arch type format path size sha256 subvariant` per image.
const LOAD_IMAGES: &str = r#"
import sys
from productmd.images import Images
im = Images()
im.load(sys.argv[1])
for variant in im.images:
    for arch in im.images[variant]:
        for i in sorted(im.images[variant][arch], key=lambda i: i.path):
            print(variant, arch, i.type, i.format, i.path, i.size, i.checksums["sha256"], i.subvariant)
"#;

/// Runs productmd's `Images().load()` on `images_json`; its output lists the images.
pub fn productmd_load(images_json: &Path) -> Output {
    Command::new(productmd_python())
        .args(["-c", LOAD_IMAGES])
        .arg(images_json)
        .output()
        .expect("running python")
}
