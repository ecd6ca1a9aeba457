//! `commit_directory`: walk a directory like `ostree commit --tree=dir=DIR` does, hash and
//! compress its files in parallel, build the MutableTree, write the commit and move the ref.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, Result, bail};
use rayon::prelude::*;

use super::checksum::Checksum;
use super::gvariant::{MetaValue, Metadata};
use super::mtree::MutableTree;
use super::objects::{CommitSpec, DirMeta, FileMeta, ObjectType, Xattrs};
use super::refs::validate_ref_name;
use super::repo::Repo;
use crate::progress::{Reporter, Unit};

/// Files up to this size are read into memory once (hashed, then compressed only if new);
/// bigger ones are streamed twice (hash pass, then write pass if the object is missing).
const SMALL_FILE: u64 = 4 << 20;

/// Options of `atomic-factory commit`, with `ostree commit`'s defaults.
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    /// The branch to move (and to bind the commit to); None = an orphan commit.
    pub branch: Option<String>,
    /// One-line subject of the commit (may be empty).
    pub subject: String,
    /// Full description of the commit (may be empty).
    pub body: String,
    /// Seconds since the epoch; None = now.
    pub timestamp: Option<u64>,
    /// None = the branch's current commit (if any); Some(None) = no parent.
    pub parent: Option<Option<Checksum>>,
    /// User metadata, written first and in this order (like `--add-metadata-string`).
    pub metadata: Metadata,
    /// Record this uid for every file and directory instead of the one on disk.
    pub owner_uid: Option<u32>,
    /// Record this gid for every file and directory instead of the one on disk.
    pub owner_gid: Option<u32>,
    /// Do not read extended attributes: every object gets an empty xattr list.
    pub no_xattrs: bool,
    /// Skip `ostree.ref-binding` / `ostree.collection-binding` (`--no-bindings`).
    pub no_bindings: bool,
    /// Show progress on stderr.
    pub progress: bool,
}

enum Kind {
    Regular {
        size: u64,
        dev_ino: Option<(u64, u64)>,
    },
    Symlink,
}

struct FileJob {
    path: PathBuf,
    /// Index of the directory (in `Walk::dirs`) holding this file.
    dir: usize,
    name: String,
    meta: FileMeta,
    kind: Kind,
}

struct DirEntry {
    /// Path components from the root.
    rel: Vec<String>,
    meta: DirMeta,
}

struct Walk {
    dirs: Vec<DirEntry>,
    files: Vec<FileJob>,
    total_bytes: u64,
}

fn read_xattrs(path: &Path) -> Result<Xattrs> {
    let mut out = Vec::new();
    let names =
        xattr::list(path).with_context(|| format!("listing xattrs of {}", path.display()))?;
    for name in names {
        let value = xattr::get(path, &name)
            .with_context(|| {
                format!(
                    "reading xattr {} of {}",
                    name.to_string_lossy(),
                    path.display()
                )
            })?
            .unwrap_or_default();
        // libglnx's xattr reader skips attributes whose value is empty; so must we, or the
        // content checksum differs from ostree's.
        if value.is_empty() {
            continue;
        }
        out.push((name.as_bytes().to_vec(), value));
    }
    Ok(out)
}

fn utf8_name(name: &OsStr, parent: &Path) -> Result<String> {
    match name.to_str() {
        Some(s) => Ok(s.to_string()),
        None => bail!(
            "{}: file name is not valid UTF-8 (ostree requires UTF-8 names); rename it",
            parent.join(name).display()
        ),
    }
}

impl Walk {
    fn apply_owner(&self, opts: &CommitOptions, uid: u32, gid: u32) -> (u32, u32) {
        (opts.owner_uid.unwrap_or(uid), opts.owner_gid.unwrap_or(gid))
    }

    fn dir_meta(&self, path: &Path, md: &fs::Metadata, opts: &CommitOptions) -> Result<DirMeta> {
        let (uid, gid) = self.apply_owner(opts, md.uid(), md.gid());
        let xattrs = if opts.no_xattrs {
            Vec::new()
        } else {
            read_xattrs(path)?
        };
        Ok(DirMeta {
            uid,
            gid,
            mode: md.mode(),
            xattrs,
        })
    }

