//! OpenPGP detached signatures, as ostree stores them (`ostree.gpgsigs`) and checks them
//! (`ostree show --gpg-verify`, `gpg-verify=true` remotes), with the `pgp` crate.
//!
//! Secret keys come from an armored key file or from a GnuPG home directory. GnuPG 2.1+
//! keeps secret keys in `private-keys-v1.d/` as gpg-agent S-expressions (the "extended key
//! format", optionally protected with gpg-agent's own OCB/CBC scheme), detached from the
//! public key material in `pubring.kbx`. Reassembling a usable OpenPGP key from those two
//! stores means reimplementing the agent's key format and the keybox format, so for a
//! homedir we ask `gpg --export-secret-keys --armor KEYID` for a standard transferable
//! secret key instead; the signing itself is always done here, in Rust.

use std::io::{self, Cursor, Read};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use pgp::composed::{Deserializable, SignedPublicKey, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::{
    PacketParser, PacketTrait, SecretKey, SecretSubkey, Signature, SignatureConfig, SignatureType,
    Subpacket, SubpacketData,
};
use pgp::types::{
    Fingerprint, KeyDetails, KeyId, KeyVersion, Password, PublicParams, SigningKey, Timestamp,
};

/// The primary key or one of its subkeys: whichever signs.
#[derive(Debug, Clone)]
enum AnySecretKey {
    Primary(SecretKey),
    Sub(SecretSubkey),
}

macro_rules! delegate {
    ($self:expr, $method:ident $(, $arg:expr)*) => {
        match $self {
            AnySecretKey::Primary(k) => k.$method($($arg),*),
            AnySecretKey::Sub(k) => k.$method($($arg),*),
        }
    };
}

impl KeyDetails for AnySecretKey {
    fn version(&self) -> KeyVersion {
        delegate!(self, version)
    }
    fn legacy_key_id(&self) -> KeyId {
        delegate!(self, legacy_key_id)
    }
    fn fingerprint(&self) -> Fingerprint {
        delegate!(self, fingerprint)
    }
    fn algorithm(&self) -> PublicKeyAlgorithm {
        delegate!(self, algorithm)
    }
    fn created_at(&self) -> Timestamp {
        delegate!(self, created_at)
    }
    fn legacy_v3_expiration_days(&self) -> Option<u16> {
        delegate!(self, legacy_v3_expiration_days)
    }
    fn public_params(&self) -> &PublicParams {
        delegate!(self, public_params)
    }
}

impl SigningKey for AnySecretKey {
    fn sign(
        &self,
        passwd: &Password,
        hash_alg: HashAlgorithm,
        digest: &[u8],
    ) -> pgp::errors::Result<pgp::types::SignatureBytes> {
        match self {
            Self::Primary(k) => SigningKey::sign(k, passwd, hash_alg, digest),
            Self::Sub(k) => SigningKey::sign(k, passwd, hash_alg, digest),
        }
    }
    fn hash_alg(&self) -> HashAlgorithm {
        delegate!(self, hash_alg)
    }
}

/// A secret key ready to make detached signatures.
#[derive(Debug, Clone)]
pub struct Signer {
    key: AnySecretKey,
    /// Fingerprint of the certificate (primary key), upper-case hex.
    primary_fingerprint: String,
    user_id: Option<String>,
    /// The certificate's public half, to publish next to what we sign.
    public: SignedPublicKey,
}

/// A secret key's passphrase, read from a file the way `gpg --passphrase-file` reads it
/// (the first line). It is needed only while the key is loaded: the key is then kept
/// unlocked in memory, as gpg-agent caches it.
pub struct Passphrase {
    source: std::path::PathBuf,
    password: Password,
}

impl Passphrase {
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

/// Removes the passphrase protection of a secret key loaded into memory (never on disk),
/// so that wrong or missing passphrases fail when the key is loaded, before any work.
fn unlock(
    mut key: AnySecretKey,
    fpr: &str,
    passphrase: Option<&Passphrase>,
) -> Result<AnySecretKey> {
    let encrypted = match &key {
        AnySecretKey::Primary(k) => k.secret_params().is_encrypted(),
        AnySecretKey::Sub(k) => k.secret_params().is_encrypted(),
    };
    if !encrypted {
        return Ok(key);
    }
    let Some(passphrase) = passphrase else {
        bail!(
            "secret key {fpr} is protected by a passphrase: give a file holding it with \
             --gpg-passphrase-file (or `passphrase_file:` under `signing:`)"
        );
    };
    let unlocked = match &mut key {
        AnySecretKey::Primary(k) => k.remove_password(&passphrase.password),
        AnySecretKey::Sub(k) => k.remove_password(&passphrase.password),
    };
    unlocked.map_err(|e| {
        anyhow!(
            "wrong passphrase for secret key {fpr} (read from {}): {e}",
            passphrase.source.display()
        )
    })?;
    Ok(key)
}

/// Normalizes a user-given key id: strips `0x` and spaces, upper-cases hex.
fn normalize_keyid(keyid: &str) -> String {
    let k = keyid.trim();
    let k = k
        .strip_prefix("0x")
        .or_else(|| k.strip_prefix("0X"))
        .unwrap_or(k);
    k.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase()
}

/// Whether KEYID (already normalized) names this key: a fingerprint, or a long or
/// short key id, i.e. a hex suffix of the fingerprint of at least 8 digits.
fn hex_matches(fingerprint: &Fingerprint, wanted: &str) -> bool {
    let fpr = hex::encode_upper(fingerprint.as_bytes());
    wanted.len() >= 8 && wanted.chars().all(|c| c.is_ascii_hexdigit()) && fpr.ends_with(wanted)
}

fn first_uid(users: &[pgp::types::SignedUser]) -> Option<String> {
    users
        .first()
        .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
}

/// Whether a key flags subpacket in these self-signatures allows signing. RFC 9580: with
/// no key flags subpacket at all the key is general-purpose.
fn can_sign<'a>(sigs: impl Iterator<Item = &'a Signature>) -> bool {
    let mut any_flags = false;
    for sig in sigs {
        let has_flags = sig.config().is_some_and(|c| {
            c.hashed_subpackets()
                .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
        });
        if has_flags {
            any_flags = true;
            if sig.key_flags().sign() {
                return true;
            }
        }
    }
    !any_flags
}

impl Signer {
    /// Reads the secret key KEYID (fingerprint, key id or a part of a user id) from an
    /// armored (or binary) transferable secret key file, like `gpg --export-secret-keys`.
    pub fn from_key_file(
        path: &Path,
        keyid: &str,
        passphrase: Option<&Passphrase>,
    ) -> Result<Signer> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading key file {}", path.display()))?;
        Self::from_bytes(&bytes, keyid, passphrase).with_context(|| {
            format!(
                "loading secret key {keyid} from {} (export one with `gpg --export-secret-keys --armor {keyid} > {}`)",
                path.display(),
                path.display()
            )
        })
    }

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
        gpg.args(["--export-secret-keys", keyid])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = gpg.spawn().with_context(|| {
            format!(
                "running `gpg --homedir {} --export-secret-keys {keyid}` (is gnupg installed? vm/prepare installs it)",
                homedir.display()
            )
        })?;
        if let (Some(p), Some(mut stdin)) = (passphrase, child.stdin.take()) {
            let mut line = zeroize::Zeroizing::new(p.password.read().to_vec());
            line.push(b'\n');
            // gpg may exit before reading it (no such key): its own error says more.
            let _ = std::io::Write::write_all(&mut stdin, &line);
        }
        drop(child.stdin.take());
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for gpg --export-secret-keys {keyid}"))?;
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

    /// Picks the signing key for KEYID out of one or more transferable secret keys.
    pub fn from_bytes(
        bytes: &[u8],
        keyid: &str,
        passphrase: Option<&Passphrase>,
    ) -> Result<Signer> {
        let (keys, _) = SignedSecretKey::from_reader_many(Cursor::new(bytes.to_vec()))
            .context("parsing OpenPGP secret keys")?;
        let keys: Vec<SignedSecretKey> = keys.collect::<Result<_, _>>()?;
        if keys.is_empty() {
            bail!("no OpenPGP secret key found");
        }
        let wanted = normalize_keyid(keyid);
        for cert in &keys {
            let primary_fpr = cert.primary_key.fingerprint();
            let user_id = first_uid(&cert.details.users);
            let public = cert.to_public_key();
            // gpg refuses to sign with a revoked or expired key; so do we.
            let make = |key: AnySecretKey| -> Result<Signer> {
                let sub = match &key {
                    AnySecretKey::Sub(k) => public
                        .public_subkeys
                        .iter()
                        .find(|s| s.key.fingerprint() == k.fingerprint()),
                    AnySecretKey::Primary(_) => None,
                };
                if let Some(p) = key_problem(&public, sub, now_secs()) {
                    bail!("cannot sign with key {primary_fpr:X}: {p}");
                }
                let fpr = hex::encode_upper(key.fingerprint().as_bytes());
                Ok(Signer {
                    key: unlock(key, &fpr, passphrase)?,
                    primary_fingerprint: hex::encode_upper(primary_fpr.as_bytes()),
                    user_id: user_id.clone(),
                    public: public.clone(),
                })
            };
            // KEYID names a subkey exactly: gpg uses that subkey ("KEYID!" forces it too).
            let wanted_exact = wanted.trim_end_matches('!');
            if let Some(sk) = cert
                .secret_subkeys
                .iter()
                .find(|sk| hex_matches(&sk.key.fingerprint(), wanted_exact))
            {
                return make(AnySecretKey::Sub(sk.key.clone()));
            }
            let uid_match = !wanted.is_empty()
                && cert.details.users.iter().any(|u| {
                    String::from_utf8_lossy(u.id.id())
                        .to_uppercase()
                        .contains(&wanted)
                });
            if !(hex_matches(&primary_fpr, wanted_exact) || uid_match) {
                continue;
            }
            cert.verify_bindings()
                .with_context(|| format!("key {primary_fpr:X} has invalid self-signatures"))?;
            if wanted.ends_with('!') && hex_matches(&primary_fpr, wanted_exact) {
                return make(AnySecretKey::Primary(cert.primary_key.clone()));
            }
            // Like gpg: the newest valid signing-capable subkey, else the primary key.
            let now = now_secs();
            let sub = cert
                .secret_subkeys
                .iter()
                .filter(|sk| {
                    let public_sub = public
                        .public_subkeys
                        .iter()
                        .find(|p| p.key.fingerprint() == sk.key.fingerprint());
                    sk.signatures.iter().any(|s| s.key_flags().sign())
                        && can_sign(sk.signatures.iter())
                        && key_problem(&public, public_sub, now).is_none()
                })
                .max_by_key(|sk| sk.key.created_at().as_secs());
            if let Some(sk) = sub {
                return make(AnySecretKey::Sub(sk.key.clone()));
            }
            let primary_sigs = cert
                .details
                .direct_signatures
                .iter()
                .chain(cert.details.users.iter().flat_map(|u| u.signatures.iter()));
            if !can_sign(primary_sigs) {
                bail!("key {primary_fpr:X} has no signing-capable key");
            }
            return make(AnySecretKey::Primary(cert.primary_key.clone()));
        }
        let have: Vec<String> = keys
            .iter()
            .map(|k| {
                format!(
                    "{:X} {}",
                    k.primary_key.fingerprint(),
                    first_uid(&k.details.users).unwrap_or_default()
                )
            })
            .collect();
        bail!(
            "no secret key matches {keyid:?} (available: {})",
            have.join(", ")
        )
    }

    /// Fingerprint (upper-case hex) of the key that signs (a subkey or the primary).
    pub fn signing_fingerprint(&self) -> String {
        hex::encode_upper(self.key.fingerprint().as_bytes())
    }

    /// Fingerprint of the certificate's primary key.
    pub fn primary_fingerprint(&self) -> &str {
        &self.primary_fingerprint
    }

    /// A binary (not armored) OpenPGP v4 detached signature over `data`, SHA-256, as
    /// `gpg --detach-sign` makes and as ostree stores in `ostree.gpgsigs`.
    pub fn sign_detached(&self, data: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(160);
        self.signature(data)?.to_writer_with_header(&mut out)?;
        Ok(out)
    }

    /// The same signature armored, as `gpg --armor --detach-sign` writes a `.asc` file.
    pub fn sign_detached_armored(&self, data: &[u8]) -> Result<String> {
        Ok(pgp::composed::DetachedSignature::new(self.signature(data)?)
            .to_armored_string(Default::default())?)
    }

    fn signature(&self, data: &[u8]) -> Result<pgp::packet::Signature> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        let hash_alg = HashAlgorithm::Sha256;
        let mut cfg = match self.key.version() {
            KeyVersion::V6 => {
                let mut salt = vec![0u8; hash_alg.salt_len().unwrap_or(32)];
                getrandom_fill(&mut salt)?;
                SignatureConfig::v6_with_salt(
                    SignatureType::Binary,
                    self.key.algorithm(),
                    hash_alg,
                    salt,
                )
            }
            _ => SignatureConfig::v4(SignatureType::Binary, self.key.algorithm(), hash_alg),
        };
        cfg.hashed_subpackets
            .push(Subpacket::regular(SubpacketData::SignatureCreationTime(
                Timestamp::from_secs(now),
            ))?);
        cfg.hashed_subpackets
            .push(Subpacket::regular(SubpacketData::IssuerFingerprint(
                self.key.fingerprint(),
            ))?);
        if self.key.version() != KeyVersion::V6 {
            // gpg 2.2 (used by ostree 2022.7 through gpgme) looks keys up by this id.
            cfg.hashed_subpackets
                .push(Subpacket::regular(SubpacketData::IssuerKeyId(
                    self.key.legacy_key_id(),
                ))?);
        }
        // The key was unlocked when it was loaded (see `unlock`).
        cfg.sign(&self.key, &Password::empty(), data)
            .with_context(|| format!("signing with key {}", self.signing_fingerprint()))
    }

    /// The public key, armored like `gpg --export --armor`: what a client imports
    /// (`ostree remote add --gpg-import=`) or points at (`gpgkeypath=` in a remote).
    pub fn public_key_armored(&self) -> Result<String> {
        Ok(self.public.to_armored_string(Default::default())?)
    }

    /// The first user id of the certificate, for messages.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }
}

