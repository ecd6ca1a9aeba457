//! For the compose tests: RPMs built with the real `rpmbuild`, rpm-md repositories made
//! with `createrepo_c`, a work directory to compose in.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use atomic_factory::compose::{ComposeOptions, ComposeOutcome, compose_tree};
use atomic_factory::ostree::{Repo, RepoMode};

use super::run;

/// Real RPMs from rpm-rs's test assets (see tests/fixtures/README.md), kept in the repo so
/// CI needs nothing else.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rpms");

/// The RPM fixtures: `AF_RPM_FIXTURES` or the copy in the repository.
pub fn fixtures_dir() -> PathBuf {
    let p = std::env::var("AF_RPM_FIXTURES").unwrap_or_else(|_| FIXTURES.to_string());
    let p = PathBuf::from(p);
    assert!(
        p.join("v6/rpm-basic-2.3.4-5.el9.noarch.rpm").exists(),
        "RPM fixtures missing at {} (tests/fixtures/rpms in the repo)",
        p.display()
    );
    p
}

/// A package to build with rpmbuild.
#[derive(Clone, Default)]
pub struct Spec {
    pub name: String,
    pub version: String,
    pub release: String,
    /// "noarch" or "" for the host arch.
    pub arch: String,
    pub epoch: Option<u32>,
    pub requires: Vec<String>,
    pub provides: Vec<String>,
    pub conflicts: Vec<String>,
    pub obsoletes: Vec<String>,
    /// (path, content, mode, user, group)
    pub files: Vec<(String, Vec<u8>, u32, String, String)>,
    pub dirs: Vec<(String, u32)>,
    /// (path, target)
    pub symlinks: Vec<(String, String)>,
    /// (path, existing file it is a hard link to)
    pub hardlinks: Vec<(String, String)>,
    pub post: Option<String>,
}

impl Spec {
    pub fn new(name: &str, version: &str) -> Spec {
        Spec {
            name: name.into(),
            version: version.into(),
            release: "1".into(),
            arch: "noarch".into(),
            ..Default::default()
        }
    }
    pub fn req(mut self, r: &str) -> Self {
        self.requires.push(r.into());
        self
    }
    pub fn prov(mut self, r: &str) -> Self {
        self.provides.push(r.into());
        self
    }
    pub fn conflicts(mut self, r: &str) -> Self {
        self.conflicts.push(r.into());
        self
    }
    pub fn obsoletes(mut self, r: &str) -> Self {
        self.obsoletes.push(r.into());
        self
    }
    pub fn file(mut self, path: &str, content: &[u8], mode: u32) -> Self {
        self.files.push((
            path.into(),
            content.to_vec(),
            mode,
            "root".into(),
            "root".into(),
        ));
        self
    }
    pub fn owned_file(
        mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        user: &str,
        group: &str,
    ) -> Self {
        self.files.push((
            path.into(),
            content.to_vec(),
            mode,
            user.into(),
            group.into(),
        ));
        self
    }
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.dirs.push((path.into(), mode));
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.symlinks.push((path.into(), target.into()));
        self
    }
    pub fn hardlink(mut self, path: &str, existing: &str) -> Self {
        self.hardlinks.push((path.into(), existing.into()));
        self
    }
    pub fn post(mut self, s: &str) -> Self {
        self.post = Some(s.into());
        self
    }
    pub fn arch(mut self, a: &str) -> Self {
        self.arch = a.into();
        self
    }

    fn spec_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Name: {}\nVersion: {}\nRelease: {}\nSummary: test\nLicense: MIT",
            self.name, self.version, self.release
        );
        if let Some(e) = self.epoch {
            let _ = writeln!(s, "Epoch: {e}");
        }
        if !self.arch.is_empty() {
            let _ = writeln!(s, "BuildArch: {}", self.arch);
        }
        s.push_str("AutoReqProv: no\n");
        for r in &self.requires {
            let _ = writeln!(s, "Requires: {r}");
        }
        for r in &self.provides {
            let _ = writeln!(s, "Provides: {r}");
        }
        for r in &self.conflicts {
            let _ = writeln!(s, "Conflicts: {r}");
        }
        for r in &self.obsoletes {
            let _ = writeln!(s, "Obsoletes: {r}");
        }
        s.push_str("%description\ntest\n%install\n");
        for (p, content, _, _, _) in &self.files {
            let b64 = base64_encode(content);
            let parent = Path::new(p).parent().unwrap().display().to_string();
            let _ = writeln!(
                s,
                "mkdir -p %{{buildroot}}{parent}\necho '{b64}' | base64 -d > %{{buildroot}}{p}"
            );
        }
        for (d, _) in &self.dirs {
            let _ = writeln!(s, "mkdir -p %{{buildroot}}{d}");
        }
        for (p, t) in &self.symlinks {
            let parent = Path::new(p).parent().unwrap().display().to_string();
            let _ = writeln!(
                s,
                "mkdir -p %{{buildroot}}{parent}\nln -sf {t} %{{buildroot}}{p}"
            );
        }
        for (p, existing) in &self.hardlinks {
            let parent = Path::new(p).parent().unwrap().display().to_string();
            let _ = writeln!(
                s,
                "mkdir -p %{{buildroot}}{parent}\nln %{{buildroot}}{existing} %{{buildroot}}{p}"
            );
        }
        if let Some(post) = &self.post {
            let _ = writeln!(s, "%post\n{post}");
        }
        s.push_str("%files\n");
        for (p, _, mode, u, g) in &self.files {
            let _ = writeln!(s, "%attr({mode:o},{u},{g}) {p}");
        }
        for (d, mode) in &self.dirs {
            let _ = writeln!(s, "%dir %attr({mode:o},root,root) {d}");
        }
        for (p, _) in self.symlinks.iter().chain(&self.hardlinks) {
            let _ = writeln!(s, "{p}");
        }
        s
    }

    /// Builds the RPM into `outdir`; returns its path.
    pub fn build(&self, outdir: &Path) -> PathBuf {
        let top = tempfile::tempdir().unwrap();
        let spec = top.path().join(format!("{}.spec", self.name));
        std::fs::write(&spec, self.spec_text()).unwrap();
        let out = Command::new("rpmbuild")
            .arg("-bb")
            .arg("--quiet")
            .arg("--define")
            .arg(format!("_topdir {}", top.path().display()))
            .arg("--define")
            .arg(format!("_rpmdir {}", outdir.display()))
            .args([
                "--define",
                "_build_id_links none",
                "--define",
                "__os_install_post %{nil}",
            ])
            .args([
                "--define",
                "_binary_payload w19.zstdio",
                "--define",
                "_rpmfilename %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
            ])
            .arg(&spec)
            .output()
            .expect("running rpmbuild (install it with vm/prepare)");
        assert!(
            out.status.success(),
            "rpmbuild {} failed: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.spec_text()
        );
        let arch = if self.arch.is_empty() {
            std::env::consts::ARCH
        } else {
            &self.arch
        };
        let p = outdir.join(format!(
            "{}-{}-{}.{arch}.rpm",
            self.name, self.version, self.release
        ));
        assert!(p.exists(), "rpmbuild did not produce {}", p.display());
        p
    }
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Makes `dir` an rpm-md repository with the real `createrepo_c`.
pub fn createrepo(dir: &Path) {
    run(Command::new("createrepo_c").arg("--quiet").arg(dir));
}

