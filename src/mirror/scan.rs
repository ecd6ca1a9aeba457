//! `mirror scan`: walk a master tree, find ostree and yum repositories, name them and hash the
//! file a metalink points at.
//!
//! Classification and naming follow MirrorManager's `update-master-directory-list` (umdl) and
//! `repomap.repo_prefix` for the "Fedora Linux" category: an ostree repository is a folder with a
//! `summary` file and an `objects/` folder; a yum repository one with `repodata/repomd.xml`.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use md5::Digest;
use rayon::prelude::*;

use super::state::{self, FileDetail, Repo, RepoKind, State};

/// How MirrorManager's `Directory.age_file_details` keeps the previous version: until the newest
/// one is MAX_STALE_DAYS - 1 = 3 days old.
const ALTERNATE_KEEP_SECS: i64 = 3 * 86400;

/// Arch names umdl recognises as a path component (Fedora's Arch table).
const KNOWN_ARCHES: &[&str] = &[
    "x86_64", "i386", "i686", "aarch64", "armhfp", "ppc64le", "ppc64", "ppc", "s390x", "s390",
    "riscv64", "sparc", "ia64", "alpha", "mips64el", "mipsel", "noarch",
];

/// umdl skips repositories under these folders so that `Everything` is the one used.
const SKIP_REPO_DIRS: &[&str] = &["Cloud", "Workstation", "Server"];

/// Naming knobs; the defaults are MirrorManager's.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// `repo=` names of ostree repositories are `{ostree_prefix}-{last path component}`.
    pub ostree_prefix: String,
    /// umdl hardcodes x86_64: an ostree repository does not say its arch.
    pub ostree_arch: String,
    /// `repo=` aliases (FROM, TO); `None` keeps those of the previous state.
    pub aliases: Option<Vec<(String, String)>>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            ostree_prefix: "atomic".into(),
            ostree_arch: "x86_64".into(),
            aliases: None,
        }
    }
}

/// What a scan did, for the report line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// ostree repositories found.
    pub ostree: usize,
    /// yum repositories found.
    pub yum: usize,
    /// Files hashed (new or changed since the last scan).
    pub hashed: usize,
    /// Files whose hashes were reused (unchanged size and mtime).
    pub reused: usize,
}

/// A repository found on disk, before hashing.
struct Found {
    kind: RepoKind,
    path: String,
    file: String,
}

