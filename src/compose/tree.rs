//! `compose tree`: treefile -> sources -> resolve -> headers and model -> import ->
//! conventions -> commit. [`compose_tree`] reads as that pipeline; each phase is a function
//! below it, the tree conventions are in `conventions.rs` and the commit in `commit.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::commit::{self, CommitFacts};
use super::conventions;
use super::import::{self, ImportCtx, Imported};
use super::model::{self, Entry, Header, Model, Node};
use super::package::PkgInfo;
use super::resolve::{self, Request};
use super::sources::{self, RepoDef};
use super::treefile::{self, Treefile};
use crate::ostree::{Checksum, Commit, CommitSpec, MetaValue, Metadata, Repo};
use crate::progress::Reporter;

/// Options of a compose, mirroring `rpm-ostree compose tree`.
#[derive(Debug, Clone, Default)]
pub struct ComposeOptions {
    /// Commit even when the input hash equals the previous commit's.
    pub force_nocache: bool,
    /// Write the new commit checksum here (only when a commit is made).
    pub write_commitid_to: Option<PathBuf>,
    /// Create or update the mtime of this file when a commit is made.
    pub touch_if_changed: Option<PathBuf>,
    /// Extra `s` commit metadata (KEY, VALUE).
    pub add_metadata_string: Vec<(String, String)>,
    /// Commit timestamp; None reads SOURCE_DATE_EPOCH, else the current time.
    pub source_date_epoch: Option<u64>,
    /// Where progress and status lines go (stderr by default; `Reporter::quiet()` for none).
    pub progress: Reporter,
    /// add-files beyond the treefile's: (source file, absolute destination). The build
    /// pipeline ships the signing key this way without touching the user's treefile.
    pub add_files: Vec<(PathBuf, String)>,
}

/// What a compose did.
#[derive(Debug, Clone)]
pub struct ComposeOutcome {
    /// The ref's commit after the compose (the new one, or the unchanged previous one).
    pub commit: Checksum,
    /// False when nothing changed and no commit was made.
    pub changed: bool,
    /// The ref the commit was made for (treefile `ref`).
    pub ostree_ref: String,
    /// The input hash (`rpmostree.inputhash`) of this compose.
    pub inputhash: String,
    /// The commit's `version` metadata, if any.
    pub version: Option<String>,
    /// NEVRAs of the installed packages.
    pub packages: Vec<String>,
    /// Scriptlets that were not run.
    pub skipped_scriptlets: Vec<String>,
    /// Files left out of the tree and why.
    pub notes: Vec<String>,
}

/// Composes `treefile` into the archive repository at `repo`, like `rpm-ostree compose tree`.
pub fn compose_tree(
    repo_path: &Path,
    treefile_path: &Path,
    opts: &ComposeOptions,
) -> Result<ComposeOutcome> {
    let t0 = Instant::now();
    let progress = opts.progress.clone();
    let (tf, oref) = load_treefile(treefile_path, opts)?;
    let basearch = tf.basearch.clone().unwrap_or_else(host_basearch);
    let (defs, pool) = load_sources(&tf, &basearch, &progress)?;
    let resolved = resolve_packages(&tf, treefile_path, &basearch, &pool, &progress)?;
    // gpgcheck=1 repos: every package's signature, before anything is imported.
    super::gpgcheck::check_packages(&defs, &resolved, &basearch, tf.releasever.as_deref())?;
    let inputhash = input_hash(&tf, &resolved)?;

    let repo = Repo::open(repo_path)?;
    let previous = previous_commit(&repo, &oref)?;
    if !opts.force_nocache
        && let Some(outcome) = unchanged(previous.as_ref(), &oref, &inputhash, &resolved)
    {
        progress.say("No apparent changes since previous commit; use --force-nocache to override");
        return Ok(outcome);
    }
    let ts = timestamp(opts)?;

    let headers = read_headers(&resolved)?;
    let nevras: Vec<String> = headers.iter().map(|h| h.info.nevra()).collect();
    let mut model = model::build(&headers, tf.documentation.unwrap_or(true))?;
    // Users and groups from the tree's own passwd/group.
    let (uids, gids) = ids_from_tree(&headers, &model)?;
    check_ownership(&headers, &model, &uids, &gids)?;

    let _lock = repo.lock()?;
    let mut imported = import_payloads(&repo, &headers, &model, &uids, &gids, &progress)?;

    let version = automatic_version(&tf, previous.as_ref(), ts);
    let kver = conventions::apply(
        &tf,
        &repo,
        &nevras,
        &mut model,
        &mut imported,
        version.as_deref(),
    )?;

    let (root_dirtree, root_dirmeta) = commit::write_tree(&repo, &model, &imported, &uids, &gids)?;
    let metadata = commit::metadata(
        &tf,
        &opts.add_metadata_string,
        &CommitFacts {
            inputhash: &inputhash,
            headers: &headers,
            skipped_scriptlets: &model.scriptlets,
            version: version.as_deref(),
            kernel: kver.as_deref(),
        },
    )?;
    let commit = write_commit(
        &repo,
        &oref,
        &CommitSpec {
            parent: previous.map(|(prev, _)| prev),
            subject: String::new(),
            body: String::new(),
            timestamp: ts,
            root_dirtree,
            root_dirmeta,
            metadata,
        },
        opts,
    )?;
    progress.say(&format!(
        "Wrote commit {commit} to {oref} ({} packages, {} scriptlets not run) in {:.1}s",
        headers.len(),
        model.scriptlets.len(),
        t0.elapsed().as_secs_f64()
    ));
    Ok(ComposeOutcome {
        commit,
        changed: true,
        ostree_ref: oref,
        inputhash,
        version,
        packages: nevras,
        skipped_scriptlets: model.scriptlets,
        notes: model.notes,
    })
}

