//! The read side shared by every input format: a virtual disk read by guest offset.

use anyhow::Result;

/// A virtual disk that can be read at any guest offset.
///
/// Reads past `virtual_size` return zeros, so a backing file shorter than its
/// overlay reads the way QEMU reads it.
pub trait BlockSource: Send + Sync {
    /// The guest-visible size in bytes.
    fn virtual_size(&self) -> u64;

    /// Fills `buf` with the guest data at `offset`.
    ///
    /// Returns `false` when the image metadata already says the whole range is zero
    /// (unallocated or zero clusters), so the caller can skip scanning the bytes.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<bool>;
}

/// Whether every byte of `buf` is zero; word-wise so it runs near memory speed.
pub fn is_zero(buf: &[u8]) -> bool {
    // OR-folding fixed 64-byte chunks lets the compiler vectorise; `all` exits early on data.
    let mut chunks = buf.chunks_exact(64);
    let body = chunks
        .by_ref()
        .all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0);
    body && chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::is_zero;

    #[test]
    fn zero_detection_sees_a_single_set_byte_anywhere() {
        let mut buf = vec![0u8; 65536 + 13];
        assert!(is_zero(&buf));
        for pos in [0, 63, 64, 4095, 65535, 65536 + 12] {
            buf[pos] = 1;
            assert!(!is_zero(&buf), "byte {pos} missed");
            buf[pos] = 0;
        }
    }
}
