//! The streaming cluster loop: read in guest order, drop free and all-zero clusters
//! (sparsify), compress on every core, hand clusters in order to the output.
//!
//! Memory is bounded: one reader thread stays at most two batches ahead, and a batch is
//! compressed in parallel (rayon) and written before the next one is taken.

use std::sync::mpsc::sync_channel;

use anyhow::Result;
use rayon::prelude::*;

use super::compress::{self, Codec};
use super::discard;
use super::source::{BlockSource, is_zero};
use crate::progress::Task;

/// Output cluster size for every format: qcow2's default, and the unit of sparseness.
pub const CLUSTER: usize = 64 * 1024;
/// 128 clusters (8 MiB) per batch: enough work to keep every core busy between writes.
const BATCH: usize = 128;

/// One processed guest cluster.
pub enum Cluster<'a> {
    /// All zeros (or free in the filesystem): not written.
    Zero,
    /// Stored as read.
    Plain(&'a [u8]),
    /// A compressed stream, smaller than a cluster.
    Compressed(&'a [u8]),
}

/// Where processed clusters go, in increasing guest order.
pub trait Sink {
    /// Takes guest cluster `idx`; calls come in increasing `idx` order.
    fn cluster(&mut self, idx: u64, data: Cluster<'_>) -> Result<()>;
}

/// What the loop did, for the report and the outcome.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Stats {
    /// Clusters processed (the disk's virtual size in clusters).
    pub clusters: u64,
    /// Clusters that read as zeros or lie in free filesystem space (not written).
    pub zero: u64,
    /// Clusters stored compressed.
    pub compressed: u64,
    /// Clusters stored as is (no codec, or compression did not pay).
    pub plain: u64,
}

struct Batch {
    first: u64,
    data: Vec<u8>,
    known_zero: Vec<bool>,
}

enum Done {
    Zero,
    Plain,
    Compressed(Vec<u8>),
}

/// Streams every cluster of `src` through `sink`; `free` ranges (sorted) read as zeros.
pub fn run(
    src: &dyn BlockSource,
    free: &[(u64, u64)],
    codec: Option<Codec>,
    sink: &mut dyn Sink,
    progress: &Task,
) -> Result<Stats> {
    let size = src.virtual_size();
    let clusters = size.div_ceil(CLUSTER as u64);
    let mut stats = Stats {
        clusters,
        ..Stats::default()
    };
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = sync_channel::<Result<Batch>>(2);
        s.spawn(move || {
            let mut first = 0u64;
            while first < clusters {
                let n = (BATCH as u64).min(clusters - first) as usize;
                let batch = read_batch(src, free, first, n);
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
                first += n as u64;
            }
        });
        for batch in rx {
            let batch = batch?;
            let done: Vec<Result<Done>> = batch
                .data
                .par_chunks(CLUSTER)
                .zip(batch.known_zero.par_iter())
                .map(|(data, &known_zero)| {
                    if known_zero || is_zero(data) {
                        return Ok(Done::Zero);
                    }
                    Ok(match codec {
                        Some(c) => compress::compress_cluster(c, data)?
                            .map_or(Done::Plain, Done::Compressed),
                        None => Done::Plain,
                    })
                })
                .collect();
            for (i, d) in done.into_iter().enumerate() {
                let idx = batch.first + i as u64;
                let data = &batch.data[i * CLUSTER..(i + 1) * CLUSTER];
                match d? {
                    Done::Zero => {
                        stats.zero += 1;
                        sink.cluster(idx, Cluster::Zero)?;
                    }
                    Done::Plain => {
                        stats.plain += 1;
                        sink.cluster(idx, Cluster::Plain(data))?;
                    }
                    Done::Compressed(c) => {
                        stats.compressed += 1;
                        sink.cluster(idx, Cluster::Compressed(&c))?;
                    }
                }
            }
            progress.advance((batch.known_zero.len() * CLUSTER) as u64);
        }
        Ok(())
    })?;
    Ok(stats)
}

fn read_batch(src: &dyn BlockSource, free: &[(u64, u64)], first: u64, n: usize) -> Result<Batch> {
    let mut data = vec![0u8; n * CLUSTER];
    let mut known_zero = vec![false; n];
    for (i, chunk) in data.chunks_mut(CLUSTER).enumerate() {
        let off = (first + i as u64) * CLUSTER as u64;
        known_zero[i] = !src.read_at(off, chunk)?;
    }
    discard::zero_free(free, first * CLUSTER as u64, &mut data);
    Ok(Batch {
        first,
        data,
        known_zero,
    })
}
