//! The .xz disk images (raw.xz for EC2, vhdfixed.xz for Azure), compressed by doing less work
//! rather than only spreading it over the cores.
//!
//! The disk is cut into blocks of [`XZ_BLOCK`] bytes and each block into segments, each
//! written as its own .xz stream (the format allows concatenated streams, and xz, liblzma,
//! Python's lzma and the cloud importers decompress them as one file):
//! - long zero runs (most of a fresh disk) are copies of cached all-zero streams;
//! - incompressible runs (random data, compressed files: a third of the benchmark disk) are
//!   stored: LZMA2 uncompressed chunks in a container written here, with no encoder work;
//! - everything else is compressed by liblzma on a pool of threads, one stream per segment.
//!
//! The encoder settings are chosen for speed at equal size (figures from the benchmark
//! disk's compressible data, in BENCHMARKS.md): the x86 BCJ filter (as `xz --x86`; images are
//! x86_64 only, [`super::ARCH`]) shrinks machine code by a few percent, which pays for a
//! cheaper match search (see [`DICT`]).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::sync::{Arc, mpsc};

use anyhow::{Context, Result, anyhow};

use super::convert::{CLUSTER, Cluster, Sink};
use crate::compressibility::{Probe, Threshold};

/// The uncompressed size of a block, the unit of planning and of parallel work.
const XZ_BLOCK: usize = 16 << 20;
/// Zero runs at least this long end the current block and are written as cached all-zero
/// streams; shorter ones are compressed with the data around them.
const ZERO_STREAM_MIN: u64 = 4 << 20;
/// The cached all-zero streams hold 64 KiB << k zeros, k in 0..ZERO_RUNGS (up to 64 MiB).
const ZERO_RUNGS: usize = 11;
/// Data is judged in units of this size.
const UNIT: usize = 64 << 10;
/// Duplicates are looked for in pieces of this size: a filesystem block, so two copies of a
/// file line up.
const PIECE: usize = 4 << 10;
/// Stored runs shorter than this are compressed with their neighbours: each stream costs
/// about 60 bytes and cuts the compressor's history.
const STORE_RUN_MIN: usize = 1 << 20;
/// When a unit is stored. LZMA's range coder gains `(8 - H) / 8` on bytes of entropy H, so
/// 7.98 bits per byte leaves at most 0.25% on the table; the deflate probe catches repeats.
const STORE_WHEN: Threshold = Threshold {
    min_entropy: 7.98,
    min_gain: 0.01,
};
/// The encoders' memory budget: liblzma's own estimate for each thread with an input and an
/// output block (at most `threads` blocks are alive, the one being filled included):
/// 2 x 109 MiB with two threads. Measured, the whole process peaks at 209 MiB on the
/// benchmark disk (the rest of postprocess is 44 MiB), within issue 15's 256 MiB whatever
/// the disk size and number of cores.
const XZ_BUDGET: u64 = 224 << 20;
/// LZMA2 settings: preset 6 (as `xz`, 8 MiB dictionary: parts of a disk repeat 4-8 MiB
/// apart, where a 4 MiB dictionary doubled the output), with the hash-chain match finder,
/// nice length 32 and search depth 8 instead of the binary tree, 64 and 0 (automatic):
/// 0.54x the time and 62 MiB per encoder instead of 94 (two fit in the budget), at +0.9%
/// on compressible data, which the x86 filter pays back on machine code.
const DICT: u32 = 8 << 20;
const NICE_LEN: u32 = 32;
const DEPTH: u32 = 8;
/// LZMA2's dictionary-size byte of the stored streams' block header: 64 KiB, one chunk.
const STORED_DICT_BYTE: u8 = 8;

const CRC32: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);
const CRC64: crc::Crc<u64, crc::Table<16>> = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_XZ);

/// The filter chain of the compressed segments: x86 BCJ, then LZMA2.
fn filters() -> Result<liblzma::stream::Filters> {
    let mut lzma =
        liblzma::stream::LzmaOptions::new_preset(6).context("setting up the xz encoder")?;
    lzma.dict_size(DICT)
        .nice_len(NICE_LEN)
        .depth(DEPTH)
        .match_finder(liblzma::stream::MatchFinder::HashChain4);
    let mut filters = liblzma::stream::Filters::new();
    filters.x86().lzma2(&lzma);
    Ok(filters)
}

