//! Package sources: `.repo` files, rpm-md repositories (repomd.xml, primary and filelists in
//! gz/xz/zstd, every checksum verified) and plain directories of .rpm files.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use quick_xml::events::{BytesStart, Event};
use sha2::Digest;

use super::package::{Dep, EvrS, Op, PkgInfo};

/// One enabled repository from a `.repo` file.
#[derive(Debug, Clone)]
pub struct RepoDef {
    /// The section name (`[fedora]`), as treefile `repos` and `repo-packages` name it.
    pub id: String,
    /// Local directory (baseurl `file:///…` or a path relative to the `.repo` file).
    pub dir: PathBuf,
    /// The `.repo` file it came from, for error messages.
    pub origin: PathBuf,
}

/// Parses a `.repo` (INI) file; `$basearch` and `$releasever` are substituted.
pub fn parse_repo_file(
    path: &Path,
    basearch: &str,
    releasever: Option<&str>,
) -> Result<Vec<RepoDef>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading repo file {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    let mut cur: Option<(String, HashMap<String, String>, usize)> = None;
    let mut finish = |sec: Option<(String, HashMap<String, String>, usize)>| -> Result<()> {
        let Some((id, kv, line)) = sec else {
            return Ok(());
        };
        if kv.get("enabled").is_some_and(|v| v.trim() == "0") {
            return Ok(());
        }
        let subst = |s: &str| {
            let s = s.replace("$basearch", basearch).replace("$arch", basearch);
            match releasever {
                Some(r) => s.replace("$releasever", r),
                None => s,
            }
        };
        let Some(url) = kv.get("baseurl") else {
            if kv.contains_key("metalink") || kv.contains_key("mirrorlist") {
                bail!(
                    "{}:{line}: repo [{id}] uses metalink/mirrorlist; only a local baseurl (file:///path or a relative path) is supported",
                    path.display()
                );
            }
            bail!("{}:{line}: repo [{id}] has no baseurl", path.display());
        };
        // Several URLs may be listed; use the first.
        let url = subst(url.split_whitespace().next().unwrap_or(""));
        let local = if let Some(p) = url.strip_prefix("file://") {
            PathBuf::from(p)
        } else if url.contains("://") {
            bail!(
                "{}:{line}: repo [{id}] baseurl {url:?} is remote; only local repositories (file:///path or a relative path) are supported",
                path.display()
            );
        } else {
            dir.join(&url)
        };
        out.push(RepoDef {
            id,
            dir: local,
            origin: path.to_path_buf(),
        });
        Ok(())
    };
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(sec) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            finish(cur.take())?;
            cur = Some((sec.trim().to_string(), HashMap::new(), n + 1));
        } else if let Some((k, v)) = line.split_once('=') {
            let Some((_, kv, _)) = cur.as_mut() else {
                bail!(
                    "{}:{}: key outside of a [repo] section",
                    path.display(),
                    n + 1
                );
            };
            kv.insert(k.trim().to_string(), v.trim().to_string());
        } else {
            bail!(
                "{}:{}: expected `key=value` or `[section]`, found {line:?}",
                path.display(),
                n + 1
            );
        }
    }
    finish(cur.take())?;
    Ok(out)
}

/// Opens a possibly compressed metadata file by its extension.
fn open_decompressed(path: &Path) -> Result<Box<dyn BufRead>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let name = path.to_string_lossy();
    let r: Box<dyn Read> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)))
    } else if name.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(BufReader::new(
            f,
        )))
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        Box::new(
            zstd::Decoder::new(f)
                .with_context(|| format!("opening zstd stream {}", path.display()))?,
        )
    } else if name.ends_with(".bz2") {
        bail!(
            "{}: bzip2-compressed metadata is not supported; recreate the repo with createrepo_c (default zstd/gz)",
            path.display()
        );
    } else {
        Box::new(f)
    };
    Ok(Box::new(BufReader::with_capacity(256 * 1024, r)))
}

/// A hash chosen at run time by its rpm-md checksum type name ([`hasher_for`]).
pub trait DynHasher {
    /// Feeds `data` to the hash.
    fn update(&mut self, data: &[u8]);
    /// The hex digest of what was fed so far.
    fn hex(&mut self) -> String;
}

