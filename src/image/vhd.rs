//! Fixed VHD (Microsoft's Virtual Hard Disk Image Format Specification, v1.0): the raw disk
//! followed by a 512-byte footer. Azure takes only fixed VHDs whose size is a whole number of
//! MiB, so the disk is padded with zeros up to the next MiB.
//!
//! Hand-written: the footer is 512 bytes of fixed fields, and no maintained crate writes VHDs.

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::convert::{Cluster, Sink};

/// The footer's length; it is also the sector size the geometry counts in.
pub const FOOTER_LEN: usize = 512;
/// Azure requires a virtual size that is a whole number of MiB.
const ALIGN: u64 = 1 << 20;
/// VHD timestamps count seconds from 2000-01-01 00:00:00 UTC.
const VHD_EPOCH_UNIX: u64 = 946_684_800;
/// The largest disk the CHS geometry can describe (65535 x 16 x 255 sectors, ~2040 GiB).
pub const MAX_SIZE: u64 = 65535 * 16 * 255 * 512;

/// The virtual size of the VHD holding a disk of `size` bytes: rounded up to a MiB.
pub fn vhd_size(size: u64) -> u64 {
    size.div_ceil(ALIGN) * ALIGN
}

/// Cylinders, heads and sectors per track for `total_sectors`, by the algorithm in the
/// spec's appendix ("CHS Calculation"). The geometry may describe fewer sectors than the
/// disk has; readers that honour `current_size` (Hyper-V, Azure, QEMU for the creator app
/// written here) see the whole disk.
pub fn geometry(total_sectors: u64) -> (u16, u8, u8) {
    let total = total_sectors.min(65535 * 16 * 255);
    let (sectors, heads, cyl_times_heads);
    if total >= 65535 * 16 * 63 {
        sectors = 255u64;
        heads = 16u64;
        cyl_times_heads = total / sectors;
    } else {
        let mut s = 17u64;
        let mut cth = total / s;
        let mut h = cth.div_ceil(1024).max(4);
        if cth >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            cth = total / s;
        }
        if cth >= h * 1024 {
            s = 63;
            h = 16;
            cth = total / s;
        }
        sectors = s;
        heads = h;
        cyl_times_heads = cth;
    }
    ((cyl_times_heads / heads) as u16, heads as u8, sectors as u8)
}

/// The spec's checksum: the one's complement of the sum of every footer byte, the checksum
/// field counted as zeros.
pub fn checksum(footer: &[u8; FOOTER_LEN]) -> u32 {
    let sum = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |a, (_, &b)| a.wrapping_add(u32::from(b)));
    !sum
}

/// The footer of a fixed VHD of `virtual_size` bytes (already MiB-aligned).
///
/// `epoch` (Unix seconds, normally SOURCE_DATE_EPOCH) is the creation time; the unique id is
/// derived from `content_id` (a digest of the disk), so the same disk gives the same bytes.
pub fn footer(virtual_size: u64, epoch: u64, content_id: &[u8; 32]) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes()); // features: "reserved" bit, always set
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // file format version 1.0
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes()); // data offset: none for fixed disks
    let stamp = epoch
        .saturating_sub(VHD_EPOCH_UNIX)
        .min(u64::from(u32::MAX)) as u32;
    f[24..28].copy_from_slice(&stamp.to_be_bytes());
    // Creator application. QEMU sizes a VHD by its CHS geometry, which rounds down, unless
    // the creator is one it knows to use current_size ("win ", "qem2", "d2v ", ...). "qem2"
    // is what `qemu-img convert -O vpc -o subformat=fixed,force_size` writes, the recipe
    // Azure documents and Fedora's Azure images come from; Azure and Hyper-V read
    // current_size anyway.
    f[28..32].copy_from_slice(b"qem2");
    f[32..36].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // creator version
    f[36..40].copy_from_slice(b"Wi2k"); // creator host OS, as Hyper-V writes it
    f[40..48].copy_from_slice(&virtual_size.to_be_bytes()); // original size
    f[48..56].copy_from_slice(&virtual_size.to_be_bytes()); // current size
    let (c, h, s) = geometry(virtual_size / 512);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    f[60..64].copy_from_slice(&2u32.to_be_bytes()); // disk type: fixed
    // Unique id: a name-based UUID (version 5 layout) from the content digest.
    let mut id = [0u8; 16];
    id.copy_from_slice(&Sha256::digest(content_id)[..16]);
    id[6] = (id[6] & 0x0f) | 0x50;
    id[8] = (id[8] & 0x3f) | 0x80;
    f[68..84].copy_from_slice(&id);
    // f[84] saved state = 0, the rest reserved zeros.
    let sum = checksum(&f);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    f
}

