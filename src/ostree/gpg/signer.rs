//! Signing: the secret key chosen for a key id the way gpg chooses it (from an exported key
//! file or bytes), and the detached signatures ostree stores in `ostree.gpgsigs`.

use std::io::{Cursor, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use pgp::composed::{Deserializable, SignedPublicKey, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{PacketTrait, SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::types::{Fingerprint, KeyDetails, KeyVersion, Password, Timestamp};

use super::cert::{can_sign, first_uid, key_problem, now_secs};
use super::passphrase::Passphrase;
use super::secret::{AnySecretKey, unlock};

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

/// The key of CERT that gpg would sign with for WANTED (a normalised key id, fingerprint or
/// user-id fragment), or `None` when WANTED names none of CERT's keys.
fn signing_key_for(cert: &SignedSecretKey, wanted: &str) -> Result<Option<AnySecretKey>> {
    let primary_fpr = cert.primary_key.fingerprint();
    // KEYID names a subkey exactly: gpg uses that subkey ("KEYID!" forces it too).
    let wanted_exact = wanted.trim_end_matches('!');
    if let Some(sk) = cert
        .secret_subkeys
        .iter()
        .find(|sk| hex_matches(&sk.key.fingerprint(), wanted_exact))
    {
        return Ok(Some(AnySecretKey::Sub(sk.key.clone())));
    }
    let uid_match = !wanted.is_empty()
        && cert.details.users.iter().any(|u| {
            String::from_utf8_lossy(u.id.id())
                .to_uppercase()
                .contains(wanted)
        });
    if !(hex_matches(&primary_fpr, wanted_exact) || uid_match) {
        return Ok(None);
    }
    cert.verify_bindings()
        .with_context(|| format!("key {primary_fpr:X} has invalid self-signatures"))?;
    if wanted.ends_with('!') && hex_matches(&primary_fpr, wanted_exact) {
        return Ok(Some(AnySecretKey::Primary(cert.primary_key.clone())));
    }
    // Like gpg: the newest valid signing-capable subkey, else the primary key.
    let public = cert.to_public_key();
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
        return Ok(Some(AnySecretKey::Sub(sk.key.clone())));
    }
    let primary_sigs = cert
        .details
        .direct_signatures
        .iter()
        .chain(cert.details.users.iter().flat_map(|u| u.signatures.iter()));
    if !can_sign(primary_sigs) {
        bail!("key {primary_fpr:X} has no signing-capable key");
    }
    Ok(Some(AnySecretKey::Primary(cert.primary_key.clone())))
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
            if let Some(key) = signing_key_for(cert, &wanted)? {
                return Signer::with_key(cert, key, passphrase);
            }
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

    /// The signer for KEY of CERT, refused as gpg refuses a revoked or expired key, and
    /// unlocked with the passphrase when it has one.
    fn with_key(
        cert: &SignedSecretKey,
        key: AnySecretKey,
        passphrase: Option<&Passphrase>,
    ) -> Result<Signer> {
        let primary_fpr = cert.primary_key.fingerprint();
        let public = cert.to_public_key();
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
            user_id: first_uid(&cert.details.users),
            public,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ostree::gpg::test_fixtures::*;
    use crate::ostree::gpg::{Keyring, SigStatus};

    #[test]
    fn key_ids_are_normalized_and_matched_as_fingerprint_suffixes() {
        assert_eq!(
            normalize_keyid(" 0x9cfd 6967 2889 7c33 "),
            "9CFD696728897C33"
        );
        let cert = SignedSecretKey::from_reader_many(Cursor::new(fixture("ed.sec.asc")))
            .unwrap()
            .0
            .next()
            .unwrap()
            .unwrap();
        let fpr = cert.primary_key.fingerprint();
        for id in [ED_FPR, "9CFD696728897C33", "28897C33"] {
            assert!(hex_matches(&fpr, id), "{id}");
        }
        // Too short, not hex, or not a suffix.
        for id in ["7C33", "28897C3G", "805AC4F7"] {
            assert!(!hex_matches(&fpr, id), "{id}");
        }
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
    fn expired_keys_do_not_sign() {
        let e = Signer::from_bytes(&fixture("expired.sec.asc"), "exp@fixture.test", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expired"), "{e}");
    }

    #[test]
    fn signatures_armor_and_the_public_key_exports() {
        let s = Signer::from_bytes(&fixture("ed.sec.asc"), ED_FPR, None).unwrap();
        let asc = s.sign_detached_armored(b"x").unwrap();
        assert!(asc.starts_with("-----BEGIN PGP SIGNATURE-----"), "{asc}");
        let public = s.public_key_armored().unwrap();
        let kr = Keyring::from_bytes(public.as_bytes()).unwrap();
        assert_eq!(kr.len(), 1);
        assert_eq!(
            kr.verify(b"x", &s.sign_detached(b"x").unwrap()).status,
            SigStatus::Good
        );
        assert_eq!(s.user_id(), Some("Fixture Ed <ed@fixture.test>"));
    }
}