/// The treefile with the caller's extra add-files, and the ref it commits to.
fn load_treefile(treefile_path: &Path, opts: &ComposeOptions) -> Result<(Treefile, String)> {
    let mut tf = treefile::load(treefile_path)?;
    // An absolute source stays absolute under `tf.dir.join`; the input hash covers these.
    tf.add_files.extend(
        opts.add_files
            .iter()
            .map(|(src, dest)| (src.display().to_string(), dest.clone())),
    );
    let Some(oref) = tf.ostree_ref.clone() else {
        bail!(
            "treefile {}: `ref` is missing (the branch to commit to)",
            treefile_path.display()
        );
    };
    Ok((tf, oref))
}

/// The basearch we compose for (rpm's name for the host architecture).
fn host_basearch() -> String {
    match std::env::consts::ARCH {
        "x86" => "i686".into(),
        a => a.to_string(),
    }
}

/// The treefile's repositories and every package they offer for `basearch` (and noarch),
/// without the treefile's `exclude-packages`. Repositories load in parallel.
fn load_sources(
    tf: &Treefile,
    basearch: &str,
    progress: &Reporter,
) -> Result<(Vec<RepoDef>, Vec<PkgInfo>)> {
    let arches = [basearch, "noarch"];
    let defs = repo_defs(tf, basearch)?;
    let loaded: Vec<Result<Vec<PkgInfo>>> = defs
        .par_iter()
        .map(|d| sources::load_repo(d, &arches))
        .collect();
    let mut pool = Vec::new();
    for l in loaded {
        pool.extend(l?);
    }
    pool.retain(|p| !excluded(&p.name, &tf.exclude_packages));
    progress.say(&format!(
        "{} packages available in {} repos",
        pool.len(),
        defs.len()
    ));
    Ok((defs, pool))
}

/// Finds the repos the treefile names: `NAME.repo` beside the treefile, or a `[NAME]`
/// section in any `.repo` file there (rpm-ostree's meaning).
fn repo_defs(tf: &Treefile, basearch: &str) -> Result<Vec<RepoDef>> {
    let mut out: Vec<RepoDef> = Vec::new();
    let mut all_sections: Option<Vec<RepoDef>> = None;
    for name in &tf.repos {
        let file = tf.dir.join(format!("{name}.repo"));
        if file.exists() {
            out.extend(sources::parse_repo_file(
                &file,
                basearch,
                tf.releasever.as_deref(),
            )?);
            continue;
        }
        if all_sections.is_none() {
            let mut v = Vec::new();
            let rd = std::fs::read_dir(&tf.dir)
                .with_context(|| format!("reading {}", tf.dir.display()))?;
            let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "repo"))
            {
                v.extend(sources::parse_repo_file(
                    f,
                    basearch,
                    tf.releasever.as_deref(),
                )?);
            }
            all_sections = Some(v);
        }
        match all_sections
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| &r.id == name)
        {
            Some(r) => out.push(r.clone()),
            None => bail!(
                "treefile {}: repos: no {name}.repo file and no [{name}] section in any .repo file in {}",
                tf.files[0].display(),
                tf.dir.display()
            ),
        }
    }
    if out.is_empty() {
        bail!(
            "treefile {}: no enabled repositories; list .repo files in `repos`",
            tf.files[0].display()
        );
    }
    Ok(out)
}

