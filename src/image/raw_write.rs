//! Raw (sparse) and raw.xz outputs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};

use super::convert::{CLUSTER, Cluster, Sink};

/// A sparse raw file: zero clusters become holes.
pub struct RawSink {
    pub file: File,
    pub size: u64,
}

impl Sink for RawSink {
    fn cluster(&mut self, idx: u64, data: Cluster<'_>) -> Result<()> {
        if let Cluster::Plain(d) = data {
            let off = idx * CLUSTER as u64;
            let n = (self.size - off).min(d.len() as u64) as usize;
            self.file
                .write_all_at(&d[..n], off)
                .context("writing the raw image")?;
        }
        Ok(())
    }
}

impl RawSink {
    /// Ends the file at `len` bytes (zeros past the disk, as a hole), appends `trailer`
    /// (a VHD footer), syncs; returns the file and its size.
    pub fn finish_padded(self, len: u64, trailer: &[u8]) -> Result<(File, u64)> {
        self.file.set_len(len).context("setting the image size")?;
        self.file
            .write_all_at(trailer, len)
            .context("writing the image trailer")?;
        self.file.sync_all().context("syncing the image")?;
        Ok((self.file, len + trailer.len() as u64))
    }

    pub fn finish(self) -> Result<(File, u64)> {
        self.file
            .set_len(self.size)
            .context("setting the raw image size")?;
        self.file.sync_all().context("syncing the raw image")?;
        Ok((self.file, self.size))
    }
}

/// Zero runs at least this long end the current xz stream and are written as cached
/// all-zero streams; shorter ones are compressed with the data around them.
const ZERO_STREAM_MIN: u64 = 4 << 20;
/// The xz encoder's memory budget, as liblzma estimates it
/// (`lzma_stream_encoder_mt_memusage`). The rest of postprocess (cluster batches, buffers)
/// stays under 50 MiB, so the whole process stays under 200 MiB whatever the disk size and
/// the number of cores (issue 15 asks for at most 256 MiB).
const XZ_BUDGET: u64 = 150 << 20;
/// The xz preset, as `xz -6` (the default) uses it.
const XZ_PRESET: u32 = 6;
/// The uncompressed size of each xz block. liblzma's default (3x the 8 MiB dictionary)
/// costs 3 x 24 MiB of buffers per thread; 16 MiB blocks are within 0.5% of its output
/// size and leave room in the budget.
const XZ_BLOCK: u64 = 16 << 20;
/// The cached all-zero streams hold 64 KiB << k zeros, k in 0..ZERO_RUNGS (up to 64 MiB).
const ZERO_RUNGS: usize = 11;

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

/// The multi-threaded encoder's settings for `threads` threads.
fn xz_encoder(threads: u32) -> liblzma::stream::MtStreamBuilder {
    let mut b = liblzma::stream::MtStreamBuilder::new();
    b.preset(XZ_PRESET)
        .check(liblzma::stream::Check::Crc64)
        .block_size(XZ_BLOCK)
        .threads(threads);
    b
}

/// The most threads, up to `cores`, whose encoder fits in `budget` bytes; at least one.
/// liblzma's encoder does not lower its thread count by itself (`memlimit_threading` only
/// applies to the decoder), and every thread costs a dictionary plus its block buffers.
fn xz_threads(cores: u32, budget: u64) -> u32 {
    (1..=cores.max(1))
        .take_while(|&n| n == 1 || xz_encoder(n).memusage() <= budget)
        .last()
        .unwrap_or(1)
}

/// Where an [`XzSink`] is between streams.
enum XzState {
    /// No stream open: the next data starts one.
    Between(BufWriter<File>),
    Stream(liblzma::write::XzEncoder<BufWriter<File>>),
}

/// The raw disk as .xz (preset 6 like `xz`, multi-threaded liblzma, CRC64), with as many
/// threads as fit in [`XZ_BUDGET`].
///
/// Long zero runs (most of a fresh disk) would cost liblzma about 20 ms of CPU per MiB; here
/// they end the current stream and are written as copies of cached all-zero streams. The
/// result is a concatenation of .xz streams, which the format allows and xz, liblzma,
/// Python's lzma and the cloud importers decompress as one file.
pub struct XzSink {
    state: Option<XzState>,
    size: u64,
    zeros: Vec<u8>,
    /// Uncompressed bytes accounted so far (written or pending as `zero_run`).
    written: u64,
    /// Zeros not written yet.
    zero_run: u64,
    threads: u32,
}

