//! A streaming qcow2 v3 writer: clusters arrive in guest order and are appended; L2 tables
//! are written as soon as their 512 MiB span is done, and the L1 table, the refcounts and the
//! header are written at the end. Memory stays bounded by one L2 table plus a 16-bit
//! refcount per host cluster.
//!
//! Hand-written because no crate writes compressed qcow2 clusters (qcow2-rs cannot,
//! docs/crates.md §2). Layout facts (from QEMU's docs/interop/qcow2.txt, verified against
//! `qemu-img check`): compressed streams are packed back to back at byte offsets, and each
//! host cluster's refcount is the number of descriptors whose data touches it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result, ensure};

use super::compress::Codec;

/// log2 of the cluster size we write: 64 KiB, QEMU's default.
pub const CLUSTER_BITS: u32 = 16;
/// The cluster size we write, in bytes.
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
const L2_ENTRIES: u64 = CLUSTER_SIZE / 8;
const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;
/// refcount_order 4: 16-bit refcounts, QEMU's default.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_SIZE / 2;
const HEADER_LENGTH: u32 = 112;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;

/// One guest cluster as it goes to the file.
pub enum ClusterData<'a> {
    /// Stored as is (incompressible, or `--compression none`).
    Plain(&'a [u8]),
    /// A compressed stream (smaller than a cluster).
    Compressed(&'a [u8]),
}

/// Writes a qcow2 image in one pass: clusters in increasing guest order, tables at the end.
pub struct Qcow2Writer {
    out: BufWriter<File>,
    size: u64,
    codec: Option<Codec>,
    /// Next free byte in the file.
    pos: u64,
    l1: Vec<u64>,
    l2: Option<(usize, Vec<u64>)>,
    refcounts: Vec<u16>,
    last_cluster: Option<u64>,
}

impl Qcow2Writer {
    /// Starts an image of `size` guest bytes in `file` (empty, opened for writing).
    /// `codec` is recorded in the header (zstd needs the compression-type feature bit).
    pub fn new(file: File, size: u64, codec: Option<Codec>) -> Result<Qcow2Writer> {
        let clusters = size.div_ceil(CLUSTER_SIZE);
        let l1_size = clusters.div_ceil(L2_ENTRIES) as usize;
        let mut w = Qcow2Writer {
            out: BufWriter::with_capacity(4 << 20, file),
            size,
            codec,
            pos: 0,
            l1: vec![0; l1_size],
            l2: None,
            refcounts: Vec::new(),
            last_cluster: None,
        };
        // Cluster 0 is the header, filled in by `finish`.
        w.pad_to_cluster()?;
        w.append(&[0u8; CLUSTER_SIZE as usize])?;
        w.add_ref(0, 1);
        Ok(w)
    }

    fn add_ref(&mut self, first: u64, n: u64) {
        let end = (first + n) as usize;
        if self.refcounts.len() < end {
            self.refcounts.resize(end, 0);
        }
        for r in &mut self.refcounts[first as usize..end] {
            *r += 1;
        }
    }

    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data).context("writing the image")?;
        self.pos += data.len() as u64;
        Ok(())
    }

    fn pad_to_cluster(&mut self) -> Result<()> {
        let pad = self.pos.next_multiple_of(CLUSTER_SIZE) - self.pos;
        if pad > 0 {
            self.append(&vec![0u8; pad as usize])?;
        }
        Ok(())
    }

    /// Appends a whole cluster-aligned block and gives it refcount 1; returns its offset.
    fn append_aligned(&mut self, data: &[u8]) -> Result<u64> {
        self.pad_to_cluster()?;
        let at = self.pos;
        self.append(data)?;
        self.pad_to_cluster()?;
        self.add_ref(at / CLUSTER_SIZE, (self.pos - at) / CLUSTER_SIZE);
        Ok(at)
    }

    fn flush_l2(&mut self) -> Result<()> {
        if let Some((l1i, table)) = self.l2.take() {
            let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_be_bytes()).collect();
            let at = self.append_aligned(&bytes)?;
            self.l1[l1i] = at | COPIED;
        }
        Ok(())
    }

    /// Writes guest cluster `idx`; clusters must come in increasing order, and clusters never
    /// written read as zeros.
    pub fn write_cluster(&mut self, idx: u64, data: ClusterData<'_>) -> Result<()> {
        ensure!(
            self.last_cluster.is_none_or(|l| idx > l),
            "clusters out of order ({idx})"
        );
        ensure!(
            idx < self.size.div_ceil(CLUSTER_SIZE),
            "cluster {idx} is past the end of the disk"
        );
        self.last_cluster = Some(idx);
        let l1i = (idx / L2_ENTRIES) as usize;
        if self.l2.as_ref().is_some_and(|(i, _)| *i != l1i) {
            self.flush_l2()?;
        }
        let entry = match data {
            ClusterData::Plain(d) => {
                ensure!(
                    d.len() as u64 == CLUSTER_SIZE,
                    "a plain cluster must be {CLUSTER_SIZE} bytes"
                );
                self.append_aligned(d)? | COPIED
            }
            ClusterData::Compressed(d) => {
                ensure!(
                    !d.is_empty() && (d.len() as u64) < CLUSTER_SIZE,
                    "compressed cluster of {} bytes",
                    d.len()
                );
                let off = self.pos;
                let len = d.len() as u64;
                self.append(d)?;
                let x = 62 - (CLUSTER_BITS - 8);
                // Additional 512-byte sectors after the one holding the first byte.
                let nb = ((off + len - 1) >> 9) - (off >> 9);
                let first = off / CLUSTER_SIZE;
                let last = (off + len - 1) / CLUSTER_SIZE;
                self.add_ref(first, last - first + 1);
                COMPRESSED | (nb << x) | off
            }
        };
        let (_, table) = self
            .l2
            .get_or_insert_with(|| (l1i, vec![0; L2_ENTRIES as usize]));
        table[(idx % L2_ENTRIES) as usize] = entry;
        Ok(())
    }

    /// Writes the remaining tables and the header, syncs, and returns the file and its size.
    pub fn finish(mut self) -> Result<(File, u64)> {
        self.flush_l2()?;
        let l1_bytes: Vec<u8> = self.l1.iter().flat_map(|e| e.to_be_bytes()).collect();
        let l1_offset = if l1_bytes.is_empty() {
            0
        } else {
            self.append_aligned(&l1_bytes)?
        };
        self.pad_to_cluster()?;

        // The refcount blocks and table must count themselves: grow until it fits.
        let base = self.pos / CLUSTER_SIZE;
        let (mut blocks, mut table) = (1u64, 1u64);
        loop {
            let total = base + blocks + table;
            let nb = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let nt = (nb * 8).div_ceil(CLUSTER_SIZE);
            if nb == blocks && nt == table {
                break;
            }
            (blocks, table) = (nb, nt);
        }
        self.add_ref(base, blocks + table);
        let total = (base + blocks + table) as usize;
        self.refcounts.resize(total, 0);
        let mut rb = Vec::with_capacity((blocks * CLUSTER_SIZE) as usize);
        for r in &self.refcounts {
            rb.extend_from_slice(&r.to_be_bytes());
        }
        rb.resize((blocks * CLUSTER_SIZE) as usize, 0);
        self.append(&rb)?;
        let mut rt = Vec::with_capacity((table * CLUSTER_SIZE) as usize);
        for b in 0..blocks {
            rt.extend_from_slice(&((base + b) * CLUSTER_SIZE).to_be_bytes());
        }
        rt.resize((table * CLUSTER_SIZE) as usize, 0);
        let rt_offset = self.pos;
        self.append(&rt)?;

        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing the image")?;
        let header = header_bytes(
            self.size,
            self.l1.len() as u32,
            l1_offset,
            rt_offset,
            table as u32,
            self.codec,
        );
        file.write_all_at(&header, 0)
            .context("writing the image header")?;
        let syncing = std::time::Instant::now();
        file.sync_all().context("syncing the image")?;
        tracing::info!("fsync in {:.2} s", syncing.elapsed().as_secs_f64());
        Ok((file, self.pos))
    }
}