/// Forwards clusters to the output and digests the non-zero ones with their index, so the
/// footer's unique id names this disk's content without a second read.
pub struct Digesting<S> {
    /// The sink the clusters are forwarded to.
    pub inner: S,
    hasher: Sha256,
}

impl<S: Sink> Digesting<S> {
    /// Wraps `inner` with an empty digest.
    pub fn new(inner: S) -> Digesting<S> {
        Digesting {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The output sink and the content digest.
    pub fn into_parts(self) -> (S, [u8; 32]) {
        (self.inner, self.hasher.finalize().into())
    }
}

impl<S: Sink> Sink for Digesting<S> {
    fn cluster(&mut self, idx: u64, data: Cluster<'_>) -> Result<()> {
        if let Cluster::Plain(d) = &data {
            self.hasher.update(idx.to_le_bytes());
            self.hasher.update(d);
        }
        self.inner.cluster(idx, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be32(b: &[u8]) -> u32 {
        u32::from_be_bytes(b.try_into().unwrap())
    }

    #[test]
    fn sizes_round_up_to_whole_mib() {
        assert_eq!(vhd_size(0), 0);
        assert_eq!(vhd_size(1), 1 << 20);
        assert_eq!(vhd_size(1 << 20), 1 << 20);
        assert_eq!(vhd_size((3 << 30) + 512), (3 << 30) + (1 << 20));
    }

    #[test]
    fn geometry_follows_the_spec_table() {
        // Values worked by hand from the spec's algorithm.
        // 1 MiB = 2048 sectors: 17 sectors/track, cth = 120, heads = max(1, 4) = 4, cyl = 30.
        assert_eq!(geometry(2048), (30, 4, 17));
        // 3 GiB = 6291456 sectors: 17 -> cth 370085 >= 16*1024 -> 31/16: cth 202950 >= 16384
        // -> 63/16: cth 99864, cyl 6241.
        assert_eq!(geometry(6_291_456), (6241, 16, 63));
        // 127 GiB and up: 255 sectors, 16 heads.
        let big = 65535 * 16 * 63;
        assert_eq!(geometry(big), ((big / 255 / 16) as u16, 16, 255));
        // Capped at the largest geometry.
        assert_eq!(geometry(u64::MAX), (65535, 16, 255));
        // Never describes more sectors than the disk has.
        for n in [2048u64, 4096 * 1024, 6_291_456, 20 << 21] {
            let (c, h, s) = geometry(n);
            assert!(u64::from(c) * u64::from(h) * u64::from(s) <= n, "{n}");
        }
    }

    #[test]
    fn footer_fields_and_checksum_match_the_spec() {
        let size = 3u64 << 30;
        let f = footer(size, VHD_EPOCH_UNIX + 1000, &[7; 32]);
        assert_eq!(&f[0..8], b"conectix");
        assert_eq!(be32(&f[8..12]), 2);
        assert_eq!(be32(&f[12..16]), 0x0001_0000);
        assert_eq!(&f[16..24], &[0xff; 8]);
        assert_eq!(be32(&f[24..28]), 1000);
        assert_eq!(u64::from_be_bytes(f[48..56].try_into().unwrap()), size);
        assert_eq!(u16::from_be_bytes([f[56], f[57]]), 6241);
        assert_eq!((f[58], f[59]), (16, 63));
        assert_eq!(be32(&f[60..64]), 2, "fixed disk type");
        // The checksum: sum the bytes by hand, with the field zeroed, and complement.
        let mut zeroed = f;
        zeroed[64..68].fill(0);
        let sum: u32 = zeroed.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(be32(&f[64..68]), !sum);
        // Same input, same footer; another disk, another unique id.
        assert_eq!(f, footer(size, VHD_EPOCH_UNIX + 1000, &[7; 32]));
        assert_ne!(
            f[68..84],
            footer(size, VHD_EPOCH_UNIX + 1000, &[8; 32])[68..84]
        );
        assert!(f[85..].iter().all(|&b| b == 0));
    }

    #[test]
    fn timestamps_before_2000_clamp_to_zero() {
        let f = footer(1 << 20, 0, &[0; 32]);
        assert_eq!(be32(&f[24..28]), 0);
    }
}
