//! Google Compute Engine's import format: the raw disk as `disk.raw` in a gzip-compressed
//! GNU tar, stored as a sparse entry (what `tar --format=oldgnu -Sczf` writes), so the holes
//! of a 10 GiB disk cost nothing in the archive.
//!
//! The `tar` crate encodes the headers (its `GnuHeader`/`GnuExtSparseHeader` setters), but
//! its `Builder` only makes sparse entries from a file on disk by probing its holes; here the
//! data comes from the cluster loop, so the entry is laid out by hand: header, extension
//! headers, the data chunks in order, padding.
//!
//! An old-GNU sparse header lists every data chunk before the data, so the disk is read
//! twice: once to map the non-zero clusters, once to stream them. Memory stays at the
//! cluster loop's batches plus one (offset, length) pair per data extent.

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::{Context, Result, ensure};
use flate2::write::GzEncoder;
use tar::{EntryType, GnuExtSparseHeader, Header};

use super::convert::{self, CLUSTER, Cluster, Sink, Stats};
use super::source::BlockSource;
use crate::progress::Task;

/// The file name GCE looks for inside the archive.
pub const DISK_NAME: &str = "disk.raw";

/// Records the data extents (byte ranges, merged when adjacent).
struct MapSink {
    size: u64,
    extents: Vec<(u64, u64)>,
}

impl Sink for MapSink {
    fn cluster(&mut self, idx: u64, data: Cluster<'_>) -> Result<()> {
        if let Cluster::Plain(_) = data {
            let start = idx * CLUSTER as u64;
            let end = (start + CLUSTER as u64).min(self.size);
            match self.extents.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => self.extents.push((start, end)),
            }
        }
        Ok(())
    }
}

/// Writes the data clusters into the archive and counts them against the map.
struct DataSink<W: Write> {
    out: W,
    size: u64,
    written: u64,
}

impl<W: Write> Sink for DataSink<W> {
    fn cluster(&mut self, idx: u64, data: Cluster<'_>) -> Result<()> {
        if let Cluster::Plain(d) = data {
            let off = idx * CLUSTER as u64;
            let n = (self.size - off).min(d.len() as u64) as usize;
            self.out
                .write_all(&d[..n])
                .context("compressing the disk data")?;
            self.written += n as u64;
        }
        Ok(())
    }
}

/// The entry's headers: the main header with the first 4 chunks, then extension headers of
/// 21 chunks each. A disk that ends in a hole gets a last, empty chunk at its end, as GNU tar
/// writes it, so readers that size the file from the map agree with `realsize`.
pub fn sparse_headers(size: u64, extents: &[(u64, u64)], mtime: u64) -> Result<Vec<u8>> {
    let mut chunks: Vec<(u64, u64)> = extents.iter().map(|&(s, e)| (s, e - s)).collect();
    if extents.last().is_none_or(|&(_, e)| e < size) {
        chunks.push((size, 0));
    }
    let stored: u64 = chunks.iter().map(|c| c.1).sum();
    let mut h = Header::new_gnu();
    h.set_path(DISK_NAME).context("naming the tar entry")?;
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(EntryType::GNUSparse);
    h.set_size(stored);
    let gnu = h.as_gnu_mut().context("a GNU tar header")?;
    gnu.set_real_size(size);
    let first = gnu.sparse.len();
    for (slot, &(off, len)) in gnu.sparse.iter_mut().zip(&chunks) {
        slot.set_offset(off);
        slot.set_length(len);
    }
    gnu.set_is_extended(chunks.len() > first);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    let rest: Vec<_> = chunks[chunks.len().min(first)..].chunks(21).collect();
    for (i, group) in rest.iter().enumerate() {
        let mut ext = GnuExtSparseHeader::new();
        for (slot, &(off, len)) in ext.sparse.iter_mut().zip(group.iter()) {
            slot.set_offset(off);
            slot.set_length(len);
        }
        ext.set_is_extended(i + 1 < rest.len());
        out.extend_from_slice(ext.as_bytes());
    }
    Ok(out)
}

