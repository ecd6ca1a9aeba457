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
        let reader = s.spawn(move || {
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
        // `rx` is consumed here, so an early error drops it before the join below, which ends
        // the reader at its next send instead of leaving it blocked on a full channel.
        let converted = rx.into_iter().try_for_each(|batch| -> Result<()> {
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
            Ok(())
        });
        // Joined here, not left to the scope: the scope waits only for the closure to return,
        // and the thread's thread-local destructors run after that, while we go on
        // (LeakSanitizer reported their registration as a leak in the qcow2_read fuzzer).
        if let Err(panic) = reader.join() {
            std::panic::resume_unwind(panic);
        }
        converted
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::fsutil::fuzz_regression;
    use crate::image::backing;

    /// Set by the reader thread's thread-local destructor, which runs as the thread exits.
    static READER_EXITED: AtomicBool = AtomicBool::new(false);

    struct ExitMarker;

    impl Drop for ExitMarker {
        fn drop(&mut self) {
            // Slow on purpose: a `run` that does not wait for its reader returns first.
            std::thread::sleep(Duration::from_millis(200));
            READER_EXITED.store(true, Ordering::SeqCst);
        }
    }

    thread_local! {
        static MARKER: ExitMarker = const { ExitMarker };
    }

    /// The fuzzer's image, read through a source that leaves a destructor in its thread.
    struct Marked(Box<dyn BlockSource>);

    impl BlockSource for Marked {
        fn virtual_size(&self) -> u64 {
            self.0.virtual_size()
        }

        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<bool> {
            MARKER.with(|_| ());
            self.0.read_at(offset, buf)
        }
    }

    struct Discard;

    impl Sink for Discard {
        fn cluster(&mut self, _: u64, _: Cluster<'_>) -> Result<()> {
            Ok(())
        }
    }

    /// The qcow2_read fuzzer's leak report: `run` returned while its reader thread was still
    /// running thread-local destructors (a scope waits for the thread's closure only).
    #[test]
    fn run_returns_after_its_reader_thread_has_exited() {
        let image = fuzz_regression("qcow2_read-reader-thread-exit");
        let src = Marked(backing::open_input(&image, Some("qcow2")).unwrap());
        let progress = crate::progress::Reporter::quiet();
        let task = progress.task("test", src.virtual_size(), crate::progress::Unit::Bytes);
        let stats = run(&src, &[], Some(Codec::Zlib), &mut Discard, &task).unwrap();
        assert_eq!(stats.clusters, 1);
        assert!(
            READER_EXITED.load(Ordering::SeqCst),
            "run returned before its reader thread exited"
        );
    }
}
