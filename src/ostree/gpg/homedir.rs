//! Secret keys from a GnuPG home directory. GnuPG 2.1+ keeps secret keys in
//! `private-keys-v1.d/` as gpg-agent S-expressions (the "extended key format", optionally
//! protected with gpg-agent's own OCB/CBC scheme), detached from the public key material in
//! `pubring.kbx`. Reassembling a usable OpenPGP key from those two stores means
//! reimplementing the agent's key format and the keybox format, so we ask
//! `gpg --export-secret-keys --armor KEYID` for a standard transferable secret key instead;
//! the signing itself is still done here, in Rust.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::passphrase::Passphrase;
use super::signer::Signer;
use crate::command::CommandExt;

impl Signer {
    /// Reads the secret key KEYID from a GnuPG home directory (see the module comment
    /// for why this goes through `gpg --export-secret-keys`).
    pub fn from_gpg_homedir(
        homedir: &Path,
        keyid: &str,
        passphrase: Option<&Passphrase>,
    ) -> Result<Signer> {
        let mut gpg = Command::new("gpg");
        gpg.arg("--homedir")
            .arg(homedir)
            .args(["--batch", "--armor"]);
        // The agent asks for the passphrase to export a protected key: hand it over on stdin
        // instead of a pinentry. The exported key stays protected by it, so without one a
        // prompt could not help; fail at once instead of waiting on it.
        if passphrase.is_some() {
            gpg.args(["--pinentry-mode", "loopback", "--passphrase-fd", "0"]);
        } else {
            gpg.args(["--pinentry-mode", "error"]);
        }
        gpg.args(["--export-secret-keys", keyid]);
        // gpg's status and stderr are read below, to tell a wrong passphrase from a missing key.
        let out = match passphrase {
            Some(p) => {
                let mut line = zeroize::Zeroizing::new(p.password.read().to_vec());
                line.push(b'\n');
                gpg.run_with_stdin_unchecked(&line)?
            }
            None => gpg.run_unchecked()?,
        };
        if !out.status.success() || out.stdout.is_empty() {
            let said = String::from_utf8_lossy(&out.stderr);
            let said = said.trim();
            let home = homedir.display();
            match passphrase {
                Some(p) if said.contains("Bad passphrase") => bail!(
                    "wrong passphrase for secret key {keyid} in GnuPG home {home} (read from {}); gpg said: {said}",
                    p.source.display()
                ),
                None if said.contains("error receiving key from agent") => bail!(
                    "secret key {keyid} in GnuPG home {home} is probably protected by a passphrase: \
                     give a file holding it with --gpg-passphrase-file (or `passphrase_file:` under \
                     `signing:`); gpg said: {said}"
                ),
                _ => bail!(
                    "no secret key {keyid} in GnuPG home {home}: gpg --export-secret-keys said: {said} \
                     (list keys with `gpg --homedir {home} --list-secret-keys`)"
                ),
            }
        }
        Self::from_bytes(&out.stdout, keyid, passphrase).with_context(|| {
            format!(
                "loading secret key {keyid} exported from GnuPG home {}",
                homedir.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ostree::gpg::SigStatus;
    use crate::ostree::gpg::test_fixtures::*;

    /// A GnuPG home with `key` imported; its agent is stopped when dropped.
    struct Home(tempfile::TempDir);

    impl Home {
        fn with(key: &str) -> Home {
            let home = Home(tempfile::Builder::new().prefix("gpgh").tempdir().unwrap());
            Command::new("gpg")
                .arg("--homedir")
                .arg(home.0.path())
                .args(["--batch", "--import", &format!("{FIX}/{key}")])
                .run_checked()
                .unwrap();
            home
        }
    }

    impl Drop for Home {
        fn drop(&mut self) {
            let _ = Command::new("gpgconf")
                .arg("--homedir")
                .arg(self.0.path())
                .args(["--kill", "gpg-agent"])
                .run_unchecked();
        }
    }

    #[test]
    fn a_key_is_exported_from_the_homedir_and_signs() {
        let home = Home::with("ed.sec.asc");
        let s = Signer::from_gpg_homedir(home.0.path(), "ed@fixture.test", None).unwrap();
        assert_eq!(s.signing_fingerprint(), ED_FPR);
        let sig = s.sign_detached(b"data").unwrap();
        assert_eq!(keyring().verify(b"data", &sig).status, SigStatus::Good);
    }

    #[test]
    fn a_missing_key_names_the_homedir_and_how_to_list_keys() {
        let home = Home::with("ed.sec.asc");
        let e = Signer::from_gpg_homedir(home.0.path(), "nobody@fixture.test", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no secret key nobody@fixture.test in GnuPG home"),
            "{e}"
        );
        assert!(e.contains("--list-secret-keys"), "{e}");
        // With a passphrase the key id still decides: no key is no key, not a bad passphrase.
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "unused\n").unwrap();
        let p = Passphrase::from_file(&pass).unwrap();
        let e = Signer::from_gpg_homedir(home.0.path(), "nobody@fixture.test", Some(&p))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no secret key nobody@fixture.test"), "{e}");
    }
}