/// One complete .xz stream of `data`, compressed.
fn compressed_stream(data: &[u8]) -> Result<Vec<u8>> {
    let stream =
        liblzma::stream::Stream::new_stream_encoder(&filters()?, liblzma::stream::Check::Crc64)
            .context("setting up the xz encoder")?;
    let out = Vec::with_capacity(data.len() / 3);
    let mut enc = liblzma::write::XzEncoder::new_stream(out, stream);
    enc.write_all(data).context("compressing the xz image")?;
    enc.finish().context("compressing the xz image")
}

/// The most threads, up to `cores`, whose encoders and blocks fit in `budget` bytes; at
/// least one.
fn xz_threads(cores: u32, budget: u64) -> Result<u32> {
    let per_thread = per_thread_memory()?;
    let fit = budget / per_thread.max(1);
    Ok(fit.clamp(1, u64::from(cores.max(1))) as u32)
}

/// liblzma's estimate of one encoder thread with its input and output block buffers.
fn per_thread_memory() -> Result<u64> {
    let mut one = liblzma::stream::MtStreamBuilder::new();
    one.filters(filters()?)
        .check(liblzma::stream::Check::Crc64)
        .block_size(XZ_BLOCK as u64)
        .threads(1);
    Ok(one.memusage())
}

/// Writes one complete .xz stream holding `data` as LZMA2 uncompressed chunks.
///
/// Hand-written because liblzma has no way to store: its encoder runs the full match search
/// on data before falling back to uncompressed chunks, and its block-level API is not in
/// the safe bindings. Layout from the .xz file format specification 1.2.1.
fn write_stored_stream(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    // Stream header: magic, flags (check type 4: CRC64), CRC32 of the flags.
    let flags = [0u8, 0x04];
    out.write_all(&[0xFD, b'7', b'z', b'X', b'Z', 0])?;
    out.write_all(&flags)?;
    out.write_all(&CRC32.checksum(&flags).to_le_bytes())?;
    // Block header (12 bytes, size byte 12/4-1): one filter and no optional sizes; LZMA2
    // (filter id 0x21) with its one property byte; zero padding to a multiple of 4; CRC32.
    let mut header = [
        0x02,
        0x00,
        0x21,
        0x01,
        STORED_DICT_BYTE,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    let crc = CRC32.checksum(&header[..8]).to_le_bytes();
    header[8..].copy_from_slice(&crc);
    out.write_all(&header)?;
    // LZMA2 uncompressed chunks of at most 64 KiB: control 1 (first, resets the dictionary)
    // or 2, the size minus one big-endian, the bytes; then the end marker.
    let mut packed = 0usize;
    for (i, chunk) in data.chunks(UNIT).enumerate() {
        out.write_all(&[if i == 0 { 0x01 } else { 0x02 }])?;
        out.write_all(&((chunk.len() - 1) as u16).to_be_bytes())?;
        out.write_all(chunk)?;
        packed += 3 + chunk.len();
    }
    out.write_all(&[0x00])?;
    packed += 1;
    // Block padding to a multiple of 4 (the header is 12 bytes), then the CRC64 check.
    out.write_all(&[0u8; 3][..(4 - packed % 4) % 4])?;
    out.write_all(&CRC64.checksum(data).to_le_bytes())?;
    let unpadded = (header.len() + packed + 8) as u64;
    // Index: indicator, one record (unpadded size, uncompressed size), padding, CRC32.
    let mut index = vec![0x00];
    for v in [1, unpadded, data.len() as u64] {
        push_varint(&mut index, v);
    }
    index.resize(index.len().next_multiple_of(4), 0);
    let crc = CRC32.checksum(&index);
    index.extend_from_slice(&crc.to_le_bytes());
    out.write_all(&index)?;
    // Stream footer: CRC32 of (backward size, flags), backward size (index/4 - 1), flags, "YZ".
    let mut tail = ((index.len() / 4 - 1) as u32).to_le_bytes().to_vec();
    tail.extend_from_slice(&flags);
    out.write_all(&CRC32.checksum(&tail).to_le_bytes())?;
    out.write_all(&tail)?;
    out.write_all(b"YZ")
}

/// The .xz multibyte integer: 7 bits per byte, low first, high bit set on all but the last.
fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A complete .xz stream of `CLUSTER << rung` zero bytes, made once per process.
fn zero_stream(rung: usize) -> Result<&'static [u8]> {
    static CACHE: [std::sync::OnceLock<Vec<u8>>; ZERO_RUNGS] =
        [const { std::sync::OnceLock::new() }; ZERO_RUNGS];
    if let Some(v) = CACHE[rung].get() {
        return Ok(v);
    }
    // Preset 0 (256 KiB dictionary): zeros shrink the same, ten times faster than preset 6.
    let stream = liblzma::stream::Stream::new_easy_encoder(0, liblzma::stream::Check::Crc64)
        .context("setting up the xz encoder")?;
    let mut enc = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
    let zeros = vec![0u8; CLUSTER];
    for _ in 0..1u64 << rung {
        enc.write_all(&zeros).context("compressing zeros")?;
    }
    let bytes = enc.finish().context("compressing zeros")?;
    Ok(CACHE[rung].get_or_init(|| bytes))
}

