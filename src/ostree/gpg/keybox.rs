//! GnuPG keybox files (`pubring.kbx`, GnuPG 2.1+): the OpenPGP keyblocks they hold.

use anyhow::{Result, anyhow, bail};

/// The OpenPGP keyblocks of a GnuPG keybox file (`pubring.kbx`, GnuPG 2.1+), or None if
/// `bytes` is not a keybox. Hand-written because no crate reads keyboxes; the format
/// (gnupg kbx/keybox-blob.c) is a sequence of blobs: be32 length, type byte (1 header
/// with magic "KBXf" at offset 8, 2 OpenPGP, 3 X.509), version, be16 flags, then for
/// OpenPGP blobs the be32 offset and length of the keyblock within the blob.
pub(super) fn keybox_keyblocks(bytes: &[u8]) -> Result<Option<Vec<&[u8]>>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A keybox blob: be32 length, type, version, be16 flags, then for OpenPGP blobs the
    /// keyblock's be32 offset and length, and the keyblock itself.
    fn blob(kind: u8, keyblock: &[u8]) -> Vec<u8> {
        let len = 16 + keyblock.len();
        let mut b = (len as u32).to_be_bytes().to_vec();
        b.extend([kind, 1, 0, 0]);
        b.extend(16u32.to_be_bytes());
        b.extend((keyblock.len() as u32).to_be_bytes());
        b.extend(keyblock);
        b
    }

    fn header() -> Vec<u8> {
        let mut h = 32u32.to_be_bytes().to_vec();
        h.extend([1, 1, 0, 0]);
        h.extend(b"KBXf");
        h.resize(32, 0);
        h
    }

    #[test]
    fn keyblocks_are_found_and_other_blobs_skipped() {
        let mut kbx = header();
        kbx.extend(blob(2, b"first"));
        kbx.extend(blob(3, b"x509 cert"));
        kbx.extend(blob(2, b"second"));
        let blocks = keybox_keyblocks(&kbx).unwrap().unwrap();
        assert_eq!(blocks, [&b"first"[..], &b"second"[..]]);
        // Not a keybox: an armored or binary keyring goes to the OpenPGP parser as it is.
        assert!(
            keybox_keyblocks(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_damaged_keybox_is_an_error() {
        let mut kbx = header();
        kbx.extend(blob(2, b"first"));
        kbx.truncate(kbx.len() - 2);
        let e = keybox_keyblocks(&kbx).unwrap_err().to_string();
        assert!(e.contains("bad length"), "{e}");
        let mut kbx = header();
        let mut b = blob(2, b"first");
        b[12..16].copy_from_slice(&100u32.to_be_bytes());
        kbx.extend(b);
        let e = keybox_keyblocks(&kbx).unwrap_err().to_string();
        assert!(e.contains("keyblock outside the blob"), "{e}");
    }
}
