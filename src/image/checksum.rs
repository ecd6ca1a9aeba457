//! SHA-256 of the output and Fedora's `CHECKSUM` file format.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The SHA-256 of a file, hex-encoded.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The text of a Fedora-style CHECKSUM file for one image:
/// `# NAME: SIZE bytes` then `SHA256 (NAME) = HEX`.
pub fn checksum_text(name: &str, size: u64, sha256: &str) -> String {
    format!("# {name}: {size} bytes\nSHA256 ({name}) = {sha256}\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn checksum_text_matches_fedora_layout() {
        assert_eq!(
            super::checksum_text("Fedora-Cloud.qcow2", 12, "ab"),
            "# Fedora-Cloud.qcow2: 12 bytes\nSHA256 (Fedora-Cloud.qcow2) = ab\n"
        );
    }
}
