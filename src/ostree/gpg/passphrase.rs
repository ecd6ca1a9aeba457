//! A secret key's passphrase, read from a file the way `gpg --passphrase-file` reads it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use pgp::types::Password;

/// A secret key's passphrase: the first line of a file. It is needed only while the key is
/// loaded: the key is then kept unlocked in memory, as gpg-agent caches it.
pub struct Passphrase {
    /// The file it came from, for messages.
    pub(super) source: PathBuf,
    pub(super) password: Password,
}

impl Passphrase {
    /// Reads the first line of `path` (without its `\n` or `\r\n`); the bytes read are zeroed
    /// once copied.
    pub fn from_file(path: &Path) -> Result<Passphrase> {
        let text = zeroize::Zeroizing::new(
            std::fs::read(path)
                .with_context(|| format!("reading the passphrase file {}", path.display()))?,
        );
        let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Ok(Passphrase {
            source: path.to_path_buf(),
            password: Password::from(line),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_passphrase_is_the_first_line_without_its_line_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, b"s3cret word\r\nsecond line\n").unwrap();
        let p = Passphrase::from_file(&path).unwrap();
        assert_eq!(&p.password.read()[..], b"s3cret word");
        assert_eq!(p.source, path);
        let e = Passphrase::from_file(&dir.path().join("missing"))
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("reading the passphrase file"));
    }
}