impl<D: Digest + Clone> DynHasher for D {
    fn update(&mut self, data: &[u8]) {
        Digest::update(self, data);
    }
    fn hex(&mut self) -> String {
        hex::encode(self.clone().finalize())
    }
}

/// The hash an rpm-md checksum type names (`sha256`, `sha512`, `sha384`, `sha224`, `sha1`,
/// `sha`, `md5`): the one table for repomd.xml's and primary.xml's checksums.
pub fn hasher_for(kind: &str) -> Result<Box<dyn DynHasher>> {
    Ok(match kind {
        "sha256" => Box::new(sha2::Sha256::new()),
        "sha512" => Box::new(sha2::Sha512::new()),
        "sha384" => Box::new(sha2::Sha384::new()),
        "sha224" => Box::new(sha2::Sha224::new()),
        "sha1" | "sha" => Box::new(sha1::Sha1::new()),
        "md5" => Box::new(md5::Md5::new()),
        other => bail!("unsupported checksum type {other:?}"),
    })
}

/// Hex digest of a file with the rpm-md checksum type name (`sha256`, `sha1`, `md5`, `sha512`).
pub fn file_digest(path: &Path, kind: &str) -> Result<String> {
    let mut hasher = hasher_for(kind).with_context(|| path.display().to_string())?;
    crate::fsutil::stream_file(path, |chunk| hasher.update(chunk))?;
    Ok(hasher.hex())
}

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>> {
    match e.try_get_attribute(name)? {
        Some(a) => Ok(Some(
            a.normalized_value(quick_xml::XmlVersion::default())?
                .into_owned(),
        )),
        None => Ok(None),
    }
}

#[doc(hidden)]
pub struct RepomdEntry {
    href: String,
    checksum: (String, String),
}

/// `href` (from repomd.xml or primary.xml) inside the repository's directory. An absolute
/// href or one with `..` would make us read, and trust, a file outside the repository;
/// createrepo_c writes only plain relative paths.
fn in_repo(repo: &RepoDef, href: &str) -> Result<PathBuf> {
    let rel = Path::new(href);
    if href.is_empty()
        || !rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        bail!(
            "repo [{}]: location {href:?} is not a path inside the repository",
            repo.id
        );
    }
    Ok(repo.dir.join(rel))
}

