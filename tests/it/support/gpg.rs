//! Throwaway GnuPG homes with generated keys, for signing and verifying.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{capture, run};

/// A throwaway GnuPG home with its agent stopped on drop.
pub struct GpgHome {
    pub dir: PathBuf,
}

impl GpgHome {
    pub fn new(parent: &Path, name: &str) -> GpgHome {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        GpgHome { dir }
    }

    pub fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--homedir").arg(&self.dir).arg("--batch");
        c
    }

    /// Generates a key without passphrase; returns its fingerprint.
    pub fn gen_key(&self, uid: &str, algo: &str) -> String {
        self.gen_protected_key(uid, algo, "")
    }

    /// Generates a key protected by `passphrase` (none if empty); returns its fingerprint.
    pub fn gen_protected_key(&self, uid: &str, algo: &str, passphrase: &str) -> String {
        run(self.gpg().args([
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            passphrase,
            "--quick-gen-key",
            uid,
            algo,
            "sign",
            "never",
        ]));
        let list = capture(
            self.gpg()
                .args(["--with-colons", "--list-secret-keys", uid]),
        );
        list.lines()
            .find_map(|l| l.strip_prefix("fpr:::::::::"))
            .map(|f| f.trim_end_matches(':').to_string())
            .expect("fingerprint of the new key")
    }

    /// Exports public keys (all of them for an empty id) to a file, binary or armored.
    pub fn export(&self, keyid: &str, to: &Path, armor: bool) {
        let mut c = self.gpg();
        if armor {
            c.arg("--armor");
        }
        c.arg("--export");
        if !keyid.is_empty() {
            c.arg(keyid);
        }
        let out = run(&mut c);
        assert!(!out.stdout.is_empty(), "{c:?} exported nothing");
        std::fs::write(to, out.stdout).unwrap();
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.dir)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}
