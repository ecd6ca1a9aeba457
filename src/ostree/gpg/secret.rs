//! The secret key that signs: a certificate's primary key or one of its subkeys, unlocked
//! in memory when it is loaded.

use anyhow::{Result, anyhow, bail};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::{SecretKey, SecretSubkey};
use pgp::types::{
    Fingerprint, KeyDetails, KeyId, KeyVersion, Password, PublicParams, SigningKey, Timestamp,
};

use super::passphrase::Passphrase;

/// The primary key or one of its subkeys: whichever signs.
#[derive(Debug, Clone)]
pub(super) enum AnySecretKey {
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

/// Removes the passphrase protection of a secret key loaded into memory (never on disk),
/// so that wrong or missing passphrases fail when the key is loaded, before any work.
pub(super) fn unlock(
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