/// How a block is cut: each range of the block is stored (`true`) or compressed.
///
/// A unit is stored when it looks incompressible and none of its 4 KiB pieces occurs twice
/// in the block: a copy of a compressed file would shrink to a reference to the first copy
/// if both are in one compressed stream. Stored runs under [`STORE_RUN_MIN`] are compressed.
fn plan(block: &[u8], probe: &mut Probe) -> Vec<(Range<usize>, bool)> {
    let units: Vec<&[u8]> = block.chunks(UNIT).collect();
    let candidate: Vec<bool> = units
        .iter()
        .map(|u| probe.incompressible(u, STORE_WHEN))
        .collect();
    // Occurrences of each piece of the candidate units, by a keyed hash (collisions only
    // ever make a unit compressed, which is safe).
    let hasher = std::hash::RandomState::new();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let piece_hashes =
        |u: &[u8]| -> Vec<u64> { u.chunks(PIECE).map(|p| hasher.hash_one(p)).collect() };
    let hashes: Vec<Vec<u64>> = units
        .iter()
        .zip(&candidate)
        .map(|(u, &c)| if c { piece_hashes(u) } else { Vec::new() })
        .collect();
    for h in hashes.iter().flatten() {
        *seen.entry(*h).or_default() += 1;
    }
    let mut store: Vec<bool> = candidate
        .iter()
        .zip(&hashes)
        .map(|(&c, hs)| c && hs.iter().all(|h| seen[h] == 1))
        .collect();
    // Short stored runs join their neighbours.
    let min_units = STORE_RUN_MIN / UNIT;
    let mut i = 0;
    while i < store.len() {
        let end = (i..store.len())
            .find(|&j| store[j] != store[i])
            .unwrap_or(store.len());
        if store[i] && end - i < min_units {
            store[i..end].fill(false);
        }
        i = end;
    }
    let mut segments: Vec<(Range<usize>, bool)> = Vec::new();
    for (k, &s) in store.iter().enumerate() {
        let range = k * UNIT..((k + 1) * UNIT).min(block.len());
        match segments.last_mut() {
            Some((r, last)) if *last == s => r.end = range.end,
            _ => segments.push((range, s)),
        }
    }
    segments
}

