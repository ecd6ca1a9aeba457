//! Raw (sparse) output; raw.xz is in `xz`.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};

use super::convert::{CLUSTER, Cluster, Sink};

/// A sparse raw file: zero clusters become holes.
pub struct RawSink {
    /// The output file (empty, opened for writing).
    pub file: File,
    /// The disk's size in bytes.
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

    /// Sets the file to the disk's size, syncs; returns the file and its size.
    pub fn finish(self) -> Result<(File, u64)> {
        self.file
            .set_len(self.size)
            .context("setting the raw image size")?;
        self.file.sync_all().context("syncing the raw image")?;
        Ok((self.file, self.size))
    }
}
