//! The state file: what `scan` found in the master tree and what `crawl` saw on each mirror.
//!
//! One JSON document, written atomically (temp file, fsync, rename) under an advisory lock so a
//! scan and a crawl that run at the same time do not lose each other's results.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Bumped when the layout changes incompatibly.
pub const STATE_VERSION: u32 = 1;

/// The whole state file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The layout version ([`STATE_VERSION`]).
    pub version: u32,
    /// The master tree that was scanned (absolute).
    pub root: PathBuf,
    /// Unix seconds of the last scan.
    pub scanned_at: i64,
    /// Repository aliases (MirrorManager's RepositoryRedirect): `repo=FROM` is looked up as `TO`.
    #[serde(default)]
    pub redirects: BTreeMap<String, String>,
    /// The repositories the last scan found.
    pub repos: Vec<Repo>,
    /// Crawl results: mirror name, then the repository file path (`Repo::file_path`).
    #[serde(default)]
    pub crawl: BTreeMap<String, BTreeMap<String, CrawlResult>>,
}

/// What sort of repository a folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    /// A folder with `summary` and `objects/`.
    Ostree,
    /// A folder with `repodata/repomd.xml`.
    Yum,
}

/// One repository of the master tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repo {
    /// ostree or yum.
    pub kind: RepoKind,
    /// The public `repo=` name (MirrorManager's prefix); `None` when the rules give none, in which
    /// case the repository is still served by `path=`.
    pub name: Option<String>,
    /// The repository arch (`x86_64`, `source`); `None` when the rules give none.
    pub arch: Option<String>,
    /// The repository folder relative to the root, `/`-separated, no leading or trailing `/`
    /// (empty when the root itself is the repository).
    pub path: String,
    /// The file the metalink points at, relative to `path`: `summary` or `repodata/repomd.xml`.
    pub file: String,
    /// The current version of that file.
    pub detail: FileDetail,
    /// Older versions still accepted (MirrorManager's `mm0:alternates`), newest first.
    #[serde(default)]
    pub alternates: Vec<FileDetail>,
}

impl Repo {
    /// The metalink target relative to the root, e.g. `pub/atomic/21/summary`.
    pub fn file_path(&self) -> String {
        join_rel(&self.path, &self.file)
    }

    /// The file's bare name as written in `<file name=..>`.
    pub fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }
}

/// Joins two relative `/`-paths where the first may be empty.
pub fn join_rel(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

/// What MirrorManager's FileDetail holds, plus the stat data used to skip re-hashing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDetail {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds and nanoseconds; a rescan re-hashes only when these or the
    /// size change.
    pub mtime: i64,
    /// Nanoseconds part of `mtime`.
    pub mtime_nsec: i64,
    /// The metalink `mm0:timestamp`: the mtime for a summary, repomd's `<revision>` for yum.
    pub timestamp: i64,
    /// When this version was first seen by a scan (Unix seconds); alternates age from it.
    pub first_seen: i64,
    /// MD5, hex.
    pub md5: String,
    /// SHA-1, hex.
    pub sha1: String,
    /// SHA-256, hex (what `crawl` compares).
    pub sha256: String,
    /// SHA-512, hex.
    pub sha512: String,
}

/// What a crawl saw for one file on one mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlResult {
    /// Unix seconds of the check.
    pub checked_at: i64,
    /// sha256 of the mirror's copy, when it could be fetched.
    pub sha256: Option<String>,
    /// Why it could not be fetched.
    pub error: Option<String>,
}

impl State {
    /// A fresh state for `root`.
    pub fn new(root: PathBuf) -> State {
        State {
            version: STATE_VERSION,
            root,
            ..State::default()
        }
    }

    /// True when `mirror`'s copy of `repo`'s file matches the current version.
    pub fn is_up_to_date(&self, mirror: &str, repo: &Repo) -> bool {
        self.crawl
            .get(mirror)
            .and_then(|m| m.get(&repo.file_path()))
            .and_then(|r| r.sha256.as_deref())
            .is_some_and(|h| h == repo.detail.sha256)
    }
}

/// Reads and checks a state file.
pub fn load(path: &Path) -> Result<State> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading state file {}", path.display()))?;
    parse(&text).with_context(|| format!("parsing state file {}", path.display()))
}

/// Parses state JSON; errors carry serde_json's line and column.
pub fn parse(text: &str) -> Result<State> {
    let state: State = serde_json::from_str(text)?;
    if state.version != STATE_VERSION {
        bail!(
            "state version {} is not supported (expected {STATE_VERSION}); rerun `mirror scan`",
            state.version
        );
    }
    Ok(state)
}

/// Writes the state atomically: a temporary file in the same folder, fsync, rename, fsync of the
/// folder. A crash leaves either the old or the new file, never a partial one.
pub fn save(path: &Path, state: &State) -> Result<()> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".state-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut json = serde_json::to_vec_pretty(state).context("serializing the state")?;
    json.push(b'\n');
    tmp.write_all(&json)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming the new state to {}", path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing folder {}", dir.display()))?;
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An exclusive advisory lock on `<state>.lock`, held while a command reads, changes and
/// writes the state; released on drop.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock of the state file at `state_path`, waiting while another command holds it.
    pub fn acquire(state_path: &Path) -> Result<StateLock> {
        let mut name = state_path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = PathBuf::from(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening lock file {}", lock_path.display()))?;
        // std's File::lock (Rust 1.89) is flock(2) on Linux: blocks until the other writer ends.
        file.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        Ok(StateLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(sha: &str) -> FileDetail {
        FileDetail {
            size: 1,
            mtime: 2,
            mtime_nsec: 3,
            timestamp: 2,
            first_seen: 4,
            md5: "m".into(),
            sha1: "s".into(),
            sha256: sha.into(),
            sha512: "x".into(),
        }
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut state = State::new("/srv".into());
        state.repos.push(Repo {
            kind: RepoKind::Ostree,
            name: Some("atomic-21".into()),
            arch: Some("x86_64".into()),
            path: "atomic/21".into(),
            file: "summary".into(),
            detail: detail("aa"),
            alternates: vec![],
        });
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), state);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn bad_state_names_the_file_and_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{\"version\": 1,\n \"bogus\": 2}").unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(err.contains("state.json"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn up_to_date_compares_the_crawled_hash_with_the_current_one() {
        let mut state = State::new("/srv".into());
        let repo = Repo {
            kind: RepoKind::Yum,
            name: None,
            arch: None,
            path: String::new(),
            file: "repodata/repomd.xml".into(),
            detail: detail("new"),
            alternates: vec![],
        };
        assert_eq!(repo.file_path(), "repodata/repomd.xml");
        assert_eq!(repo.file_name(), "repomd.xml");
        let result = |sha: &str| CrawlResult {
            checked_at: 0,
            sha256: Some(sha.into()),
            error: None,
        };
        state
            .crawl
            .entry("a".into())
            .or_default()
            .insert(repo.file_path(), result("new"));
        state
            .crawl
            .entry("b".into())
            .or_default()
            .insert(repo.file_path(), result("old"));
        assert!(state.is_up_to_date("a", &repo));
        assert!(!state.is_up_to_date("b", &repo));
        assert!(!state.is_up_to_date("c", &repo));
    }
}
