//! Signing and verifying commits and summaries in an archive repository, the way
//! `ostree gpg-sign`, `ostree summary -u --gpg-sign` and `ostree show --gpg-verify` do.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::detached::{DetachedMeta, commit_path, commitmeta_path};
use super::gpg::{Keyring, Passphrase, SigCheck, SigStatus, Signer};
use super::{Checksum, Repo};

/// Where the secret key comes from: `--gpg-homedir` or `--key-file`.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A GnuPG home directory; the key is exported from it with `gpg --export-secret-keys`.
    GpgHomedir(PathBuf),
    /// An armored secret key file (`gpg --export-secret-keys --armor`).
    KeyFile(PathBuf),
}

impl KeySource {
    /// Picks the source from the two optional flags: both together are an error (which key
    /// was meant is unclear); neither means the default GnuPG home, `$GNUPGHOME` or
    /// `~/.gnupg`, as `ostree` does.
    pub fn from_flags(homedir: Option<&Path>, key_file: Option<&Path>) -> Result<KeySource> {
        match (homedir, key_file) {
            (Some(_), Some(_)) => bail!("give --gpg-homedir or --key-file, not both"),
            (Some(h), None) => Ok(KeySource::GpgHomedir(h.to_path_buf())),
            (None, Some(f)) => Ok(KeySource::KeyFile(f.to_path_buf())),
            (None, None) => {
                let home = std::env::var_os("GNUPGHOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".gnupg")))
                    .context("no --gpg-homedir, --key-file, $GNUPGHOME or $HOME")?;
                Ok(KeySource::GpgHomedir(home))
            }
        }
    }

    /// Loads the signer for KEYID, unlocking it with the passphrase if it has one.
    pub fn signer(&self, keyid: &str, passphrase: Option<&Passphrase>) -> Result<Signer> {
        match self {
            KeySource::GpgHomedir(h) => Signer::from_gpg_homedir(h, keyid, passphrase),
            KeySource::KeyFile(f) => Signer::from_key_file(f, keyid, passphrase),
        }
    }
}

/// Resolves a commit checksum, a ref name (`refs/heads/NAME`) or `REMOTE:REF`
/// (`refs/remotes/REMOTE/REF`, as `ostree rev-parse` does) to a commit checksum.
pub fn resolve_commit(repo: &Path, rev: &str) -> Result<String> {
    let r = Repo::open(repo)?;
    if let Some((remote, name)) = rev.split_once(':') {
        let p = repo.join("refs/remotes").join(remote).join(name);
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("ref {rev:?} not found in {}", repo.display()))?;
        let c: Checksum = text
            .trim()
            .parse()
            .with_context(|| format!("ref file {} does not hold a checksum", p.display()))?;
        return Ok(c.to_hex());
    }
    Ok(r.resolve_rev(rev)?.to_hex())
}

/// Reads a commit object's exact bytes, checking they hash to its name.
pub fn read_commit_bytes(repo: &Path, commit: &str) -> Result<Vec<u8>> {
    let path = commit_path(repo, commit)?;
    let bytes = std::fs::read(&path)
        .with_context(|| format!("reading commit object {}", path.display()))?;
    let got = hex::encode(Sha256::digest(&bytes));
    if got != commit {
        bail!(
            "commit object {} is corrupt: its sha256 is {got}",
            path.display()
        );
    }
    Ok(bytes)
}

/// Appends a detached signature by `signer` over the commit object to its `.commitmeta`,
/// keeping existing signatures and other keys. Returns false (and changes nothing) if a
/// signature by the same key is already there (`ostree gpg-sign` refuses that case too).
pub fn gpg_sign_commit(repo: &Path, commit: &str, signer: &Signer) -> Result<bool> {
    // Read-modify-write of .commitmeta: hold the repository lock against other writers.
    let _lock = Repo::open(repo)?.lock()?;
    let bytes = read_commit_bytes(repo, commit)?;
    let meta_path = commitmeta_path(repo, commit)?;
    let mut meta = DetachedMeta::read(&meta_path)?;
    if already_signed_by(&meta.gpgsigs, signer) {
        return Ok(false);
    }
    meta.gpgsigs.push(signer.sign_detached(&bytes)?);
    meta.write_in_repo(repo, &meta_path)?;
    Ok(true)
}

