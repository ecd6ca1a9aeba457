//! Public keys to check signatures against: keyring files, binary or armored, and GnuPG
//! keyboxes.

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result, bail};
use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::packet::PacketParser;

use super::keybox::keybox_keyblocks;

/// Public keys to check signatures against: a keyring file, binary (`gpg --export`,
/// `trusted.gpg.d/*.gpg`) or armored (`gpg --export --armor`, `RPM-GPG-KEY-*`).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    pub(super) keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Loads every certificate of a keyring file (binary or armored).
    pub fn load(path: &Path) -> Result<Keyring> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading keyring {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| {
            format!(
                "parsing OpenPGP public keys in {} (expected `gpg --export [--armor]` output)",
                path.display()
            )
        })
    }

    /// Parses one or more certificates: binary, armored, or a GnuPG keybox (`pubring.kbx`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring> {
        let blocks = match keybox_keyblocks(bytes)? {
            Some(blocks) => blocks,
            None => vec![bytes],
        };
        let mut keys = Vec::new();
        for block in blocks {
            let armored = block.trim_ascii_start().starts_with(b"-----BEGIN");
            let parsed: Vec<pgp::errors::Result<SignedPublicKey>> = if armored {
                SignedPublicKey::from_reader_many(Cursor::new(block.to_vec()))?
                    .0
                    .collect()
            } else {
                // Local keyrings (pubring.kbx/pubring.gpg) carry trust packets after the
                // key packets, which confuse the key parser: drop them first.
                let packets = PacketParser::new(Cursor::new(block))
                    .filter(|p| !matches!(p, Ok(pgp::packet::Packet::Trust(_))));
                pgp::composed::SignedPublicKeyParser::from_packets(packets.peekable()).collect()
            };
            for k in parsed {
                let k = k?;
                // A certificate whose self-signatures do not verify cannot vouch for anything.
                if k.verify_bindings().is_ok() {
                    keys.push(k);
                }
            }
        }
        if keys.is_empty() {
            bail!("no valid OpenPGP public key found");
        }
        Ok(Keyring { keys })
    }

    /// Adds the certificates of another keyring.
    pub fn extend(&mut self, other: Keyring) {
        self.keys.extend(other.keys);
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the keyring holds no certificate.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandExt;
    use crate::ostree::gpg::test_fixtures::*;
    use crate::ostree::gpg::{SigStatus, Signer};
    use pgp::composed::SignedSecretKey;
    use std::process::Command;

    #[test]
    fn keyring_reads_a_gnupg_keybox() {
        let home = tempfile::Builder::new().prefix("kbx").tempdir().unwrap();
        Command::new("gpg")
            .arg("--homedir")
            .arg(home.path())
            .args(["--batch", "--import", &format!("{FIX}/all.pub.gpg")])
            .run_checked()
            .unwrap();
        let kbx = std::fs::read(home.path().join("pubring.kbx")).unwrap();
        let kr = Keyring::from_bytes(&kbx).unwrap();
        assert_eq!(kr.len(), 3);
        let check = kr.verify(&fixture("data.txt"), &fixture("data.txt.ed.sig"));
        assert_eq!(check.status, SigStatus::Good);
        // User ids survive the keybox's trust packets.
        assert_eq!(
            check.user_id.as_deref(),
            Some("Fixture Ed <ed@fixture.test>")
        );
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(home.path())
            .args(["--kill", "gpg-agent"])
            .run_unchecked();
    }

    #[test]
    fn keyring_loads_armored_and_binary() {
        let e = Keyring::from_bytes(b"not a key").unwrap_err();
        assert!(!format!("{e:#}").is_empty());
        let s = Signer::from_bytes(&fixture("ed.sec.asc"), ED_FPR, None).unwrap();
        let sig = s.sign_detached(b"x").unwrap();
        // The armored secret key file also works as a keyring (its public parts).
        let armored_pub = SignedSecretKey::from_reader_many(Cursor::new(fixture("ed.sec.asc")))
            .unwrap()
            .0
            .next()
            .unwrap()
            .unwrap()
            .to_public_key()
            .to_armored_string(None.into())
            .unwrap();
        let kr = Keyring::from_bytes(armored_pub.as_bytes()).unwrap();
        assert_eq!(kr.verify(b"x", &sig).status, SigStatus::Good);
    }

    #[test]
    fn keyrings_extend_and_count_certificates() {
        let mut kr = keyring();
        assert_eq!(kr.len(), 3);
        assert!(Keyring::default().is_empty());
        kr.extend(keyring());
        assert_eq!(kr.len(), 6);
        let e = format!(
            "{:#}",
            Keyring::load(Path::new("/nonexistent/k.gpg")).unwrap_err()
        );
        assert!(e.contains("reading keyring /nonexistent/k.gpg"), "{e}");
    }
}
