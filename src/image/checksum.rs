//! SHA-256 of the output and Fedora's `CHECKSUM` file format.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use crate::fsutil::sha256_file;
use crate::ostree::gpg::Signer;

/// The text of a Fedora-style CHECKSUM file for one image:
/// `# NAME: SIZE bytes` then `SHA256 (NAME) = HEX`.
pub fn checksum_text(name: &str, size: u64, sha256: &str) -> String {
    format!("# {name}: {size} bytes\nSHA256 ({name}) = {sha256}\n")
}

/// `existing` CHECKSUM text with the entry for `name` replaced by (or extended with) the
/// one given, so one CHECKSUM lists every image of a directory, as Fedora's does.
pub fn merge_checksum_text(existing: &str, name: &str, size: u64, sha256: &str) -> String {
    let size_line = format!("# {name}: ");
    let sum_line = format!("SHA256 ({name}) = ");
    let mut out: String = existing
        .lines()
        .filter(|l| !l.starts_with(&size_line) && !l.starts_with(&sum_line))
        .flat_map(|l| [l, "\n"])
        .collect();
    out.push_str(&checksum_text(name, size, sha256));
    out
}

/// The detached signature of `checksum`: `CHECKSUM.asc` next to `CHECKSUM`.
pub fn signature_path(checksum: &Path) -> PathBuf {
    let mut name = checksum.as_os_str().to_owned();
    name.push(".asc");
    PathBuf::from(name)
}

/// Writes `text` to the CHECKSUM file `path` and, with a `signer`, its armored detached
/// signature to `path.asc`. A signature already there is removed first: it signs the old
/// text, and a crash between the two writes must leave no signature rather than a wrong one.
pub fn write_checksum(path: &Path, text: &str, signer: Option<&Signer>) -> Result<()> {
    let asc = signature_path(path);
    match std::fs::remove_file(&asc) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", asc.display())),
    }
    crate::fsutil::write_atomic(path, text.as_bytes())?;
    if let Some(signer) = signer {
        let sig = signer
            .sign_detached_armored(text.as_bytes())
            .with_context(|| format!("signing {}", path.display()))?;
        crate::fsutil::write_atomic(&asc, sig.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn merging_replaces_this_image_and_keeps_the_others() {
        let one = super::checksum_text("a.qcow2", 1, "aa");
        let two = super::merge_checksum_text(&one, "b.raw.xz", 2, "bb");
        let three = super::merge_checksum_text(&two, "a.qcow2", 3, "cc");
        assert_eq!(
            three,
            "# b.raw.xz: 2 bytes\nSHA256 (b.raw.xz) = bb\n# a.qcow2: 3 bytes\nSHA256 (a.qcow2) = cc\n"
        );
    }

    #[test]
    fn checksum_text_matches_fedora_layout() {
        assert_eq!(
            super::checksum_text("Fedora-Cloud.qcow2", 12, "ab"),
            "# Fedora-Cloud.qcow2: 12 bytes\nSHA256 (Fedora-Cloud.qcow2) = ab\n"
        );
    }
}
