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
    pub fn from_key_file(path: &Path, keyid: &str) -> Result<Signer> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading key file {}", path.display()))?;
        Self::from_bytes(&bytes, keyid).with_context(|| {
            format!(
                "loading secret key {keyid} from {} (export one with `gpg --export-secret-keys --armor {keyid} > {}`)",
                path.display(),
                path.display()
            )
        })
    }

    /// Reads the secret key KEYID from a GnuPG home directory (see the module comment
    /// for why this goes through `gpg --export-secret-keys`).
    pub fn from_gpg_homedir(homedir: &Path, keyid: &str) -> Result<Signer> {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(homedir)
            .args(["--batch", "--armor", "--export-secret-keys", keyid])
            .output()
            .with_context(|| {
                format!(
                    "running `gpg --homedir {} --export-secret-keys {keyid}` (is gnupg installed? vm/prepare installs it)",
                    homedir.display()
                )
            })?;
        if !out.status.success() || out.stdout.is_empty() {
            bail!(
                "no secret key {keyid} in GnuPG home {}: gpg --export-secret-keys said: {} \
                 (list keys with `gpg --homedir {} --list-secret-keys`)",
                homedir.display(),
                String::from_utf8_lossy(&out.stderr).trim(),
                homedir.display()
            );
        }
        Self::from_bytes(&out.stdout, keyid).with_context(|| {
            format!(
                "loading secret key {keyid} exported from GnuPG home {}",
                homedir.display()
            )
        })
    }

    /// Picks the signing key for KEYID out of one or more transferable secret keys.
    pub fn from_bytes(bytes: &[u8], keyid: &str) -> Result<Signer> {
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
            let make = |key: AnySecretKey| Signer {
                key,
                primary_fingerprint: hex::encode_upper(primary_fpr.as_bytes()),
                user_id: user_id.clone(),
            };
            // KEYID names a subkey exactly: gpg uses that subkey ("KEYID!" forces it too).
            let wanted_exact = wanted.trim_end_matches('!');
            if let Some(sk) = cert
                .secret_subkeys
                .iter()
                .find(|sk| hex_matches(&sk.key.fingerprint(), wanted_exact))
            {
                return Ok(make(AnySecretKey::Sub(sk.key.clone())));
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
                return Ok(make(AnySecretKey::Primary(cert.primary_key.clone())));
            }
            // Like gpg: the newest signing-capable subkey, else the primary key.
            let sub = cert
                .secret_subkeys
                .iter()
                .filter(|sk| {
                    sk.signatures.iter().any(|s| s.key_flags().sign())
                        && can_sign(sk.signatures.iter())
                })
                .max_by_key(|sk| sk.key.created_at().as_secs());
            if let Some(sk) = sub {
                return Ok(make(AnySecretKey::Sub(sk.key.clone())));
            }
            let primary_sigs = cert
                .details
                .direct_signatures
                .iter()
                .chain(cert.details.users.iter().flat_map(|u| u.signatures.iter()));
            if !can_sign(primary_sigs) {
                bail!("key {primary_fpr:X} has no signing-capable key");
            }
            return Ok(make(AnySecretKey::Primary(cert.primary_key.clone())));
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
        let sig = cfg.sign(&self.key, &Password::empty(), data).context(
            "signing (is the secret key passphrase-protected? only unprotected keys are supported)",
        )?;
        let mut out = Vec::with_capacity(160);
        sig.to_writer_with_header(&mut out)?;
        Ok(out)
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
            s.push_str(&format!("Signature made {t} (unix time)"));
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

    /// Parses one or more certificates, binary or armored.
    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring> {
        let (iter, _) = SignedPublicKey::from_reader_many(Cursor::new(bytes.to_vec()))?;
        let mut keys = Vec::new();
        for k in iter {
            let k = k?;
            // A certificate whose self-signatures do not verify cannot vouch for anything.
            if k.verify_bindings().is_ok() {
                keys.push(k);
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
                        check.status = SigStatus::Good;
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
            SigStatus::Bad(reason) => Err(rpm::Error::VerificationError {
                source: reason.into(),
                key_ref,
            }),
        }
    }
}