/// A work dir with `rpms/` (an rpm-md repo once `createrepo` runs), `t.repo` pointing at it
/// relatively, and an archive repo `repo/`.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rpms")).unwrap();
        std::fs::write(
            dir.path().join("t.repo"),
            "[t]\nname=test\nbaseurl=rpms\ngpgcheck=0\n",
        )
        .unwrap();
        Repo::create(&dir.path().join("repo"), RepoMode::ArchiveZ2).unwrap();
        Work { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn rpms(&self) -> PathBuf {
        self.dir.path().join("rpms")
    }
    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
    pub fn add(&self, spec: &Spec) -> PathBuf {
        spec.build(&self.rpms())
    }
    /// Writes a treefile with `packages` (plus extra YAML lines) and returns its path.
    pub fn treefile(&self, packages: &[&str], extra: &str) -> PathBuf {
        let p = self.dir.path().join("tf.yaml");
        let list: Vec<String> = packages.iter().map(|p| format!("  - {p}")).collect();
        std::fs::write(
            &p,
            format!(
                "ref: test/x86_64/base\nrepos: [t]\npackages:\n{}\n{extra}",
                list.join("\n")
            ),
        )
        .unwrap();
        p
    }
    pub fn compose(&self, tf: &Path) -> anyhow::Result<ComposeOutcome> {
        compose_tree(
            &self.repo(),
            tf,
            &ComposeOptions {
                progress: atomic_factory::progress::Reporter::quiet(),
                ..Default::default()
            },
        )
    }
    pub fn compose_opts(&self, tf: &Path, opts: &ComposeOptions) -> anyhow::Result<ComposeOutcome> {
        compose_tree(&self.repo(), tf, opts)
    }
    pub fn ref_commit(&self) -> Option<String> {
        let p = self.repo().join("refs/heads/test/x86_64/base");
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    }
}

/// Runs the real `ostree ARGS` (the repository among them), which must succeed; returns
/// stdout as printed.
pub fn ostree_stdout(args: &[&str]) -> String {
    String::from_utf8_lossy(&run(Command::new("ostree").args(args)).stdout).into_owned()
}

/// The error chain as one string.
pub fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}