/// Whether `exclude-packages` (names, or prefixes ending in `*`) leaves out `name`.
fn excluded(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

/// The packages to install: the treefile's `packages` (and `packages-ARCH`) and
/// `repo-packages` with their dependencies, chosen from `pool`.
fn resolve_packages(
    tf: &Treefile,
    treefile_path: &Path,
    basearch: &str,
    pool: &[PkgInfo],
    progress: &Reporter,
) -> Result<Vec<PkgInfo>> {
    let packages = tf.packages_for(basearch);
    let repo_packages: Vec<(String, String)> = tf
        .repo_packages
        .iter()
        .flat_map(|rp| {
            rp.packages
                .iter()
                .flat_map(|p| p.split_whitespace())
                .map(|p| (rp.repo.clone(), p.to_string()))
        })
        .collect();
    if packages.is_empty() && repo_packages.is_empty() {
        bail!(
            "treefile {}: `packages` is empty; nothing to compose",
            treefile_path.display()
        );
    }
    let resolved = resolve::resolve(
        pool,
        &Request {
            packages: &packages,
            repo_packages: &repo_packages,
        },
    )?;
    progress.say(&format!("resolved {} packages", resolved.len()));
    Ok(resolved)
}

/// The input hash: the merged treefile, add-files contents and the resolved packages'
/// identities. Nothing machine- or time-dependent goes in.
fn input_hash(tf: &Treefile, pkgs: &[PkgInfo]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"atomic-factory compose v1\0");
    h.update(tf.canonical.as_bytes());
    h.update(b"\0");
    for (src, dest) in &tf.add_files {
        let (data, mode) = conventions::read_add_file(&tf.dir, src)?;
        h.update(format!("{dest}\0{mode:o}\0{}\0", data.len()).as_bytes());
        h.update(&data);
    }
    for p in pkgs {
        h.update(format!("{}\0{}\0", p.nevra(), p.pkgid).as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// The ref's current commit, if it has one.
fn previous_commit(repo: &Repo, oref: &str) -> Result<Option<(Checksum, Commit)>> {
    let Some(c) = repo.resolve_ref(oref)? else {
        return Ok(None);
    };
    let commit = repo
        .read_commit(&c)
        .with_context(|| format!("reading commit {c} of ref {oref}"))?;
    Ok(Some((c, commit)))
}

/// The outcome of a compose that makes no commit: the ref's commit already has this input
/// hash. None when it has not (or there is no commit yet).
fn unchanged(
    previous: Option<&(Checksum, Commit)>,
    oref: &str,
    inputhash: &str,
    resolved: &[PkgInfo],
) -> Option<ComposeOutcome> {
    let (prev, pc) = previous?;
    if meta_str(&pc.metadata, "rpmostree.inputhash").as_deref() != Some(inputhash) {
        return None;
    }
    Some(ComposeOutcome {
        commit: *prev,
        changed: false,
        ostree_ref: oref.to_string(),
        inputhash: inputhash.to_string(),
        version: meta_str(&pc.metadata, "version"),
        packages: resolved.iter().map(PkgInfo::nevra).collect(),
        skipped_scriptlets: Vec::new(),
        notes: Vec::new(),
    })
}

/// The new commit's version from the treefile's `automatic-version-prefix`, following the
/// previous commit's version; None without a prefix.
fn automatic_version(
    tf: &Treefile,
    previous: Option<&(Checksum, Commit)>,
    ts: u64,
) -> Option<String> {
    let previous_version = previous.and_then(|(_, pc)| meta_str(&pc.metadata, "version"));
    tf.automatic_version_prefix
        .as_deref()
        .map(|p| commit::next_version(p, previous_version.as_deref(), ts))
}

/// A string value of commit metadata.
fn meta_str(m: &Metadata, k: &str) -> Option<String> {
    m.iter()
        .find(|(key, _)| key == k)
        .and_then(|(_, v)| match v {
            MetaValue::Str(s) => Some(s.clone()),
            _ => None,
        })
}

/// The commit timestamp: the option, else SOURCE_DATE_EPOCH, else the current time.
fn timestamp(opts: &ComposeOptions) -> Result<u64> {
    if let Some(t) = opts.source_date_epoch {
        return Ok(t);
    }
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v
            .trim()
            .parse()
            .map_err(|_| anyhow!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970"));
    }
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs())
}

/// The resolved packages' headers, read in parallel; each file's header sizes are checked
/// (`rpm_bounds`) before the rpm crate reads it.
fn read_headers(resolved: &[PkgInfo]) -> Result<Vec<Header>> {
    resolved
        .par_iter()
        .map(|info| {
            super::rpm_bounds::check_header_sizes(&info.path)
                .map_err(|e| anyhow!("package {}: {e:#}{}", info.nevra(), checksum_hint(info)))?;
            let f = std::fs::File::open(&info.path).with_context(|| {
                format!(
                    "package {}: opening {} (listed in the repo metadata)",
                    info.nevra(),
                    info.path.display()
                )
            })?;
            let meta =
                rpm::PackageMetadata::parse(&mut std::io::BufReader::new(f)).map_err(|e| {
                    anyhow!(
                        "package {} ({}): not a readable RPM: {e}{}",
                        info.nevra(),
                        info.path.display(),
                        checksum_hint(info)
                    )
                })?;
            Ok(Header {
                info: info.clone(),
                meta,
            })
        })
        .collect()
}

/// When a package file's checksum differs from primary.xml's, a note saying so: a corrupt
/// or truncated download explains an unreadable RPM better than the parser does.
fn checksum_hint(info: &PkgInfo) -> String {
    match &info.checksum {
        Some((kind, want)) => match sources::file_digest(&info.path, kind) {
            Ok(got) if &got != want => format!(
                " (its {kind} {got} differs from primary.xml's {want}: the file is corrupt or truncated)"
            ),
            _ => String::new(),
        },
        None => String::new(),
    }
}

/// The tree's users and groups (name -> id), from the /etc/passwd and /etc/group its
/// packages ship (root is always 0), for the ownership of every object.
fn ids_from_tree(
    headers: &[Header],
    model: &Model,
) -> Result<(BTreeMap<String, u32>, BTreeMap<String, u32>)> {
    let mut uids = BTreeMap::from([("root".to_string(), 0)]);
    let mut gids = BTreeMap::from([("root".to_string(), 0)]);
    for (tpath, rpm_path, map) in [
        ("usr/etc/passwd", "/etc/passwd", &mut uids),
        ("usr/etc/group", "/etc/group", &mut gids),
    ] {
        let Some(Entry {
            node: Node::File { pkg, .. },
            ..
        }) = model.entries.get(tpath)
        else {
            continue;
        };
        let files = import::read_small_files(&headers[*pkg], &[rpm_path])?;
        if let Some(data) = files.get(rpm_path) {
            map.extend(model::parse_ids(&String::from_utf8_lossy(data)));
        }
    }
    Ok((uids, gids))
}

/// Every owner the packages name for their files must be defined by the tree's own
/// /etc/passwd and /etc/group.
fn check_ownership(
    headers: &[Header],
    model: &Model,
    uids: &BTreeMap<String, u32>,
    gids: &BTreeMap<String, u32>,
) -> Result<()> {
    for (tpath, e) in &model.entries {
        let Some(o) = e.owner else { continue };
        for (name, map, kind, file) in [
            (&e.user, uids, "user", "/etc/passwd"),
            (&e.group, gids, "group", "/etc/group"),
        ] {
            if !map.contains_key(name) {
                bail!(
                    "package {} ({}): /{tpath} is owned by {kind} {name:?}, which the tree's {file} does not define; add it to the package that ships {file} (e.g. setup)",
                    headers[o].info.nevra(),
                    headers[o].info.path.display()
                );
            }
        }
    }
    Ok(())
}

/// Streams every package's payload into the repository, with a progress bar.
fn import_payloads(
    repo: &Repo,
    headers: &[Header],
    model: &Model,
    uids: &BTreeMap<String, u32>,
    gids: &BTreeMap<String, u32>,
    progress: &Reporter,
) -> Result<Imported> {
    import::import_all(
        &ImportCtx {
            repo,
            headers,
            uids,
            gids,
            progress,
        },
        model,
    )
}

/// Writes the commit and points the ref at it, then the caller's outputs: the checksum
/// file (`--write-commitid-to`) and the changed-marker (`--touch-if-changed`).
fn write_commit(
    repo: &Repo,
    oref: &str,
    spec: &CommitSpec,
    opts: &ComposeOptions,
) -> Result<Checksum> {
    let commit = repo.write_commit(spec)?;
    repo.set_ref(oref, &commit)?;
    if let Some(p) = &opts.write_commitid_to {
        crate::fsutil::write_atomic(p, commit.to_string().as_bytes())?;
    }
    if let Some(p) = &opts.touch_if_changed {
        touch(p)?;
    }
    Ok(commit)
}

/// Creates `path` or updates its mtime.
fn touch(path: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("touching {}", path.display()))?;
    f.set_modified(std::time::SystemTime::now())
        .with_context(|| format!("touching {}", path.display()))?;
    Ok(())
}