    /// Scans the tree (sequentially: it is metadata-only and cheap next to hashing).
    fn scan(root: &Path, opts: &CommitOptions) -> Result<Walk> {
        let md = match fs::metadata(root) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("tree path {} does not exist", root.display())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
        };
        if !md.is_dir() {
            bail!("tree path {} is not a directory", root.display());
        }
        let mut walk = Walk {
            dirs: Vec::new(),
            files: Vec::new(),
            total_bytes: 0,
        };
        let meta = walk.dir_meta(root, &md, opts)?;
        walk.dirs.push(DirEntry {
            rel: Vec::new(),
            meta,
        });
        let mut stack = vec![(root.to_path_buf(), 0usize)];
        while let Some((dir_path, idx)) = stack.pop() {
            let rd = fs::read_dir(&dir_path)
                .with_context(|| format!("reading directory {}", dir_path.display()))?;
            let mut entries: Vec<_> = rd
                .collect::<std::io::Result<Vec<_>>>()
                .with_context(|| format!("reading directory {}", dir_path.display()))?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let path = e.path();
                let name = utf8_name(&e.file_name(), &dir_path)?;
                let md = fs::symlink_metadata(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let ft = md.file_type();
                if ft.is_dir() {
                    let meta = walk.dir_meta(&path, &md, opts)?;
                    let mut rel = walk.dirs[idx].rel.clone();
                    rel.push(name);
                    walk.dirs.push(DirEntry { rel, meta });
                    stack.push((path, walk.dirs.len() - 1));
                    continue;
                }
                let kind = if ft.is_file() {
                    walk.total_bytes += md.len();
                    let dev_ino = (md.nlink() > 1).then(|| (md.dev(), md.ino()));
                    Kind::Regular {
                        size: md.len(),
                        dev_ino,
                    }
                } else if ft.is_symlink() {
                    Kind::Symlink
                } else {
                    let what = if ft.is_fifo() {
                        "a fifo"
                    } else if ft.is_socket() {
                        "a socket"
                    } else if ft.is_block_device() {
                        "a block device"
                    } else if ft.is_char_device() {
                        "a character device"
                    } else {
                        "of an unknown type"
                    };
                    bail!(
                        "{} is {what}: ostree commits only regular files, symlinks and \
                         directories; remove it from the tree",
                        path.display()
                    );
                };
                let (uid, gid) = walk.apply_owner(opts, md.uid(), md.gid());
                let xattrs = if opts.no_xattrs {
                    Vec::new()
                } else {
                    read_xattrs(&path)?
                };
                walk.files.push(FileJob {
                    path,
                    dir: idx,
                    name,
                    meta: FileMeta {
                        uid,
                        gid,
                        mode: md.mode(),
                        xattrs,
                    },
                    kind,
                });
            }
        }
        Ok(walk)
    }
}

/// Hashes and (if new) writes one file; returns its content checksum.
fn write_job(
    repo: &Repo,
    job: &FileJob,
    links: &Mutex<HashMap<(u64, u64), Checksum>>,
) -> Result<Checksum> {
    let path = &job.path;
    match job.kind {
        Kind::Symlink => {
            let target = fs::read_link(path)
                .with_context(|| format!("reading symlink {}", path.display()))?;
            let Some(target) = target.to_str() else {
                bail!("{}: symlink target is not valid UTF-8", path.display());
            };
            repo.write_symlink(&job.meta, target)
                .with_context(|| format!("committing {}", path.display()))
        }
        Kind::Regular { size, dev_ino } => {
            if let Some(key) = dev_ino
                && let Some(c) = links.lock().expect("lock poisoned").get(&key)
            {
                return Ok(*c);
            }
            let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let csum = if size <= SMALL_FILE {
                let mut data = Vec::with_capacity(size as usize);
                f.read_to_end(&mut data)
                    .with_context(|| format!("reading {}", path.display()))?;
                if data.len() as u64 != size {
                    bail!("{} changed size while being committed", path.display());
                }
                repo.write_file_bytes(&job.meta, &data)
                    .with_context(|| format!("committing {}", path.display()))?
            } else {
                let mut h = super::objects::content_hasher(&job.meta, "")?;
                let n = std::io::copy(&mut f, &mut HashWriter(&mut h))
                    .with_context(|| format!("reading {}", path.display()))?;
                if n != size {
                    bail!("{} changed size while being committed", path.display());
                }
                use sha2::Digest;
                let csum = Checksum(h.finalize().into());
                if !repo.has_object(&csum, ObjectType::File) {
                    let mut f =
                        File::open(path).with_context(|| format!("opening {}", path.display()))?;
                    let got = repo
                        .write_file(&job.meta, size, &mut f)
                        .with_context(|| format!("reading {}", path.display()))?;
                    if got != csum {
                        bail!("{} changed while being committed", path.display());
                    }
                }
                csum
            };
            if let Some(key) = dev_ino {
                links.lock().expect("lock poisoned").insert(key, csum);
            }
            Ok(csum)
        }
    }
}