/// Random bytes for v6 signature salts, from the kernel.
fn getrandom_fill(buf: &mut [u8]) -> Result<()> {
    let mut f = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    f.read_exact(buf).context("reading /dev/urandom")?;
    Ok(())
}

/// Public keys to check signatures against: a keyring file, binary (`gpg --export`,
/// `trusted.gpg.d/*.gpg`) or armored (`gpg --export --armor`, `RPM-GPG-KEY-*`).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

/// The verdict on one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigStatus {
    /// Made by a key in the keyring and the data is unchanged.
    Good,
    /// Made by a key in the keyring but does not match the data (or is malformed).
    Bad(String),
    /// Cryptographically correct, but the key is revoked or expired, or the signature
    /// expired: gpgme then reports a non-zero summary without VALID, so ostree refuses it.
    Invalid(String),
    /// Not made by any key in the keyring.
    MissingKey,
}

/// What one signature says, like one block of `ostree show --gpg-verify`.
#[derive(Debug, Clone)]
pub struct SigCheck {
    pub status: SigStatus,
    /// The issuer (signing key) fingerprint or key id, upper-case hex, if the signature names one.
    pub issuer: Option<String>,
    /// Primary key fingerprint and user id when the key is in the keyring.
    pub primary_fingerprint: Option<String>,
    pub user_id: Option<String>,
    /// Creation time, seconds since the epoch.
    pub created: Option<u64>,
}

