//! Our own qcow2 reader (v2 and v3).
//!
//! Hand-written rather than qcow2-rs because that crate panics when a backing file is missing,
//! resolves relative backing names against the process CWD instead of the image's directory,
//! cannot read zstd-compressed images, and `unwrap`s in library paths (docs/crates.md §2).
//! Postprocess must turn every corrupt input into an error that names the file and the
//! problem, so this reader validates all metadata (header, L1/L2 tables, refcounts) before
//! a single byte of output is written. The read path itself is small: a table walk.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::compress::{self, Codec};
use super::source::BlockSource;

/// The first four bytes of every qcow2 file.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// L1 entries and standard L2 entries keep the host offset in bits 9..55.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
const ZERO_FLAG: u64 = 1;

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_CRYPTO: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

/// The header fields this reader uses, parsed from the first cluster (see QEMU's
/// docs/interop/qcow2.txt).
#[derive(Debug, Clone)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// File offset of the backing file name (0: no backing file).
    pub backing_file_offset: u64,
    /// Length of the backing file name in bytes.
    pub backing_file_size: u32,
    /// log2 of the cluster size (9..=21).
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// 0 unencrypted; encrypted images are refused.
    pub crypt_method: u32,
    /// Number of L1 table entries.
    pub l1_size: u32,
    /// File offset of the L1 table.
    pub l1_table_offset: u64,
    /// File offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Size of the refcount table, in clusters.
    pub refcount_table_clusters: u32,
    /// Incompatible feature bits (version 3; 0 for version 2).
    pub incompatible_features: u64,
    /// log2 of the refcount width in bits (4 for version 2).
    pub refcount_order: u32,
    /// Header length in bytes (72 for version 2).
    pub header_length: u32,
    /// Cluster compression: 0 zlib, 1 zstd.
    pub compression_type: u8,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Header {
    /// Parses and sanity-checks a header; `buf` holds at least the first 512 bytes of the file
    /// (shorter only if the file is).
    pub fn parse(buf: &[u8]) -> Result<Header> {
        ensure!(
            buf.len() >= 72,
            "the file is only {} bytes, too short for a qcow2 header (truncated?)",
            buf.len()
        );
        ensure!(
            buf[0..4] == MAGIC,
            "bad magic {:02x?}: not a qcow2 image (for a raw disk pass --input-format raw)",
            &buf[0..4]
        );
        let version = be32(buf, 4);
        ensure!(
            version == 2 || version == 3,
            "unsupported qcow2 version {version} (only 2 and 3 exist)"
        );
        let mut h = Header {
            version,
            backing_file_offset: be64(buf, 8),
            backing_file_size: be32(buf, 16),
            cluster_bits: be32(buf, 20),
            size: be64(buf, 24),
            crypt_method: be32(buf, 32),
            l1_size: be32(buf, 36),
            l1_table_offset: be64(buf, 40),
            refcount_table_offset: be64(buf, 48),
            refcount_table_clusters: be32(buf, 56),
            incompatible_features: 0,
            refcount_order: 4,
            header_length: 72,
            compression_type: 0,
        };
        if version == 3 {
            ensure!(buf.len() >= 104, "the version 3 header is truncated");
            h.incompatible_features = be64(buf, 72);
            h.refcount_order = be32(buf, 96);
            h.header_length = be32(buf, 100);
            ensure!(
                h.header_length >= 104 && h.header_length as usize <= buf.len(),
                "header length {} is out of range",
                h.header_length
            );
            if h.header_length > 104 {
                h.compression_type = buf[104];
            }
        }
        ensure!(
            (9..=21).contains(&h.cluster_bits),
            "cluster_bits {} is out of range (9..=21): the header is corrupt",
            h.cluster_bits
        );
        ensure!(
            h.refcount_order <= 6,
            "refcount_order {} is out of range (0..=6)",
            h.refcount_order
        );
        if h.crypt_method != 0 {
            let kind = if h.crypt_method == 1 { "AES" } else { "LUKS" };
            bail!(
                "the image is encrypted ({kind}); decrypt it first, e.g. `qemu-img convert --object secret,id=sec0,... \
                 --image-opts ... -O qcow2 plain.qcow2`"
            );
        }
        let f = h.incompatible_features;
        ensure!(
            f & INCOMPAT_DIRTY == 0,
            "the image is marked dirty (refcounts may be stale); repair it with `qemu-img check -r all`"
        );
        ensure!(
            f & INCOMPAT_CORRUPT == 0,
            "the image is marked corrupt by QEMU; repair it with `qemu-img check -r all`"
        );
        ensure!(
            f & INCOMPAT_DATA_FILE == 0,
            "images with an external data file are not supported; convert with qemu-img first"
        );
        ensure!(
            f & INCOMPAT_EXTL2 == 0,
            "images with extended L2 entries (subclusters) are not supported; convert with qemu-img first"
        );
        let unknown = f & !(INCOMPAT_DIRTY
            | INCOMPAT_CORRUPT
            | INCOMPAT_DATA_FILE
            | INCOMPAT_COMPRESSION
            | INCOMPAT_EXTL2);
        ensure!(
            unknown == 0,
            "unknown incompatible feature bits {unknown:#x}; a newer QEMU wrote this image"
        );
        ensure!(
            h.compression_type <= 1,
            "unknown compression type {} (0 = zlib, 1 = zstd)",
            h.compression_type
        );
        Ok(h)
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// The codec of the compressed clusters.
    pub fn codec(&self) -> Codec {
        if self.compression_type == 1 {
            Codec::Zstd
        } else {
            Codec::Zlib
        }
    }
}

/// An open qcow2 image whose metadata has been checked; reads go through its tables and fall
/// through to the backing image for unallocated clusters.
pub struct Qcow2Image {
    path: PathBuf,
    file: File,
    file_len: u64,
    header: Header,
    /// L2 tables by L1 index, all loaded at open (8 bytes per guest cluster: 512 KiB for a
    /// 4 GiB disk with 64 KiB clusters).
    l2: Vec<Option<Vec<u64>>>,
    /// The backing file name and format the header names; `backing` opens them.
    backing_name: Option<(String, Option<String>)>,
    /// The backing image once `backing::open_chain` attached it.
    backing: Option<Box<dyn BlockSource>>,
}

impl Qcow2Image {
    /// Opens and validates the one file `path`; its backing file, if it names one, is opened
    /// and attached by `backing::open_chain`.
    pub fn open(path: &Path) -> Result<Qcow2Image> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let file_len = file
            .metadata()
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len();
        let mut first = vec![0u8; 4096.min(file_len as usize)];
        file.read_exact_at(&mut first, 0)
            .with_context(|| format!("reading the header of {}", path.display()))?;
        let header = Header::parse(&first)
            .with_context(|| format!("reading qcow2 image {}", path.display()))?;
        let mut img = Qcow2Image {
            path: path.to_owned(),
            file,
            file_len,
            header,
            l2: Vec::new(),
            backing_name: None,
            backing: None,
        };
        img.load_tables()
            .with_context(|| format!("checking qcow2 image {}: corrupt", path.display()))?;
        let (backing_name, backing_format) = img.backing_info(&first)?;
        img.backing_name = backing_name.map(|name| (name, backing_format));
        Ok(img)
    }

    /// The backing file name and format (`None` when the header names none).
    pub fn backing_file(&self) -> Option<(&str, Option<&str>)> {
        self.backing_name
            .as_ref()
            .map(|(name, format)| (name.as_str(), format.as_deref()))
    }

    /// Reads unallocated clusters from `backing` from now on.
    pub fn attach_backing(&mut self, backing: Box<dyn BlockSource>) {
        self.backing = Some(backing);
    }

    fn cs(&self) -> u64 {
        self.header.cluster_size()
    }

    /// Reads `len` bytes at host `offset`, failing with "truncated" when the file is shorter.
    fn read_host(&self, offset: u64, len: usize, what: &str) -> Result<Vec<u8>> {
        ensure!(
            offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= self.file_len),
            "{what} at offset {offset:#x} (+{len} bytes) lies past the end of the file ({} bytes): corrupt or truncated",
            self.file_len
        );
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .with_context(|| format!("reading {what} at {offset:#x}"))?;
        Ok(buf)
    }

    /// Reads the backing file name and format from the header and its extensions.
    fn backing_info(&self, first: &[u8]) -> Result<(Option<String>, Option<String>)> {
        let h = &self.header;
        let mut format = None;
        // Header extensions follow the header, up to the end of the first cluster.
        let mut at = h.header_length as usize;
        let end = (self.cs() as usize).min(first.len());
        while at + 8 <= end {
            let (ty, len) = (be32(first, at), be32(first, at + 4) as usize);
            at += 8;
            if ty == EXT_END {
                break;
            }
            ensure!(
                at + len <= end,
                "header extension {ty:#x} of {} runs past the first cluster: corrupt",
                self.path.display()
            );
            match ty {
                EXT_BACKING_FORMAT => {
                    format = Some(String::from_utf8_lossy(&first[at..at + len]).into_owned())
                }
                EXT_CRYPTO => bail!(
                    "{}: the image carries an encryption header; decrypt it first",
                    self.path.display()
                ),
                EXT_DATA_FILE => bail!(
                    "{}: images with an external data file are not supported",
                    self.path.display()
                ),
                _ => {}
            }
            at += len.div_ceil(8) * 8;
        }
        if h.backing_file_offset == 0 {
            return Ok((None, None));
        }
        ensure!(
            h.backing_file_size > 0 && h.backing_file_size <= 1023,
            "{}: backing file name length {} is out of range",
            self.path.display(),
            h.backing_file_size
        );
        let raw = self
            .read_host(
                h.backing_file_offset,
                h.backing_file_size as usize,
                "the backing file name",
            )
            .with_context(|| format!("reading {}", self.path.display()))?;
        let name = String::from_utf8(raw).with_context(|| {
            format!(
                "{}: the backing file name is not UTF-8",
                self.path.display()
            )
        })?;
        Ok((Some(name), format))
    }

    /// Loads the L1 and L2 tables, checking every offset against the file and every referenced
    /// host cluster against the refcounts (a cluster in use with refcount 0 means QEMU could
    /// hand it out again: the image is inconsistent).
    fn load_tables(&mut self) -> Result<()> {
        let h = self.header.clone();
        let cs = self.cs();
        let l2_entries = cs / 8;
        let clusters = h.size.div_ceil(cs);
        let l1_needed = clusters.div_ceil(l2_entries);
        ensure!(
            u64::from(h.l1_size) >= l1_needed,
            "the L1 table has {} entries but the virtual size {} needs {l1_needed}",
            h.l1_size,
            h.size
        );
        // Refuse absurd sizes before allocating for them (a corrupt size field).
        ensure!(
            h.l1_size <= 32 * 1024 * 1024,
            "the L1 table size {} is absurd",
            h.l1_size
        );
        let mut used: Vec<(u64, u64, &'static str)> = vec![(0, 1, "the header")];
        let l1_bytes = h.l1_size as usize * 8;
        ensure!(
            h.l1_table_offset.is_multiple_of(cs),
            "the L1 table offset {:#x} is not cluster-aligned",
            h.l1_table_offset
        );
        let l1raw = self.read_host(h.l1_table_offset, l1_bytes, "the L1 table")?;
        used.push((
            h.l1_table_offset,
            (l1_bytes as u64).div_ceil(cs).max(1),
            "the L1 table",
        ));
        let mut l2 = Vec::with_capacity(l1_needed as usize);
        // Each L2 table is loaded in full, so one table named by many L1 entries would cost a
        // cluster of memory per entry (GiBs from a KiB file); in the active L1 table QEMU never
        // shares a table, so sharing means corruption.
        let mut l2_seen: HashMap<u64, usize> = HashMap::new();
        for i in 0..l1_needed as usize {
            let entry = be64(&l1raw, i * 8);
            let off = entry & OFFSET_MASK;
            if off == 0 {
                l2.push(None);
                continue;
            }
            ensure!(
                off.is_multiple_of(cs),
                "L1 entry {i} points to an unaligned L2 table at {off:#x}"
            );
            if let Some(first) = l2_seen.insert(off, i) {
                bail!("L1 entries {first} and {i} both point to the L2 table at {off:#x}");
            }
            let raw = self.read_host(off, cs as usize, &format!("the L2 table of L1 entry {i}"))?;
            used.push((off, 1, "an L2 table"));
            let table: Vec<u64> = raw
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().expect("8")))
                .collect();
            for (j, &e) in table.iter().enumerate() {
                let guest = ((i as u64 * l2_entries) + j as u64) * cs;
                if guest >= h.size {
                    break;
                }
                if e & COMPRESSED != 0 {
                    let (off, len) = self.compressed_extent(e);
                    ensure!(
                        off < self.file_len,
                        "the compressed cluster at guest offset {guest:#x} points to {off:#x}, past the end of the file ({} bytes): corrupt or truncated",
                        self.file_len
                    );
                    let first = off / cs;
                    let last = (off + len - 1) / cs;
                    used.push((first * cs, last - first + 1, "a compressed cluster"));
                } else {
                    let off = e & OFFSET_MASK;
                    if off == 0 || (h.version == 3 && e & ZERO_FLAG != 0) {
                        continue;
                    }
                    ensure!(
                        off.is_multiple_of(cs),
                        "the data cluster at guest offset {guest:#x} has an unaligned host offset {off:#x}"
                    );
                    // Only the part inside the virtual disk has to exist in the file.
                    let need = cs.min(h.size - guest);
                    ensure!(
                        off + need <= self.file_len,
                        "the data cluster at guest offset {guest:#x} lies at {off:#x}, past the end of the file ({} bytes): corrupt or truncated",
                        self.file_len
                    );
                    used.push((off, 1, "a data cluster"));
                }
            }
            l2.push(Some(table));
        }
        self.l2 = l2;
        self.check_refcounts(&used)
    }

    /// The host byte offset and the number of bytes QEMU reads for a compressed L2 entry.
    fn compressed_extent(&self, e: u64) -> (u64, u64) {
        let cb = self.header.cluster_bits;
        let x = 62 - (cb - 8);
        let off = e & ((1u64 << x) - 1);
        let nb = (e >> x) & ((1u64 << (cb - 8)) - 1);
        (off, (nb + 1) * 512 - (off & 511))
    }

    fn check_refcounts(&self, used: &[(u64, u64, &'static str)]) -> Result<()> {
        let h = &self.header;
        let cs = self.cs();
        ensure!(
            h.refcount_table_offset.is_multiple_of(cs),
            "the refcount table offset {:#x} is not cluster-aligned",
            h.refcount_table_offset
        );
        ensure!(h.refcount_table_clusters > 0, "the refcount table is empty");
        let rt_bytes = h.refcount_table_clusters as u64 * cs;
        ensure!(
            rt_bytes <= 256 << 20,
            "the refcount table size ({} clusters) is absurd",
            h.refcount_table_clusters
        );
        let rt = self.read_host(
            h.refcount_table_offset,
            rt_bytes as usize,
            "the refcount table",
        )?;
        let bits = 1u64 << h.refcount_order;
        let per_block = cs * 8 / bits;
        let mut blocks: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut refcount = |cluster: u64| -> Result<u64> {
            let bi = cluster / per_block;
            if bi as usize * 8 >= rt.len() {
                return Ok(0);
            }
            let boff = be64(&rt, bi as usize * 8) & !(cs - 1) & OFFSET_MASK;
            if boff == 0 {
                return Ok(0);
            }
            // Keyed by host offset, not table index: table entries naming one block many times
            // must not load it many times (memory stays within the file's size).
            let b = match blocks.entry(boff) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(self.read_host(boff, cs as usize, &format!("refcount block {bi}"))?)
                }
            };
            let idx = cluster % per_block;
            let bit = idx * bits;
            let v = match bits {
                64 => be64(b, (bit / 8) as usize),
                32 => u64::from(be32(b, (bit / 8) as usize)),
                16 => u64::from(u16::from_be_bytes([
                    b[(bit / 8) as usize],
                    b[(bit / 8) as usize + 1],
                ])),
                8 => u64::from(b[(bit / 8) as usize]),
                // Sub-byte refcounts are packed from the least significant bit.
                _ => u64::from(b[(bit / 8) as usize] >> (bit % 8)) & ((1 << bits) - 1),
            };
            Ok(v)
        };
        for c in 0..h.refcount_table_clusters as u64 {
            if refcount(h.refcount_table_offset / cs + c)? == 0 {
                bail!(
                    "refcount inconsistency: the refcount table's own cluster {:#x} has refcount 0",
                    h.refcount_table_offset + c * cs
                );
            }
        }
        for &(start, n, what) in used {
            for c in start / cs..start / cs + n {
                if refcount(c)? == 0 {
                    bail!(
                        "refcount inconsistency: {what} uses host cluster {:#x} whose refcount is 0; \
                         repair it with `qemu-img check -r all`",
                        c * cs
                    );
                }
            }
        }
        Ok(())
    }

    /// Reads the part `[in_off, in_off + buf.len())` of guest cluster `idx`.
    fn read_cluster_part(&self, idx: u64, in_off: u64, buf: &mut [u8]) -> Result<bool> {
        let cs = self.cs();
        let l2_entries = cs / 8;
        let entry = self
            .l2
            .get((idx / l2_entries) as usize)
            .and_then(|t| t.as_ref())
            .map_or(0, |t| t[(idx % l2_entries) as usize]);
        let guest = idx * cs + in_off;
        if entry & COMPRESSED != 0 {
            let (off, len) = self.compressed_extent(entry);
            let len = len.min(self.file_len - off) as usize;
            let mut packed = vec![0u8; len];
            self.file
                .read_exact_at(&mut packed, off)
                .with_context(|| format!("reading {} at {off:#x}", self.path.display()))?;
            let mut cluster = vec![0u8; cs as usize];
            compress::decompress_cluster(self.header.codec(), &packed, &mut cluster).with_context(|| {
                format!("{}: the compressed cluster at guest offset {:#x} (host {off:#x}) is corrupt", self.path.display(), idx * cs)
            })?;
            buf.copy_from_slice(&cluster[in_off as usize..in_off as usize + buf.len()]);
            return Ok(true);
        }
        let off = entry & OFFSET_MASK;
        if self.header.version == 3 && entry & ZERO_FLAG != 0 {
            buf.fill(0);
            return Ok(false);
        }
        if off == 0 {
            return match &self.backing {
                Some(b) => b.read_at(guest, buf),
                None => {
                    buf.fill(0);
                    Ok(false)
                }
            };
        }
        // Tail bytes past the end of the file (a last cluster cut at the virtual size) read as zero.
        let host = off + in_off;
        let avail = self.file_len.saturating_sub(host).min(buf.len() as u64) as usize;
        let (data, rest) = buf.split_at_mut(avail);
        self.file
            .read_exact_at(data, host)
            .with_context(|| format!("reading {} at {host:#x}", self.path.display()))?;
        rest.fill(0);
        Ok(true)
    }
}