impl XzSink {
    pub fn new(file: File, size: u64) -> Result<XzSink> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let threads = xz_threads(cores, XZ_BUDGET);
        Ok(XzSink {
            state: Some(XzState::Between(BufWriter::with_capacity(1 << 20, file))),
            size,
            zeros: vec![0; CLUSTER],
            written: 0,
            zero_run: 0,
            threads,
        })
    }

    /// The open data stream, starting one if needed.
    fn stream(&mut self) -> Result<&mut liblzma::write::XzEncoder<BufWriter<File>>> {
        if let Some(XzState::Between(_)) = self.state {
            let Some(XzState::Between(out)) = self.state.take() else {
                unreachable!("checked above")
            };
            let stream = xz_encoder(self.threads)
                .encoder()
                .context("setting up the xz encoder")?;
            self.state = Some(XzState::Stream(liblzma::write::XzEncoder::new_stream(
                out, stream,
            )));
        }
        match self.state.as_mut() {
            Some(XzState::Stream(enc)) => Ok(enc),
            _ => unreachable!("a stream was just opened"),
        }
    }

    /// Ends the open stream, if any; returns the file writer.
    fn end_stream(&mut self) -> Result<&mut BufWriter<File>> {
        if let Some(XzState::Stream(_)) = self.state {
            let Some(XzState::Stream(enc)) = self.state.take() else {
                unreachable!("checked above")
            };
            let out = enc.finish().context("finishing an xz stream")?;
            self.state = Some(XzState::Between(out));
        }
        match self.state.as_mut() {
            Some(XzState::Between(out)) => Ok(out),
            _ => unreachable!("the stream was just ended"),
        }
    }

    /// Writes the pending zero run: inside the open stream when short, else as cached
    /// all-zero streams (largest first).
    fn flush_zeros(&mut self) -> Result<()> {
        let run = std::mem::take(&mut self.zero_run);
        let whole = run - run % CLUSTER as u64;
        let mut inline = run;
        if whole >= ZERO_STREAM_MIN {
            let out = self.end_stream()?;
            let mut left = whole;
            for rung in (0..ZERO_RUNGS).rev() {
                let chunk = (CLUSTER as u64) << rung;
                while left >= chunk {
                    out.write_all(zero_stream(rung)?)
                        .context("writing the xz image")?;
                    left -= chunk;
                }
            }
            inline = run - whole;
        }
        if inline > 0 {
            let zeros = std::mem::take(&mut self.zeros);
            let enc = self.stream()?;
            while inline > 0 {
                let n = inline.min(CLUSTER as u64) as usize;
                enc.write_all(&zeros[..n]).context("compressing zeros")?;
                inline -= n as u64;
            }
            self.zeros = zeros;
        }
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<()> {
        self.flush_zeros()?;
        self.stream()?
            .write_all(bytes)
            .context("compressing the xz image")
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

    pub fn finish(mut self) -> Result<(File, u64)> {
        self.flush_zeros()?;
        if matches!(self.state, Some(XzState::Between(_))) && self.written == 0 {
            // An empty disk is still one (empty) stream: a zero-byte file is not .xz.
            self.stream()?;
        }
        let buf = match self.state.take() {
            Some(XzState::Stream(enc)) => enc.finish().context("finishing the xz stream")?,
            Some(XzState::Between(out)) => out,
            None => unreachable!("the writer is always held"),
        };
        crate::fsutil::finish_buffered(buf, "the xz image")
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

    fn decompress(bytes: &[u8]) -> Vec<u8> {
        use std::io::Read;
        // The multi-stream decoder: what `xz -d` does with concatenated streams.
        let mut out = Vec::new();
        liblzma::read::XzDecoder::new_multi_decoder(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn zero_runs_become_cached_streams_and_the_bytes_survive() {
        let dir = tempfile::tempdir().unwrap();
        let size = (13u64 << 20) + 4096;
        let path = dir.path().join("x.xz");
        let mut sink = XzSink::new(File::create(&path).unwrap(), size).unwrap();
        let data: Vec<u8> = (0..CLUSTER).map(|i| (i * 7 % 251) as u8).collect();
        // data, 8 MiB of zeros (streamed), data, 1 MiB of zeros (inline), data, tail zeros
        let clusters = size.div_ceil(CLUSTER as u64);
        let is_data = |i: u64| i == 0 || i == 129 || i == 146;
        for i in 0..clusters {
            let c = if is_data(i) {
                Cluster::Plain(&data)
            } else {
                Cluster::Zero
            };
            sink.cluster(i, c).unwrap();
        }
        let (_, len) = sink.finish_padded(14 << 20, b"TRAILER").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, len);
        let out = decompress(&bytes);
        assert_eq!(out.len() as u64, (14 << 20) + 7);
        for i in 0..clusters {
            let at = (i * CLUSTER as u64) as usize;
            let end = (at + CLUSTER).min(size as usize);
            let want = if is_data(i) {
                &data[..end - at]
            } else {
                &[0u8; CLUSTER][..end - at]
            };
            assert!(out[at..end] == *want, "cluster {i}");
        }
        assert!(out[size as usize..(14 << 20)].iter().all(|&b| b == 0));
        assert_eq!(&out[14 << 20..], b"TRAILER");
        assert!(
            bytes.len() < 64 << 10,
            "zeros were not cheap: {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn the_encoder_stays_in_its_budget_on_any_number_of_cores() {
        for cores in [1, 2, 4, 16, 64, 256] {
            let threads = xz_threads(cores, XZ_BUDGET);
            assert!((1..=cores).contains(&threads), "{cores} cores: {threads}");
            let used = xz_encoder(threads).memusage();
            assert!(
                used <= XZ_BUDGET,
                "{cores} cores: {threads} threads need {} MiB",
                used >> 20
            );
        }
        // More budget, more threads: the bound is what limits them.
        let one = xz_encoder(1).memusage();
        assert_eq!(xz_threads(8, one * 4), 4);
        assert_eq!(xz_threads(8, 0), 1);
    }

    #[test]
    fn an_empty_disk_is_still_a_valid_xz_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.xz");
        let sink = XzSink::new(File::create(&path).unwrap(), 0).unwrap();
        sink.finish().unwrap();
        assert!(decompress(&std::fs::read(&path).unwrap()).is_empty());
    }
}