/// Scans `root`, reusing digests from `previous` for files whose size and mtime are unchanged.
pub fn scan(
    root: &Path,
    previous: Option<&State>,
    opts: &ScanOptions,
) -> Result<(State, ScanReport)> {
    let root = std::fs::canonicalize(root)
        .with_context(|| format!("opening master tree {}", root.display()))?;
    if !root.is_dir() {
        bail!("master tree {} is not a folder", root.display());
    }
    let found = find_repos(&root)?;
    let now = unix_now();
    let prev: HashMap<(&str, RepoKind), &Repo> = previous
        .filter(|p| p.root == root)
        .map(|p| {
            p.repos
                .iter()
                .map(|r| ((r.path.as_str(), r.kind), r))
                .collect()
        })
        .unwrap_or_default();

    let results: Vec<Result<(Repo, bool)>> = found
        .par_iter()
        .map(|f| {
            let abs = root.join(state::join_rel(&f.path, &f.file));
            let meta = std::fs::metadata(&abs)
                .with_context(|| format!("reading metadata of {}", abs.display()))?;
            let old = prev.get(&(f.path.as_str(), f.kind)).copied();
            let unchanged = old.filter(|o| {
                o.detail.size == meta.len()
                    && o.detail.mtime == meta.mtime()
                    && o.detail.mtime_nsec == meta.mtime_nsec()
            });
            let (detail, alternates, hashed) = match unchanged {
                Some(o) => (o.detail.clone(), o.alternates.clone(), false),
                None => {
                    let detail = hash_file(&abs, f.kind, &meta, now)?;
                    let mut alternates = Vec::new();
                    if let Some(o) = old.filter(|o| o.detail.sha256 != detail.sha256) {
                        alternates.push(o.detail.clone());
                    } else if let Some(o) = old {
                        alternates = o.alternates.clone();
                    }
                    (detail, alternates, true)
                }
            };
            let alternates = alternates
                .into_iter()
                .filter(|_| now - detail.first_seen < ALTERNATE_KEEP_SECS)
                .take(1)
                .collect();
            let (name, arch) = name_and_arch(f.kind, &f.path, opts);
            Ok((
                Repo {
                    kind: f.kind,
                    name,
                    arch,
                    path: f.path.clone(),
                    file: f.file.clone(),
                    detail,
                    alternates,
                },
                hashed,
            ))
        })
        .collect();

    let mut report = ScanReport::default();
    let mut repos = Vec::with_capacity(results.len());
    for r in results {
        let (repo, hashed) = r?;
        match repo.kind {
            RepoKind::Ostree => report.ostree += 1,
            RepoKind::Yum => report.yum += 1,
        }
        if hashed {
            report.hashed += 1;
        } else {
            report.reused += 1;
        }
        repos.push(repo);
    }

    let mut new = State::new(root);
    new.scanned_at = now;
    new.repos = repos;
    new.redirects = match &opts.aliases {
        Some(a) => a.iter().cloned().collect(),
        None => previous.map(|p| p.redirects.clone()).unwrap_or_default(),
    };
    if let Some(p) = previous {
        // Keep crawl results for files that still exist; they are compared by hash, so a
        // result for an older version simply reads as "not up to date".
        let live: std::collections::HashSet<String> =
            new.repos.iter().map(Repo::file_path).collect();
        for (mirror, files) in &p.crawl {
            let kept: BTreeMap<_, _> = files
                .iter()
                .filter(|(k, _)| live.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !kept.is_empty() {
                new.crawl.insert(mirror.clone(), kept);
            }
        }
    }
    check_unique_names(&new)?;
    Ok((new, report))
}

/// Two folders with the same `repo=` and `arch=` would make the lookup ambiguous; MirrorManager
/// keeps the first, we refuse and name both.
fn check_unique_names(state: &State) -> Result<()> {
    let mut seen: HashMap<(&str, &str), &str> = HashMap::new();
    for r in &state.repos {
        if let (Some(n), Some(a)) = (&r.name, &r.arch)
            && let Some(other) = seen.insert((n, a), &r.path)
        {
            bail!(
                "folders {other:?} and {:?} both map to repo={n}&arch={a}; rename one or \
                 choose another --ostree-prefix",
                r.path
            );
        }
    }
    Ok(())
}

/// Walks the tree in name order, never descending into an ostree repository's `objects/`.
fn find_repos(root: &Path) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            // An ostree repository holds millions of objects: skip them, as umdl's FFT walk does.
            !(e.file_type().is_dir()
                && e.file_name() == "objects"
                && e.path()
                    .parent()
                    .is_some_and(|p| p.join("summary").is_file()))
        });
    for entry in walker {
        let entry = entry.with_context(|| format!("walking {}", root.display()))?;
        if !entry.file_type().is_dir() {
            continue;
        }
        let dir = entry.path();
        let rel = relative(root, dir)?;
        // A summary or repomd.xml that is a symlink out of the tree would publish the size and
        // digests of a host file (`summary -> /etc/shadow`): such repos are left out.
        let escapes = |file: &str| {
            let p = dir.join(file);
            let outside = std::fs::canonicalize(&p).is_ok_and(|real| !real.starts_with(root));
            if outside {
                tracing::warn!(
                    "skipping {}: it resolves outside {}",
                    p.display(),
                    root.display()
                );
            }
            outside
        };
        if dir.join("summary").is_file() && dir.join("objects").is_dir() {
            if escapes("summary") {
                continue;
            }
            found.push(Found {
                kind: RepoKind::Ostree,
                path: rel,
                file: "summary".into(),
            });
        } else if dir.join("repodata/repomd.xml").is_file() {
            if escapes("repodata/repomd.xml") {
                continue;
            }
            found.push(Found {
                kind: RepoKind::Yum,
                path: rel,
                file: "repodata/repomd.xml".into(),
            });
        }
    }
    Ok(found)
}