struct HashWriter<'a>(&'a mut sha2::Sha256);
impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Walks `dir` and writes its content into `repo`; returns the root of the tree as a
/// MutableTree (every object it names is written).
pub fn write_directory_to_mtree(
    repo: &Repo,
    dir: &Path,
    opts: &CommitOptions,
) -> Result<MutableTree> {
    let walk = Walk::scan(dir, opts)?;
    let progress = Reporter::new(!opts.progress).task("committing", walk.total_bytes, Unit::Bytes);
    let links = Mutex::new(HashMap::new());
    // Objects are not fsynced one by one (the repo syncs once per transaction), so threads
    // only wait for reads; a second thread per core keeps the CPUs busy while one reads a
    // file that is not in the page cache. Memory stays bounded by SMALL_FILE per thread.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cores * 2)
        .build()
        .context("starting the commit thread pool")?;
    let csums: Vec<Checksum> = pool.install(|| {
        walk.files
            .par_iter()
            .map(|job| {
                let c = write_job(repo, job, &links)?;
                if let Kind::Regular { size, .. } = job.kind {
                    progress.advance(size);
                }
                Ok(c)
            })
            .collect::<Result<_>>()
    })?;
    progress.finish();

    // Dirmetas: few distinct ones; dedupe before writing.
    let mut dirmeta_cache: HashMap<Vec<u8>, Checksum> = HashMap::new();
    let mut dir_csums = Vec::with_capacity(walk.dirs.len());
    for d in &walk.dirs {
        let bytes = super::objects::dirmeta_bytes(&d.meta)?;
        let c = match dirmeta_cache.get(&bytes) {
            Some(c) => *c,
            None => {
                let c = repo.write_metadata(ObjectType::DirMeta, &bytes)?;
                dirmeta_cache.insert(bytes, c);
                c
            }
        };
        dir_csums.push(c);
    }
    let mut root = MutableTree::new(dir_csums[0]);
    for (d, c) in walk.dirs.iter().zip(&dir_csums).skip(1) {
        let rel: Vec<&str> = d.rel.iter().map(String::as_str).collect();
        root.ensure_dir(&rel, c)?.metadata = *c;
    }
    for (job, c) in walk.files.iter().zip(csums) {
        let rel: Vec<&str> = walk.dirs[job.dir].rel.iter().map(String::as_str).collect();
        let Some(super::mtree::TreeEntry::Dir(_)) = root.lookup(&rel) else {
            bail!(
                "internal error: directory of {} missing",
                job.path.display()
            );
        };
        root.ensure_dir(&rel, &dir_csums[job.dir])?
            .replace_file(&job.name, c)?;
    }
    Ok(root)
}

/// The current time, or `SOURCE_DATE_EPOCH` when set (reproducible builds).
pub fn default_timestamp() -> u64 {
    if let Some(v) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return v;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The metadata `ostree commit` writes: the user's keys, then `ostree.ref-binding`, then
/// `ostree.collection-binding` when the repo has a collection id.
pub fn commit_metadata(repo: &Repo, opts: &CommitOptions) -> Metadata {
    let mut md = opts.metadata.clone();
    if !opts.no_bindings {
        if let Some(b) = &opts.branch {
            md.push((
                "ostree.ref-binding".into(),
                MetaValue::StrList(vec![b.clone()]),
            ));
        }
        if let Some(cid) = repo.collection_id()
            && !md.iter().any(|(k, _)| k == "ostree.collection-binding")
        {
            md.push((
                "ostree.collection-binding".into(),
                MetaValue::Str(cid.to_string()),
            ));
        }
    }
    md
}

/// What `atomic-factory commit` does: walk DIR with `ostree commit`'s ordering, ownership and
/// xattr rules, write every object, the commit, and then move the branch (if any).
pub fn commit_directory(repo: &Repo, dir: &Path, opts: &CommitOptions) -> Result<Checksum> {
    if let Some(b) = &opts.branch {
        validate_ref_name(b)?;
    }
    let _lock = repo.lock_shared()?;
    repo.cleanup_tmp()?;
    let parent = match opts.parent {
        Some(p) => p,
        None => match &opts.branch {
            Some(b) => repo.resolve_ref(b)?,
            None => None,
        },
    };
    let mtree = write_directory_to_mtree(repo, dir, opts)
        .with_context(|| format!("committing {}", dir.display()))?;
    let (root_dirtree, root_dirmeta) = repo.write_mtree(&mtree)?;
    let spec = CommitSpec {
        parent,
        subject: opts.subject.clone(),
        body: opts.body.clone(),
        timestamp: opts.timestamp.unwrap_or_else(default_timestamp),
        root_dirtree,
        root_dirmeta,
        metadata: commit_metadata(repo, opts),
    };
    let csum = repo.write_commit(&spec)?;
    if let Some(b) = &opts.branch {
        repo.set_ref(b, &csum)?;
    }
    Ok(csum)
}
