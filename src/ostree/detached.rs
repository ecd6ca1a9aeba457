//! Detached metadata (`objects/XX/….commitmeta`) and `summary.sig`: an `a{sv}` in normal
//! form whose `ostree.gpgsigs` key holds `aay`, one binary OpenPGP signature per element.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::ser::{Serialize, SerializeMap, Serializer};
use zgvariant::serialized::{Context as GvContext, Data};
use zgvariant::{LE, Signature as GvSignature, Type, Variant};

/// The key ostree stores GPG signatures under (ostree-gpg-verifier.h `_OSTREE_METADATA_GPGSIGS_NAME`).
pub const GPGSIGS_KEY: &str = "ostree.gpgsigs";

/// An `a{sv}` written in the given key order (zgvariant's own dict types sort or hash).
struct OrderedDict<'a>(&'a [(String, Variant<'a>)]);

impl Type for OrderedDict<'_> {
    const SIGNATURE: &'static GvSignature = <HashMap<String, Variant<'static>> as Type>::SIGNATURE;
}

impl Serialize for OrderedDict<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Parsed detached metadata: the GPG signatures plus every other entry kept verbatim.
#[derive(Debug, Default)]
pub struct DetachedMeta {
    /// Entries other than `ostree.gpgsigs`, sorted by key, as serialized `(key, variant bytes)`
    /// so they survive a rewrite unchanged.
    others: Vec<(String, Variant<'static>)>,
    /// The `ostree.gpgsigs` entry: binary OpenPGP signatures, in stored order.
    pub gpgsigs: Vec<Vec<u8>>,
}

impl DetachedMeta {
    /// Parses an `a{sv}`; `what` names the file for errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<DetachedMeta> {
        if bytes.is_empty() {
            return Ok(DetachedMeta::default());
        }
        let data = Data::new(bytes, GvContext::new(LE, 0));
        let (map, _): (HashMap<String, Variant<'_>>, _) = data
            .deserialize()
            .with_context(|| format!("{what} is not a valid a{{sv}} GVariant"))?;
        let mut out = DetachedMeta::default();
        for (k, v) in map {
            if k == GPGSIGS_KEY {
                out.gpgsigs = Vec::<Vec<u8>>::try_from(v.try_to_owned()?).with_context(|| {
                    format!("{what}: {GPGSIGS_KEY} is not an array of byte arrays (aay)")
                })?;
            } else {
                out.others.push((k, v.try_to_owned()?.into()));
            }
        }
        out.others.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Reads a detached metadata file; a missing file is empty metadata.
    pub fn read(path: &Path) -> Result<DetachedMeta> {
        match std::fs::read(path) {
            Ok(b) => Self::parse(&b, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DetachedMeta::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Serializes in normal form: other keys sorted, then `ostree.gpgsigs` (if any).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut entries: Vec<(String, Variant<'_>)> = self
            .others
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.try_clone()?)))
            .collect::<Result<_>>()?;
        if !self.gpgsigs.is_empty() {
            entries.push((GPGSIGS_KEY.to_string(), Variant::from(self.gpgsigs.clone())));
        }
        let data = zgvariant::to_bytes(GvContext::new(LE, 0), &OrderedDict(&entries))?;
        Ok(data.bytes().to_vec())
    }

    /// Writes atomically (temp file in the repository's `tmp/`, fsync, rename), so
    /// readers see the old or the new file, and a crash leaves nothing in `objects/`.
    pub fn write_in_repo(&self, repo: &Path, path: &Path) -> Result<()> {
        super::repo::write_file_atomic_via(&repo.join("tmp"), path, &self.to_bytes()?, 0o644)
    }
}

/// Path of a commit's detached metadata in an archive repository.
pub fn commitmeta_path(repo: &Path, commit_hex: &str) -> Result<PathBuf> {
    if commit_hex.len() != 64 || !commit_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{commit_hex:?} is not a 64-digit commit checksum");
    }
    Ok(repo
        .join("objects")
        .join(&commit_hex[..2])
        .join(format!("{}.commitmeta", &commit_hex[2..])))
}

/// Path of a commit object in an archive repository.
pub fn commit_path(repo: &Path, commit_hex: &str) -> Result<PathBuf> {
    let p = commitmeta_path(repo, commit_hex)?;
    Ok(p.with_extension("commit"))
}
