//! Verifying: one detached signature checked against a keyring, with the verdict ostree
//! reports (`ostree show --gpg-verify`), and the same check for RPM header signatures.

use std::io::{self, Cursor, Read};

use anyhow::{Result, anyhow, bail};
use pgp::packet::{PacketParser, PacketTrait, Signature};
use pgp::types::{Fingerprint, KeyDetails, KeyId};

use super::cert::{can_sign, first_uid, now_secs, validity_problem};
use super::keyring::Keyring;

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
    /// Whether the signature holds, and why not.
    pub status: SigStatus,
    /// The issuer (signing key) fingerprint or key id, upper-case hex, if the signature names one.
    pub issuer: Option<String>,
    /// Primary key fingerprint and user id when the key is in the keyring.
    pub primary_fingerprint: Option<String>,
    /// The key's user id, when the key is in the keyring and has one.
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
                crate::ostree::datetime::format_iso(t)
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
    use crate::ostree::gpg::Signer;
    use crate::ostree::gpg::test_fixtures::*;

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
    fn a_signature_from_an_unknown_key_is_missing_not_bad() {
        let ed_only = Keyring::from_bytes(
            Signer::from_bytes(&fixture("ed.sec.asc"), ED_FPR, None)
                .unwrap()
                .public_key_armored()
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        let check = ed_only.verify(&fixture("data.txt"), &fixture("data.txt.sub.sig"));
        assert_eq!(check.status, SigStatus::MissingKey);
        assert_eq!(check.issuer.as_deref(), Some(SUB_SIGNING));
        assert!(
            check
                .describe()
                .contains("Can't check signature: public key not found"),
            "{}",
            check.describe()
        );
    }

    #[test]
    fn a_detached_signature_is_exactly_one_signature_packet() {
        let sig = fixture("data.txt.ed.sig");
        assert!(parse_signature(&sig).is_ok());
        let two = [sig.clone(), sig].concat();
        let e = parse_signature(&two).unwrap_err().to_string();
        assert!(e.contains("2 signature packets"), "{e}");
        let e = parse_signature(b"").unwrap_err().to_string();
        assert!(e.contains("no signature packet"), "{e}");
    }
}
