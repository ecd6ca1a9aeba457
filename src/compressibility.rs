//! Cheap judgement of whether a piece of data would shrink, shared by the two places that
//! skip compression effort on data that does not: ostree content objects (`ostree::deflate`,
//! raw deflate) and the xz disk images (`image::xz`, LZMA2).
//!
//! A full entropy look at the piece first (a byte histogram, far cheaper than any
//! compressor), then a level-1 deflate of a sample at each end for the pieces that look
//! random byte by byte: that catches repeated strings the histogram cannot see.

use flate2::{Compress, Compression, FlushCompress, Status};

/// Bytes at each end of a piece the level-1 probe looks at.
const PROBE: usize = 8 * 1024;
/// Shorter pieces are always judged compressible: the saving would not pay for the probe.
const MIN_PROBE: usize = 4096;

/// What a piece must look like to be judged incompressible.
#[derive(Clone, Copy, Debug)]
pub struct Threshold {
    /// Pieces below this order-0 entropy (bits per byte) surely shrink. An entropy coder
    /// gains up to `(8 - H) / 8` on bytes of entropy H: deflate's Huffman codes need a
    /// larger gap than LZMA's range coder to gain anything.
    pub min_entropy: f64,
    /// The level-1 probe must save at least this fraction of its sample, or the piece is
    /// judged incompressible.
    pub min_gain: f64,
}

/// When deflate (zlib level 6) data is better stored. Below 7.5 bits per byte a piece surely
/// shrinks (text, code, most of an ELF file) and no probe runs. Level 6 gains a few percent
/// over level 1 on compressible data, so a piece that level 1 cannot shrink by 1% costs at
/// most a fraction of a percent when stored.
pub const DEFLATE_STORE_WHEN: Threshold = Threshold {
    min_entropy: 7.5,
    min_gain: 0.01,
};

/// Reusable state for [`Probe::incompressible`] (the level-1 deflater and its buffer).
pub struct Probe {
    deflate: Compress,
    out: Vec<u8>,
}

impl Default for Probe {
    fn default() -> Self {
        Probe::new()
    }
}

impl Probe {
    /// A probe with a fresh level-1 deflater and an output buffer sized for one probe.
    pub fn new() -> Probe {
        Probe {
            deflate: Compress::new(Compression::fast(), false),
            out: Vec::with_capacity(PROBE + PROBE / 8 + 64),
        }
    }

    /// Whether `piece` would not shrink by the standard of `threshold`.
    pub fn incompressible(&mut self, piece: &[u8], threshold: Threshold) -> bool {
        if piece.len() < MIN_PROBE || byte_entropy(piece) < threshold.min_entropy {
            return false;
        }
        let head = &piece[..piece.len().min(PROBE)];
        let tail = &piece[piece.len().saturating_sub(PROBE)..];
        self.does_not_shrink(head, threshold.min_gain)
            && (piece.len() <= PROBE || self.does_not_shrink(tail, threshold.min_gain))
    }

    fn does_not_shrink(&mut self, sample: &[u8], min_gain: f64) -> bool {
        self.deflate.reset();
        self.out.clear();
        match self
            .deflate
            .compress_vec(sample, &mut self.out, FlushCompress::Finish)
        {
            Ok(Status::StreamEnd) => {
                self.out.len() as f64 >= sample.len() as f64 * (1.0 - min_gain)
            }
            // The output did not even fit in 1.125x the input: it does not shrink.
            Ok(_) => true,
            Err(_) => false,
        }
    }
}

/// Order-0 (byte histogram) entropy in bits per byte.
pub fn byte_entropy(data: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::{test_noise as noise, test_text as text};

    const STRICT: Threshold = Threshold {
        min_entropy: 7.98,
        min_gain: 0.01,
    };

    #[test]
    fn entropy_of_noise_and_text() {
        assert!(byte_entropy(&noise(PROBE, 5)) > 7.9);
        assert!(byte_entropy(&text(PROBE)) < 5.0);
    }

    #[test]
    fn noise_is_incompressible_and_text_and_repeats_are_not() {
        let mut p = Probe::new();
        assert!(p.incompressible(&noise(64 << 10, 1), STRICT));
        assert!(!p.incompressible(&text(64 << 10), STRICT));
        // Random bytes repeated: the histogram says random, the probe sees the repeats.
        let repeated = noise(2048, 2).repeat(32);
        assert!(byte_entropy(&repeated) > 7.8);
        assert!(!p.incompressible(&repeated, STRICT));
        // Too short to judge.
        assert!(!p.incompressible(&noise(100, 3), STRICT));
    }
}
