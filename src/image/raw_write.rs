//! Raw (sparse) and raw.xz outputs.

use std::fs::File;
use std::io::Write;
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

/// An xz stream of the whole raw disk (multi-threaded liblzma, preset 6 like `xz`).
pub struct XzSink {
    enc: liblzma::write::XzEncoder<std::io::BufWriter<File>>,
    size: u64,
    zeros: Vec<u8>,
    /// Uncompressed bytes fed to the encoder so far.
    written: u64,
}

impl XzSink {
    pub fn new(file: File, size: u64) -> Result<XzSink> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let stream = liblzma::stream::MtStreamBuilder::new()
            .preset(6)
            .check(liblzma::stream::Check::Crc64)
            .threads(threads)
            .encoder()
            .context("setting up the xz encoder")?;
        let enc = liblzma::write::XzEncoder::new_stream(std::io::BufWriter::new(file), stream);
        Ok(XzSink {
            enc,
            size,
            zeros: vec![0; CLUSTER],
            written: 0,
        })
    }

    /// Pads the stream with zeros up to `len` uncompressed bytes, then appends `trailer`
    /// (a VHD footer) and finishes like [`XzSink::finish`].
    pub fn finish_padded(mut self, len: u64, trailer: &[u8]) -> Result<(File, u64)> {
        while self.written < len {
            let n = (len - self.written).min(CLUSTER as u64) as usize;
            self.enc
                .write_all(&self.zeros[..n])
                .context("compressing the image padding")?;
            self.written += n as u64;
        }
        self.enc
            .write_all(trailer)
            .context("compressing the image trailer")?;
        self.finish()
    }

    pub fn finish(self) -> Result<(File, u64)> {
        let buf = self.enc.finish().context("finishing the xz stream")?;
        let file = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing the xz image")?;
        file.sync_all().context("syncing the xz image")?;
        let len = file.metadata().context("reading the xz image size")?.len();
        Ok((file, len))
    }
}

impl Sink for XzSink {
    fn cluster(&mut self, idx: u64, data: Cluster<'_>) -> Result<()> {
        let off = idx * CLUSTER as u64;
        let n = (self.size - off).min(CLUSTER as u64) as usize;
        let bytes = match data {
            Cluster::Plain(d) => &d[..n],
            _ => &self.zeros[..n],
        };
        self.written += n as u64;
        self.enc
            .write_all(bytes)
            .context("compressing the raw.xz image")
    }
}
