//! The 32-byte SHA-256 object name and its 64-hex text form.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};

/// An object checksum (SHA-256). Displays and parses as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Checksum(pub [u8; 32]);

impl Checksum {
    /// The 64 lowercase hex digits, as in object paths and ref files.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The raw 32 digest bytes, as stored inside GVariant objects.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// From a 32-byte slice, as stored inside GVariant objects.
    pub fn from_slice(b: &[u8]) -> Result<Checksum> {
        let arr: [u8; 32] = match b.try_into() {
            Ok(a) => a,
            Err(_) => bail!("invalid checksum: {} bytes instead of 32", b.len()),
        };
        Ok(Checksum(arr))
    }
    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Checksum {
        use sha2::Digest;
        Checksum(sha2::Sha256::digest(data).into())
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.to_hex())
    }
}

impl FromStr for Checksum {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Checksum> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            bail!("invalid checksum '{s}': expected 64 lowercase hex digits");
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Checksum(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let c = Checksum::of(b"");
        assert_eq!(
            c.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(c.to_hex().parse::<Checksum>().unwrap(), c);
        assert!("E3B0".parse::<Checksum>().is_err());
        assert!(c.to_hex().to_uppercase().parse::<Checksum>().is_err());
    }
}