fn header_bytes(
    size: u64,
    l1_size: u32,
    l1_offset: u64,
    rt_offset: u64,
    rt_clusters: u32,
    codec: Option<Codec>,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LENGTH as usize + 8);
    h.extend_from_slice(b"QFI\xfb");
    h.extend_from_slice(&3u32.to_be_bytes());
    h.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
    h.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
    h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
    h.extend_from_slice(&l1_size.to_be_bytes());
    h.extend_from_slice(&l1_offset.to_be_bytes());
    h.extend_from_slice(&rt_offset.to_be_bytes());
    h.extend_from_slice(&rt_clusters.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
    h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
    let zstd = codec == Some(Codec::Zstd);
    h.extend_from_slice(&(if zstd { INCOMPAT_COMPRESSION } else { 0 }).to_be_bytes());
    h.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
    h.extend_from_slice(&4u32.to_be_bytes()); // refcount_order
    h.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
    h.push(u8::from(zstd)); // compression_type
    h.extend_from_slice(&[0u8; 7]); // padding to a multiple of 8
    h.extend_from_slice(&[0u8; 8]); // end of header extensions
    h
}

impl super::convert::Sink for Qcow2Writer {
    fn cluster(&mut self, idx: u64, data: super::convert::Cluster<'_>) -> Result<()> {
        use super::convert::Cluster;
        match data {
            // Unallocated clusters read as zeros: the image has no backing file.
            Cluster::Zero => Ok(()),
            Cluster::Plain(d) => self.write_cluster(idx, ClusterData::Plain(d)),
            Cluster::Compressed(d) => self.write_cluster(idx, ClusterData::Compressed(d)),
        }
    }
}