fn relative(root: &Path, dir: &Path) -> Result<String> {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let mut parts = Vec::new();
    for c in rel.components() {
        match c.as_os_str().to_str() {
            Some(s) => parts.push(s),
            None => bail!(
                "folder name {} is not UTF-8; URLs cannot carry it",
                dir.display()
            ),
        }
    }
    Ok(parts.join("/"))
}

/// Reads the file once and computes the four digests MirrorManager records.
fn hash_file(
    path: &Path,
    kind: RepoKind,
    meta: &std::fs::Metadata,
    now: i64,
) -> Result<FileDetail> {
    let (mut md5, mut sha1, mut sha256, mut sha512) = (
        md5::Md5::new(),
        sha1::Sha1::new(),
        sha2::Sha256::new(),
        sha2::Sha512::new(),
    );
    // repomd.xml is small; keep it to read its revision.
    let mut content = Vec::new();
    let size = crate::fsutil::stream_file(path, |chunk| {
        md5.update(chunk);
        sha1.update(chunk);
        sha256.update(chunk);
        sha512.update(chunk);
        if kind == RepoKind::Yum && content.len() < 16 << 20 {
            content.extend_from_slice(chunk);
        }
    })?;
    if size == 0 {
        bail!(
            "{} is empty; a metalink needs its size > 0 (regenerate it)",
            path.display()
        );
    }
    let timestamp = match kind {
        RepoKind::Ostree => meta.mtime(),
        RepoKind::Yum => repomd_timestamp(&content).unwrap_or(meta.mtime()),
    };
    Ok(FileDetail {
        size,
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        timestamp,
        first_seen: now,
        md5: hex::encode(md5.finalize()),
        sha1: hex::encode(sha1.finalize()),
        sha256: hex::encode(sha256.finalize()),
        sha512: hex::encode(sha512.finalize()),
    })
}