/// Writes `src` as a GCE `.tar.gz` into `file`; returns the loop's stats, the synced file
/// and its length. `mtime` is the entry's time (SOURCE_DATE_EPOCH), so the bytes are
/// reproducible.
pub fn write(
    src: &dyn BlockSource,
    free: &[(u64, u64)],
    file: File,
    mtime: u64,
    progress: &Task,
) -> Result<(Stats, File, u64)> {
    let size = src.virtual_size();
    let mut map = MapSink {
        size,
        extents: Vec::new(),
    };
    convert::run(src, free, None, &mut map, progress).context("mapping the disk's data")?;
    let stored: u64 = map.extents.iter().map(|(s, e)| e - s).sum();

    // flate2's GzEncoder writes mtime 0 and no file name: the gzip header is fixed too.
    let gz = GzEncoder::new(
        BufWriter::with_capacity(1 << 20, file),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    tar.get_mut()
        .write_all(&sparse_headers(size, &map.extents, mtime)?)
        .context("writing the tar header")?;
    let mut data = DataSink {
        out: tar.get_mut(),
        size,
        written: 0,
    };
    let stats = convert::run(src, free, None, &mut data, progress)?;
    ensure!(
        data.written == stored,
        "the disk changed while it was read ({} data bytes, then {})",
        stored,
        data.written
    );
    let pad = stored.next_multiple_of(512) - stored;
    tar.get_mut()
        .write_all(&vec![0u8; pad as usize])
        .context("padding the tar entry")?;
    let gz = tar.into_inner().context("ending the tar archive")?;
    let out = gz.finish().context("finishing the gzip stream")?;
    let (file, len) = crate::fsutil::finish_buffered(out, "the archive")?;
    Ok((stats, file, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(h: &[u8], at: usize, len: usize) -> u64 {
        let s = std::str::from_utf8(&h[at..at + len]).unwrap();
        u64::from_str_radix(s.trim_end_matches('\0').trim(), 8).unwrap()
    }

    #[test]
    fn headers_list_every_chunk_in_main_and_extension_blocks() {
        // 30 extents: 4 in the header, 21 in the first extension, 5 (+ the end marker) next.
        let extents: Vec<(u64, u64)> = (0..30).map(|i| (i << 20, (i << 20) + 4096)).collect();
        let size = 64 << 20;
        let h = sparse_headers(size, &extents, 1234).unwrap();
        assert_eq!(h.len(), 3 * 512);
        assert_eq!(h[156], b'S', "GNU sparse type flag");
        assert_eq!(field(&h, 124, 12), 30 * 4096, "stored size");
        assert_eq!(field(&h, 483, 12), size, "real size");
        assert_eq!(field(&h, 136, 12), 1234, "mtime");
        assert_eq!(field(&h, 386 + 24, 12), 1 << 20, "second chunk offset");
        assert_eq!(h[482], 1, "extended");
        let ext1 = &h[512..1024];
        assert_eq!(field(ext1, 0, 12), 4 << 20);
        assert_eq!(ext1[504], 1, "another extension follows");
        let ext2 = &h[1024..];
        assert_eq!(field(ext2, 5 * 24, 12), size, "end marker offset");
        assert_eq!(field(ext2, 5 * 24 + 12, 12), 0, "end marker length");
        assert_eq!(ext2[504], 0);
    }

    #[test]
    fn an_empty_disk_is_one_empty_chunk_at_its_end() {
        let h = sparse_headers(1 << 20, &[], 0).unwrap();
        assert_eq!(h.len(), 512);
        assert_eq!(field(&h, 124, 12), 0);
        assert_eq!(field(&h, 386, 12), 1 << 20);
        assert_eq!(h[482], 0);
    }
}