impl SigCheck {
    /// A human-readable report in the spirit of `ostree show --gpg-verify`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(t) = self.created {
            s.push_str(&format!(
                "Signature made {}",
                super::datetime::format_iso(t)
            ));
        } else {
            s.push_str("Signature with no creation time");
        }
        s.push_str(&format!(
            " using key ID {}\n",
            self.issuer.as_deref().unwrap_or("(unknown)")
        ));
        let who = self.user_id.as_deref().unwrap_or("(no user id)");
        match &self.status {
            SigStatus::Good => s.push_str(&format!("Good signature from \"{who}\"\n")),
            SigStatus::Bad(e) => s.push_str(&format!("BAD signature from \"{who}\": {e}\n")),
            SigStatus::Invalid(e) => {
                s.push_str(&format!("Signature from \"{who}\" is not valid: {e}\n"))
            }
            SigStatus::MissingKey => s.push_str("Can't check signature: public key not found\n"),
        }
        if let Some(f) = &self.primary_fingerprint {
            s.push_str(&format!("Primary key ID {f}\n"));
        }
        s
    }
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

    /// Checks one binary detached signature over `data`.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> SigCheck {
        let mut check = SigCheck {
            status: SigStatus::MissingKey,
            issuer: None,
            primary_fingerprint: None,
            user_id: None,
            created: None,
        };
        let sig = match parse_signature(signature) {
            Ok(s) => s,
            Err(e) => {
                check.status = SigStatus::Bad(format!("malformed signature: {e:#}"));
                return check;
            }
        };
        check.created = sig.created().map(|t| t.as_secs() as u64);
        let fprs: Vec<&Fingerprint> = sig.issuer_fingerprint();
        let ids: Vec<&KeyId> = sig.issuer_key_id();
        check.issuer = fprs
            .first()
            .map(|f| hex::encode_upper(f.as_bytes()))
            .or_else(|| ids.first().map(|k| hex::encode_upper(k.as_ref())));
        let names = |fpr: &Fingerprint, id: &KeyId| {
            (fprs.is_empty() && ids.is_empty()) || fprs.contains(&fpr) || ids.contains(&id)
        };
        for cert in &self.keys {
            let primary_sigs = || {
                cert.details
                    .direct_signatures
                    .iter()
                    .chain(cert.details.users.iter().flat_map(|u| u.signatures.iter()))
            };
            // (subkey index or None for the primary, allowed to sign)
            let mut candidates: Vec<(Option<usize>, bool)> = Vec::new();
            if names(
                &cert.primary_key.fingerprint(),
                &cert.primary_key.legacy_key_id(),
            ) {
                candidates.push((None, can_sign(primary_sigs())));
            }
            for (i, sk) in cert.public_subkeys.iter().enumerate() {
                if names(&sk.key.fingerprint(), &sk.key.legacy_key_id()) {
                    let ok = sk.signatures.iter().any(|s| s.key_flags().sign())
                        && can_sign(sk.signatures.iter());
                    candidates.push((Some(i), ok));
                }
            }
            for (which, may_sign) in candidates {
                check.primary_fingerprint =
                    Some(hex::encode_upper(cert.primary_key.fingerprint().as_bytes()));
                check.user_id = first_uid(&cert.details.users);
                if !may_sign {
                    check.status = SigStatus::Bad("the key is not allowed to sign".into());
                    continue;
                }
                let result = match which {
                    None => sig.verify(&cert.primary_key, Cursor::new(data)),
                    Some(i) => sig.verify(&cert.public_subkeys[i].key, Cursor::new(data)),
                };
                match result {
                    Ok(()) => {
                        let sub = which.map(|i| &cert.public_subkeys[i]);
                        check.status = match validity_problem(cert, sub, &sig, now_secs()) {
                            None => SigStatus::Good,
                            Some(p) => SigStatus::Invalid(p),
                        };
                        return check;
                    }
                    Err(e) => check.status = SigStatus::Bad(e.to_string()),
                }
            }
        }
        check
    }

    /// Adds the certificates of another keyring.
    pub fn extend(&mut self, other: Keyring) {
        self.keys.extend(other.keys);
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why a cryptographically good signature still does not count, as gpg judges it: a
/// revoked or expired certificate or subkey, or an expired signature. None if valid.
fn validity_problem(
    cert: &SignedPublicKey,
    sub: Option<&pgp::composed::SignedPublicSubKey>,
    sig: &Signature,
    now: u64,
) -> Option<String> {
    if let Some(p) = key_problem(cert, sub, now) {
        return Some(p);
    }
    if let (Some(c), Some(exp)) = (sig.created(), sig.signature_expiration_time())
        && exp.as_secs() > 0
        && c.as_secs() as u64 + exp.as_secs() as u64 <= now
    {
        return Some("the signature has expired".into());
    }
    None
}

/// A revoked or expired certificate, or signing subkey (None if usable).
fn key_problem(
    cert: &SignedPublicKey,
    sub: Option<&pgp::composed::SignedPublicSubKey>,
    now: u64,
) -> Option<String> {
    let created = |t: Timestamp| t.as_secs() as u64;
    // Only revocations that verify count (anyone could append a bogus one).
    if cert.details.revocation_signatures.iter().any(|r| {
        r.typ() == Some(SignatureType::KeyRevocation) && r.verify_key(&cert.primary_key).is_ok()
    }) {
        return Some("the key is revoked".into());
    }
    // The newest self-signature carries the current key expiration.
    let newest_self = cert
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .chain(cert.details.direct_signatures.iter())
        .filter(|s| s.created().is_some())
        .max_by_key(|s| s.created().map(created));
    if let Some(exp) = newest_self.and_then(|s| s.key_expiration_time())
        && exp.as_secs() > 0
        && created(cert.primary_key.created_at()) + exp.as_secs() as u64 <= now
    {
        return Some("the key has expired".into());
    }
    if let Some(sk) = sub {
        if sk.signatures.iter().any(|s| {
            s.typ() == Some(SignatureType::SubkeyRevocation)
                && s.verify_subkey_binding(&cert.primary_key, &sk.key).is_ok()
        }) {
            return Some("the signing subkey is revoked".into());
        }
        let newest = sk
            .signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
            .max_by_key(|s| s.created().map(created));
        if let Some(exp) = newest.and_then(|s| s.key_expiration_time())
            && exp.as_secs() > 0
            && created(sk.key.created_at()) + exp.as_secs() as u64 <= now
        {
            return Some("the signing subkey has expired".into());
        }
    }
    None
}

/// The OpenPGP keyblocks of a GnuPG keybox file (`pubring.kbx`, GnuPG 2.1+), or None if
/// `bytes` is not a keybox. Hand-written because no crate reads keyboxes; the format
/// (gnupg kbx/keybox-blob.c) is a sequence of blobs: be32 length, type byte (1 header
/// with magic "KBXf" at offset 8, 2 OpenPGP, 3 X.509), version, be16 flags, then for
/// OpenPGP blobs the be32 offset and length of the keyblock within the blob.
fn keybox_keyblocks(bytes: &[u8]) -> Result<Option<Vec<&[u8]>>> {
    if bytes.len() < 12 || bytes[4] != 1 || &bytes[8..12] != b"KBXf" {
        return Ok(None);
    }
    let be32 = |at: usize| -> Result<usize> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| anyhow!("keybox truncated at byte {at}"))
    };
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let len = be32(pos)?;
        if len < 16 || pos + len > bytes.len() {
            bail!("keybox blob at byte {pos} has a bad length {len}");
        }
        if bytes[pos + 4] == 2 {
            let off = be32(pos + 8)?;
            let klen = be32(pos + 12)?;
            if off + klen > len {
                bail!("keybox blob at byte {pos}: keyblock outside the blob");
            }
            out.push(&bytes[pos + off..pos + off + klen]);
        }
        pos += len;
    }
    Ok(Some(out))
}

