//! `gpgcheck=1`: every RPM must carry a header signature that verifies with one of the
//! repository's `gpgkey=` keys before compose imports it (what dnf does on install).
//! The rpm crate checks the digests and the header signature; the keys are our
//! [`Keyring`], so binary and armored key files both work.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::ostree::gpg::Keyring;

/// Loads the keys named by a `.repo` file's `gpgkey=` value: one or more `file://` URLs
/// separated by whitespace or commas. `repo_file` names the `.repo` file in errors.
pub fn load_gpgkeys(gpgkey: &str, repo_file: &Path) -> Result<Keyring> {
    let mut keyring = Keyring::default();
    let mut any = false;
    for url in gpgkey
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
    {
        let Some(path) = url.strip_prefix("file://") else {
            bail!(
                "{}: gpgkey={url}: only file:// keys are supported; download the key and use gpgkey=file:///path/to/key",
                repo_file.display()
            );
        };
        let path = PathBuf::from(path);
        keyring.extend(
            Keyring::load(&path)
                .with_context(|| format!("{}: loading gpgkey={url}", repo_file.display()))?,
        );
        any = true;
    }
    if !any {
        bail!(
            "{}: gpgcheck=1 but gpgkey= is empty; add gpgkey=file:///path/to/RPM-GPG-KEY",
            repo_file.display()
        );
    }
    Ok(keyring)
}

/// Why a package was refused.
#[derive(Debug, thiserror::Error)]
pub enum RpmSigError {
    /// The package has no header signature.
    #[error(
        "package {nevra} ({path}) is not signed, but gpgcheck is on (sign it with `rpmsign --addsign`, or set gpgcheck=0)"
    )]
    Unsigned {
        /// The package, `name-version-release.arch`.
        nevra: String,
        /// The .rpm file.
        path: String,
    },
    /// The signature did not verify against the keyring, or a digest did not match.
    #[error("package {nevra} ({path}): signature check failed: {reason}")]
    Bad {
        /// The package, `name-version-release.arch`.
        nevra: String,
        /// The .rpm file.
        path: String,
        /// What failed, in the verifier's words.
        reason: String,
    },
}

/// Verifies an RPM's digests and header signature against the keyring. The error names
/// the package (name-version-release.arch) and its file.
pub fn verify_rpm(path: &Path, keyring: &Keyring) -> Result<()> {
    super::rpm_bounds::check_header_sizes(path)?;
    let pkg =
        rpm::Package::open(path).with_context(|| format!("reading RPM {}", path.display()))?;
    let nevra = pkg
        .metadata
        .get_nevra()
        .map(|n| n.nvra().to_string())
        .unwrap_or_else(|_| path.display().to_string());
    let shown = path.display().to_string();
    let sigs = pkg
        .raw_signatures()
        .with_context(|| format!("reading the signature header of {}", path.display()))?;
    if sigs.is_empty() {
        return Err(RpmSigError::Unsigned { nevra, path: shown }.into());
    }
    pkg.verify_signature(keyring).map_err(|e| {
        let reason = match e {
            rpm::Error::KeyNotFoundError { key_ref } => format!(
                "signed by key {key_ref}, which is not one of the repository's gpgkey= keys"
            ),
            other => other.to_string(),
        };
        RpmSigError::Bad {
            nevra,
            path: shown,
            reason,
        }
        .into()
    })
}

/// A repository's `gpgcheck`/`gpgkey` settings, read from its `.repo` file section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoGpgSettings {
    /// Whether the packages must carry a valid signature (`gpgcheck=1`).
    pub gpgcheck: bool,
    /// The raw `gpgkey=` value (URLs), with `$basearch`/`$releasever` substituted.
    pub gpgkey: Option<String>,
}

/// Reads `gpgcheck`/`gpgkey` of section `[id]` in a `.repo` file. Kept apart from
/// [`super::sources::parse_repo_file`] so the signature policy lives in one place; the
/// INI rules are the same (`key=value`, `#`/`;` comments, `gpgcheck` 1/yes/true/on).
pub fn repo_gpg_settings(
    repo_file: &Path,
    id: &str,
    basearch: &str,
    releasever: Option<&str>,
) -> Result<RepoGpgSettings> {
    let text = std::fs::read_to_string(repo_file)
        .with_context(|| format!("reading repo file {}", repo_file.display()))?;
    let mut in_section = false;
    let mut out = RepoGpgSettings::default();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(sec) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = sec.trim() == id;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if !in_section {
            continue;
        }
        match k.trim() {
            "gpgcheck" => {
                out.gpgcheck = matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "yes" | "true" | "on"
                )
            }
            "gpgkey" => {
                let mut v = v.trim().replace("$basearch", basearch);
                if let Some(r) = releasever {
                    v = v.replace("$releasever", r);
                }
                out.gpgkey = Some(v);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Verifies, before import, every package that comes from a repository with
/// `gpgcheck=1`. Packages from plain directories (no `.repo` file) are not checked.
/// Errors name the package, its file and the `.repo` file.
pub fn check_packages(
    repos: &[super::sources::RepoDef],
    pkgs: &[super::package::PkgInfo],
    basearch: &str,
    releasever: Option<&str>,
) -> Result<()> {
    let mut keyrings: std::collections::HashMap<&str, Option<Keyring>> =
        std::collections::HashMap::new();
    for repo in repos {
        let s = repo_gpg_settings(&repo.origin, &repo.id, basearch, releasever)?;
        let keyring = if s.gpgcheck {
            let key = s.gpgkey.as_deref().unwrap_or("");
            Some(load_gpgkeys(key, &repo.origin).with_context(|| format!("repo [{}]", repo.id))?)
        } else {
            None
        };
        keyrings.insert(repo.id.as_str(), keyring);
    }
    // Reading whole packages dominates: verify them in parallel.
    use rayon::prelude::*;
    let todo: Vec<(&super::package::PkgInfo, &Keyring)> = pkgs
        .iter()
        .filter_map(|p| match keyrings.get(p.repo.as_str()) {
            Some(Some(k)) => Some((p, k)),
            _ => None,
        })
        .collect();
    todo.par_iter()
        .map(|(pkg, keyring)| {
            verify_rpm(&pkg.path, keyring)
                .with_context(|| format!("gpgcheck=1 of repo [{}]", pkg.repo))
        })
        .collect::<Result<Vec<()>>>()?;
    let checked = todo.len();
    if checked > 0 {
        tracing::info!("gpgcheck: {checked} package signature(s) verified");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_settings_per_section() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.repo");
        std::fs::write(
            &p,
            "[one]\nbaseurl=x\ngpgcheck=1\ngpgkey=file:///k/$basearch/RPM-GPG-KEY-$releasever\n\n[two]\nbaseurl=y\ngpgcheck = 0\n[three]\ngpgcheck=yes\n",
        )
        .unwrap();
        let one = repo_gpg_settings(&p, "one", "x86_64", Some("42")).unwrap();
        assert!(one.gpgcheck);
        assert_eq!(
            one.gpgkey.as_deref(),
            Some("file:///k/x86_64/RPM-GPG-KEY-42")
        );
        assert!(
            !repo_gpg_settings(&p, "two", "x86_64", None)
                .unwrap()
                .gpgcheck
        );
        let three = repo_gpg_settings(&p, "three", "x86_64", None).unwrap();
        assert!(three.gpgcheck && three.gpgkey.is_none());
        // gpgcheck=1 with no key is refused with the fix.
        let e = load_gpgkeys("", &p).unwrap_err().to_string();
        assert!(e.contains("gpgkey="), "{e}");
    }
}
