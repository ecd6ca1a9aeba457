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
    #[error("package {nevra} ({path}) is not signed, but gpgcheck is on")]
    Unsigned { nevra: String, path: String },
    #[error("package {nevra} ({path}): signature check failed: {reason}")]
    Bad {
        nevra: String,
        path: String,
        reason: String,
    },
}

/// Verifies an RPM's digests and header signature against the keyring. The error names
/// the package (name-version-release.arch) and its file.
pub fn verify_rpm(path: &Path, keyring: &Keyring) -> Result<()> {
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
        RpmSigError::Bad {
            nevra,
            path: shown,
            reason: e.to_string(),
        }
        .into()
    })
}
