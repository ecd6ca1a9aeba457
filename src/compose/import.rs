//! Streams package payloads straight into the repository: every regular file of the model
//! goes from the RPM's decompressed cpio stream into `Repo::write_file`, with no extraction
//! to disk. Packages are imported in parallel (rayon); each package is read exactly once,
//! and its whole-file checksum is computed on the same read and checked against
//! primary.xml at the end.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail, ensure};
use rayon::prelude::*;

use super::model::{Header, Model, Node};
use super::payload::{ListedFile, Payload};
use super::sources::{DynHasher, hasher_for};
use crate::ostree::{Checksum, FileMeta, Repo};
use crate::progress::{Reporter, Task, Unit};

/// Reads a file through a hasher shared with the caller, so the package checksum comes
/// from the same read as the payload.
struct HashingFile {
    state: Rc<RefCell<HashState>>,
}

struct HashState {
    file: File,
    hasher: Box<dyn DynHasher>,
    bytes: u64,
}

impl Read for HashingFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut s = self.state.borrow_mut();
        let n = s.file.read(buf)?;
        s.hasher.update(&buf[..n]);
        s.bytes += n as u64;
        Ok(n)
    }
}

/// Content checksums of the imported files, keyed by tree path.
pub type Imported = HashMap<String, Checksum>;

/// Everything the import needs besides the model.
pub struct ImportCtx<'a> {
    /// The repository the file objects are written to.
    pub repo: &'a Repo,
    /// The resolved packages; `Node::File::pkg` indexes this slice.
    pub headers: &'a [Header],
    /// User name to uid, for the file objects' ownership.
    pub uids: &'a BTreeMap<String, u32>,
    /// Group name to gid, for the file objects' ownership.
    pub gids: &'a BTreeMap<String, u32>,
    /// Where the import reports its progress.
    pub progress: &'a Reporter,
}

