//! The repository: layout, config, locking, and durable object and ref writes.
//!
//! Durability rule (ostree's transaction scheme): new objects are written, unsynced, into a
//! staging directory `tmp/af-PID-N.staging/`; [`Repo::sync_objects`] makes all of them
//! durable with one `syncfs`, then renames them into `objects/XX/` and syncs again, so an
//! object is visible under `objects/` only once its bytes are on disk. The commit object is
//! renamed last, after its tree is durable in place, and a ref is written only after that.
//! A crash at any moment leaves at worst unreferenced objects or a stray staging directory
//! in `tmp/` (removed by the next writer), never a ref to a missing object.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, Result, bail, ensure};
use sha2::Digest;

use super::checksum::Checksum;
use super::deflate::{self, ObjectDeflater};
use super::objects::{self, Commit, CommitSpec, DirMeta, DirTree, FileMeta, ObjectType};
use super::refs;

/// The repository mode. Only archive-z2 is written; `archive` is its legacy alias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RepoMode {
    /// `archive-z2`: content objects deflate-compressed as `.filez`, servable over plain HTTP.
    #[default]
    ArchiveZ2,
}

impl RepoMode {
    /// The mode's name in the repository config (`core.mode`).
    pub fn as_str(self) -> &'static str {
        "archive-z2"
    }
}

impl std::str::FromStr for RepoMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<RepoMode> {
        match s {
            "archive-z2" | "archive" => Ok(RepoMode::ArchiveZ2),
            "bare" | "bare-user" | "bare-user-only" | "bare-split-xattrs" => {
                bail!(
                    "repository mode '{s}' is not supported: use archive-z2 (or its alias archive)"
                )
            }
            _ => bail!("unknown repository mode '{s}': use archive-z2 (or its alias archive)"),
        }
    }
}

/// An open archive-z2 repository. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct Repo {
    path: PathBuf,
    mode: RepoMode,
    zlib_level: u32,
    collection_id: Option<String>,
    /// Objects written since the last [`Repo::sync_objects`], not yet durable nor visible.
    staging: Mutex<Staging>,
}

/// The open transaction: a staging directory in `tmp/` and the objects written into it.
#[derive(Debug, Default)]
struct Staging {
    dir: Option<PathBuf>,
    objects: HashMap<(Checksum, ObjectType), PathBuf>,
}

/// A writer that stops before [`Repo::sync_objects`] (an error) leaves no staging files.
impl Drop for Repo {
    fn drop(&mut self) {
        if let Ok(staging) = self.staging.get_mut()
            && let Some(dir) = &staging.dir
        {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Holds the repository's `.lock` (flock) until dropped.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

const INIT_DIRS: &[&str] = &[
    "tmp",
    "extensions",
    "state",
    "refs",
    "refs/heads",
    "refs/mirrors",
    "refs/remotes",
    "objects",
];

fn mkdir(path: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o775).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating directory {}", path.display())),
    }
}

/// fsyncs a directory so renames into it survive a crash.
pub(crate) fn fsync_dir(path: &Path) -> Result<()> {
    let d = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    d.sync_all()
        .with_context(|| format!("syncing directory {}", path.display()))
}

/// Flushes the whole filesystem that holds `path` (syncfs(2)): one call where a step only
/// needs "everything done so far is durable before the next step", instead of an fsync per
/// object or directory (what ostree does once per commit transaction; prune would touch up
/// to 256 object directories).
pub(crate) fn sync_filesystem(path: &Path) -> Result<()> {
    let d = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    rustix::fs::syncfs(&d)
        .map_err(std::io::Error::from)
        .with_context(|| format!("syncing the filesystem of {}", path.display()))
}

/// Writes `data` to `dest` atomically: a temporary sibling, fsync, rename, fsync of the dir.
pub(crate) fn write_file_atomic(dest: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    write_file_atomic_via(dir, dest, data, mode)
}

/// Like [`write_file_atomic`], with the temporary file in `tmpdir` (same filesystem), so a
/// crash never leaves a stray file where readers enumerate (e.g. `refs/heads`).
pub(crate) fn write_file_atomic_via(
    tmpdir: &Path,
    dest: &Path,
    data: &[u8],
    mode: u32,
) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tmpdir.join(format!(".{name}.tmp-{}-{}", std::process::id(), unique()));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(data)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, dest)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
        fsync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

