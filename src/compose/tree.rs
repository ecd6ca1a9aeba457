//! `compose tree`: treefile -> sources -> resolve -> model -> import -> postprocess -> commit.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::import::{self, ImportCtx};
use super::model::{self, Entry, Header, Model, Node};
use super::package::PkgInfo;
use super::resolve::{self, Request};
use super::sources::{self, RepoDef};
use super::treefile::{self, Treefile};
use crate::ostree::{
    Checksum, CommitSpec, DirMeta, FileMeta, MetaValue, Metadata, MutableTree, Repo,
};
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
    /// No progress or status output.
    pub quiet: bool,
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
    pub ostree_ref: String,
    pub inputhash: String,
    pub version: Option<String>,
    /// NEVRAs of the installed packages.
    pub packages: Vec<String>,
    /// Scriptlets that were not run.
    pub skipped_scriptlets: Vec<String>,
    /// Files left out of the tree and why.
    pub notes: Vec<String>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// The basearch we compose for (rpm's name for the host architecture).
fn host_basearch() -> String {
    match std::env::consts::ARCH {
        "x86" => "i686".into(),
        a => a.to_string(),
    }
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

fn excluded(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

/// The input hash: the merged treefile, add-files contents and the resolved packages'
/// identities. Nothing machine- or time-dependent goes in.
fn input_hash(tf: &Treefile, pkgs: &[PkgInfo]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"atomic-factory compose v1\0");
    h.update(tf.canonical.as_bytes());
    h.update(b"\0");
    for (src, dest) in &tf.add_files {
        let p = tf.dir.join(src);
        let data =
            std::fs::read(&p).with_context(|| format!("add-files: reading {}", p.display()))?;
        let mode = file_mode(&p)?;
        h.update(format!("{dest}\0{mode:o}\0{}\0", data.len()).as_bytes());
        h.update(&data);
    }
    for p in pkgs {
        h.update(format!("{}\0{}\0", p.nevra(), p.pkgid).as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

fn file_mode(p: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(p)
        .with_context(|| format!("reading {}", p.display()))?
        .permissions()
        .mode()
        & 0o7777)
}

/// rpm-ostree's `automatic-version-prefix`: PREFIX, then PREFIX.1, PREFIX.2, ... following
/// the previous commit's version. `<date:%Y%m%d>` is expanded from the commit timestamp.
fn next_version(prefix: &str, previous: Option<&str>, timestamp: u64) -> String {
    let prefix = expand_date(prefix, timestamp);
    match previous {
        Some(prev) if prev == prefix => format!("{prefix}.1"),
        Some(prev) => match prev
            .strip_prefix(&format!("{prefix}."))
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) => format!("{prefix}.{}", n + 1),
            None => prefix,
        },
        None => prefix,
    }
}

fn expand_date(s: &str, ts: u64) -> String {
    let Some(start) = s.find("<date:") else {
        return s.to_string();
    };
    let Some(end) = s[start..].find('>') else {
        return s.to_string();
    };
    let fmt = &s[start + 6..start + end];
    let (y, m, d) = civil_from_days((ts / 86400) as i64);
    let out = fmt
        .replace("%Y", &format!("{y:04}"))
        .replace("%m", &format!("{m:02}"))
        .replace("%d", &format!("{d:02}"));
    format!("{}{}{}", &s[..start], out, &s[start + end + 1..])
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm; too small for a crate).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

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

/// Composes `treefile` into the archive repository at `repo`, like `rpm-ostree compose tree`.
pub fn compose_tree(
    repo_path: &Path,
    treefile_path: &Path,
    opts: &ComposeOptions,
) -> Result<ComposeOutcome> {
    let t0 = Instant::now();
    let progress = Reporter::new(opts.quiet);
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
    let basearch = tf.basearch.clone().unwrap_or_else(host_basearch);
    let arches = [basearch.as_str(), "noarch"];

    // Sources.
    let defs = repo_defs(&tf, &basearch)?;
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

    // Resolve.
    let packages = tf.packages_for(&basearch);
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
        &pool,
        &Request {
            packages: &packages,
            repo_packages: &repo_packages,
        },
    )?;
    progress.say(&format!("resolved {} packages", resolved.len()));
    // gpgcheck=1 repos: every package's signature, before anything is imported.
    super::gpgcheck::check_packages(&defs, &resolved, &basearch, tf.releasever.as_deref())?;
    let inputhash = input_hash(&tf, &resolved)?;

    // No-change check.
    let repo = Repo::open(repo_path)?;
    let previous = repo.resolve_ref(&oref)?;
    let prev_commit = match &previous {
        Some(c) => Some(
            repo.read_commit(c)
                .with_context(|| format!("reading commit {c} of ref {oref}"))?,
        ),
        None => None,
    };
    let meta_str = |m: &Metadata, k: &str| {
        m.iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| match v {
                MetaValue::Str(s) => Some(s.clone()),
                _ => None,
            })
    };
    if let (Some(prev), Some(pc)) = (&previous, &prev_commit)
        && !opts.force_nocache
        && meta_str(&pc.metadata, "rpmostree.inputhash").as_deref() == Some(inputhash.as_str())
    {
        progress.say("No apparent changes since previous commit; use --force-nocache to override");
        return Ok(ComposeOutcome {
            commit: *prev,
            changed: false,
            ostree_ref: oref,
            inputhash,
            version: meta_str(&pc.metadata, "version"),
            packages: resolved.iter().map(PkgInfo::nevra).collect(),
            skipped_scriptlets: Vec::new(),
            notes: Vec::new(),
        });
    }
    let ts = timestamp(opts)?;

    // Headers and the model.
    let headers: Vec<Header> = resolved
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
        .collect::<Result<_>>()?;
    let mut model = model::build(&headers, tf.documentation.unwrap_or(true))?;

    // Users and groups from the tree's own passwd/group.
    let (uids, gids) = ids_from_tree(&headers, &model)?;
    check_ownership(&headers, &model, &uids, &gids)?;

    // Import payloads.
    let _lock = repo.lock()?;
    let mut imported = import::import_all(
        &ImportCtx {
            repo: &repo,
            headers: &headers,
            uids: &uids,
            gids: &gids,
            progress: &progress,
        },
        &model,
    )?;

    // rpm-ostree conventions.
    let version = tf.automatic_version_prefix.as_deref().map(|p| {
        next_version(
            p,
            prev_commit
                .as_ref()
                .and_then(|c| meta_str(&c.metadata, "version"))
                .as_deref(),
            ts,
        )
    });
    let kver = postprocess(
        &tf,
        &repo,
        &headers,
        &mut model,
        &mut imported,
        version.as_deref(),
    )?;

    // Build and write the tree.
    let (root_tree, root_meta) = write_tree(&repo, &model, &imported, &uids, &gids)?;

    // Commit metadata, keys sorted for determinism.
    let mut md: BTreeMap<String, MetaValue> = BTreeMap::new();
    for (k, v) in &tf.add_commit_metadata {
        md.insert(k.clone(), json_to_meta(k, v)?);
    }
    for (k, v) in &opts.add_metadata_string {
        md.insert(k.clone(), MetaValue::Str(v.clone()));
    }
    md.insert(
        "rpmostree.inputhash".into(),
        MetaValue::Str(inputhash.clone()),
    );
    md.insert(
        "rpmostree.rpmdb.pkglist".into(),
        MetaValue::PkgList(
            headers
                .iter()
                .map(|h| {
                    let e = &h.info.evr;
                    let epoch = if e.epoch.is_empty() {
                        "0".to_string()
                    } else {
                        e.epoch.clone()
                    };
                    (
                        h.info.name.clone(),
                        epoch,
                        e.version.clone(),
                        e.release.clone(),
                        h.info.arch.clone(),
                    )
                })
                .collect(),
        ),
    );
    md.insert(
        "atomic-factory.skipped-scriptlets".into(),
        MetaValue::StrList(model.scriptlets.clone()),
    );
    if let Some(v) = &version {
        md.insert("version".into(), MetaValue::Str(v.clone()));
    }
    if let Some(k) = &kver {
        md.insert("ostree.bootable".into(), MetaValue::Bool(true));
        md.insert("ostree.linux".into(), MetaValue::Str(k.clone()));
    }
    let spec = CommitSpec {
        parent: previous,
        subject: String::new(),
        body: String::new(),
        timestamp: ts,
        root_dirtree: root_tree,
        root_dirmeta: root_meta,
        metadata: md.into_iter().collect(),
    };
    let commit = repo.write_commit(&spec)?;
    repo.set_ref(&oref, &commit)?;
    if let Some(p) = &opts.write_commitid_to {
        crate::fsutil::write_atomic(p, commit.to_string().as_bytes())?;
    }
    if let Some(p) = &opts.touch_if_changed {
        touch(p)?;
    }
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
        packages: headers.iter().map(|h| h.info.nevra()).collect(),
        skipped_scriptlets: model.scriptlets,
        notes: model.notes,
    })
}

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

