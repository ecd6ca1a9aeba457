//! Raw disk images as input.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::source::BlockSource;

/// A raw disk image: the guest sees the file's bytes as they are.
pub struct RawImage {
    path: PathBuf,
    file: File,
    len: u64,
}

impl RawImage {
    /// Opens `path` read-only as a raw image.
    pub fn open(path: &Path) -> Result<RawImage> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len();
        Ok(RawImage {
            path: path.to_owned(),
            file,
            len,
        })
    }
}

impl BlockSource for RawImage {
    /// Rounded up to whole 512-byte sectors, as qemu-img shows a raw file.
    fn virtual_size(&self) -> u64 {
        self.len.div_ceil(512) * 512
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<bool> {
        let avail = self.len.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (data, rest) = buf.split_at_mut(avail);
        self.file
            .read_exact_at(data, offset)
            .with_context(|| format!("reading {} at offset {offset}", self.path.display()))?;
        rest.fill(0);
        Ok(avail > 0)
    }
}
