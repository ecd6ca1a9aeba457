//! What signing and verifying both ask of a certificate: its first user id, whether a key
//! may sign, and whether it is revoked or expired, judged as gpg judges them.

use pgp::composed::{SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, Timestamp};

/// The certificate's first user id, for messages and reports.
pub(super) fn first_uid(users: &[pgp::types::SignedUser]) -> Option<String> {
    users
        .first()
        .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
}

/// Whether a key flags subpacket in these self-signatures allows signing. RFC 9580: with
/// no key flags subpacket at all the key is general-purpose.
pub(super) fn can_sign<'a>(sigs: impl Iterator<Item = &'a Signature>) -> bool {
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

/// Seconds since the epoch: the time keys and signatures are judged at.
pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why a cryptographically good signature still does not count, as gpg judges it: a
/// revoked or expired certificate or subkey, or an expired signature. None if valid.
pub(super) fn validity_problem(
    cert: &SignedPublicKey,
    sub: Option<&SignedPublicSubKey>,
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
pub(super) fn key_problem(
    cert: &SignedPublicKey,
    sub: Option<&SignedPublicSubKey>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ostree::gpg::test_fixtures::{SUB_PRIMARY, SUB_SIGNING, keyring};

    #[test]
    fn an_expired_key_is_judged_at_the_given_time() {
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
        let ed = kr
            .keys
            .iter()
            .find(|k| first_uid(&k.details.users).is_some_and(|u| u.contains("ed@")))
            .unwrap();
        assert_eq!(key_problem(ed, None, now_secs()), None);
    }

    #[test]
    fn signing_follows_the_key_flags() {
        // No key flags subpacket at all: a general-purpose key.
        assert!(can_sign(std::iter::empty()));
        let kr = keyring();
        fn fpr(k: &impl KeyDetails) -> String {
            hex::encode_upper(k.fingerprint().as_bytes())
        }
        // The subkey fixture's primary key is certify-only; its signing subkey signs.
        let cert = kr
            .keys
            .iter()
            .find(|k| fpr(&k.primary_key) == SUB_PRIMARY)
            .unwrap();
        let primary_sigs = cert
            .details
            .direct_signatures
            .iter()
            .chain(cert.details.users.iter().flat_map(|u| u.signatures.iter()));
        assert!(!can_sign(primary_sigs));
        let signing = cert
            .public_subkeys
            .iter()
            .find(|s| fpr(&s.key) == SUB_SIGNING)
            .unwrap();
        assert!(can_sign(signing.signatures.iter()));
    }
}