fn json_to_meta(k: &str, v: &serde_json::Value) -> Result<MetaValue> {
    use serde_json::Value as V;
    Ok(match v {
        V::String(s) => MetaValue::Str(s.clone()),
        V::Bool(b) => MetaValue::Bool(*b),
        // rpm-ostree byte-swaps its compose metadata to big-endian.
        V::Number(n) if n.as_u64().is_some() => MetaValue::U64Be(n.as_u64().unwrap()),
        V::Array(a) if a.iter().all(|x| x.is_string()) => MetaValue::StrList(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
        ),
        _ => bail!(
            "add-commit-metadata: value of {k:?} must be a string, bool, unsigned number or list of strings"
        ),
    })
}

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

fn generated(data: Vec<u8>, mode: u32) -> Entry {
    Entry {
        node: Node::Generated { data },
        mode: S_IFREG | mode,
        user: "root".into(),
        group: "root".into(),
        owner: None,
    }
}

fn symlink(target: &str) -> Entry {
    Entry {
        node: Node::Symlink {
            target: target.into(),
        },
        mode: S_IFLNK | 0o777,
        user: "root".into(),
        group: "root".into(),
        owner: None,
    }
}

fn dir(mode: u32) -> Entry {
    Entry {
        node: Node::Dir,
        mode: S_IFDIR | mode,
        user: "root".into(),
        group: "root".into(),
        owner: None,
    }
}