#[doc(hidden)] // public for the fuzz targets (fuzz/)
pub fn parse_repomd(path: &Path) -> Result<HashMap<String, RepomdEntry>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rd = quick_xml::Reader::from_reader(BufReader::new(f));
    let mut buf = Vec::new();
    let mut out = HashMap::new();
    let mut cur_type: Option<String> = None;
    let mut href = None;
    let mut csum: Option<(String, String)> = None;
    let mut in_checksum: Option<String> = None;
    loop {
        match rd
            .read_event_into(&mut buf)
            .with_context(|| format!("parsing {}", path.display()))?
        {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "data" => {
                    cur_type = attr(&e, "type")?;
                    href = None;
                    csum = None;
                }
                "location" => href = attr(&e, "href")?,
                "checksum" => {
                    in_checksum = Some(attr(&e, "type")?.unwrap_or_else(|| "sha256".into()))
                }
                _ => {}
            },
            Event::Text(t) => {
                if let Some(kind) = in_checksum.take() {
                    csum = Some((kind, t.xml10_content().trim().to_string()));
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "checksum" => in_checksum = None,
                "data" => {
                    if let (Some(t), Some(h), Some(c)) = (cur_type.take(), href.take(), csum.take())
                    {
                        out.insert(
                            t,
                            RepomdEntry {
                                href: h,
                                checksum: c,
                            },
                        );
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

fn dep_from_entry(e: &BytesStart<'_>) -> Result<(String, Option<(Op, EvrS)>)> {
    let name = attr(e, "name")?.ok_or_else(|| anyhow!("rpm:entry without a name"))?;
    let c = match attr(e, "flags")? {
        Some(f) => {
            let op = Op::from_rpmmd(&f).ok_or_else(|| anyhow!("unknown dependency flags {f:?}"))?;
            let evr = EvrS {
                epoch: attr(e, "epoch")?.unwrap_or_default(),
                version: attr(e, "ver")?.unwrap_or_default(),
                release: attr(e, "rel")?.unwrap_or_default(),
            };
            Some((op, evr))
        }
        None => None,
    };
    Ok((name, c))
}

/// Reads one rpm-md repository: checks repomd's checksums of primary and filelists, parses
/// both, and returns the packages for `arches`.
pub fn load_rpmmd(repo: &RepoDef, arches: &[&str]) -> Result<Vec<PkgInfo>> {
    let repomd_path = repo.dir.join("repodata/repomd.xml");
    if !repomd_path.exists() {
        bail!(
            "repo [{}] from {}: {} does not exist; baseurl must point at a directory made by createrepo_c (with repodata/)",
            repo.id,
            repo.origin.display(),
            repomd_path.display()
        );
    }
    let md = parse_repomd(&repomd_path)?;
    let verified = |kind: &str| -> Result<Option<PathBuf>> {
        let Some(ent) = md.get(kind) else {
            return Ok(None);
        };
        let p = in_repo(repo, &ent.href)
            .with_context(|| format!("reading {}", repomd_path.display()))?;
        let got = file_digest(&p, &ent.checksum.0)?;
        if got != ent.checksum.1 {
            bail!(
                "repo [{}]: {} has {} {got} but repomd.xml says {}; the repository metadata is corrupt or half-updated (rerun createrepo_c)",
                repo.id,
                p.display(),
                ent.checksum.0,
                ent.checksum.1
            );
        }
        Ok(Some(p))
    };
    let primary = verified("primary")?.ok_or_else(|| {
        anyhow!(
            "repo [{}]: {} lists no primary metadata",
            repo.id,
            repomd_path.display()
        )
    })?;
    let filelists = verified("filelists")?;
    let mut pkgs = parse_primary(&primary, repo)?;
    if let Some(fl) = filelists {
        let mut files = parse_filelists(&fl)?;
        for p in &mut pkgs {
            if let Some(f) = files.remove(&p.pkgid) {
                p.files = f;
            }
        }
    }
    pkgs.retain(|p| arches.contains(&p.arch.as_str()));
    Ok(pkgs)
}

#[doc(hidden)] // public for the fuzz targets (fuzz/)
pub fn parse_primary(path: &Path, repo: &RepoDef) -> Result<Vec<PkgInfo>> {
    let mut rd = quick_xml::Reader::from_reader(open_decompressed(path)?);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut cur: Option<PkgInfo> = None;
    let mut section = String::new();
    let mut text_for: Option<String> = None;
    let ctx = || format!("parsing {}", path.display());
    loop {
        let ev = rd.read_event_into(&mut buf).with_context(ctx)?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let ln = e.local_name();
                let n: &str = ln.as_ref();
                match n {
                    "package" => {
                        cur = Some(PkgInfo {
                            name: String::new(),
                            evr: EvrS::default(),
                            arch: String::new(),
                            path: PathBuf::new(),
                            repo: repo.id.clone(),
                            checksum: None,
                            pkgid: String::new(),
                            provides: vec![],
                            requires: vec![],
                            conflicts: vec![],
                            obsoletes: vec![],
                            files: vec![],
                        })
                    }
                    "version" => {
                        if let Some(p) = cur.as_mut() {
                            p.evr = EvrS {
                                epoch: attr(e, "epoch")?.unwrap_or_default(),
                                version: attr(e, "ver")?.unwrap_or_default(),
                                release: attr(e, "rel")?.unwrap_or_default(),
                            };
                        }
                    }
                    "checksum" => {
                        text_for = Some(format!(
                            "checksum:{}",
                            attr(e, "type")?.unwrap_or_else(|| "sha256".into())
                        ))
                    }
                    "location" => {
                        if let Some(p) = cur.as_mut() {
                            let href = attr(e, "href")?.unwrap_or_default();
                            p.path = in_repo(repo, &href).with_context(ctx)?;
                        }
                    }
                    "provides" | "requires" | "conflicts" | "obsoletes" if !empty => {
                        section = n.to_string()
                    }
                    "entry" => {
                        if let Some(p) = cur.as_mut() {
                            let (name, c) = dep_from_entry(e).with_context(ctx)?;
                            match section.as_str() {
                                "provides" => p.provides.push(Dep {
                                    name,
                                    constraint: c,
                                }),
                                "requires" => p.requires.push((name, c)),
                                "conflicts" => p.conflicts.push(Dep {
                                    name,
                                    constraint: c,
                                }),
                                "obsoletes" => p.obsoletes.push(Dep {
                                    name,
                                    constraint: c,
                                }),
                                _ => {}
                            }
                        }
                    }
                    "name" | "arch" | "file" if !empty => text_for = Some(n.to_string()),
                    _ => {}
                }
            }
            Event::Text(t) => {
                if let (Some(what), Some(p)) = (text_for.take(), cur.as_mut()) {
                    let s = t.xml10_content().into_owned();
                    match what.as_str() {
                        "name" => p.name = s,
                        "arch" => p.arch = s,
                        "file" => p.files.push(s),
                        c if c.starts_with("checksum:") => {
                            p.pkgid = s.trim().to_string();
                            p.checksum =
                                Some((c["checksum:".len()..].to_string(), p.pkgid.clone()));
                        }
                        _ => {}
                    }
                }
            }
            Event::End(ref e) => {
                text_for = None;
                match e.local_name().as_ref() {
                    "provides" | "requires" | "conflicts" | "obsoletes" => section.clear(),
                    "package" => {
                        if let Some(p) = cur.take() {
                            if p.name.is_empty() || p.pkgid.is_empty() {
                                bail!("{}: a <package> lacks a name or checksum", path.display());
                            }
                            if p.arch != "src" {
                                out.push(p);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

#[doc(hidden)] // public for the fuzz targets (fuzz/)
pub fn parse_filelists(path: &Path) -> Result<HashMap<String, Vec<String>>> {
    let mut rd = quick_xml::Reader::from_reader(open_decompressed(path)?);
    let mut buf = Vec::new();
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut cur: Option<(String, Vec<String>)> = None;
    let mut in_file = false;
    loop {
        match rd
            .read_event_into(&mut buf)
            .with_context(|| format!("parsing {}", path.display()))?
        {
            Event::Start(e) => match e.local_name().as_ref() {
                "package" => cur = Some((attr(&e, "pkgid")?.unwrap_or_default(), Vec::new())),
                "file" => in_file = true,
                _ => {}
            },
            Event::Text(t) if in_file => {
                if let Some((_, f)) = cur.as_mut() {
                    f.push(t.xml10_content().into_owned());
                }
                in_file = false;
            }
            Event::End(e) => {
                in_file = false;
                if e.local_name().as_ref() == "package"
                    && let Some((id, f)) = cur.take()
                {
                    out.insert(id, f);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

fn dep_from_rpm(d: &rpm::Dependency) -> (String, Option<(Op, EvrS)>) {
    use rpm::DependencyFlags as F;
    let f = d.flags;
    let op = if f.contains(F::LE) {
        Some(Op::Le)
    } else if f.contains(F::GE) {
        Some(Op::Ge)
    } else if f.contains(F::LESS) {
        Some(Op::Lt)
    } else if f.contains(F::GREATER) {
        Some(Op::Gt)
    } else if f.contains(F::EQUAL) {
        Some(Op::Eq)
    } else {
        None
    };
    let c = match op {
        Some(op) if !d.version.is_empty() => Some((op, EvrS::parse(&d.version))),
        _ => None,
    };
    (d.name.clone(), c)
}

/// Package info straight from an RPM header (plain directories of .rpm files).
pub fn info_from_header(path: &Path, repo: &str) -> Result<PkgInfo> {
    super::rpm_bounds::check_header_sizes(path)?;
    let md = rpm::PackageMetadata::open(path)
        .map_err(|e| anyhow!("reading RPM header of {}: {e}", path.display()))?;
    let h = |r: Result<&str, rpm::Error>| {
        r.map(str::to_string)
            .map_err(|e| anyhow!("{}: {e}", path.display()))
    };
    let epoch = md.get_epoch().unwrap_or(0);
    let deps = |v: Result<Vec<rpm::Dependency>, rpm::Error>| -> Vec<(String, Option<(Op, EvrS)>)> {
        v.unwrap_or_default().iter().map(dep_from_rpm).collect()
    };
    let to_dep = |v: Vec<(String, Option<(Op, EvrS)>)>| -> Vec<Dep> {
        v.into_iter()
            .map(|(name, constraint)| Dep { name, constraint })
            .collect()
    };
    // The header bytes include the payload digest, so they identify the whole package
    // without hashing the payload (keeps the no-change check fast).
    let header = md
        .header_bytes()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(PkgInfo {
        name: h(md.get_name())?,
        evr: EvrS {
            epoch: if epoch == 0 {
                String::new()
            } else {
                epoch.to_string()
            },
            version: h(md.get_version())?,
            release: h(md.get_release())?,
        },
        arch: h(md.get_arch())?,
        path: path.to_path_buf(),
        repo: repo.to_string(),
        checksum: None,
        pkgid: hex::encode(sha2::Sha256::digest(&header)),
        provides: to_dep(deps(md.get_provides())),
        requires: deps(md.get_requires()),
        conflicts: to_dep(deps(md.get_conflicts())),
        obsoletes: to_dep(deps(md.get_obsoletes())),
        files: md
            .get_file_paths()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
    })
}

/// All .rpm files of a plain directory (sorted by name for determinism).
pub fn load_plain_dir(dir: &Path, arches: &[&str]) -> Result<Vec<PkgInfo>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading package directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "rpm") && !p.to_string_lossy().ends_with(".src.rpm")
        })
        .collect();
    paths.sort();
    let repo = dir.display().to_string();
    let mut out = Vec::new();
    for p in paths {
        let info = info_from_header(&p, &repo)?;
        if arches.contains(&info.arch.as_str()) {
            out.push(info);
        }
    }
    Ok(out)
}

/// Loads a repo: rpm-md when it has repodata/, else a plain directory of .rpm files.
pub fn load_repo(repo: &RepoDef, arches: &[&str]) -> Result<Vec<PkgInfo>> {
    if !repo.dir.is_dir() {
        bail!(
            "repo [{}] from {}: baseurl directory {} does not exist; fix baseurl (file:///absolute/path or a path relative to the .repo file)",
            repo.id,
            repo.origin.display(),
            repo.dir.display()
        );
    }
    if repo.dir.join("repodata").exists() {
        load_rpmmd(repo, arches)
    } else {
        let mut v = load_plain_dir(&repo.dir, arches)?;
        for p in &mut v {
            p.repo = repo.id.clone();
        }
        if v.is_empty() {
            bail!(
                "repo [{}] from {}: {} has neither repodata/ nor .rpm files",
                repo.id,
                repo.origin.display(),
                repo.dir.display()
            );
        }
        Ok(v)
    }
}

/// Checks a downloaded/local package against primary.xml's checksum.
pub fn verify_package(p: &PkgInfo) -> Result<()> {
    if let Some((kind, want)) = &p.checksum {
        let got = file_digest(&p.path, kind)?;
        if &got != want {
            bail!(
                "package {} ({}): {kind} is {got} but the repository metadata (primary.xml) says {want}; the file is corrupt or was replaced without rerunning createrepo_c",
                p.nevra(),
                p.path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_file_relative_and_file_urls() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.repo");
        std::fs::write(
            &p,
            "[one]\nname=x\nbaseurl=file:///srv/$basearch/repo\n\n[two]\nbaseurl=sub/dir\n[off]\nenabled=0\nbaseurl=http://x\n",
        )
        .unwrap();
        let r = parse_repo_file(&p, "x86_64", None).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].dir, PathBuf::from("/srv/x86_64/repo"));
        assert_eq!(r[1].dir, d.path().join("sub/dir"));
        std::fs::write(&p, "[r]\nbaseurl=https://example.com/x\n").unwrap();
        let e = format!("{:#}", parse_repo_file(&p, "x86_64", None).unwrap_err());
        assert!(e.contains("remote"), "{e}");
    }
}