impl BlockSource for Qcow2Image {
    fn virtual_size(&self) -> u64 {
        self.header.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<bool> {
        let cs = self.cs();
        let mut any = false;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let in_off = pos % cs;
            let n = ((cs - in_off) as usize).min(buf.len() - done);
            let part = &mut buf[done..done + n];
            if pos >= self.header.size {
                part.fill(0);
            } else {
                // A read that straddles the virtual size: only the inside comes from the image.
                let inside = ((self.header.size - pos) as usize).min(n);
                any |= self.read_cluster_part(pos / cs, in_off, &mut part[..inside])?;
                part[inside..].fill(0);
            }
            done += n;
        }
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use super::Header;

    fn v3_header() -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[0..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        h[96..100].copy_from_slice(&4u32.to_be_bytes());
        h[100..104].copy_from_slice(&112u32.to_be_bytes());
        h
    }

    #[test]
    fn header_errors_say_what_is_wrong() {
        type Mutation<'a> = (&'a dyn Fn(&mut Vec<u8>), &'a str);
        let cases: &[Mutation] = &[
            (&|h| h[0] = b'X', "bad magic"),
            (&|h| h.truncate(50), "too short"),
            (&|h| h[7] = 9, "unsupported qcow2 version 9"),
            (&|h| h[23] = 40, "cluster_bits 40"),
            (&|h| h[35] = 2, "encrypted (LUKS)"),
            (&|h| h[79] = 1, "dirty"),
            (&|h| h[79] = 0x40, "unknown incompatible"),
            (&|h| h[104] = 7, "unknown compression type 7"),
        ];
        assert!(Header::parse(&v3_header()).is_ok());
        for (mutate, want) in cases {
            let mut h = v3_header();
            mutate(&mut h);
            let err = format!("{:#}", Header::parse(&h).unwrap_err());
            assert!(err.contains(want), "{err:?} does not contain {want:?}");
        }
    }
}