/// rpm-ostree's tree conventions (see ostree-formats.md §7). Returns the kernel version
/// when exactly one kernel is in the tree.
fn postprocess(
    tf: &Treefile,
    repo: &Repo,
    headers: &[Header],
    model: &mut Model,
    imported: &mut HashMap<String, Checksum>,
    version: Option<&str>,
) -> Result<Option<String>> {
    let e = &mut model.entries;
    // Kernel: usr/lib/modules/$kver/vmlinuz; a kernel shipped only in /boot is copied there.
    let boot_kernels: Vec<(String, String)> = e
        .keys()
        .filter_map(|k| {
            k.strip_prefix("usr/lib/ostree-boot/vmlinuz-")
                .map(|v| (k.clone(), v.to_string()))
        })
        .collect();
    for (path, kver) in boot_kernels {
        let dest = format!("usr/lib/modules/{kver}/vmlinuz");
        if !e.contains_key(&dest) {
            let initrd = format!("usr/lib/ostree-boot/initramfs-{kver}.img");
            let idest = format!("usr/lib/modules/{kver}/initramfs.img");
            for (from, to) in [(path.clone(), dest), (initrd, idest)] {
                if let (Some(ent), Some(c)) = (e.get(&from).cloned(), imported.get(&from).copied())
                {
                    e.insert(to.clone(), ent);
                    imported.insert(to, c);
                }
            }
        }
    }
    let kvers: Vec<String> = e
        .keys()
        .filter_map(|k| {
            k.strip_prefix("usr/lib/modules/")?
                .strip_suffix("/vmlinuz")
                .map(str::to_string)
        })
        .filter(|v| !v.contains('/'))
        .collect();
    let kver = match kvers.len() {
        0 => None,
        1 => Some(kvers[0].clone()),
        _ => bail!(
            "the tree has several kernels ({}); ostree needs exactly one usr/lib/modules/*/vmlinuz",
            kvers.join(", ")
        ),
    };

    // /opt content lives in usr/lib/opt, reached through /var/opt symlinks.
    let opt_tops: Vec<String> = e
        .keys()
        .filter_map(|k| k.strip_prefix("usr/lib/opt/"))
        .filter(|k| !k.contains('/'))
        .map(str::to_string)
        .collect();
    for t in opt_tops {
        model.tmpfiles.insert(
            format!("var/opt/{t}"),
            format!("L /var/opt/{t} - - - - /usr/lib/opt/{t}"),
        );
    }

    // The rpmdb: we write a package list, not a real rpmdb (see the module docs).
    let mut list = String::new();
    for h in headers {
        list.push_str(&h.info.nevra());
        list.push('\n');
    }
    e.insert("usr/share/rpm".into(), dir(0o755));
    e.insert(
        "usr/share/rpm/atomic-factory-pkglist.txt".into(),
        generated(list.into_bytes(), 0o644),
    );
    e.entry("usr/lib/sysimage".into())
        .or_insert_with(|| dir(0o755));
    e.insert("usr/lib/sysimage/rpm".into(), symlink("../../share/rpm"));
    model.tmpfiles.insert(
        "var/lib/rpm".into(),
        "L /var/lib/rpm - - - - ../../usr/share/rpm".into(),
    );
    for (d, m) in [
        ("var/home", 0o755),
        ("var/roothome", 0o700),
        ("var/opt", 0o755),
        ("var/srv", 0o755),
        ("var/mnt", 0o755),
        ("var/usrlocal", 0o755),
    ] {
        model
            .tmpfiles
            .entry(d.into())
            .or_insert_with(|| format!("d /{d} {m:04o} root root - -"));
    }
    let mut lines: Vec<&String> = model.tmpfiles.values().collect();
    lines.sort_by_key(|l| l.split_whitespace().nth(1).map(str::to_string));
    let mut conf =
        String::from("# Generated by atomic-factory compose from the packages' /var content\n");
    for l in lines {
        conf.push_str(l);
        conf.push('\n');
    }
    e.entry("usr/lib/tmpfiles.d".into())
        .or_insert_with(|| dir(0o755));
    e.insert(
        "usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf".into(),
        generated(conf.into_bytes(), 0o644),
    );

    // Units and the default target.
    let sysd = "usr/etc/systemd/system";
    for u in &tf.units {
        if !e.contains_key(&format!("usr/lib/systemd/system/{u}")) {
            bail!(
                "treefile units: {u} is not in the tree (no usr/lib/systemd/system/{u}); check the name or add its package"
            );
        }
        e.insert(
            format!("{sysd}/multi-user.target.wants/{u}"),
            symlink(&format!("/usr/lib/systemd/system/{u}")),
        );
    }
    if let Some(t) = &tf.default_target {
        e.insert(
            format!("{sysd}/default.target"),
            symlink(&format!("/usr/lib/systemd/system/{t}")),
        );
    }

    // add-files: [source beside the treefile, absolute destination].
    for (src, dest) in &tf.add_files {
        let p = tf.dir.join(src);
        let data =
            std::fs::read(&p).with_context(|| format!("add-files: reading {}", p.display()))?;
        let mode = file_mode(&p)?;
        let tdest = match dest.strip_prefix("/etc/") {
            Some(rest) => format!("usr/etc/{rest}"),
            None => dest.trim_start_matches('/').to_string(),
        };
        if tdest.is_empty()
            || tdest
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            || !tdest.starts_with("usr/")
        {
            bail!(
                "add-files: destination {dest:?} must be an absolute path under /usr or /etc without `..`"
            );
        }
        e.insert(tdest, generated(data, mode));
    }

    // mutate-os-release: VERSION and PRETTY_NAME carry the commit version.
    if let (Some(base), Some(v)) = (&tf.mutate_os_release, version) {
        let path = ["usr/lib/os-release", "usr/etc/os-release"]
            .into_iter()
            .find(|p| matches!(e.get(*p).map(|x| &x.node), Some(Node::File { .. })))
            .ok_or_else(|| anyhow!("mutate-os-release: the tree has no usr/lib/os-release"))?;
        let csum = imported[path];
        let (_, _, mut r) = repo.read_file(&csum)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut r, &mut text).context("reading os-release")?;
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with("VERSION=") || line.starts_with("PRETTY_NAME=") {
                out.push_str(&line.replace(base.as_str(), v));
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out.push_str(&format!("OSTREE_VERSION='{v}'\n"));
        let mode = e[path].mode & 0o7777;
        e.insert(path.to_string(), generated(out.into_bytes(), mode));
    }

    // remove-files: paths relative to the root (rpm-ostree form, e.g. usr/share/info).
    for r in &tf.remove_files {
        let key = r.trim_start_matches('/').trim_end_matches('/');
        let key = key
            .strip_prefix("etc/")
            .map(|x| format!("usr/etc/{x}"))
            .unwrap_or_else(|| key.to_string());
        let prefix = format!("{key}/");
        let before = e.len();
        e.retain(|k, _| k != &key && !k.starts_with(&prefix));
        if e.len() == before {
            model
                .notes
                .push(format!("remove-files: {r} was not in the tree"));
        }
    }

    // Toplevel layout.
    for d in [
        "dev", "proc", "run", "sys", "var", "sysroot", "boot", "usr", "usr/etc",
    ] {
        e.entry(d.into()).or_insert_with(|| dir(0o755));
    }
    let mut links = vec![
        ("home", "var/home"),
        ("root", "var/roothome"),
        ("ostree", "sysroot/ostree"),
        ("srv", "var/srv"),
        ("mnt", "var/mnt"),
        ("media", "run/media"),
        ("opt", "var/opt"),
        ("usr/local", "../var/usrlocal"),
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
    ];
    if e.keys()
        .any(|k| k.starts_with("usr/lib64/") || k == "usr/lib64")
    {
        links.push(("lib64", "usr/lib64"));
    }
    if tf.tmp_is_dir == Some(true) {
        e.insert("tmp".into(), dir(0o1777));
    } else {
        links.push(("tmp", "sysroot/tmp"));
    }
    for (l, t) in links {
        match e.get(l).map(|x| (&x.node, x.owner)) {
            // A package's own compat symlink (bin -> usr/bin) stays as shipped.
            Some((Node::Symlink { .. }, Some(_)))
                if ["bin", "sbin", "lib", "lib64", "lib32"].contains(&l) => {}
            // UsrMove: a compat dir's content already went to /usr; the dir becomes a link.
            Some((Node::Dir, Some(_))) if ["bin", "sbin", "lib", "lib64", "lib32"].contains(&l) => {
                e.insert(l.into(), symlink(t));
            }
            Some((_, Some(o))) => bail!(
                "/{l} is shipped by {} but rpm-ostree's layout makes it a symlink to {t}",
                headers[o].info.nevra()
            ),
            _ => {
                e.insert(l.into(), symlink(t));
            }
        }
    }
    Ok(kver)
}