/// umdl's repomd timestamp: the top-level `<revision>` when numeric, else the newest
/// `<data><timestamp>`.
fn repomd_timestamp(xml: &[u8]) -> Option<i64> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut revision = None;
    let mut newest: Option<i64> = None;
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => stack.push(e.local_name().as_ref().to_string()),
            Ok(Event::End(_)) => {
                stack.pop();
            }
            Ok(Event::Text(t)) => {
                let text: &str = t.as_ref();
                let value = text.trim().parse::<i64>().ok();
                match stack
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .as_slice()
                {
                    [_, "revision"] => revision = value,
                    [_, "data", "timestamp"] => {
                        newest = newest.max(value);
                    }
                    _ => {}
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
    revision.or(newest)
}

/// The `repo=` name and `arch=` of a repository folder.
pub fn name_and_arch(
    kind: RepoKind,
    path: &str,
    opts: &ScanOptions,
) -> (Option<String>, Option<String>) {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if comps.iter().any(|c| SKIP_REPO_DIRS.contains(c)) {
        return (None, None);
    }
    match kind {
        RepoKind::Ostree => {
            // umdl: the version is the last path component and the arch is hardcoded.
            let Some(version) = comps.last() else {
                return (None, None);
            };
            let name = repo_prefix(path, Some(version), &opts.ostree_prefix).or_else(|| {
                // MirrorManager names only ostree repositories below an `atomic` folder;
                // others get the same rule so that repo=&arch= reaches them too.
                (!path.contains("test/")).then(|| format!("{}-{version}", opts.ostree_prefix))
            });
            (name, Some(opts.ostree_arch.clone()))
        }
        RepoKind::Yum => {
            let arch = if path.contains("SRPMS") {
                Some("source".to_string())
            } else {
                comps
                    .iter()
                    .find(|c| KNOWN_ARCHES.contains(c))
                    .map(|c| c.to_string())
            };
            let Some(arch) = arch else {
                return (None, None);
            };
            let version = yum_version(path);
            let name = repo_prefix(path, version.as_deref(), &opts.ostree_prefix);
            let arch = name.as_ref().map(|_| arch);
            (name, arch)
        }
    }
}

/// umdl's version guess: the first `/(([.\d]+)([-_]\w+)?)/` path component, or `development`
/// under rawhide.
fn yum_version(path: &str) -> Option<String> {
    if path.contains("rawhide") {
        return Some("development".into());
    }
    path.split('/')
        .filter(|c| !c.is_empty())
        // A component that is the whole regex match between two slashes.
        .find(|c| {
            let digits = c.find(['-', '_']).map_or(*c, |i| &c[..i]);
            let rest = &c[digits.len()..];
            !digits.is_empty()
                && digits.chars().all(|ch| ch.is_ascii_digit() || ch == '.')
                && (rest.is_empty()
                    || rest[1..]
                        .chars()
                        .all(|ch| ch.is_alphanumeric() || ch == '_')
                        && rest.len() > 1)
        })
        .map(str::to_string)
}

/// MirrorManager's `repo_prefix` for the Fedora Linux category, with the atomic prefix
/// configurable. `None` means the folder gets no `repo=` name.
pub fn repo_prefix(path: &str, version: Option<&str>, ostree_prefix: &str) -> Option<String> {
    if path.contains("test/") {
        return None;
    }
    let has = |s: &str| path.contains(s);
    let development = development_version(path);
    let rawhide = has("rawhide");
    let debug = has("debug");
    let source = has("source") || has("SRPMS");
    let updates_testing = has("updates/testing");
    let updates_released = !updates_testing && has("updates");
    let mut v = if rawhide {
        "unknown"
    } else {
        version.unwrap_or("unknown")
    }
    .to_string();
    if let Some(d) = &development {
        v = d.clone();
    }
    let variant = |base: &str, suffix: String| -> String {
        if debug {
            format!("{base}-debug{suffix}")
        } else if source {
            format!("{base}-source{suffix}")
        } else {
            format!("{base}{suffix}")
        }
    };
    if has("releases") || development.is_some() {
        if has("Everything") {
            if rawhide {
                Some(variant("rawhide", String::new()))
            } else {
                Some(variant("fedora", format!("-{v}")))
            }
        } else if has("Modular") {
            Some(variant("fedora-modular", format!("-{v}")))
        } else if has("Fedora") {
            (!debug && !source).then(|| format!("fedora-install-{v}"))
        } else {
            None
        }
    } else if has("Modular") {
        if updates_released {
            Some(variant("updates-released-modular", format!("-f{v}")))
        } else if updates_testing {
            Some(variant("updates-testing-modular", format!("-f{v}")))
        } else if rawhide {
            Some(variant("rawhide-modular", String::new()))
        } else {
            Some(variant("fedora-modular", format!("-{v}")))
        }
    } else if has("atomic") {
        Some(format!("{ostree_prefix}-{v}"))
    } else if updates_released && has("Everything") {
        Some(variant("updates-released", format!("-f{v}")))
    } else if updates_testing && has("Everything") {
        Some(variant("updates-testing", format!("-f{v}")))
    } else if rawhide {
        Some(variant("rawhide", String::new()))
    } else {
        None
    }
}

/// `development/NN/` gives version NN (repomap.is_development).
fn development_version(path: &str) -> Option<String> {
    let i = path.find("development/")?;
    let rest = &path[i + "development/".len()..];
    let end = rest.find('/')?;
    let num = &rest[..end];
    (!num.is_empty() && num.chars().all(|c| c.is_ascii_digit())).then(|| num.to_string())
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `FROM=TO` of `--alias`.
pub fn parse_alias(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok((from.into(), to.into())),
        _ => Err(format!(
            "expected FROM=TO (e.g. fedora-atomic-21=atomic-21), got {s:?}"
        )),
    }
}

/// Runs a scan that reads the previous `output` (if any) and writes the new one atomically.
pub fn scan_to_file(root: &Path, output: &Path, opts: &ScanOptions) -> Result<ScanReport> {
    let _lock = state::StateLock::acquire(output)?;
    let previous = if output.exists() {
        Some(state::load(output)?)
    } else {
        None
    };
    let (new, report) = scan(root, previous.as_ref(), opts)?;
    for r in &new.repos {
        tracing::info!(
            "{:?} {} {} {}",
            r.kind,
            r.name.as_deref().unwrap_or("(no repo= name)"),
            r.arch.as_deref().unwrap_or("-"),
            if r.path.is_empty() { "." } else { &r.path }
        );
    }
    state::save(output, &new)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_mirrormanager_repomap() {
        let o = ScanOptions::default();
        let cases: &[(RepoKind, &str, Option<&str>, Option<&str>)] = &[
            (
                RepoKind::Ostree,
                "pub/fedora/linux/atomic/21",
                Some("atomic-21"),
                Some("x86_64"),
            ),
            (
                RepoKind::Ostree,
                "pub/fedora/linux/atomic/rawhide",
                Some("atomic-unknown"),
                Some("x86_64"),
            ),
            (
                RepoKind::Ostree,
                "pub/exampleos/7",
                Some("atomic-7"),
                Some("x86_64"),
            ),
            (RepoKind::Ostree, "pub/test/atomic/7", None, Some("x86_64")),
            (
                RepoKind::Yum,
                "pub/fedora/linux/releases/39/Everything/x86_64/os",
                Some("fedora-39"),
                Some("x86_64"),
            ),
            (
                RepoKind::Yum,
                "pub/fedora/linux/updates/39/Everything/aarch64",
                Some("updates-released-f39"),
                Some("aarch64"),
            ),
            (
                RepoKind::Yum,
                "pub/fedora/linux/updates/testing/39/Everything/x86_64/debug",
                Some("updates-testing-debug-f39"),
                Some("x86_64"),
            ),
            (
                RepoKind::Yum,
                "pub/fedora/linux/development/rawhide/Everything/x86_64/os",
                Some("rawhide"),
                Some("x86_64"),
            ),
            (
                RepoKind::Yum,
                "pub/fedora/linux/releases/39/Everything/source/tree/SRPMS",
                Some("fedora-source-39"),
                Some("source"),
            ),
            (
                RepoKind::Yum,
                "pub/fedora/linux/releases/39/Server/x86_64/os",
                None,
                None,
            ),
            (RepoKind::Yum, "pub/misc/x86_64", None, None),
        ];
        for (kind, path, name, arch) in cases {
            let (n, a) = name_and_arch(*kind, path, &o);
            assert_eq!((n.as_deref(), a.as_deref()), (*name, *arch), "{path}");
        }
        let o = ScanOptions {
            ostree_prefix: "fedora-atomic".into(),
            ..ScanOptions::default()
        };
        assert_eq!(
            name_and_arch(RepoKind::Ostree, "pub/fedora/linux/atomic/21", &o)
                .0
                .as_deref(),
            Some("fedora-atomic-21")
        );
    }

    #[test]
    fn yum_version_matches_umdl_regex() {
        assert_eq!(yum_version("a/39/b").as_deref(), Some("39"));
        assert_eq!(yum_version("a/8.4_beta/b").as_deref(), Some("8.4_beta"));
        assert_eq!(yum_version("a/x86_64/b"), None);
    }

    #[test]
    fn repomd_timestamp_prefers_revision_then_newest_data() {
        let with_rev = br#"<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>1700000005</revision><data type="primary"><timestamp>1700000009</timestamp></data></repomd>"#;
        assert_eq!(repomd_timestamp(with_rev), Some(1700000005));
        let without = br#"<repomd><revision>abc</revision><data type="primary"><timestamp>1700000009</timestamp></data><data type="other"><timestamp>1700000012</timestamp></data></repomd>"#;
        assert_eq!(repomd_timestamp(without), Some(1700000012));
    }

    #[test]
    fn alias_needs_both_sides() {
        assert_eq!(
            parse_alias("fedora-atomic-21=atomic-21").unwrap(),
            ("fedora-atomic-21".to_string(), "atomic-21".to_string())
        );
        assert!(parse_alias("x").is_err());
        assert!(parse_alias("=y").is_err());
    }
}