/// One piece of output, in disk order.
enum Piece {
    /// Bytes ready to write (cached zero streams).
    Bytes(Cow<'static, [u8]>),
    /// A stored segment of a block, written as a stream when its turn comes.
    Stored(Arc<Vec<u8>>, Range<usize>),
    /// A segment being compressed on the pool.
    Compressing(mpsc::Receiver<Result<Vec<u8>>>),
}

/// The raw disk (plus an optional trailer) as .xz; see the module comment.
pub struct XzSink {
    out: BufWriter<File>,
    size: u64,
    /// Uncompressed bytes accounted so far (written, queued or pending as `zero_run`).
    written: u64,
    /// Zeros not placed yet.
    zero_run: u64,
    /// The block being filled.
    block: Vec<u8>,
    /// Output not written yet, in order.
    queue: VecDeque<Piece>,
    /// How many queued pieces hold a block or a compressed segment.
    heavy: usize,
    /// Whether any stream was written (an empty disk still needs one).
    any_stream: bool,
    pool: rayon::ThreadPool,
    threads: usize,
    probe: Probe,
}

impl XzSink {
    /// Starts the .xz of a disk of `size` bytes in `file`, with as many encoder threads as
    /// the cores and the memory budget allow.
    pub fn new(file: File, size: u64) -> Result<XzSink> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let threads = xz_threads(cores, XZ_BUDGET)? as usize;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("xz-{i}"))
            .build()
            .context("starting the xz compression threads")?;
        Ok(XzSink {
            out: BufWriter::with_capacity(1 << 20, file),
            size,
            written: 0,
            zero_run: 0,
            block: Vec::new(),
            queue: VecDeque::new(),
            heavy: 0,
            any_stream: false,
            pool,
            threads,
            probe: Probe::new(),
        })
    }

    /// Appends bytes to the current block, cutting it at [`XZ_BLOCK`].
    fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            if self.block.capacity() == 0 {
                // A new block: first let the queue drain to fewer than `threads` blocks, so
                // that `threads` blocks at most are alive, this one included. A worker may
                // then wait while this block fills, which is quick next to compressing one.
                self.write_ready(self.threads.saturating_sub(1))?;
                self.block.reserve_exact(XZ_BLOCK);
            }
            let n = bytes.len().min(XZ_BLOCK - self.block.len());
            self.block.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.block.len() == XZ_BLOCK {
                self.end_block()?;
            }
        }
        Ok(())
    }

    /// Plans the current block and queues its segments.
    fn end_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = Arc::new(std::mem::take(&mut self.block));
        for (range, stored) in plan(&block, &mut self.probe) {
            if stored {
                self.enqueue(Piece::Stored(Arc::clone(&block), range))?;
            } else {
                let (tx, rx) = mpsc::channel();
                let block = Arc::clone(&block);
                self.pool.spawn(move || {
                    // The receiver is gone only if the sink was dropped on an error.
                    let _ = tx.send(compressed_stream(&block[range]));
                });
                self.enqueue(Piece::Compressing(rx))?;
            }
        }
        Ok(())
    }

    /// Queues a piece, then writes what is ready; waits while more than `threads` pieces
    /// hold memory, which bounds the blocks alive.
    fn enqueue(&mut self, piece: Piece) -> Result<()> {
        if !matches!(piece, Piece::Bytes(_)) {
            self.heavy += 1;
        }
        self.queue.push_back(piece);
        self.write_ready(self.threads)
    }

    /// Writes pieces from the front of the queue: every ready one, and waiting for pending
    /// ones while more than `keep` heavy pieces are queued.
    fn write_ready(&mut self, keep: usize) -> Result<()> {
        while let Some(front) = self.queue.front() {
            let must_wait = self.heavy > keep;
            let done = match front {
                Piece::Compressing(rx) if must_wait => Some(
                    rx.recv()
                        .map_err(|_| anyhow!("an xz compression thread stopped"))?,
                ),
                Piece::Compressing(rx) => match rx.try_recv() {
                    Ok(done) => Some(done),
                    Err(mpsc::TryRecvError::Empty) => return Ok(()),
                    Err(mpsc::TryRecvError::Disconnected) => {
                        return Err(anyhow!("an xz compression thread stopped"));
                    }
                },
                _ => None,
            };
            match (self.queue.pop_front(), done) {
                (Some(Piece::Bytes(b)), _) => {
                    self.out.write_all(&b).context("writing the xz image")?;
                }
                (Some(Piece::Stored(block, range)), _) => {
                    write_stored_stream(&mut self.out, &block[range])
                        .context("writing the xz image")?;
                    self.heavy -= 1;
                }
                (_, Some(stream)) => {
                    self.out
                        .write_all(&stream?)
                        .context("writing the xz image")?;
                    self.heavy -= 1;
                }
                _ => unreachable!("a compressing piece is only popped with its result"),
            }
            self.any_stream = true;
        }
        Ok(())
    }

    /// Places the pending zero run: in the block when short, else as cached all-zero
    /// streams (largest first) after the block so far.
    fn flush_zeros(&mut self) -> Result<()> {
        let run = std::mem::take(&mut self.zero_run);
        let whole = run - run % CLUSTER as u64;
        let mut inline = run;
        if whole >= ZERO_STREAM_MIN {
            self.end_block()?;
            let mut left = whole;
            for rung in (0..ZERO_RUNGS).rev() {
                let chunk = (CLUSTER as u64) << rung;
                while left >= chunk {
                    self.enqueue(Piece::Bytes(Cow::Borrowed(zero_stream(rung)?)))?;
                    left -= chunk;
                }
            }
            inline = run - whole;
        }
        let zeros = [0u8; 4096];
        while inline > 0 {
            let n = inline.min(zeros.len() as u64) as usize;
            self.push(&zeros[..n])?;
            inline -= n as u64;
        }
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<()> {
        self.flush_zeros()?;
        self.push(bytes)
    }

    /// Pads the stream with zeros up to `len` uncompressed bytes, then appends `trailer`
    /// (a VHD footer) and finishes like [`XzSink::finish`].
    pub fn finish_padded(mut self, len: u64, trailer: &[u8]) -> Result<(File, u64)> {
        if self.written < len {
            self.zero_run += len - self.written;
            self.written = len;
        }
        self.data(trailer)?;
        self.finish()
    }

    /// Ends the last block and the stream, syncs; returns the file and its size.
    pub fn finish(mut self) -> Result<(File, u64)> {
        self.flush_zeros()?;
        self.end_block()?;
        self.write_ready(0)?;
        if !self.any_stream {
            // An empty disk is still one (empty) stream: a zero-byte file is not .xz.
            let empty = compressed_stream(&[])?;
            self.out.write_all(&empty).context("writing the xz image")?;
        }
        crate::fsutil::finish_buffered(self.out, "the xz image")
    }
}