fn write_tree(
    repo: &Repo,
    model: &Model,
    imported: &HashMap<String, Checksum>,
    uids: &BTreeMap<String, u32>,
    gids: &BTreeMap<String, u32>,
) -> Result<(Checksum, Checksum)> {
    let mut dirmetas: HashMap<(u32, u32, u32), Checksum> = HashMap::new();
    let mut dirmeta = |uid: u32, gid: u32, mode: u32| -> Result<Checksum> {
        if let Some(c) = dirmetas.get(&(uid, gid, mode)) {
            return Ok(*c);
        }
        let c = repo.write_dirmeta(&DirMeta {
            uid,
            gid,
            mode,
            xattrs: vec![],
        })?;
        dirmetas.insert((uid, gid, mode), c);
        Ok(c)
    };
    let default = dirmeta(0, 0, S_IFDIR | 0o755)?;
    let mut root = MutableTree::new(default);
    for (path, ent) in &model.entries {
        let comps: Vec<&str> = path.split('/').collect();
        let (name, parents) = comps.split_last().expect("paths are not empty");
        let uid = uids.get(&ent.user).copied().unwrap_or(0);
        let gid = gids.get(&ent.group).copied().unwrap_or(0);
        let ctx = || format!("adding /{path} to the tree");
        match &ent.node {
            Node::Dir => {
                let m = dirmeta(uid, gid, ent.mode)?;
                root.ensure_dir(&comps, &default)
                    .with_context(ctx)?
                    .metadata = m;
            }
            node => {
                let csum = match node {
                    Node::File { .. } => *imported
                        .get(path)
                        .ok_or_else(|| anyhow!("internal error: /{path} was not imported"))?,
                    Node::Symlink { target } => repo
                        .write_symlink(
                            &FileMeta {
                                uid,
                                gid,
                                mode: S_IFLNK | 0o777,
                                xattrs: vec![],
                            },
                            target,
                        )
                        .with_context(ctx)?,
                    Node::Generated { data } => repo
                        .write_file(
                            &FileMeta {
                                uid,
                                gid,
                                mode: ent.mode,
                                xattrs: vec![],
                            },
                            data.len() as u64,
                            &mut &data[..],
                        )
                        .with_context(ctx)?,
                    Node::Dir => unreachable!(),
                };
                let parent = root.ensure_dir(parents, &default).with_context(ctx)?;
                if parent.dirs.contains_key(*name) {
                    bail!("/{path}: a file and a directory of that name are both in the tree");
                }
                parent.files.insert((*name).to_string(), csum);
            }
        }
    }
    repo.write_mtree(&root)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_rpm_ostree() {
        assert_eq!(next_version("39", None, 0), "39");
        assert_eq!(next_version("39", Some("39"), 0), "39.1");
        assert_eq!(next_version("39", Some("39.4"), 0), "39.5");
        assert_eq!(next_version("40", Some("39.4"), 0), "40");
        assert_eq!(
            next_version("<date:%Y%m%d>", None, 1_700_000_000),
            "20231114"
        );
    }
}
