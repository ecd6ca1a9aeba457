//! SHA-256 of the output and Fedora's `CHECKSUM` file format.

pub use crate::fsutil::sha256_file;

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