/// Whether one of these signatures was issued by the signer's signing key.
fn already_signed_by(sigs: &[Vec<u8>], signer: &Signer) -> bool {
    let fpr = signer.signing_fingerprint();
    sigs.iter().any(|s| {
        // Only the issuer matters here, so check against an empty keyring.
        Keyring::default()
            .verify(&[], s)
            .issuer
            .is_some_and(|i| fpr.ends_with(&i))
    })
}

/// Checks every signature in the commit's `.commitmeta` against the keyring.
pub fn verify_commit(repo: &Path, commit: &str, keyring: &Keyring) -> Result<Vec<SigCheck>> {
    let bytes = read_commit_bytes(repo, commit)?;
    let meta = DetachedMeta::read(&commitmeta_path(repo, commit)?)?;
    Ok(meta
        .gpgsigs
        .iter()
        .map(|s| keyring.verify(&bytes, s))
        .collect())
}

/// The rule of ostree's `gpg-verify=true`: at least one good signature from the keyring.
/// The error lists what was found, for the user.
pub fn require_good(checks: &[SigCheck], what: &str) -> Result<()> {
    if checks.iter().any(|c| c.status == SigStatus::Good) {
        return Ok(());
    }
    if checks.is_empty() {
        bail!("{what}: no GPG signatures found");
    }
    let details: Vec<String> = checks.iter().map(|c| c.describe()).collect();
    bail!(
        "{what}: none of {} signature(s) is a good signature from the keyring:\n{}",
        checks.len(),
        details.join("")
    )
}

/// Appends a signature over `summary` to `summary.sig` (as
/// `ostree_repo_add_gpg_signature_summary` does). `summary -u` deletes the old
/// `summary.sig` before calling this, since old signatures no longer match.
pub fn sign_summary(repo: &Path, signer: &Signer) -> Result<()> {
    let _lock = Repo::open(repo)?.lock()?;
    let summary = repo.join("summary");
    let bytes = std::fs::read(&summary).with_context(|| {
        format!(
            "reading {} (run `atomic-factory summary -u` first)",
            summary.display()
        )
    })?;
    let sig_path = repo.join("summary.sig");
    let mut meta = DetachedMeta::read(&sig_path)?;
    if already_signed_by(&meta.gpgsigs, signer) {
        // Old signatures by this key are over an older summary: replace them.
        let fpr = signer.signing_fingerprint();
        meta.gpgsigs.retain(|s| {
            !Keyring::default()
                .verify(&[], s)
                .issuer
                .is_some_and(|i| fpr.ends_with(&i))
        });
    }
    meta.gpgsigs.push(signer.sign_detached(&bytes)?);
    meta.write_in_repo(repo, &sig_path)
}

/// Adds a signature by each signer to the commit's `.commitmeta`.
pub fn sign_commit_with(repo: &Path, commit: &Checksum, signers: &[Signer]) -> Result<()> {
    for signer in signers {
        gpg_sign_commit(repo, &commit.to_hex(), signer)?;
        tracing::info!("signed {commit} with key {}", signer.signing_fingerprint());
    }
    Ok(())
}

/// Adds a signature by each signer to `summary.sig`.
pub fn sign_summary_with(repo: &Path, signers: &[Signer]) -> Result<()> {
    for signer in signers {
        sign_summary(repo, signer)?;
        tracing::info!(
            "signed the summary with key {}",
            signer.signing_fingerprint()
        );
    }
    Ok(())
}

/// Checks `summary.sig` against `summary`.
pub fn verify_summary(repo: &Path, keyring: &Keyring) -> Result<Vec<SigCheck>> {
    let summary = repo.join("summary");
    let bytes =
        std::fs::read(&summary).with_context(|| format!("reading {}", summary.display()))?;
    let sig_path = repo.join("summary.sig");
    if !sig_path.exists() {
        bail!("no summary.sig found in {}", repo.display());
    }
    let meta = DetachedMeta::read(&sig_path)?;
    Ok(meta
        .gpgsigs
        .iter()
        .map(|s| keyring.verify(&bytes, s))
        .collect())
}

/// The `/etc/ostree/remotes.d/NAME.conf` of a remote whose commits (and summary, when
/// `verify_summary`) must carry a good signature from the key at `gpgkeypath` (an armored
/// or binary public key shipped in the image, e.g. from [`Signer::public_key_armored`]).
pub fn remote_conf(name: &str, url: &str, gpgkeypath: &str, verify_summary: bool) -> String {
    format!(
        "[remote \"{name}\"]\nurl={url}\ngpg-verify=true\ngpg-verify-summary={verify_summary}\ngpgkeypath={gpgkeypath}\n"
    )
}