impl Sink for XzSink {
    fn cluster(&mut self, idx: u64, data: Cluster<'_>) -> Result<()> {
        let off = idx * CLUSTER as u64;
        let n = (self.size - off).min(CLUSTER as u64) as usize;
        self.written += n as u64;
        match data {
            Cluster::Plain(d) => self.data(&d[..n]),
            _ => {
                self.zero_run += n as u64;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::test_noise as noise;

    fn decompress(bytes: &[u8]) -> Vec<u8> {
        use std::io::Read;
        // The multi-stream decoder: what `xz -d` does with concatenated streams.
        let mut out = Vec::new();
        liblzma::read::XzDecoder::new_multi_decoder(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"mov eax, ebx; call 0x4010\n"[i % 26])
            .collect()
    }

    /// Writes `clusters` (None: a zero cluster) through an XzSink; returns the file's bytes.
    fn sink_bytes(
        size: u64,
        cluster: impl Fn(u64) -> Option<Vec<u8>>,
        pad: Option<(u64, &[u8])>,
    ) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.xz");
        let mut sink = XzSink::new(File::create(&path).unwrap(), size).unwrap();
        for i in 0..size.div_ceil(CLUSTER as u64) {
            match cluster(i) {
                Some(d) => sink.cluster(i, Cluster::Plain(&d)).unwrap(),
                None => sink.cluster(i, Cluster::Zero).unwrap(),
            }
        }
        let len = match pad {
            Some((len, trailer)) => sink.finish_padded(len, trailer).unwrap().1,
            None => sink.finish().unwrap().1,
        };
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, len);
        bytes
    }

    #[test]
    fn stored_streams_are_valid_xz_for_liblzma_and_the_xz_tool() {
        for len in [1, 1000, UNIT, UNIT + 1, 5 * UNIT + 77] {
            let data = noise(len, len as u64);
            let mut stream = Vec::new();
            write_stored_stream(&mut stream, &data).unwrap();
            assert_eq!(decompress(&stream), data, "{len} bytes");
            // 12 + 12 header bytes, 3 per chunk, end marker, padding, check, index, footer.
            assert!(stream.len() <= len + 3 * len.div_ceil(UNIT) + 64);
        }
        // The xz tool's own integrity test (it checks the index and both CRCs).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.xz");
        let mut stream = Vec::new();
        write_stored_stream(&mut stream, &noise(3 * UNIT, 9)).unwrap();
        std::fs::write(&path, &stream).unwrap();
        use crate::command::CommandExt;
        std::process::Command::new("xz")
            .arg("-t")
            .arg(&path)
            .run_checked()
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    #[test]
    fn noise_is_stored_text_compressed_and_repeated_noise_compressed() {
        let mut p = Probe::new();
        // 2 MiB noise, 2 MiB text, 2 MiB of a 256 KiB noise piece repeated.
        let mut block = noise(2 << 20, 1);
        block.extend(text(2 << 20));
        block.extend(noise(256 << 10, 2).repeat(8));
        let plan = plan(&block, &mut p);
        assert_eq!(
            plan,
            vec![(0..2 << 20, true), (2 << 20..6 << 20, false)],
            "noise stored; text and the repeats compressed"
        );
        // A short noise run inside text is not worth a stream of its own.
        let mut block = text(1 << 20);
        block.extend(noise(512 << 10, 3));
        block.extend(text(1 << 20));
        assert_eq!(plan_of(&block), vec![(0..block.len(), false)]);
    }

    fn plan_of(block: &[u8]) -> Vec<(Range<usize>, bool)> {
        plan(block, &mut Probe::new())
    }

    #[test]
    fn mixed_disk_round_trips_and_stays_small() {
        // 40 MiB: text, noise, zeros (streamed), text, 1 MiB of zeros (inline), noise, tail.
        let size = (40u64 << 20) + 4096;
        let kind = |i: u64| match i {
            0..64 => 't',
            64..160 => 'n',
            160..300 => 'z',
            300..400 => 't',
            400..416 => 'z',
            416..600 => 'n',
            _ => 't',
        };
        let cluster = |i: u64| match kind(i) {
            't' => Some(text(CLUSTER)),
            'n' => Some(noise(CLUSTER, i)),
            _ => None,
        };
        let bytes = sink_bytes(size, cluster, Some((41 << 20, b"TRAILER")));
        let out = decompress(&bytes);
        assert_eq!(out.len() as u64, (41 << 20) + 7);
        for i in 0..size.div_ceil(CLUSTER as u64) {
            let at = (i * CLUSTER as u64) as usize;
            let end = (at + CLUSTER).min(size as usize);
            let want = cluster(i).unwrap_or_else(|| vec![0; CLUSTER]);
            assert!(out[at..end] == want[..end - at], "cluster {i}");
        }
        assert!(out[size as usize..41 << 20].iter().all(|&b| b == 0));
        assert_eq!(&out[41 << 20..], b"TRAILER");
        // Noise stored (280 clusters), text nearly free, zeros nearly free.
        let noise_bytes = 280 * CLUSTER;
        assert!(
            bytes.len() < noise_bytes + noise_bytes / 100 + (64 << 10),
            "{} bytes",
            bytes.len()
        );
    }

    #[test]
    fn zero_runs_become_cached_streams() {
        let size = (13u64 << 20) + 4096;
        let data: Vec<u8> = (0..CLUSTER).map(|i| (i * 7 % 251) as u8).collect();
        let is_data = |i: u64| i == 0 || i == 129 || i == 146;
        let bytes = sink_bytes(size, |i| is_data(i).then(|| data.clone()), None);
        let out = decompress(&bytes);
        assert_eq!(out.len() as u64, size);
        assert!(
            bytes.len() < 64 << 10,
            "zeros were not cheap: {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn the_encoders_stay_in_their_budget_on_any_number_of_cores() {
        for cores in [1, 2, 4, 16, 64, 256] {
            let threads = xz_threads(cores, XZ_BUDGET).unwrap();
            assert!((1..=cores).contains(&threads), "{cores} cores: {threads}");
        }
        // Two threads on the 2-core machines: the budget was chosen for that.
        assert_eq!(
            xz_threads(2, XZ_BUDGET).unwrap(),
            2,
            "one thread needs {} MiB",
            per_thread_memory().unwrap() >> 20
        );
        assert_eq!(xz_threads(8, 0).unwrap(), 1);
    }

    #[test]
    fn an_empty_disk_is_still_a_valid_xz_file() {
        let bytes = sink_bytes(0, |_| None, None);
        assert!(!bytes.is_empty());
        assert!(decompress(&bytes).is_empty());
    }
}