fn unique() -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{n}-{t:08x}")
}

/// A minimal reader of GKeyFile `[group] key=value` text, enough for ostree's config.
pub(crate) fn keyfile_get(text: &str, group: &str, key: &str) -> Option<String> {
    let mut in_group = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            in_group = &line[1..line.len() - 1] == group;
        } else if in_group
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim().to_string());
        }
    }
    None
}

/// Sets `key=value` in `[group]`, keeping every other line as it was (like GKeyFile does).
pub(crate) fn keyfile_set(text: &str, group: &str, key: &str, value: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut in_group = false;
    let mut done = false;
    let mut group_seen = false;
    let mut insert_at: Option<usize> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            if in_group && !done {
                insert_at = Some(out.len());
            }
            in_group = &t[1..t.len() - 1] == group;
            group_seen |= in_group;
        } else if in_group
            && !done
            && let Some((k, _)) = t.split_once('=')
            && k.trim() == key
        {
            out.push(format!("{key}={value}"));
            done = true;
            continue;
        }
        out.push(line.to_string());
    }
    if !done {
        if in_group {
            // The group is the last one: append after its last non-blank line.
            let mut at = out.len();
            while at > 0 && out[at - 1].trim().is_empty() {
                at -= 1;
            }
            out.insert(at, format!("{key}={value}"));
        } else if let Some(at) = insert_at {
            let mut at = at;
            while at > 0 && out[at - 1].trim().is_empty() {
                at -= 1;
            }
            out.insert(at, format!("{key}={value}"));
        } else if !group_seen {
            out.push(format!("[{group}]"));
            out.push(format!("{key}={value}"));
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

impl Repo {
    /// Creates a repository exactly as `ostree init --mode=archive-z2` does (idempotent when the
    /// repository already exists with the same mode).
    pub fn create(path: &Path, mode: RepoMode) -> Result<Repo> {
        fs::create_dir_all(path)
            .with_context(|| format!("creating repository {}", path.display()))?;
        let config = path.join("config");
        if config.exists() {
            let repo = Repo::open(path)?;
            ensure!(
                repo.mode == mode,
                "{} exists with another mode",
                path.display()
            );
            return Ok(repo);
        }
        for d in INIT_DIRS {
            mkdir(&path.join(d))?;
        }
        let text = format!("[core]\nrepo_version=1\nmode={}\n", mode.as_str());
        write_file_atomic(&config, text.as_bytes(), 0o644)?;
        Repo::open(path)
    }

    /// Opens an existing repository; the error names the path when it is not one.
    pub fn open(path: &Path) -> Result<Repo> {
        let config_path = path.join("config");
        let text = match fs::read_to_string(&config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} is not an ostree repository (no config file); create one with \
                 `atomic-factory init --repo={}`",
                path.display(),
                path.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", config_path.display()));
            }
        };
        let version = keyfile_get(&text, "core", "repo_version").with_context(|| {
            format!(
                "{}: missing [core] repo_version; not an ostree repository config",
                config_path.display()
            )
        })?;
        ensure!(
            version == "1",
            "{}: unsupported repo_version={version} (expected 1)",
            config_path.display()
        );
        let mode_str = keyfile_get(&text, "core", "mode").unwrap_or_else(|| "bare".into());
        let mode: RepoMode = mode_str
            .parse()
            .with_context(|| format!("opening repository {}", path.display()))?;
        let zlib_level = keyfile_get(&text, "archive", "zlib-level")
            .and_then(|v| v.parse::<u32>().ok())
            .map(|l| l.clamp(1, 9))
            .unwrap_or(6);
        let collection_id = keyfile_get(&text, "core", "collection-id");
        for d in ["objects", "refs/heads", "tmp"] {
            ensure!(
                path.join(d).is_dir(),
                "{} is not a complete ostree repository: {d}/ is missing",
                path.display()
            );
        }
        // ostree creates tmp/cache on every open; do the same (ignore a read-only repo).
        let _ = mkdir(&path.join("tmp/cache"));
        Ok(Repo {
            path: path.to_path_buf(),
            mode,
            zlib_level,
            collection_id,
            staging: Mutex::new(Staging::default()),
        })
    }

    /// The repository's root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The repository's mode.
    pub fn mode(&self) -> RepoMode {
        self.mode
    }
    /// The config's `core.collection-id`, if set.
    pub fn collection_id(&self) -> Option<&str> {
        self.collection_id.as_deref()
    }

    /// Path of a loose object: `objects/XX/<62 hex>.<ext>`.
    pub fn object_path(&self, csum: &Checksum, kind: ObjectType) -> PathBuf {
        let hex = csum.to_hex();
        self.path.join("objects").join(&hex[..2]).join(format!(
            "{}.{}",
            &hex[2..],
            kind.extension()
        ))
    }

    /// Whether the object is in the repository or staged by this writer.
    pub fn has_object(&self, csum: &Checksum, kind: ObjectType) -> bool {
        self.staged_path(csum, kind).is_some() || self.object_path(csum, kind).exists()
    }

    fn staged_path(&self, csum: &Checksum, kind: ObjectType) -> Option<PathBuf> {
        let staging = self.staging.lock().expect("lock poisoned");
        staging.objects.get(&(*csum, kind)).cloned()
    }

    /// Where to read an object from: its staging file until it has been moved in.
    fn readable_object_path(&self, csum: &Checksum, kind: ObjectType) -> PathBuf {
        self.staged_path(csum, kind)
            .unwrap_or_else(|| self.object_path(csum, kind))
    }

    fn ref_path(&self, name: &str) -> PathBuf {
        self.path.join("refs/heads").join(name)
    }

    /// The commit `refs/heads/NAME` points to, or None if there is no such ref.
    pub fn resolve_ref(&self, name: &str) -> Result<Option<Checksum>> {
        refs::validate_ref_name(name)?;
        let p = self.ref_path(name);
        if p.is_file() {
            Ok(Some(refs::read_ref_file(&p)?))
        } else {
            Ok(None)
        }
    }

    /// Resolves a ref name or a full checksum to a commit checksum (error if neither).
    pub fn resolve_rev(&self, rev: &str) -> Result<Checksum> {
        if let Ok(c) = rev.parse::<Checksum>() {
            return Ok(c);
        }
        self.resolve_ref(rev)?.with_context(|| {
            format!(
                "ref '{rev}' not found in repository {}",
                self.path.display()
            )
        })
    }

    /// Points `refs/heads/NAME` at `commit`, atomically and durably. The commit must exist.
    pub fn set_ref(&self, name: &str, commit: &Checksum) -> Result<()> {
        refs::validate_ref_name(name)?;
        ensure!(
            self.has_object(commit, ObjectType::Commit),
            "refusing to point ref '{name}' at commit {commit}: it is not in {}",
            self.path.display()
        );
        let p = self.ref_path(name);
        let heads = self.path.join("refs/heads");
        let mut dir = heads.clone();
        for part in Path::new(name)
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
        {
            dir.push(part);
            mkdir(&dir)?;
        }
        if p.is_dir() {
            bail!(
                "cannot write ref '{name}': {} is a directory (a ref with this prefix exists)",
                p.display()
            );
        }
        write_file_atomic_via(
            &self.path.join("tmp"),
            &p,
            format!("{commit}\n").as_bytes(),
            0o644,
        )
        .with_context(|| format!("writing ref '{name}'"))
    }

    /// All `refs/heads` refs, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<(String, Checksum)>> {
        refs::list_ref_dir(&self.path.join("refs/heads"))
    }

    /// Takes the exclusive repository lock (`flock` on `.lock`, as ostree does).
    pub fn lock(&self) -> Result<RepoLock> {
        self.lock_with(false)
    }

    /// Takes the shared lock, as ostree does for the length of a commit transaction.
    pub fn lock_shared(&self) -> Result<RepoLock> {
        self.lock_with(true)
    }

    /// std's `File::lock` is flock(2), as ostree's lock; retried when a signal interrupts it.
    fn lock_with(&self, shared: bool) -> Result<RepoLock> {
        let p = self.path.join(".lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(&p)
            .with_context(|| format!("opening lock file {}", p.display()))?;
        loop {
            let locked = if shared {
                file.lock_shared()
            } else {
                file.lock()
            };
            match locked {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("locking {}", p.display())),
            }
        }
        Ok(RepoLock { _file: file })
    }

    /// Removes temporary files left in `tmp/` by our writers that died (e.g. SIGKILL):
    /// their names carry the writer's pid, and a pid that no longer exists cannot finish them.
    pub fn cleanup_tmp(&self) -> Result<()> {
        let tmp = self.path.join("tmp");
        let rd = fs::read_dir(&tmp).with_context(|| format!("reading {}", tmp.display()))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("af-")
                .or_else(|| {
                    name.strip_prefix('.')
                        .and_then(|n| n.split_once(".tmp-").map(|(_, r)| r))
                })
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
                .and_then(rustix::process::Pid::from_raw);
            if let Some(pid) = pid {
                // kill(pid, 0): only asks whether the process exists.
                let gone = rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH);
                if gone {
                    // A dead writer's staging directory holds only unsynced, unreferenced files.
                    let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                        fs::remove_dir_all(e.path())
                    } else {
                        fs::remove_file(e.path())
                    };
                }
            }
        }
        Ok(())
    }

    /// A new file in the staging directory (created on first use, in `tmp/`: same filesystem
    /// as `objects/`). Its name carries our pid so `cleanup_tmp` knows when it is stale.
    fn tmp_file(&self) -> Result<(PathBuf, File)> {
        let dir = {
            let mut staging = self.staging.lock().expect("lock poisoned");
            match &staging.dir {
                Some(d) => d.clone(),
                None => {
                    let d = self.path.join("tmp").join(format!(
                        "af-{}-{}.staging",
                        std::process::id(),
                        unique()
                    ));
                    mkdir(&d)?;
                    staging.dir = Some(d.clone());
                    d
                }
            }
        };
        let p = dir.join(format!("{}.tmp", unique()));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&p)
            .with_context(|| format!("creating temporary file {}", p.display()))?;
        Ok((p, f))
    }

    /// Records a fully written staging file as the object `csum` (dropped if it already
    /// exists). It becomes visible under `objects/` at the next [`Repo::sync_objects`].
    fn install_object(
        &self,
        tmp: &Path,
        file: File,
        csum: &Checksum,
        kind: ObjectType,
    ) -> Result<()> {
        drop(file);
        let mut staging = self.staging.lock().expect("lock poisoned");
        if staging.objects.contains_key(&(*csum, kind)) || self.object_path(csum, kind).exists() {
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        staging.objects.insert((*csum, kind), tmp.to_path_buf());
        Ok(())
    }

    /// Makes every staged object durable and visible: one `syncfs` for all their bytes, then
    /// the renames into `objects/XX/` (commits last, each group followed by a `syncfs`, so a
    /// commit never becomes visible before the objects it names are in place durably).
    pub fn sync_objects(&self) -> Result<()> {
        let staging = std::mem::take(&mut *self.staging.lock().expect("lock poisoned"));
        let Some(dir) = staging.dir else {
            return Ok(());
        };
        if staging.objects.is_empty() {
            let _ = fs::remove_dir(&dir);
            return Ok(());
        }
        sync_filesystem(&dir)?;
        let (commits, others): (Vec<_>, Vec<_>) = staging
            .objects
            .into_iter()
            .partition(|((_, kind), _)| matches!(kind, ObjectType::Commit));
        let mut made: HashSet<PathBuf> = HashSet::new();
        for group in [others, commits] {
            if group.is_empty() {
                continue;
            }
            for ((csum, kind), tmp) in group {
                let dest = self.object_path(&csum, kind);
                let parent = dest.parent().expect("object paths have a parent");
                if !made.contains(parent) {
                    mkdir(parent)?;
                    made.insert(parent.to_path_buf());
                }
                fs::rename(&tmp, &dest)
                    .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
            }
            sync_filesystem(&dir)?;
        }
        // Empty now; a failure here leaves only an empty directory for cleanup_tmp.
        let _ = fs::remove_dir(&dir);
        Ok(())
    }

    /// Writes a metadata object (its checksum is the sha256 of `bytes`).
    pub fn write_metadata(&self, kind: ObjectType, bytes: &[u8]) -> Result<Checksum> {
        let csum = Checksum::of(bytes);
        if self.has_object(&csum, kind) {
            return Ok(csum);
        }
        let (tmp, mut f) = self.tmp_file()?;
        let res = f
            .write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))
            .and_then(|_| self.install_object(&tmp, f, &csum, kind));
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map(|_| csum)
    }

    /// Writes a dirmeta object (if missing) and returns its checksum.
    pub fn write_dirmeta(&self, meta: &DirMeta) -> Result<Checksum> {
        self.write_metadata(ObjectType::DirMeta, &objects::dirmeta_bytes(meta)?)
    }

    /// Writes a dirtree object (if missing) and returns its checksum.
    pub fn write_dirtree(&self, tree: &DirTree) -> Result<Checksum> {
        self.write_metadata(ObjectType::DirTree, &objects::dirtree_bytes(tree)?)
    }

    /// Writes a symlink content object (`.filez` with no deflate stream).
    pub fn write_symlink(&self, meta: &FileMeta, target: &str) -> Result<Checksum> {
        let csum = Checksum(objects::content_hasher(meta, target)?.finalize().into());
        if self.has_object(&csum, ObjectType::File) {
            return Ok(csum);
        }
        let header = objects::filez_header(meta, target, 0)?;
        let (tmp, mut f) = self.tmp_file()?;
        let res = f
            .write_all(&header)
            .with_context(|| format!("writing {}", tmp.display()))
            .and_then(|_| self.install_object(&tmp, f, &csum, ObjectType::File));
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map(|_| csum)
    }

    /// The content checksum of a regular file held in memory.
    pub fn file_checksum(meta: &FileMeta, data: &[u8]) -> Result<Checksum> {
        let mut h = objects::content_hasher(meta, "")?;
        h.update(data);
        Ok(Checksum(h.finalize().into()))
    }

    /// Writes a regular file held in memory; hashes first and skips compression if present.
    pub fn write_file_bytes(&self, meta: &FileMeta, data: &[u8]) -> Result<Checksum> {
        let csum = Repo::file_checksum(meta, data)?;
        if !self.has_object(&csum, ObjectType::File) {
            let got = self.write_file_stream(meta, data.len() as u64, &mut &data[..])?;
            ensure!(
                got == csum,
                "internal error: content checksum changed while writing"
            );
        }
        Ok(csum)
    }

    /// Writes a regular-file content object from a stream of exactly `size` bytes.
    /// Deduplicated: an object that already exists is not rewritten.
    pub fn write_file(&self, meta: &FileMeta, size: u64, data: &mut dyn Read) -> Result<Checksum> {
        self.write_file_stream(meta, size, data)
    }

    fn write_file_stream(
        &self,
        meta: &FileMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<Checksum> {
        ensure!(
            meta.mode & objects::S_IFMT == objects::S_IFREG,
            "write_file needs a regular file mode"
        );
        let mut hasher = objects::content_hasher(meta, "")?;
        let header = objects::filez_header(meta, "", size)?;
        let (tmp, mut f) = self.tmp_file()?;
        let res = (|| -> Result<Checksum> {
            f.write_all(&header)
                .with_context(|| format!("writing {}", tmp.display()))?;
            let mut enc = ObjectDeflater::new(self.zlib_level);
            let mut buf = vec![0u8; deflate::CHUNK];
            let mut total = 0u64;
            loop {
                let n = match data.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("reading file data"),
                };
                total += n as u64;
                hasher.update(&buf[..n]);
                enc.write(&buf[..n], &mut f)
                    .with_context(|| format!("writing {}", tmp.display()))?;
            }
            ensure!(
                total == size,
                "file data was {total} bytes, expected {size} (did it change while being read?)"
            );
            enc.finish(&mut f)
                .with_context(|| format!("writing {}", tmp.display()))?;
            Ok(Checksum(hasher.finalize().into()))
        })();
        match res {
            Ok(csum) => {
                if let Err(e) = self.install_object(&tmp, f, &csum, ObjectType::File) {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                Ok(csum)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Writes the commit object and ends the transaction: every staged object, then the commit,
    /// durable and moved into `objects/` ([`Repo::sync_objects`]).
    /// Does not move any ref (call [`Repo::set_ref`] after).
    pub fn write_commit(&self, commit: &CommitSpec) -> Result<Checksum> {
        ensure!(
            self.has_object(&commit.root_dirtree, ObjectType::DirTree),
            "root dirtree {} is not in the repository",
            commit.root_dirtree
        );
        ensure!(
            self.has_object(&commit.root_dirmeta, ObjectType::DirMeta),
            "root dirmeta {} is not in the repository",
            commit.root_dirmeta
        );
        let csum = self.write_metadata(ObjectType::Commit, &objects::commit_bytes(commit)?)?;
        self.sync_objects()?;
        Ok(csum)
    }

    fn read_object(&self, csum: &Checksum, kind: ObjectType) -> Result<Vec<u8>> {
        let p = self.readable_object_path(csum, kind);
        fs::read(&p).with_context(|| {
            format!(
                "reading {} object {csum} ({})",
                kind.extension(),
                p.display()
            )
        })
    }

    /// Reads and parses a commit object; the error names the commit.
    pub fn read_commit(&self, csum: &Checksum) -> Result<Commit> {
        let b = self.read_object(csum, ObjectType::Commit)?;
        objects::parse_commit(&b).with_context(|| format!("parsing commit {csum}"))
    }

    /// Byte size of the commit object file (the summary needs it).
    pub fn commit_size(&self, csum: &Checksum) -> Result<u64> {
        let p = self.object_path(csum, ObjectType::Commit);
        Ok(fs::metadata(&p)
            .with_context(|| format!("reading {}", p.display()))?
            .len())
    }

    /// Reads and parses a dirtree object; the error names the object.
    pub fn read_dirtree(&self, csum: &Checksum) -> Result<DirTree> {
        let b = self.read_object(csum, ObjectType::DirTree)?;
        objects::parse_dirtree(&b).with_context(|| format!("parsing dirtree {csum}"))
    }

    /// Reads and parses a dirmeta object; the error names the object.
    pub fn read_dirmeta(&self, csum: &Checksum) -> Result<DirMeta> {
        let b = self.read_object(csum, ObjectType::DirMeta)?;
        objects::parse_dirmeta(&b).with_context(|| format!("parsing dirmeta {csum}"))
    }

    /// Opens a content object: its metadata, its symlink target (for symlinks) and a reader
    /// of its inflated bytes (empty for symlinks).
    pub fn read_file(
        &self,
        csum: &Checksum,
    ) -> Result<(FileMeta, Option<String>, Box<dyn Read + Send>)> {
        let (f, meta, target, _size, off) = self.open_filez(csum)?;
        if let Some(t) = target {
            return Ok((meta, Some(t), Box::new(std::io::empty())));
        }
        let mut f = f;
        f.seek(SeekFrom::Start(off as u64))?;
        let reader = flate2::read::DeflateDecoder::new(BufReader::with_capacity(128 * 1024, f));
        Ok((meta, None, Box::new(reader)))
    }

    /// A content object's metadata, symlink target and size (the header's, 0 for symlinks),
    /// read without inflating its data.
    pub fn read_file_info(&self, csum: &Checksum) -> Result<(FileMeta, Option<String>, u64)> {
        let (_, meta, target, size, _) = self.open_filez(csum)?;
        Ok((meta, target, size))
    }

    /// Opens a `.filez` and parses its header: (file, meta, symlink target, size, data offset).
    fn open_filez(&self, csum: &Checksum) -> Result<(File, FileMeta, Option<String>, u64, usize)> {
        let p = self.readable_object_path(csum, ObjectType::File);
        let mut f = File::open(&p)
            .with_context(|| format!("opening content object {csum} ({})", p.display()))?;
        let mut prefix = [0u8; 8];
        f.read_exact(&mut prefix)
            .with_context(|| format!("reading {}", p.display()))?;
        let n = u32::from_be_bytes(prefix[..4].try_into().unwrap()) as usize;
        ensure!(
            n < 16 << 20,
            "{}: header length {n} is implausible",
            p.display()
        );
        let mut head = prefix.to_vec();
        head.resize(8 + n, 0);
        f.read_exact(&mut head[8..])
            .with_context(|| format!("reading {}", p.display()))?;
        let (meta, target, size, off) = objects::parse_filez_header(&head)
            .with_context(|| format!("parsing content object {}", p.display()))?;
        let target = (meta.mode & objects::S_IFMT == objects::S_IFLNK).then_some(target);
        Ok((f, meta, target, size, off))
    }
}