/// Imports every package that owns regular files in the model.
pub fn import_all(ctx: &ImportCtx<'_>, model: &Model) -> Result<Imported> {
    // Per package: (rpm path -> tree path) of the files it must write.
    let mut wanted: Vec<HashMap<&str, &str>> = vec![HashMap::new(); ctx.headers.len()];
    for (tpath, e) in &model.entries {
        if let Node::File { pkg, src, .. } = &e.node {
            wanted[*pkg].insert(src.as_str(), tpath.as_str());
        }
    }
    // Biggest first, so the last package to finish is a small one (better balance).
    let mut order: Vec<usize> = (0..ctx.headers.len()).collect();
    let size = |i: usize| {
        std::fs::metadata(&ctx.headers[i].info.path)
            .map(|m| m.len())
            .unwrap_or(0)
    };
    order.sort_by_key(|i| std::cmp::Reverse(size(*i)));
    let progress = ImportProgress {
        packages: ctx.progress.task(
            "importing",
            ctx.headers.len() as u64,
            Unit::Items("packages"),
        ),
        bytes: AtomicU64::new(0),
    };
    let results: Vec<Result<Vec<(String, Checksum)>>> = order
        .par_iter()
        .map(|&i| {
            let r = import_one(ctx, model, i, &wanted[i], &progress);
            progress.packages.advance(1);
            r
        })
        .collect();
    progress.packages.finish();
    let mut out = Imported::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// Packages imported, and the file bytes written so far shown beside them.
struct ImportProgress {
    packages: Task,
    bytes: AtomicU64,
}

impl ImportProgress {
    fn add_bytes(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        self.packages.set_detail(format!("{} MiB", total >> 20));
    }
}

fn import_one(
    ctx: &ImportCtx<'_>,
    model: &Model,
    pi: usize,
    wanted: &HashMap<&str, &str>,
    progress: &ImportProgress,
) -> Result<Vec<(String, Checksum)>> {
    let h = &ctx.headers[pi];
    let info = &h.info;
    let nevra = info.nevra();
    let file = File::open(&info.path)
        .with_context(|| format!("opening package {}", info.path.display()))?;
    let kind = info
        .checksum
        .as_ref()
        .map(|c| c.0.as_str())
        .unwrap_or("sha256");
    let state = Rc::new(RefCell::new(HashState {
        file,
        hasher: hasher_for(kind).with_context(|| format!("package {}", info.path.display()))?,
        bytes: 0,
    }));
    let reader = BufReader::with_capacity(
        256 * 1024,
        HashingFile {
            state: state.clone(),
        },
    );

    let verify_whole = |state: &Rc<RefCell<HashState>>| -> Result<()> {
        let Some((kind, want)) = &info.checksum else {
            return Ok(());
        };
        let mut s = state.borrow_mut();
        // Hash the rest of the file (trailer bytes the payload reader never asked for).
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = s
                .file
                .read(&mut buf)
                .with_context(|| format!("reading {}", info.path.display()))?;
            if n == 0 {
                break;
            }
            s.hasher.update(&buf[..n]);
        }
        let got = s.hasher.hex();
        if &got != want {
            bail!(
                "package {nevra} ({}): {kind} is {got} but the repository metadata (primary.xml) says {want}; the file is corrupt or was replaced without rerunning createrepo_c",
                info.path.display()
            );
        }
        Ok(())
    };

    let streamed = (|| -> Result<Vec<(String, Checksum)>> {
        let mut reader = reader;
        // Past the headers (already parsed into `h.meta`) to the payload.
        rpm::PackageMetadata::parse(&mut reader).map_err(|e| anyhow!("{e}"))?;
        let mut payload = Payload::after_headers(reader, ListedFile::from_header(&h.meta)?)?;
        let mut out = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        // Hardlinked files: only one member carries the bytes; the others get its checksum.
        let mut by_digest: HashMap<String, Checksum> = HashMap::new();
        let mut pending: Vec<(String, String)> = Vec::new();
        while let Some(entry) = payload.next_entry()? {
            let src = entry.path;
            let Some(tpath) = wanted.get(src.as_str()) else {
                continue;
            };
            ensure!(seen.insert(src.clone()), "the payload holds {src} twice");
            let e = &model.entries[*tpath];
            let Node::File {
                size, digest, caps, ..
            } = &e.node
            else {
                continue;
            };
            if entry.size == 0 {
                pending.push((tpath.to_string(), digest.clone()));
                continue;
            }
            ensure!(
                entry.size == *size,
                "payload entry {src} holds {} bytes but the header says {size}",
                entry.size
            );
            let meta = FileMeta {
                uid: ctx.uids[&e.user],
                gid: ctx.gids[&e.group],
                mode: e.mode,
                xattrs: caps
                    .iter()
                    .map(|c| (b"security.capability".to_vec(), c.clone()))
                    .collect(),
            };
            let csum = ctx
                .repo
                .write_file(&meta, *size, &mut payload)
                .with_context(|| format!("importing {src}"))?;
            payload
                .finish_entry()
                .with_context(|| format!("reading payload entry {src}"))?;
            progress.add_bytes(*size);
            by_digest.insert(digest.clone(), csum);
            out.push((tpath.to_string(), csum));
        }
        for (tpath, digest) in pending {
            let e = &model.entries[&tpath];
            let csum = if matches!(e.node, Node::File { size: 0, .. }) {
                ctx.repo
                    .write_file(&file_meta(ctx, e)?, 0, &mut std::io::empty())?
            } else {
                // Same inode in the package: same bytes and metadata.
                *by_digest.get(&digest).ok_or_else(|| {
                    anyhow!("/{tpath}: the payload carries no content for it (broken hardlink set)")
                })?
            };
            out.push((tpath, csum));
        }
        // Every wanted file must have come out of the payload.
        if out.len() != wanted.len() {
            let got: std::collections::HashSet<&str> =
                out.iter().map(|(t, _)| t.as_str()).collect();
            let missing: Vec<&&str> = wanted
                .values()
                .filter(|t| !got.contains(**t))
                .take(3)
                .collect();
            bail!("payload lacks files listed in the header: {missing:?}");
        }
        Ok(out)
    })();

    match streamed {
        Ok(v) => {
            verify_whole(&state)?;
            Ok(v)
        }
        Err(e) => {
            // A truncated or corrupted file is best explained by its checksum, when we have one.
            if info.checksum.is_some() {
                verify_whole(&state)?;
            }
            Err(e.context(format!(
                "package {nevra} ({}): reading the payload",
                info.path.display()
            )))
        }
    }
}

fn file_meta(ctx: &ImportCtx<'_>, e: &super::model::Entry) -> Result<FileMeta> {
    Ok(FileMeta {
        uid: ctx.uids[&e.user],
        gid: ctx.gids[&e.group],
        mode: e.mode,
        xattrs: vec![],
    })
}

/// Largest file [`read_small_files`] keeps in memory.
const SMALL_FILE_MAX: u64 = 16 << 20;

/// Reads the named files (rpm paths) of one package into memory (small config files such
/// as /etc/passwd, needed before the import); a file over 16 MiB is an error.
pub fn read_small_files(h: &Header, paths: &[&str]) -> Result<HashMap<String, Vec<u8>>> {
    let name = || format!("package {} ({})", h.info.nevra(), h.info.path.display());
    let file = File::open(&h.info.path).with_context(|| format!("opening {}", name()))?;
    let mut reader = BufReader::new(file);
    rpm::PackageMetadata::parse(&mut reader).map_err(|e| anyhow!("{}: {e}", name()))?;
    let files = ListedFile::from_header(&h.meta).with_context(name)?;
    let mut payload = Payload::after_headers(reader, files).with_context(name)?;
    let mut out = HashMap::new();
    while let Some(entry) = payload.next_entry().with_context(name)? {
        if paths.contains(&entry.path.as_str()) {
            ensure!(
                entry.size <= SMALL_FILE_MAX,
                "{}: {} is {} bytes, more than the {} MiB read into memory",
                name(),
                entry.path,
                entry.size,
                SMALL_FILE_MAX >> 20
            );
            let mut v = Vec::new();
            payload
                .read_to_end(&mut v)
                .with_context(|| format!("{}: reading {}", name(), entry.path))?;
            out.insert(entry.path, v);
        }
    }
    Ok(out)
}