/// The single signature packet of a binary detached signature.
fn parse_signature(bytes: &[u8]) -> Result<Signature> {
    let mut cursor = io::Cursor::new(bytes);
    let mut sigs = Vec::new();
    for packet in PacketParser::new(&mut cursor) {
        match packet.map_err(|e| anyhow!("{e}"))? {
            pgp::packet::Packet::Signature(s) => sigs.push(s),
            other => bail!("unexpected {:?} packet", other.tag()),
        }
    }
    match sigs.len() {
        1 => Ok(sigs.remove(0)),
        0 => bail!("no signature packet"),
        n => bail!("{n} signature packets where one was expected"),
    }
}

/// Lets the rpm crate check package header signatures with our keyring
/// (`rpm::Package::verify_signature`), so RPMs and commits share one key loader.
impl rpm::signature::Verifying for Keyring {
    type Signature = Vec<u8>;

    fn verify(&self, mut data: impl Read, signature: &[u8]) -> Result<(), rpm::Error> {
        let mut buf = Vec::new();
        data.read_to_end(&mut buf).map_err(rpm::Error::Io)?;
        let check = Keyring::verify(self, &buf, signature);
        let key_ref = check.issuer.clone().unwrap_or_else(|| "(no issuer)".into());
        match check.status {
            SigStatus::Good => Ok(()),
            SigStatus::MissingKey => Err(rpm::Error::KeyNotFoundError { key_ref }),
            SigStatus::Bad(reason) | SigStatus::Invalid(reason) => {
                Err(rpm::Error::VerificationError {
                    source: reason.into(),
                    key_ref,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trust");
    const ED_FPR: &str = "805AC4F7D7F8E0D7BA5ABE7B9CFD696728897C33";
    const SUB_PRIMARY: &str = "DEAABF496F19E7495ED709258E992E5A19B61AB4";
    const SUB_SIGNING: &str = "40E5A4946A3FD8A70D7179172BC8273E7D339A8B";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIX}/{name}")).unwrap()
    }

    fn keyring() -> Keyring {
        Keyring::from_bytes(&fixture("all.pub.gpg")).unwrap()
    }

    #[test]
    fn verifies_signatures_made_by_gpg() {
        let data = fixture("data.txt");
        let kr = keyring();
        assert_eq!(kr.len(), 3);
        let ed = kr.verify(&data, &fixture("data.txt.ed.sig"));
        assert_eq!(ed.status, SigStatus::Good, "{}", ed.describe());
        assert_eq!(ed.primary_fingerprint.as_deref(), Some(ED_FPR));
        assert_eq!(ed.user_id.as_deref(), Some("Fixture Ed <ed@fixture.test>"));
        // gpg signs with the signing subkey; the certificate is found through it.
        let sub = kr.verify(&data, &fixture("data.txt.sub.sig"));
        assert_eq!(sub.status, SigStatus::Good, "{}", sub.describe());
        assert_eq!(sub.issuer.as_deref(), Some(SUB_SIGNING));
        assert_eq!(sub.primary_fingerprint.as_deref(), Some(SUB_PRIMARY));
        // Changed data: bad signature.
        let mut other = data.clone();
        other[0] ^= 1;
        assert!(matches!(
            kr.verify(&other, &fixture("data.txt.ed.sig")).status,
            SigStatus::Bad(_)
        ));
        // Garbage is a bad signature, not a panic.
        assert!(matches!(
            kr.verify(&data, b"\x00\x01garbage").status,
            SigStatus::Bad(_)
        ));
    }

    #[test]
    fn signs_with_the_key_gpg_would_pick() {
        let data = b"commit object bytes";
        let kr = keyring();
        // By e-mail, long key id and fingerprint (with 0x), from an armored secret key.
        for id in [
            "ed@fixture.test",
            "9CFD696728897C33",
            &format!("0x{ED_FPR}"),
        ] {
            let s = Signer::from_bytes(&fixture("ed.sec.asc"), id, None).unwrap();
            assert_eq!(s.signing_fingerprint(), ED_FPR);
            let sig = s.sign_detached(data).unwrap();
            assert_eq!(kr.verify(data, &sig).status, SigStatus::Good);
        }
        // A certify-only primary signs through its signing subkey.
        let s = Signer::from_bytes(&fixture("sub.sec.asc"), SUB_PRIMARY, None).unwrap();
        assert_eq!(s.signing_fingerprint(), SUB_SIGNING);
        assert_eq!(s.primary_fingerprint(), SUB_PRIMARY);
        let check = kr.verify(data, &s.sign_detached(data).unwrap());
        assert_eq!(check.status, SigStatus::Good);
        assert_eq!(check.primary_fingerprint.as_deref(), Some(SUB_PRIMARY));
        // A key that does not match is refused with the available ones listed.
        let e = Signer::from_bytes(&fixture("ed.sec.asc"), "nobody@x", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nobody@x") && e.contains(ED_FPR), "{e}");
    }

    #[test]
    fn expired_keys_neither_sign_nor_verify() {
        let e = Signer::from_bytes(&fixture("expired.sec.asc"), "exp@fixture.test", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expired"), "{e}");
        // Verification judges the key at the current time.
        let kr = keyring();
        let exp = kr
            .keys
            .iter()
            .find(|k| first_uid(&k.details.users).is_some_and(|u| u.contains("exp@")))
            .unwrap();
        assert_eq!(
            key_problem(exp, None, now_secs()).as_deref(),
            Some("the key has expired")
        );
        assert_eq!(key_problem(exp, None, 0), None);
    }

    #[test]
    fn keyring_reads_a_gnupg_keybox() {
        let home = tempfile::Builder::new().prefix("kbx").tempdir().unwrap();
        let gpg = |args: &[&str]| {
            let out = std::process::Command::new("gpg")
                .arg("--homedir")
                .arg(home.path())
                .arg("--batch")
                .args(args)
                .output()
                .expect("gpg is not installed: run vm/prepare");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        gpg(&["--import", &format!("{FIX}/all.pub.gpg")]);
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
        let _ = std::process::Command::new("gpgconf")
            .arg("--homedir")
            .arg(home.path())
            .args(["--kill", "gpg-agent"])
            .output();
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
}
